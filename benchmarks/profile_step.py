"""Where a training step's time goes: torch.profiler over the step that training runs.

Times ``--steps`` steps of :func:`seqtag.training.loop.train_step` (the default clipping and word
dropout, the optimizer of ``seqtag train``) on bucketed batches of a corpus, after a warm-up,
and prints the unprofiled step time, then the operators by self CPU time. The CPU model and
thread count come first, as in every benchmark here. Architecture options are ``seqtag
train``'s; for what one part of the model costs, compare runs without it (``--char-filters 0``,
``--no-crf``, ``--dropout 0``), alternating.

    python benchmarks/profile_step.py --threads 2
    python benchmarks/profile_step.py --threads 2 --no-bidirectional --no-crf --char-filters 0 --case-embedding-dim 0
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import seqtag
from seqtag.cli.options import add_config_options, config_from_args
from seqtag.config import TaggerConfig, TrainConfig
from seqtag.data.dataset import TaggingDataset, make_loader
from seqtag.host import host_info
from seqtag.training.loop import _optimizer
from seqtag.training.step import train_step, word_dropout_probabilities

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "ud_english_ewt" / "en_ewt-ud-train.conllu"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help=f"CoNLL-U or CoNLL file (default: {DEFAULT_CORPUS})")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="sentences per step (default: 32)")
    p.add_argument("--steps", type=int, default=40, help="profiled steps (default: 40)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: 10)")
    p.add_argument("--rows", type=int, default=20, help="operators listed (default: 20)")
    add_config_options(p, TaggerConfig, "model")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    config = config_from_args(TaggerConfig, args)
    tc = TrainConfig(batch_size=args.batch_size)
    sentences = seqtag.read_corpus(args.corpus)
    vocabs = seqtag.Vocabularies.build(sentences, lowercase=config.lowercase, min_freq=tc.min_freq)
    dataset = TaggingDataset(sentences, vocabs, config)
    torch.manual_seed(0)
    tagger = seqtag.Tagger(config, vocabs).train()
    tagger.set_rnn_mode(torch.device("cpu"))
    optimizer = _optimizer(tagger, tc)
    word_dropout = word_dropout_probabilities(vocabs, tc.word_dropout, torch.device("cpu"))
    loader = make_loader(dataset, tc.batch_size, shuffle=True, seed=0)
    batches = iter(loader)

    def steps(n: int) -> int:
        tokens = 0
        for _ in range(n):
            batch = next(batches)
            train_step(tagger, optimizer, batch, lr=tc.lr, clip=tc.clip, word_dropout=word_dropout)
            tokens += int(batch.lengths.sum())
        return tokens

    steps(args.warmup)
    start = time.perf_counter()
    tokens = steps(args.steps)
    plain = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled_tokens = steps(args.steps)
    host = host_info()
    print(f"CPU: {host['cpu_model']}; threads: {args.threads}; torch {torch.__version__}; "
          f"batch {tc.batch_size}; {args.steps} steps")  # fmt: skip
    print(f"unprofiled: {tokens / plain:,.0f} tokens/s ({1e3 * plain / args.steps:.2f} ms a step)")
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages)
    print(f"\n{'operator':<44} {'self ms/step':>12} {'share':>7} {'calls/step':>10}")
    for e in sorted(averages, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        print(f"{e.key[:44]:<44} {e.self_cpu_time_total / 1e3 / args.steps:>12.3f} "
              f"{100 * e.self_cpu_time_total / total:>6.1f}% {e.count / args.steps:>10.1f}")  # fmt: skip
    print(f"{'all operators':<44} {total / 1e3 / args.steps:>12.3f} ({profiled_tokens / (total / 1e6):,.0f} tokens/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
