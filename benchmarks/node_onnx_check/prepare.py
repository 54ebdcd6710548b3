"""Export tiny taggers to ONNX and write what Python's ONNX Runtime gives for them, for check.mjs.

Writes into OUT, per model (a BiLSTM-CRF, a softmax head, and BiLSTM-CRF and softmax models over a
tiny random BERT encoder; with ``--fixture``, also the 0.2.0 file of tests/fixtures, format
version 1): ``NAME.onnx`` and ``NAME.json`` holding the feeds of each sentence alone and of all
of them in one padded batch (as ``OnnxTagger`` feeds them, recorded), and the reference: the
tags and confidences of ``OnnxTagger.predict_with_confidence`` for each sentence, and every
output of the batch with ``with_marginals`` true. No network: the encoder is built here.

    python benchmarks/node_onnx_check/prepare.py /tmp/node_onnx_check [--encoder DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SENTENCES = [
    ["The", "dog", "ate", "the", "apple"],
    ["Everybody", "read", "that", "book"],
    ["Über", "naïve", "café", "👍🏽", "x"],
    ["a"],
    ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "again", "and", "again"],
]
TEXT = ["the quick brown fox jumps over the lazy dog .", "a cat runs quickly , and the dogs ran after it !"]


class Recorder:
    """An InferenceSession stand-in that keeps each feed it runs."""

    def __init__(self, session) -> None:
        self.session, self.feeds = session, []

    def run(self, outputs, feed):
        self.feeds.append(dict(feed))
        return self.session.run(outputs, feed)


def as_json(array: np.ndarray) -> dict:
    return {"type": {"int64": "int64", "bool": "bool", "float32": "float32", "float64": "float64"}[str(array.dtype)],
            "dims": list(array.shape), "data": array.ravel().tolist()}  # fmt: skip


def record(onnx_path: Path, out: Path) -> None:
    from seqtag.serving.onnx_runner import OnnxTagger

    runner = OnnxTagger(onnx_path, intra_op_num_threads=1)
    session = runner.session
    runner.session = recorder = Recorder(session)
    single = []
    for sentence in SENTENCES:
        recorder.feeds.clear()
        ((tags, confidence),) = runner.predict_with_confidence([sentence])
        (feed,) = recorder.feeds
        single.append({"feed": {k: as_json(np.asarray(v)) for k, v in feed.items()},
                       "tags": [runner.tags.index(t) for t in tags], "confidence": confidence})  # fmt: skip
    recorder.feeds.clear()
    runner.predict_with_confidence(SENTENCES, batch_size=len(SENTENCES))
    (batch,) = recorder.feeds  # one padded batch of every sentence, in the planner's order
    if "with_marginals" in batch:
        batch["with_marginals"] = np.array(True)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, batch)))
    meta = runner.metadata
    out.write_text(json.dumps({
        "model": onnx_path.name, "format_version": meta["format_version"], "head": meta["head"],
        "encoder": meta.get("encoder") is not None, "tags": runner.tags, "single": single,
        "batch": {"feed": {k: as_json(np.asarray(v)) for k, v in batch.items()},
                  "outputs": {k: as_json(v) for k, v in outputs.items()}},
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write")
    parser.add_argument("--encoder", type=Path, help="a local Hugging Face encoder (default: a tiny random BERT)")
    parser.add_argument("--fixture", action="store_true", help="also the 0.2.0 file (format version 1)")
    args = parser.parse_args()

    import torch

    import seqtag
    from seqtag.serving.onnx_export import to_onnx
    from seqtag.testing import random_bert

    args.out.mkdir(parents=True, exist_ok=True)
    encoder = args.encoder or random_bert(args.out / "bert", TEXT, vocab_size=120, max_positions=64)
    corpus = seqtag.tutorial_corpus()
    vocabs = seqtag.Vocabularies.build(corpus)
    configs = {
        "bilstm_crf": seqtag.TaggerConfig(hidden_dim=8, crf=True),
        "bilstm_softmax": seqtag.TaggerConfig(hidden_dim=8, crf=False),
        "encoder_crf": seqtag.TaggerConfig(encoder=str(encoder), hidden_dim=6, embedding_dim=6, crf=True,
                                           encoder_window=10, encoder_stride=3),  # fmt: skip
        "encoder_softmax": seqtag.TaggerConfig(encoder=str(encoder), num_layers=0, crf=False),
    }
    for name, config in configs.items():
        torch.manual_seed(3)
        tagger = seqtag.Tagger(config, vocabs).eval()
        path = to_onnx(tagger, args.out / f"{name}.onnx")
        record(path, args.out / f"{name}.json")
        print(f"wrote {path} and {name}.json")
    if args.fixture:
        import shutil

        fixture = args.out / "v0_2_0.onnx"
        shutil.copy(REPO / "tests" / "fixtures" / "v0.2.0" / "tagger.onnx", fixture)
        record(fixture, args.out / "v0_2_0.json")
        print(f"wrote {fixture} and v0_2_0.json")


if __name__ == "__main__":
    main()
