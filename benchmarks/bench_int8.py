"""int8 against fp32 ONNX on EWT: dev and test accuracy, file size and tokens/s, in one run.

Exports the model directory to ONNX twice (:func:`seqtag.serving.onnx_export.to_onnx` and
:func:`~seqtag.serving.onnx_export.to_onnx_int8`, which checks the dev accuracy) and tags EWT
test with both through ``OnnxTagger``, at batch 1 and 16, medians of ``--repeats`` passes after
a warm-up.

    python benchmarks/bench_int8.py --model runs/ewt --threads 2 --json benchmarks/results/int8.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

EWT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ud_english_ewt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory written by seqtag train")
    p.add_argument("--data", default=str(EWT), metavar="DIR", help="the folder of en_ewt-ud-{dev,test}.conllu")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="ONNX Runtime intra-op threads")
    p.add_argument("--repeats", type=int, default=3, metavar="N")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    from seqtag import read_conllu
    from seqtag.serving.onnx_export import to_onnx, to_onnx_int8
    from seqtag.serving.onnx_runner import OnnxTagger

    dev = read_conllu(Path(args.data) / "en_ewt-ud-dev.conllu")
    test = read_conllu(Path(args.data) / "en_ewt-ud-test.conllu")
    tokens = sum(len(s) for s in test)
    out = {"load_before": os.getloadavg(), "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"fp32": to_onnx(args.model, Path(tmp) / "fp32.onnx")}
        files["int8"], out["check"] = to_onnx_int8(args.model, Path(tmp) / "int8.onnx", dev=dev, max_drop=100.0)
        for name, path in files.items():
            tagger = OnnxTagger(path, intra_op_num_threads=args.threads)
            predicted = tagger.predict([s.tokens for s in test], batch_size=16)
            right = sum(p == g for ps, s in zip(predicted, test) for p, g in zip(ps, s.tags))
            row = {"bytes": path.stat().st_size, "test_accuracy": right / tokens,
                   "dev_accuracy": out["check"][f"{name}_accuracy"]}  # fmt: skip
            for batch in (1, 16):
                tagger.predict([s.tokens for s in test[:200]], batch_size=batch)  # warm-up
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    tagger.predict([s.tokens for s in test], batch_size=batch)
                    times.append(time.perf_counter() - t0)
                row[f"tokens_per_s_batch{batch}"] = tokens / statistics.median(times)
            out[name] = row
            print(f"{name}: {row['bytes'] / 1e6:.1f} MB, dev {100 * row['dev_accuracy']:.2f}, test "
                  f"{100 * row['test_accuracy']:.2f}, tokens/s {row['tokens_per_s_batch1']:,.0f} (batch 1) "
                  f"{row['tokens_per_s_batch16']:,.0f} (batch 16)", flush=True)  # fmt: skip
    out["load_after"] = os.getloadavg()
    print(f"load {out['load_before']} -> {out['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
