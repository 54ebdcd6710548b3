"""``seqtag bench``: training and inference tokens/s against the device's matmul rate."""

from __future__ import annotations

import argparse
import json

import torch

from seqtag.cli.options import (
    add_config_options,
    add_threads_option,
    checked_type,
    config_from_args,
    set_threads,
)
from seqtag.config import PRECISIONS, DataConfig, TaggerConfig, TrainConfig
from seqtag.data import sources
from seqtag.device import resolve_device
from seqtag.errors import SeqtagError
from seqtag.host import host_info, matmul_gflops
from seqtag.training.bench import baseline_tokens_per_s, bench, synthetic_corpus


def add_parser(subparsers) -> None:
    """Add ``bench`` to ``seqtag``'s subparsers."""
    p = subparsers.add_parser("bench", help="measure training and inference tokens/s against the device's matmul rate")
    p.add_argument("--corpus", default="synthetic", metavar="FILE", help="a corpus file, or 'synthetic' (default)")
    p.add_argument("--batch-size", type=checked_type(int, "batch_size", min=1), nargs="+", default=None, metavar="N",
                   help=f"batch sizes to time (default: {TrainConfig.batch_size})")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision (default: fp32)")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    add_threads_option(p)
    p.add_argument("--steps", type=checked_type(int, "steps", min=1), default=20, metavar="N",
                   help="steps per timed segment (default: 20)")
    p.add_argument("--repeats", type=checked_type(int, "repeats", min=1), default=5, metavar="N",
                   help="timed segments; the median is reported (default: 5)")
    p.add_argument("--baseline", action="store_true", help="also time the tutorial's one-sentence-per-step loop")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_options(p, DataConfig, "corpus file columns", command="bench")
    add_config_options(p, TaggerConfig, "model")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    config = config_from_args(TaggerConfig, args)
    if config.encoder:  # its rates (LSTM GFLOP/s, tokens/s of the BiLSTM tagger) do not describe one
        raise SeqtagError("seqtag bench measures the BiLSTM tagger; it does not benchmark an --encoder model yet")
    sentences = synthetic_corpus() if args.corpus == "synthetic" else sources.read_files(config_from_args(DataConfig, args), args.corpus)
    device = resolve_device(args.device)
    batch_sizes = args.batch_size or [TrainConfig.batch_size]
    results = bench(sentences, config, batch_sizes, args.precision, str(device), args.steps, args.repeats)
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "matmul_gflops": matmul_gflops(device, args.precision),
        **results[0].as_dict(),
        "results": [r.as_dict() for r in results],
        "host": host_info(device),
    }
    if args.baseline:
        base = baseline_tokens_per_s(sentences, config)
        summary["baseline_train_tokens_per_s"] = base
        for r in summary["results"]:
            r["speedup_over_baseline"] = r["train_tokens_per_s"] / base
    if args.json:
        print(json.dumps(summary))
        return
    print(f"device {summary['device']}, {summary['threads']} threads, {args.precision}; "
          f"matmul {summary['matmul_gflops']:.0f} GFLOP/s; corpus {args.corpus} ({len(sentences)} sentences)")
    print(f"{'batch':>6} {'train tok/s':>12} {'train sent/s':>12} {'infer tok/s':>12} {'infer sent/s':>12} "
          f"{'padding':>8} {'LSTM GFLOP/s':>13} {'of matmul':>9}" + ("  vs per-sentence" if args.baseline else ""))
    for r in summary["results"]:
        line = (f"{r['batch_size']:>6} {r['train_tokens_per_s']:>12,.0f} {r['train_sentences_per_s']:>12,.0f} "
                f"{r['infer_tokens_per_s']:>12,.0f} {r['infer_sentences_per_s']:>12,.0f} "
                f"{100 * r['padding_fraction']:>7.1f}% {r['lstm_train_gflops']:>13.1f} "
                f"{100 * r['lstm_train_gflops'] / summary['matmul_gflops']:>8.0f}%")
        if args.baseline:
            line += f"  {r['speedup_over_baseline']:>6.1f}x"
        print(line)
    if args.baseline:
        print(f"per-sentence loop (the tutorial's): {summary['baseline_train_tokens_per_s']:,.0f} train tok/s")
