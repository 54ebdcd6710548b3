"""Corpus readers and writers: round trips, the real corpora's published counts, column
layouts, and errors that name the file and the line."""

import functools
import itertools
import os

import pytest

from seqtag.data.corpus import (
    CONLLU_COLUMNS,
    CorpusError,
    Sentence,
    read_conll,
    read_conllu,
    read_corpus,
    write_conll,
    write_conllu,
)

# Published counts: ud_english_ewt/SOURCE.md (sentences, syntactic words) and wnut17/STATS.txt.
EWT_COUNTS = {"train": (12_544, 204_577), "dev": (2_001, 25_147), "test": (2_077, 25_094)}
WNUT_COUNTS = {"train": (3394, 62730), "dev": (1009, 15733), "test": (1287, 23394)}
WNUT_TYPES = ("corporation", "creative-work", "group", "location", "person", "product")
WNUT_TAGS = {"O", *(f"{prefix}-{t}" for prefix in "BI" for t in WNUT_TYPES)}
UPOS = set("ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split())
EWT_ROUND_TRIP_SENTENCES = 300

# Unicode (accents, CJK, emoji, dotted capital I), '#' inside and at the start of tokens,
# hyphens in tokens and tags, a one-token sentence.
HANDWRITTEN = [
    Sentence(
        ["Zoë", "visited", "São", "Paulo", "—", "見た", "😀", "!"],
        ["B-person", "O", "B-location", "I-location", "O", "O", "O", "O"],
        ["# sent_id = 1", "# text = Zoë visited São Paulo — 見た 😀 !"],
    ),
    Sentence(
        ["#hashtag", "C#", "a#b", "state-of-the-art", "-", "--", "-DOCSTART", "İstanbul"],
        ["B-creative-work", "B-product", "O", "O", "O", "O", "O", "B-location"],
        ["# sent_id = 2", "# note = '#' inside a comment # too"],
    ),
    Sentence(["naïve"], ["ADJ"]),
]


def _without_comments(sentences):
    return [Sentence(s.tokens, s.tags) for s in sentences]


@functools.cache
def _read_cached(path, column):
    """Each real file is read once per session; the tests only compare, never mutate."""
    if str(path).endswith(".conllu"):
        return read_conllu(path, column)
    return read_conll(path)


def _write_read(sentences, path, fmt, column):
    if fmt == "conll":
        write_conll(sentences, path)
        return read_conll(path)
    write_conllu(sentences, path, column)
    return read_conllu(path, column)


ROUND_TRIP_FORMATS = [("conll", None), ("conllu", "upos"), ("conllu", "xpos")]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(("fmt", "column"), ROUND_TRIP_FORMATS)
def test_handwritten_round_trip(tmp_path, fmt, column):
    # CoNLL has no comment lines, so its sentences carry none.
    original = HANDWRITTEN if fmt == "conllu" else _without_comments(HANDWRITTEN)
    first = tmp_path / f"first.{fmt}"
    again = _write_read(original, first, fmt, column)
    assert again == original
    # read -> write -> read, and the writer reproduces its own file byte for byte.
    second = tmp_path / f"second.{fmt}"
    assert _write_read(again, second, fmt, column) == original
    assert second.read_bytes() == first.read_bytes()


@pytest.mark.parametrize("column", ["upos", "xpos"])
def test_ewt_dev_round_trip(ewt_dir, tmp_path, column):
    text = (ewt_dir / "en_ewt-ud-dev.conllu").read_text(encoding="utf-8")
    head = "\n\n".join(text.split("\n\n")[:EWT_ROUND_TRIP_SENTENCES]) + "\n\n"
    assert "\n1-2\t" in head, "the excerpt should contain multiword tokens"
    excerpt = tmp_path / "excerpt.conllu"
    excerpt.write_text(head, encoding="utf-8")

    sentences = read_conllu(excerpt, column)
    assert len(sentences) == EWT_ROUND_TRIP_SENTENCES
    assert (
        sentences
        == _read_cached(ewt_dir / "en_ewt-ud-dev.conllu", column)[:EWT_ROUND_TRIP_SENTENCES]
    )
    assert all(s.comments and all(c.startswith("#") for c in s.comments) for s in sentences)
    assert _write_read(sentences, tmp_path / "out.conllu", "conllu", column) == sentences


def test_wnut_dev_round_trip(wnut_dir, tmp_path):
    original = wnut_dir / "dev.conll"
    sentences = read_conll(original)
    assert _write_read(sentences, tmp_path / "out.conll", "conll", None) == sentences
    # The distributed file is exactly token<TAB>tag with one blank line after each sentence.
    assert (tmp_path / "out.conll").read_bytes() == original.read_bytes()


# ---------------------------------------------------------------- real corpora


@pytest.mark.parametrize("split", sorted(EWT_COUNTS))
def test_ewt_counts(ewt_dir, split):
    sentences = _read_cached(ewt_dir / f"en_ewt-ud-{split}.conllu", "upos")
    assert (len(sentences), sum(len(s) for s in sentences)) == EWT_COUNTS[split]
    assert {t for s in sentences for t in s.tags} == UPOS


@pytest.mark.parametrize("split", sorted(WNUT_COUNTS))
def test_wnut_counts_and_tag_set(wnut_dir, split):
    sentences = _read_cached(wnut_dir / f"{split}.conll", None)
    assert (len(sentences), sum(len(s) for s in sentences)) == WNUT_COUNTS[split]
    assert {t for s in sentences for t in s.tags} == WNUT_TAGS


# ---------------------------------------------------------------- CoNLL-U details

CONLLU_SAMPLE = (
    "# sent_id = mwt\n"
    "# text = Don't stop.\n"
    "1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No\n"
    "1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t3:aux\t_\n"
    "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t3:advmod\t_\n"
    "3\tstop\tstop\tVERB\tVB\t_\t0\troot\t0:root\t_\n"
    "3.1\tstop\tstop\tVERB\tVB\t_\t_\t_\t3:conj\tCopyOf=3\n"
    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t3:punct\t_\n"
    "\n"
    "1\tC#\tC#\tPROPN\tNNP\t_\t0\troot\t0:root\t_\n"
    "\n"
)
SAMPLE_TOKENS = [["Do", "n't", "stop", "."], ["C#"]]
SAMPLE_COLUMNS = {
    "upos": [["AUX", "PART", "VERB", "PUNCT"], ["PROPN"]],
    "xpos": [["VBP", "RB", "VB", "."], ["NNP"]],
    "lemma": [["do", "not", "stop", "."], ["C#"]],
    "deprel": [["aux", "advmod", "root", "punct"], ["root"]],
}


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        *SAMPLE_COLUMNS.items(),
        ("UPOS", SAMPLE_COLUMNS["upos"]),
        (CONLLU_COLUMNS.index("xpos"), SAMPLE_COLUMNS["xpos"]),
        (str(CONLLU_COLUMNS.index("lemma")), SAMPLE_COLUMNS["lemma"]),
    ],
)
def test_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path, column, expected):
    path = tmp_path / "sample.conllu"
    path.write_text(CONLLU_SAMPLE, encoding="utf-8")
    sentences = read_conllu(path, column)
    assert [s.tokens for s in sentences] == SAMPLE_TOKENS
    assert [s.tags for s in sentences] == expected
    assert [s.comments for s in sentences] == [["# sent_id = mwt", "# text = Don't stop."], []]


