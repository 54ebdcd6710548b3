"""load_predictor checks its configuration at the boundary, as seqtag.train does."""

import pytest

from seqtag.config import PredictConfig
from seqtag.serving.predictor import load_predictor
from tests.helpers import random_sentences, small_tagger


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("predictor") / "m"
    small_tagger(random_sentences(10, seed=3)).save(path)
    return path


def test_a_config_that_is_not_a_predict_config_is_a_type_error(model):
    with pytest.raises(TypeError, match=r"expected config a seqtag.PredictConfig or None, got a dict \(seqtag.PredictConfig.from_dict"):
        load_predictor(model, {"batch_size": 8})


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 2.5, "batch_size"), ("batch_size", 0, "expected batch_size >= 1, got 0"), ("workers", -1, "workers"),
])  # fmt: skip
def test_a_field_set_after_the_config_was_made_is_checked(model, field, value, message):
    config = PredictConfig()
    setattr(config, field, value)
    with pytest.raises(ValueError, match=message):
        load_predictor(model, config)


def test_a_valid_config_tags_as_the_model_does(model):
    sentences = [s.tokens for s in random_sentences(5, seed=4)]
    from seqtag.model.tagger import Tagger

    assert load_predictor(model, PredictConfig(batch_size=2)).predict(sentences) == Tagger.load(model).predict(sentences)
