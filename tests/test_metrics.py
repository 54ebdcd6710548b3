"""Span metrics against seqeval (a port of conlleval.pl), hand-checked cases and real tag sets."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from seqtag.metrics import SpanScore, chunks, format_report, span_f1, token_accuracy
from seqtag.schemes import SCHEMES, detect_scheme

TYPES = ("PER", "LOC", "creative-work")  # "creative-work": a WNUT-17 type with a hyphen
# Random draws over these alphabets give valid sequences as well as stray ones (I-X after O,
# E-X without B-X, type changes inside a chunk). IOB1 repeats I- and O so that B- stays rarer.
ALPHABETS = {
    "bio": ["O", *(f"{p}-{t}" for p in "BI" for t in TYPES)],
    "iob1": ["O", "O", *(f"{p}-{t}" for p in "IIB" for t in TYPES)],
    "bioes": ["O", *(f"{p}-{t}" for p in "BIES" for t in TYPES)],
}
EXAMPLES = 350  # random corpora per scheme (each also checks chunks() sentence by sentence)


COPY = "="  # in a predicted sentence: take the gold tag


@st.composite
def corpus_pairs(draw, scheme):
    """(gold, pred): 1-5 sentences of 0-12 tags; pred copies about 2/3 of the gold tags."""
    alphabet = ALPHABETS[scheme]
    gold_tag = st.sampled_from(alphabet)
    pred_tag = st.sampled_from([COPY] * (2 * len(alphabet)) + alphabet)
    gold_and_pred = st.lists(st.tuples(gold_tag, pred_tag), max_size=12)
    corpus = draw(st.lists(gold_and_pred, min_size=1, max_size=5))
    gold = [[g for g, _ in sentence] for sentence in corpus]
    pred = [[g if p == COPY else p for g, p in sentence] for sentence in corpus]
    return gold, pred


# --- agreement with seqeval (default, non-strict mode) -------------------------------------


def seqeval_chunks(tags):
    """seqeval's chunks of one sentence, with an exclusive end."""
    # A flat list: given a list of lists, get_entities would join the sentences with "O".
    return [(t, start, end + 1) for t, start, end in get_entities(list(tags))]


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_chunks_match_seqeval(scheme, data):
    tags = data.draw(st.lists(st.sampled_from(ALPHABETS[scheme]), max_size=12))
    assert chunks(tags) == seqeval_chunks(tags)


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(data=st.data())
def test_scores_match_seqeval(scheme, data):
    gold, pred = data.draw(corpus_pairs(scheme))
    for sentence in gold + pred:
        assert chunks(sentence) == seqeval_chunks(sentence)
    report = span_f1(gold, pred)
    micro = report.micro
    # zero_division=0 returns what the default "warn" returns, without the UndefinedMetricWarning.
    assert micro.precision == pytest.approx(precision_score(gold, pred, zero_division=0))
    assert micro.recall == pytest.approx(recall_score(gold, pred, zero_division=0))
    assert micro.f1 == pytest.approx(f1_score(gold, pred, zero_division=0))
    assert micro.support == sum(len(chunks(s)) for s in gold)
    assert micro.predicted == sum(len(chunks(s)) for s in pred)
    assert list(report.per_type) == sorted(report.per_type)
    for field in ("support", "predicted", "correct"):
        total = sum(getattr(s, field) for s in report.per_type.values())
        assert total == getattr(micro, field)
    if micro.support + micro.predicted == 0:
        # seqeval's classification_report fails on a corpus without chunks (mean of empty slice).
        assert report.per_type == {}
        return
    expected = classification_report(gold, pred, output_dict=True, zero_division=0)
    expected = {k: v for k, v in expected.items() if not k.endswith(" avg")}
    assert set(report.per_type) == set(expected)
    for name, score in report.per_type.items():
        assert score.precision == pytest.approx(expected[name]["precision"])
        assert score.recall == pytest.approx(expected[name]["recall"])
        assert score.f1 == pytest.approx(expected[name]["f1-score"])
        assert score.support == expected[name]["support"]