def test_read_corpus_infers_the_format_from_the_suffix(tmp_path):
    conllu = tmp_path / "sample.conllu"
    conllu.write_text(CONLLU_SAMPLE, encoding="utf-8")
    other = tmp_path / "sample.txt"
    other.write_text(
        CONLLU_SAMPLE.replace("# sent_id = mwt\n# text = Don't stop.\n", ""), encoding="utf-8"
    )

    assert read_corpus(conllu) == read_conllu(conllu, "upos")
    # The command line passes --tag-column as a string.
    assert read_corpus(conllu, tag_column="xpos") == read_conllu(conllu, "xpos")
    assert read_corpus(conllu, tag_column="4") == read_conllu(conllu, "xpos")
    # Any other suffix is a column file, tagged by its last column (here MISC) by default.
    as_columns = read_corpus(other)
    assert as_columns == read_conll(other)
    assert as_columns[0].tokens[:2] == ["1-2", "1"] and as_columns[0].tags[0] == "SpaceAfter=No"
    assert read_corpus(other, tag_column="3") == read_conll(other, tag_column=3)
    assert read_corpus(other, format="conllu") == read_conllu(other)


# ---------------------------------------------------------------- column files

CONLL2003_DOCS = [  # token POS chunk NER, two documents
    [
        [
            ("EU", "NNP", "B-NP", "B-ORG"),
            ("rejects", "VBZ", "B-VP", "O"),
            ("German", "JJ", "B-NP", "B-MISC"),
        ],
        [("Peter", "NNP", "B-NP", "B-PER"), ("Blackburn", "NNP", "I-NP", "I-PER")],
    ],
    [[("São", "NNP", "B-NP", "B-LOC"), ("#1", "CD", "I-NP", "O"), ("e-mail", "NN", "I-NP", "O")]],
]
CONLL2003_SENTENCES = [s for doc in CONLL2003_DOCS for s in doc]


