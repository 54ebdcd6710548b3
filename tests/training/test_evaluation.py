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