# --- hand-checked chunking ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([], []),
        (["O", "O", "O"], []),
        (["O", "B-PER", "I-PER"], [("PER", 1, 3)]),  # chunk at the very end
        (["O", "O", "B-PER"], [("PER", 2, 3)]),  # B- as the last tag
        (["O", "I-PER", "I-PER", "O"], [("PER", 1, 3)]),  # I- after O starts a chunk (IOB1)
        (["I-PER"], [("PER", 0, 1)]),
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),  # IOB1 boundary
        (["I-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # a type change ends a chunk
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),
        (["B-creative-work", "I-creative-work"], [("creative-work", 0, 2)]),
        (["B-creative-work", "I-creative"], [("creative-work", 0, 1), ("creative", 1, 2)]),
        (["B-PER", "I-PER", "E-PER", "S-LOC"], [("PER", 0, 3), ("LOC", 3, 4)]),
        # BIOES, where the original conlleval.pl (no S rule, no E-X B-X rule) would merge
        # each pair into one chunk; seqeval and the BIOES ports of conlleval split them.
        (["S-PER", "S-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["B-PER", "E-PER", "B-PER", "E-PER"], [("PER", 0, 2), ("PER", 2, 4)]),
        (["E-PER", "E-PER"], [("PER", 0, 1), ("PER", 1, 2)]),  # stray E- after O or E-
        (["S-PER", "I-PER", "E-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
        (["B-PER", "O", "E-PER"], [("PER", 0, 1), ("PER", 2, 3)]),
    ],
)
def test_chunks_by_hand(tags, expected):
    assert chunks(tags) == expected


@pytest.mark.parametrize("tag", ["NOUN", "B-", "-LRB-", "X-PER", "o", ""])
def test_chunks_rejects_non_span_tags(tag):
    with pytest.raises(ValueError, match=f"got {tag!r} at position 1"):
        chunks(["O", tag])


# --- span_f1 and token_accuracy by hand ------------------------------------------------------


def test_span_f1_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], [], ["O", "S-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O"], [], ["B-PER", "S-LOC"]]
    report = span_f1(gold, pred)
    assert report.micro == SpanScore(2 / 3, 2 / 3, 2 / 3, support=3, predicted=3, correct=2)
    assert report.per_type == {
        "LOC": SpanScore(1.0, 0.5, 2 / 3, support=2, predicted=1, correct=1),
        "PER": SpanScore(0.5, 1.0, 2 / 3, support=1, predicted=2, correct=1),
    }
    assert json.loads(json.dumps(report.as_dict())) == report.as_dict()
    assert report.as_dict()["per_type"]["LOC"]["correct"] == 1


def test_span_f1_is_zero_where_undefined():
    assert span_f1([], []).micro == SpanScore(0.0, 0.0, 0.0, 0, 0, 0)
    assert span_f1([["O", "O"]], [["O", "O"]]).per_type == {}
    report = span_f1([["B-PER"]], [["O"]])
    assert (report.micro.precision, report.micro.recall, report.micro.f1) == (0.0, 0.0, 0.0)
    # chunks never cross sentences, even where the tags would continue one
    assert span_f1([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]]).micro.correct == 2


def test_format_report_lists_every_type():
    text = format_report(span_f1([["B-creative-work", "O", "B-PER"]], [["B-PER", "O", "B-PER"]]))
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == ["type", "PER", "creative-work", "micro"]
    assert lines[-1].split() == ["micro", "avg", "0.5000", "0.5000", "0.5000", "2", "2", "1"]


def test_token_accuracy():
    gold = [["DET", "NOUN", "VERB"], [], ["PUNCT"]]
    assert token_accuracy(gold, gold) == 1.0
    assert token_accuracy(gold, [["DET", "VERB", "VERB"], [], ["X"]]) == 0.5