def _conll2003_text(sep="\t", eol="\n", blank_lines=1, ending="eol"):
    """The documents as a file; ``ending``: "blank" line, just the "eol", or "none" at all."""
    gap = eol * blank_lines
    docstart = sep.join(["-DOCSTART-", "-X-", "-X-", "O"]) + eol
    docs = [
        docstart + gap + gap.join("".join(sep.join(row) + eol for row in s) for s in doc)
        for doc in CONLL2003_DOCS
    ]
    text = gap.join(docs)
    return {"blank": text + gap, "eol": text, "none": text[: -len(eol)]}[ending]


def _expected(field):
    return [Sentence([row[0] for row in s], [row[field] for row in s]) for s in CONLL2003_SENTENCES]


@pytest.mark.parametrize(
    ("sep", "eol", "blank_lines", "ending"),
    list(itertools.product(["\t", " ", "   "], ["\n", "\r\n"], [1, 3], ["blank", "eol", "none"])),
)
def test_column_file_layouts(tmp_path, sep, eol, blank_lines, ending):
    path = tmp_path / "conll2003.txt"
    path.write_bytes(_conll2003_text(sep, eol, blank_lines, ending).encode("utf-8"))
    assert read_conll(path) == _expected(field=3)


@pytest.mark.parametrize("sep", ["\t", " "])
@pytest.mark.parametrize(("tag_column", "field"), [(-1, 3), (3, 3), (1, 1), (2, 2), (-3, 1)])
def test_tag_column_by_index(tmp_path, sep, tag_column, field):
    path = tmp_path / "conll2003.txt"
    path.write_text(_conll2003_text(sep), encoding="utf-8")
    assert read_conll(path, tag_column=tag_column) == _expected(field)


def test_token_column_by_index(tmp_path):
    path = tmp_path / "reversed.tsv"
    path.write_text("B-ORG\tNNP\tEU\nO\tVBZ\trejects\n", encoding="utf-8")
    assert read_conll(path, token_column=2, tag_column=0) == [
        Sentence(["EU", "rejects"], ["B-ORG", "O"])
    ]
    assert read_conll(path, token_column=-1, tag_column=1) == [
        Sentence(["EU", "rejects"], ["NNP", "VBZ"])
    ]


def test_tabs_keep_spaces_inside_tokens(tmp_path):
    path = tmp_path / "spaces.tsv"
    path.write_text("New York\tB-LOC\n1 000\tO\n", encoding="utf-8")
    assert read_conll(path) == [Sentence(["New York", "1 000"], ["B-LOC", "O"])]


@pytest.mark.parametrize(
    ("reader", "text", "expected"),
    [
        (read_conll, "\ufeffWord\tO\n", Sentence(["Word"], ["O"])),
        (read_conll, "\ufeff-DOCSTART-\tO\n\nWord\tO\n", Sentence(["Word"], ["O"])),
        (
            read_conllu,
            "\ufeff# c\n1\tWord\t_\tX\t_\t_\t_\t_\t_\t_\n",
            Sentence(["Word"], ["X"], ["# c"]),
        ),
    ],
)
def test_byte_order_mark_is_ignored(tmp_path, reader, text, expected):
    path = tmp_path / "bom.txt"
    path.write_text(text, encoding="utf-8")
    assert reader(path) == [expected]


# ---------------------------------------------------------------- errors

TEN = "1\ta\ta\tX\tX\t_\t0\troot\t_\t_\n"


