"""Models saved by seqtag 0.2.0 still load and tag as they did (tests/fixtures/v0.2.0).

The fixture is a small BiLSTM-CRF with character features, saved by 0.2.0 as a model directory,
a TorchScript file, an ONNX file and a torch.export directory (lengths up to 16; tags only), with
the tags, confidences and 2-best it gave then.
"""

import json
from pathlib import Path

import pytest

from seqtag.serving.predictor import load_predictor

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v0.2.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["model", "tagger.pt", "torch-export", "tagger.onnx"])
def test_a_0_2_0_model_tags_as_it_did(name):
    predictor = load_predictor(FIXTURE / name)
    sentences = EXPECTED["sentences"]
    assert predictor.predict(sentences) == EXPECTED["tags"]
    if name == "torch-export":  # the format gives tags only
        return
    for (tags, conf), want_tags, want_conf in zip(
        predictor.predict_with_confidence(sentences), EXPECTED["tags"], EXPECTED["confidence"]
    ):
        assert tags == want_tags
        assert conf == pytest.approx(want_conf, abs=1e-4)
    for got, want in zip(predictor.nbest(sentences, 2), EXPECTED["nbest"]):
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
