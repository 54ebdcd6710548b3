"""Evaluation: the scores against a brute-force count, encoded = sentences, unknown gold tags."""

import pytest

from seqtag import Sentence, SeqtagError
from seqtag.metrics import span_f1
from seqtag.training.evaluation import evaluate, map_unknown_tags

from ..helpers import random_sentences, small_tagger


@pytest.fixture(scope="module")
def ner():
    gold = random_sentences(30, tags=("O", "B-PER", "I-PER", "B-LOC"), seed=3)
    return small_tagger(gold), gold


def test_scores_are_the_brute_force_counts_of_the_predictions(ner):
    tagger, gold = ner
    pred = tagger.predict([s.tokens for s in gold])
    pairs = [(g, p) for s, ps in zip(gold, pred) for g, p in zip(s.tags, ps)]
    result = evaluate(tagger, gold, batch_size=7)
    assert result["tokens"] == len(pairs) and result["sentences"] == len(gold)
    assert result["accuracy"] == pytest.approx(sum(g == p for g, p in pairs) / len(pairs))
    assert result["f1"] == pytest.approx(span_f1([s.tags for s in gold], pred).micro.f1)


def test_an_encoded_dataset_scores_as_its_sentences(ner):
    tagger, gold = ner
    assert evaluate(tagger, tagger.dataset(gold)) == evaluate(tagger, gold)


def test_unknown_gold_tags_are_an_error_that_names_the_way_out_or_mapped_to_o(ner):
    tagger, gold = ner
    odd = [*gold[:2], Sentence(["Ann", "in", "Oslo"], ["B-PER", "O", "I-LST"])]
    with pytest.raises(SeqtagError, match=r"1 tag\(s\) the model was not trained with: I-LST.*--unknown-tags map-to-O"):
        evaluate(tagger, odd)
    mapped, counts = map_unknown_tags(odd, tagger.vocabs)
    assert counts == {"I-LST": 1} and mapped[2].tags == ["B-PER", "O", "O"] and mapped[:2] == odd[:2]
    result = evaluate(tagger, odd, unknown_tags="map-to-O")
    assert result["unknown_tags"] == {"I-LST": 1}
    assert {k: v for k, v in result.items() if k != "unknown_tags"} == evaluate(tagger, mapped)
    with pytest.raises(ValueError, match="expected unknown_tags 'error' or 'map-to-O'"):
        evaluate(tagger, gold, unknown_tags="skip")


def test_evaluating_no_sentences_is_an_error():
    tagger = small_tagger(random_sentences(5))
    with pytest.raises(ValueError, match="expected at least one sentence to evaluate, got none"):
        evaluate(tagger, [])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda t, g: evaluate(t, "The dog ate"), TypeError,
         r"expected sentences as a sequence of tagged sentences \(seqtag.Sentence\), got a str"),
        (lambda t, g: evaluate(t, [s.tokens for s in g]), TypeError,
         r"expected sentences\[0\] a tagged sentence \(seqtag.Sentence\(tokens, tags\)\), got a list"),
        (lambda t, g: evaluate(t, {"a": g}), TypeError, "got a dict"),
        (lambda t, g: evaluate(t, None), TypeError, "got a NoneType"),
        (lambda t, g: evaluate(t, [Sentence(["a", "b"], ["O", 5])]), TypeError, r"expected tags\[1\] of sentences\[0\] a str, got a int"),
        (lambda t, g: evaluate(t, [Sentence([b"a"], ["O"])]), TypeError, r"expected tokens\[0\] of sentences\[0\] a str, got a bytes"),
        (lambda t, g: evaluate("runs/model", g), TypeError, r"expected tagger a seqtag.Tagger .*, got a str"),
        (lambda t, g: evaluate(t, g, batch_size=2.5), ValueError, "expected batch_size an integer, got 2.5"),
        (lambda t, g: evaluate(t, g, batch_size=0), ValueError, "expected batch_size >= 1, got 0"),
        (lambda t, g: evaluate(t, g, batch_size=True), ValueError, "expected batch_size an integer, got True"),
        (lambda t, g: evaluate(t, []), ValueError, "expected at least one sentence to evaluate, got none"),
    ],
    ids=["a-string", "token-lists", "a-dict", "none", "tag-not-a-string", "token-bytes", "a-path-for-the-tagger",
         "batch-size-float", "batch-size-0", "batch-size-bool", "no-sentences"],
)
def test_arguments_are_checked_at_the_boundary(ner, call, error, message):
    tagger, gold = ner
    with pytest.raises(error, match=message):
        call(tagger, gold)


def test_the_facade_evaluates_sentences_given_as_any_sequence(ner):
    import seqtag

    tagger, gold = ner
    assert seqtag.evaluate(tagger, tuple(gold)) == seqtag.evaluate(tagger, iter(gold)) == evaluate(tagger, gold)
