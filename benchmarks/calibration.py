"""Calibration of a tagger's per-token confidences on EWT test: expected and maximum calibration
error over equal-width bins, the per-bin table, the reliability diagram and a JSON record.

    python benchmarks/calibration.py --model runs/ewt                       # a trained model
    python benchmarks/calibration.py --epochs 3 --threads 2 --plot docs/img/calibration.png

Without ``--model`` it first trains the default recipe on EWT train (dev for model selection),
as ``seqtag train --train en_ewt-ud-train.conllu --dev en_ewt-ud-dev.conllu --tag-column upos``
does, for ``--epochs`` epochs. A token's confidence is the marginal probability of its
predicted (Viterbi) tag, ``Tagger.predict_with_confidence``; it is correct when that tag is the
gold one. The tag with the highest marginal is scored too, for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import seqtag
from seqtag.host import host_info
from seqtag.serving.calibration import expected_calibration_error, plot_reliability

CORPORA = Path(os.environ.get("SEQTAG_CORPORA", Path(__file__).resolve().parents[1].parent / "shared" / "corpora"))
EWT = "ud_english_ewt/en_ewt-ud-{}.conllu"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a trained model directory (default: train one)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs when training (default: 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed when training (default: 1)")
    parser.add_argument("--output-dir", type=Path, help="keep the trained model here (default: a temporary directory)")
    parser.add_argument("--tag-column", default="upos", help="CoNLL-U column (upos or xpos; default: upos)")
    parser.add_argument("--bins", type=int, default=10, help="equal-width confidence bins (default: 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--batch-size", type=int, default=256, help="sentences per forward pass (default: 256)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--plot", type=Path, help="write the reliability diagram to this PNG file")
    return parser


def train_default(args: argparse.Namespace, output_dir: Path) -> tuple[seqtag.Tagger, dict]:
    """The default recipe on EWT train for ``args.epochs`` epochs, the best dev epoch kept."""
    train = seqtag.read_conllu(CORPORA / EWT.format("train"), args.tag_column)
    dev = seqtag.read_conllu(CORPORA / EWT.format("dev"), args.tag_column)
    train_config = seqtag.TrainConfig().replace(epochs=args.epochs, seed=args.seed, device="cpu")
    start = time.perf_counter()
    tagger = seqtag.train(train, dev, train_config=train_config, output_dir=output_dir, quiet=True)
    seconds = time.perf_counter() - start
    return tagger, {**run_record(output_dir), "train_seconds": seconds}


def run_record(directory: Path) -> dict | None:
    """What the run's ``metrics.jsonl`` and ``config.json`` say: epochs, dev accuracy, times."""
    metrics, config = directory / "metrics.jsonl", directory / "config.json"
    if not metrics.exists():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    training = json.loads(config.read_text()).get("training") if config.exists() else None
    return {"epochs_run": len(rows), "dev_accuracy_per_epoch": [r.get("dev_accuracy") for r in rows],
            "epoch_seconds": [r.get("epoch_seconds") for r in rows],
            "train_tokens_per_s": [r.get("tokens_per_s") for r in rows], "train_config": training}


def format_table(report: dict) -> str:
    lines = [f"{'bin':>11}  {'tokens':>7}  {'share':>6}  {'accuracy':>8}  {'confidence':>10}  {'gap':>6}"]
    for b in report["bins"]:
        span = f"[{b['lower']:.1f}, {b['upper']:.1f}{']' if b['upper'] == 1.0 else ')'}"
        if b["count"]:
            lines.append(f"{span:>11}  {b['count']:>7}  {b['count'] / report['count']:>6.2%}  "
                         f"{b['accuracy']:>8.4f}  {b['confidence']:>10.4f}  {b['gap']:>6.4f}")
        else:
            lines.append(f"{span:>11}  {0:>7}  {'':>6}  {'—':>8}  {'—':>10}  {'—':>6}")
    return "\n".join(lines)


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    test_file = CORPORA / EWT.format("test")
    if not test_file.exists():
        sys.exit(f"corpus not found: {test_file} (set SEQTAG_CORPORA)")
    test = seqtag.read_conllu(test_file, args.tag_column)
    training = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is not None:
            tagger = seqtag.load(args.model)
            training = run_record(args.model)
        else:
            out = args.output_dir or Path(tmp) / "model"
            tagger, training = train_default(args, out)
        tagger.eval()
        sentences = [s.tokens for s in test]
        start = time.perf_counter()
        with torch.inference_mode():
            tagged = tagger.predict_with_confidence(sentences, batch_size=args.batch_size)
            marginals = tagger.marginals(sentences, batch_size=args.batch_size)
        infer_seconds = time.perf_counter() - start
    gold = [t for s in test for t in s.tags]
    tags = [t for pred, _ in tagged for t in pred]
    confidence = np.array([p for _, conf in tagged for p in conf], dtype=np.float64)
    overshoot = {"above_1": int((confidence > 1.0).sum()), "below_0": int((confidence < 0.0).sum()),
                 "max_excess": float(max(confidence.max() - 1.0, -confidence.min(), 0.0))}
    correct = np.array([p == g for p, g in zip(tags, gold)])
    itos = tagger.vocabs.tags.itos
    stacked = np.concatenate(marginals, axis=0)
    max_marginal = [itos[i] for i in stacked.argmax(axis=1)]
    max_correct = np.array([p == g for p, g in zip(max_marginal, gold)])
    report = expected_calibration_error(confidence, correct, bins=args.bins)
    max_report = expected_calibration_error(stacked.max(axis=1).astype(np.float64), max_correct, bins=args.bins)
    result = {
        "corpus": "ewt", "split": "test", "column": args.tag_column,
        "model": str(args.model) if args.model else "default recipe, trained here",
        "training": training, "sentences": len(test), "tokens": report["count"],
        "viterbi": report,
        "confidence_rounding": overshoot,  # float32 marginals past [0, 1], clipped by the ECE
        "max_marginal": {k: max_report[k] for k in ("ece", "mce", "accuracy", "confidence")},
        "viterbi_equals_max_marginal": float(np.mean([a == b for a, b in zip(tags, max_marginal)])),
        "infer_seconds": infer_seconds, "host": {**host_info(), "requested_threads": args.threads},
        "command": " ".join(["python", "benchmarks/calibration.py", *sys.argv[1:]]),
    }
    print(f"EWT test ({args.tag_column}): {len(test)} sentences, {report['count']} tokens")
    if training:
        seconds = training.get("train_seconds") or sum(training["epoch_seconds"])
        print(f"trained {training['epochs_run']} epoch(s) in {seconds:.0f} s")
    print(f"Viterbi tags:      accuracy {report['accuracy']:.4f}  mean confidence {report['confidence']:.4f}  "
          f"ECE {report['ece']:.4f}  MCE {report['mce']:.4f}")
    print(f"max-marginal tags: accuracy {max_report['accuracy']:.4f}  mean confidence "
          f"{max_report['confidence']:.4f}  ECE {max_report['ece']:.4f}  MCE {max_report['mce']:.4f}")
    print(format_table(report))
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        epochs = f", {training['epochs_run']} epochs" if training else ""
        plot_reliability(report, args.plot, title=f"EWT test {args.tag_column.upper()}, default model{epochs}")


if __name__ == "__main__":
    main()