@pytest.mark.parametrize(
    ("reader", "data", "line", "fragment"),
    [
        pytest.param(
            read_conll,
            b"a\tX\tB\n\nb\tY\tO\nc\tO\nd\tZ\tO\n",
            4,
            "expected 3 columns",
            id="short-line",
        ),
        pytest.param(
            read_conll,
            b"a X B\r\n\r\nb Y O\r\nc O\r\n",
            4,
            "expected 3 columns",
            id="short-line-crlf",
        ),
        pytest.param(read_conll, b"a\tX\tB\nb\tY\tO\tZ\n", 2, "expected 3 columns", id="long-line"),
        pytest.param(read_conll, b"a\tB\n\tO\n", 2, "empty token", id="empty-token"),
        pytest.param(
            read_conllu,
            f"# c\n{TEN}2\tb\tb\tX\tX\t_\t1\tdep\t_\n".encode(),
            3,
            "10 tab-separated",
            id="nine-fields",
        ),
        pytest.param(
            read_conllu, f"{TEN}\n# c\nx{TEN[1:]}".encode(), 4, "'x'", id="non-numeric-id"
        ),
        pytest.param(
            read_conllu, f"{TEN}\n# c\n\n{TEN}".encode(), 4, "comment lines", id="comments-only"
        ),
        pytest.param(
            read_conll,
            b"ok\tO\n\ncaf\xe9\tO\n",
            3,
            "byte 4 of the line is 0xe9",
            id="latin-1-conll",
        ),
        pytest.param(
            read_conllu,
            TEN.encode() + b"2\t\xff\t_\tX\t_\t_\t_\t_\t_\t_\n",
            2,
            "0xff",
            id="bad-conllu",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path, reader, data, line, fragment):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(CorpusError) as info:
        reader(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message


NO_SENTENCES = {
    "empty": b"",
    "blank-lines": b"\n\n  \n\t\n",
    "crlf-blank-lines": b"\r\n\r\n",
}


@pytest.mark.parametrize("reader", [read_conll, read_conllu, read_corpus])
@pytest.mark.parametrize("data", NO_SENTENCES.values(), ids=NO_SENTENCES.keys())
def test_file_without_sentences(tmp_path, reader, data):
    path = tmp_path / "empty.conll"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match="no sentences") as info:
        reader(path)
    assert str(info.value).startswith(f"{path}: ")


def test_column_file_with_only_docstart(tmp_path):
    path = tmp_path / "docstart.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no sentences"):
        read_conll(path)


@pytest.mark.parametrize("reader", [read_conll, read_conllu, read_corpus])
def test_missing_file(tmp_path, reader):
    path = tmp_path / "missing.conllu"
    with pytest.raises(CorpusError, match="no such file") as info:
        reader(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "column, message",
    [(c, "CoNLL-U column (name|index)") for c in ["postag", "", 10, -1, "11"]]
    + [(c, "tag column other than id and form") for c in ["id", "form", "FORM", 0, 1, "1"]],
)
def test_bad_conllu_tag_column(tmp_path, column, message):
    path = tmp_path / "ok.conllu"
    path.write_text(TEN, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        read_conllu(path, column)
    with pytest.raises(CorpusError, match=message):
        write_conllu(HANDWRITTEN, tmp_path / "out.conllu", column)
    assert not (tmp_path / "out.conllu").exists()


def test_read_corpus_rejects_bad_requests(tmp_path):
    path = tmp_path / "ok.conll"
    path.write_text("a\tO\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="format"):
        read_corpus(path, format="json")
    with pytest.raises(CorpusError, match="integer tag column"):
        read_corpus(path, tag_column="upos")
    with pytest.raises(CorpusError, match="needs columns 0 and 5"):
        read_corpus(path, tag_column="5")


def test_corpus_error_is_a_value_error():
    assert issubclass(CorpusError, ValueError)


# ---------------------------------------------------------------- Sentence


@pytest.mark.parametrize(
    ("tokens", "tags"), [(["a", "b"], ["X"]), (["a"], ["X", "Y"]), ([], ["X"]), (["a"], [])]
)
def test_sentence_rejects_mismatched_lengths(tokens, tags):
    with pytest.raises(ValueError, match=f"{len(tokens)} tokens and {len(tags)} tags"):
        Sentence(tokens, tags)


# ---------------------------------------------------------------- fields, columns, paths


@pytest.mark.parametrize("space", [" ", "\t", "  \t ", "\r", " \r"])
@pytest.mark.parametrize("fmt", ["conll", "conllu"])
def test_trailing_whitespace_is_no_part_of_a_field(tmp_path, space, fmt):
    """``word<TAB>O `` is the tag ``O``: no second tag ``O `` beside it (which would turn span
    detection off silently)."""
    clean = [Sentence(["Ann", "sat"], ["B-PER", "O"]), Sentence(["ok"], ["O"])]
    path = tmp_path / f"c.{fmt}"
    (write_conll if fmt == "conll" else write_conllu)(clean, path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line[:-1] + space + "\n" if line.strip() else line for line in lines), encoding="utf-8")
    if fmt == "conllu" and "\t" in space:
        with pytest.raises(CorpusError, match="expected 10 tab-separated CoNLL-U fields"):  # an 11th field
            read_conllu(path)
        return
    assert read_corpus(path, format=fmt) == clean


def test_a_tag_column_of_only_underscores_names_the_column_and_a_better_one(tmp_path):
    path = tmp_path / "xpos-less.conllu"
    path.write_text("1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"xpos-less.conllu: the xpos column holds only '_': choose another with --tag-column, e.g. upos"):
        read_conllu(path, "xpos")
    assert read_conllu(path, "upos")[0].tags == ["DET", "NOUN"]
    conll = tmp_path / "c.conll"
    conll.write_text("The\tDT\t_\ndog\tNN\t_\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c.conll: tag column -1 holds only '_': choose another with --tag-column \(columns with values: 1\)"):
        read_conll(conll)
    assert read_conll(conll, tag_column=1)[0].tags == ["DT", "NN"]


def test_a_directory_a_device_or_a_pipe_is_not_reported_as_missing(tmp_path):
    with pytest.raises(CorpusError, match=f"{tmp_path}: is a directory"):
        read_corpus(tmp_path)
    with pytest.raises(CorpusError, match="/dev/null: is a device, not a corpus file"):
        read_corpus("/dev/null")
    fifo = tmp_path / "fifo.conll"
    os.mkfifo(fifo)
    with pytest.raises(CorpusError, match="fifo.conll: is a pipe, not a corpus file"):
        read_corpus(fifo)  # refused without opening it (opening would block)


@pytest.mark.parametrize(
    "line, message",
    [
        ("1\t\tX\tX\tX\t_\t0\troot\t_\t_", "empty FORM"),
        ("one\ta\ta\tX\tX\t_\t0\troot\t_\t_", "expected a word ID, got 'one'"),
        ("1\ta\ta\tX\tX\t_\t0\troot\t_", "expected 10 tab-separated CoNLL-U fields, got 9"),
    ],
)
def test_training_and_tagging_readers_reject_a_conllu_line_alike(tmp_path, line, message):
    """One line parser: a bad line is the same error whether the file is read to train or to tag."""
    import io

    from seqtag.data.formats import read_items

    data = TEN + line + "\n\n"
    path = tmp_path / "bad.conllu"
    path.write_text(data, encoding="utf-8")
    with pytest.raises(CorpusError, match=f"^{path}:2: {message}"):
        read_conllu(path)
    with pytest.raises(CorpusError, match=f"^x.conllu:2: {message}"):
        list(read_items(io.BytesIO(data.encode()), "x.conllu", "conllu"))


def test_json_lines_as_gold_data_point_to_the_dataset_reader(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"tokens": ["a"], "tags": ["X"]}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"train.jsonl: JSON lines are an input of seqtag predict; .* --hf-dataset"):
        read_corpus(path)


def test_each_token_keeps_the_line_it_was_read_from(ewt_dir, wnut_dir, tmp_path):
    """Every token's line, read back from the file, holds that token and its tag (real corpora,
    with CoNLL-U comments, multiword tokens and -DOCSTART- lines in between)."""
    docstart = tmp_path / "docstart.conll"
    docstart.write_text("-DOCSTART- -X- O\n\nThe DT\n-DOCSTART- -X- O\ndog NN\n\n\nbarks VBZ\n", encoding="utf-8")
    cases = [
        (ewt_dir / "en_ewt-ud-dev.conllu", read_conllu, 1, 3),
        (CONLLU_SAMPLE, read_conllu, 1, 3),
        (wnut_dir / "dev.conll", read_conll, 0, -1),
        (docstart, read_conll, 0, -1),
    ]
    for source, reader, token_field, tag_field in cases:
        if isinstance(source, str):
            path = tmp_path / "sample.conllu"
            path.write_text(source, encoding="utf-8")
        else:
            path = source
        lines = path.read_text(encoding="utf-8").splitlines()
        sentences = reader(path)
        for s in sentences:
            assert len(s.lines) == len(s) and s.lines == sorted(set(s.lines))
            for token, tag, number in zip(s.tokens, s.tags, s.lines, strict=True):
                fields = lines[number - 1].split("\t") if "\t" in lines[number - 1] else lines[number - 1].split()
                assert (fields[token_field], fields[tag_field]) == (token, tag), (path, number)
    assert [s.lines for s in read_conll(docstart)] == [[3, 5], [8]]
    assert Sentence(["a"], ["X"], lines=[4]) == Sentence(["a"], ["X"])  # not part of the value
    with pytest.raises(ValueError, match="a line per token"):
        Sentence(["a", "b"], ["X", "Y"], lines=[1])