@pytest.mark.parametrize("metric", [token_accuracy, span_f1])
@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        ([["O"], ["O"]], [["O"]], r"as many predicted sentences as gold ones \(2\), got 1"),
        ([["O"], ["O", "O"]], [["O"], ["O"]], r"expected 2 predicted tags for sentence 1.*got 1"),
        ([["O"], ["O"], []], [["O"], ["O"], ["O"]], r"expected 0 .* for sentence 2.*got 1"),
        (["O"], [["O"]], "expected a list of tags for sentence 0, got a str"),
    ],
)
def test_mismatched_inputs_name_the_sentence(metric, gold, pred, message):
    with pytest.raises(ValueError, match=message):
        metric(gold, pred)


def test_token_accuracy_needs_tokens():
    with pytest.raises(ValueError, match="at least one token"):
        token_accuracy([[], []], [[], []])


def test_span_f1_names_the_sentence_with_a_bad_tag():
    with pytest.raises(ValueError, match="sentence 1: .*got 'NOUN' at position 0"):
        span_f1([["O"], ["O"]], [["O"], ["NOUN"]])


# --- detect_scheme ---------------------------------------------------------------------------

UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
PENN = [
    *"$ '' , -LRB- -RRB- . : ADD AFX CC CD DT EX FW GW HYPH IN JJ JJR JJS LS MD NFP NN".split(),
    *"NNP NNPS NNS PDT POS PRP PRP$ RB RBR RBS RP SYM TO UH VB VBD VBG VBN VBP VBZ WDT".split(),
    *"WP WP$ WRB XX ``".split(),
]
WNUT = ["O"] + [
    f"{p}-{t}"
    for t in "corporation creative-work group location person product".split()
    for p in "BI"
]
CONLL2003_IOB1 = "O I-PER I-LOC I-ORG I-MISC B-LOC B-ORG B-MISC".split()


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (UPOS, None),
        (PENN, None),
        (["-LRB-", "-RRB-"], None),  # hyphens, but "" is not a B/I/E/S prefix
        (["O", "B-PER", "NOUN"], None),  # one non-span tag is enough
        (["S-PER", "HYPH"], None),
        (["O", "B-"], None),  # no type
        ([], None),
        (["O"], None),  # no span tag at all
        (WNUT, "bio"),
        (["B-PER"], "bio"),
        (["O", "B-PER", "I-PER", "E-PER", "S-PER", "S-LOC"], "bioes"),
        (["O", "S-PER"], "bioes"),
        (["I-PER", "I-LOC", "B-LOC"], "iob1"),
        (CONLL2003_IOB1, "iob1"),
        (["O", "I-PER"], "iob1"),
    ],
)
def test_detect_scheme(tags, expected):
    assert detect_scheme(tags) == expected
    assert detect_scheme(iter(tags * 2)) == expected  # any iterable, duplicates allowed


def _sentences(path, comments=False):
    """The tab-separated rows of a CoNLL-style file, grouped into sentences by blank lines."""
    sentences, current = [], []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
        elif not (comments and line.startswith("#")):
            current.append(line.split("\t"))
    return sentences


def test_detect_scheme_on_ud_ewt(ewt_dir):
    rows = [r for s in _sentences(ewt_dir / "en_ewt-ud-dev.conllu", comments=True) for r in s]
    rows = [r for r in rows if r[0].isdigit()]  # not multiword ranges (1-2) or empty nodes (1.1)
    upos, xpos = [[r[3] for r in rows]], [[r[4] for r in rows]]
    assert detect_scheme(t for s in upos for t in s) is None
    assert detect_scheme(t for s in xpos for t in s) is None
    assert {"-LRB-", "HYPH", "PRP$"} <= {t for s in xpos for t in s}


def test_wnut_dev_against_seqeval(wnut_dir):
    tags = [[row[1] for row in sentence] for sentence in _sentences(wnut_dir / "dev.conll")]
    assert detect_scheme(t for s in tags for t in s) == "bio"
    for sentence in tags:
        assert chunks(sentence) == seqeval_chunks(sentence)
    assert span_f1(tags, tags).micro.f1 == 1.0
    shifted = [["O", *s[:-1]] for s in tags]
    assert span_f1(tags, shifted).micro.f1 == pytest.approx(f1_score(tags, shifted))
