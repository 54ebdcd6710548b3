"""Accuracy on a real corpus: train with the default recipe (or a variant), report dev and test
scores, training time and throughput. One JSON line per run on stdout (and appended to --log).

    python benchmarks/accuracy.py --threads 2 --seeds 1 2 3                       # EWT UPOS
    python benchmarks/accuracy.py --variant no-crf --variant no-chars --variant two-layers
    python benchmarks/accuracy.py --corpus wnut17 --variant no-constrain         # WNUT-17 entity F1

Variants change one thing in the recipe; ``default`` is the recipe itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import seqtag
from seqtag.host import host_info

CORPORA = Path(os.environ.get("SEQTAG_CORPORA", Path(__file__).resolve().parents[1].parent / "shared" / "corpora"))
FILES = {
    "ewt": ("ud_english_ewt/en_ewt-ud-train.conllu", "ud_english_ewt/en_ewt-ud-dev.conllu",
            "ud_english_ewt/en_ewt-ud-test.conllu"),
    "wnut17": ("wnut17/train.conll", "wnut17/dev.conll", "wnut17/test.conll"),
}
VARIANTS = {
    "default": {},
    "no-crf": {"crf": False},
    "no-chars": {"char_filters": 0},
    "two-layers": {"num_layers": 2},
    "no-constrain": {"constrain": False},
    "tutorial-arch": {"bidirectional": False, "crf": False, "char_filters": 0, "case_embedding_dim": 0,
                      "lowercase": False},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=FILES, default="ewt")
    parser.add_argument("--tag-column", default="upos", help="CoNLL-U column for EWT (upos or xpos)")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable; default: default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's maximum epochs")
    parser.add_argument("--precision", default=None, help="fp32 or bf16 (if the trainer supports it)")
    parser.add_argument("--log", help="append the JSON lines to this file too")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    host = host_info()
    train_f, dev_f, test_f = (CORPORA / f for f in FILES[args.corpus])
    if not train_f.exists():
        sys.exit(f"corpus not found: {train_f} (set SEQTAG_CORPORA)")
    read = (lambda p: seqtag.read_conllu(p, args.tag_column)) if args.corpus == "ewt" else seqtag.read_conll
    train, dev, test = read(train_f), read(dev_f), read(test_f)
    for variant in args.variant or ["default"]:
        for seed in args.seeds:
            config = seqtag.TaggerConfig(**VARIANTS[variant])
            changes = {"seed": seed, "device": "cpu"}
            if args.epochs:
                changes["epochs"] = args.epochs
            if args.precision:
                changes["precision"] = args.precision
            train_config = seqtag.TrainConfig().replace(**changes)
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                tagger = seqtag.train(train, dev, config, train_config, output_dir=out, quiet=True)
                seconds = time.perf_counter() - start
                rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
            start = time.perf_counter()
            test_scores = seqtag.evaluate(tagger, test)
            infer_seconds = time.perf_counter() - start
            dev_scores = seqtag.evaluate(tagger, dev)
            result = {
                "corpus": args.corpus, "column": args.tag_column if args.corpus == "ewt" else "ner",
                "variant": variant, "seed": seed, "threads": args.threads,
                "dev_accuracy": dev_scores["accuracy"], "test_accuracy": test_scores["accuracy"],
                "dev_f1": dev_scores.get("f1"), "test_f1": test_scores.get("f1"),
                "epochs_run": len(rows), "best_epoch": max(rows, key=lambda r: r.get("dev_f1", r.get("dev_accuracy")))["epoch"],
                "train_seconds": seconds,
                "train_tokens_per_s_median": sorted(r["tokens_per_s"] for r in rows)[len(rows) // 2],
                "test_infer_tokens_per_s": test_scores["tokens"] / infer_seconds,
                "config": config.to_dict(), "train_config": train_config.to_dict(), "host": host,
            }
            line = json.dumps(result)
            print(line, flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
