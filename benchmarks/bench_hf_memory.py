"""Memory and data-loading rate of the Hugging Face path on a corpus built on disk.

A synthetic corpus of ``--sentences`` sentences (Zipf-distributed words, 17 POS-like tags as
``Sequence(ClassLabel)``, about ``--avg-length`` tokens each) is written as Arrow with
``Dataset.from_generator``; then, as ``seqtag train --hf-dataset`` does:

1. ``hf.build_vocabs``: one streaming pass;
2. ``arrow.ArrowTaggingDataset``: encoding by ``Dataset.map(batched=True)`` into a memory-mapped cache;
3. one epoch of ``data.make_loader`` batches (bucketed, shuffled), timed: batches/s, tokens/s;
4. a few training steps of a default ``seqtag.Tagger`` on those batches: the rate at which the
   model consumes data, to compare with 3.

Peak resident memory is reported per phase (Linux ``VmHWM``, reset between phases through
``/proc/self/clear_refs``) and for the whole run (``resource.getrusage(...).ru_maxrss``), along
with how much of the resident memory is file-backed (pages of the memory-mapped Arrow files,
which the kernel can drop at will) versus anonymous (what the process itself allocated).

Not part of the test run. Examples::

    python benchmarks/bench_hf_memory.py --sentences 200000
    python benchmarks/bench_hf_memory.py                      # 2,000,000 sentences
    python benchmarks/bench_hf_memory.py --sentences 200000 --workers 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from seqtag import TaggerConfig
from seqtag.data import hf
from seqtag.data.arrow import ArrowTaggingDataset
from seqtag.data.dataset import make_loader
from seqtag.host import host_info
from seqtag.model.tagger import Tagger
from seqtag.training.step import train_step

TAGS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"]  # fmt: skip
CHUNK = 10_000  # sentences generated per NumPy draw


# -- memory ----------------------------------------------------------------------------------


def _status() -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of this process, in MiB (empty off Linux)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) // 1024
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_mib(who: int = resource.RUSAGE_SELF) -> int:
    kib = resource.getrusage(who).ru_maxrss  # KiB on Linux
    return kib // 1024 if sys.platform != "darwin" else kib // (1024 * 1024)


class Phase:
    """Times a phase and records its peak resident memory."""

    def __init__(self, name: str, report: dict) -> None:
        self.name, self.report = name, report

    def __enter__(self) -> Phase:
        self.can_reset = _reset_peak()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self.start
        status = _status()
        row = {"seconds": round(seconds, 2), "rss_mib": status.get("VmRSS"), "rss_anon_mib": status.get("RssAnon"),
               "rss_file_mib": status.get("RssFile")}  # fmt: skip
        if self.can_reset:
            row["peak_rss_mib"] = status.get("VmHWM")
        self.report.setdefault("phases", {})[self.name] = row
        peak = f", peak RSS {row['peak_rss_mib']:,} MiB" if self.can_reset else ""
        print(f"{self.name:>10}: {seconds:8.1f} s{peak}, RSS now {row['rss_mib']:,} MiB "
              f"(anonymous {row['rss_anon_mib']:,}, file-backed {row['rss_file_mib']:,})", file=sys.stderr)  # fmt: skip


# -- the corpus ------------------------------------------------------------------------------


def _words(vocabulary: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = np.clip(rng.poisson(5, size=vocabulary), 1, 18)
    words = ["".join(rng.choice(letters, size=n)) for n in lengths]
    # some capitalized and some upper-case forms, so that the case feature and lowercasing matter
    return [w.capitalize() if i % 7 == 3 else w.upper() if i % 97 == 5 else w for i, w in enumerate(words)]


def _synthetic_rows(shards: list[tuple[int, int]], vocabulary: int, avg_length: float, seed: int):
    words = np.array(_words(vocabulary, seed), dtype=object)
    word_tag = np.random.default_rng(seed + 1).integers(0, len(TAGS), size=vocabulary)
    for start, count in shards:
        rng = np.random.default_rng([seed, start])
        for chunk in range(0, count, CHUNK):
            n = min(CHUNK, count - chunk)
            lengths = np.clip(rng.poisson(avg_length - 1, size=n) + 1, 1, 200)
            ranks = np.minimum(rng.zipf(1.15, size=int(lengths.sum())) - 1, vocabulary - 1)
            noise = rng.random(len(ranks)) < 0.05
            tags = np.where(noise, rng.integers(0, len(TAGS), size=len(ranks)), word_tag[ranks])
            at = 0
            for length in lengths.tolist():
                yield {"tokens": words[ranks[at : at + length]].tolist(), "pos_tags": tags[at : at + length].tolist()}
                at += length


def build_corpus(n: int, avg_length: float, vocabulary: int, seed: int, cache_dir: Path, num_proc: int):
    per = -(-n // max(num_proc, 1))
    shards = [(start, min(per, n - start)) for start in range(0, n, per)]
    features = datasets.Features(
        {"tokens": datasets.List(datasets.Value("string")), "pos_tags": datasets.List(datasets.ClassLabel(names=TAGS))}
    )
    return datasets.Dataset.from_generator(
        _synthetic_rows,
        features=features,
        cache_dir=str(cache_dir),
        gen_kwargs={"shards": shards, "vocabulary": vocabulary, "avg_length": avg_length, "seed": seed},
        num_proc=num_proc if num_proc > 1 else None,
        fingerprint=f"seqtag-synthetic-{n}-{avg_length}-{vocabulary}-{seed}-{num_proc}",
    )


def _size_mib(dataset: datasets.Dataset) -> float:
    return sum(os.path.getsize(f["filename"]) for f in dataset.cache_files) / 2**20


# -- the model's rate ------------------------------------------------------------------------


def model_rate(tagger: Tagger, batches: list, warmup: int) -> tuple[float, float]:
    """Median seconds per training step (forward, loss, backward, Adam) and tokens/s."""
    optimizer = torch.optim.Adam(tagger.parameters(), lr=2e-3, fused=True)
    tagger.train()
    times, tokens = [], []
    torch.set_flush_denormal(True)
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        train_step(tagger, optimizer, batch)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            tokens.append(batch.num_tokens)
    torch.set_flush_denormal(False)
    step = statistics.median(times)
    return step, statistics.mean(tokens) / step


# -- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=2_000_000, help="corpus size (default: 2,000,000)")
    parser.add_argument("--avg-length", type=float, default=20.0, help="mean tokens per sentence (default: 20)")
    parser.add_argument("--vocabulary", type=int, default=50_000, help="distinct word types (default: 50,000)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch (default: 32)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: 0)")
    parser.add_argument("--num-proc", type=int, default=1, help="processes for generation and encoding (default: 1)")
    parser.add_argument("--train-steps", type=int, default=12, help="timed training steps of the model (default: 12)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--dir", metavar="DIR", help="keep the Arrow files here and reuse them (default: a temporary "
                        "folder, removed at the end)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="seqtag-bench-hf-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"host": host_info(), "sentences": args.sentences, "batch_size": args.batch_size, "workers": args.workers,
                    "num_proc": args.num_proc, "torch_threads": torch.get_num_threads()}  # fmt: skip
    print(f"{args.sentences:,} sentences in {work}; torch threads {torch.get_num_threads()}", file=sys.stderr)
    try:
        config = TaggerConfig()
        with Phase("generate", report):
            corpus = build_corpus(args.sentences, args.avg_length, args.vocabulary, args.seed, work / "corpus",
                                  args.num_proc)  # fmt: skip
        report["corpus_mib"] = round(_size_mib(corpus), 1)
        with Phase("vocab", report):
            vocabs = hf.build_vocabs(corpus, lowercase=config.lowercase)
        report["vocab"] = {"words": len(vocabs.words), "chars": len(vocabs.chars), "tags": len(vocabs.tags)}
        with Phase("encode", report):
            encoded = ArrowTaggingDataset(corpus, vocabs, config, num_proc=args.num_proc, cache_dir=work / "encoded")
        del corpus  # training needs only the encoded data: unmap the source
        tokens = int(encoded.lengths.sum())
        report.update(tokens=tokens, encoded_mib=round(_size_mib(encoded.encoded), 1))
        report["encoded_bytes_per_token"] = round(report["encoded_mib"] * 2**20 / tokens, 1)

        loader = make_loader(encoded, args.batch_size, shuffle=True, seed=args.seed, num_workers=args.workers)
        loader.batch_sampler.set_epoch(1)
        kept: list = []
        padded = 0
        with Phase("epoch", report):
            for batch in loader:
                padded += batch.words.numel()
                if len(kept) < args.train_steps + 3:
                    kept.append(batch)
        seconds = report["phases"]["epoch"]["seconds"]
        report["loading"] = {
            "batches": len(loader),
            "batches_per_s": round(len(loader) / seconds, 1),
            "tokens_per_s": round(tokens / seconds),
            "padding": round(1 - tokens / padded, 4),
        }

        with Phase("model", report):
            tagger = Tagger(config, vocabs)
            step, rate = model_rate(tagger, kept, warmup=3)
        report["model"] = {"seconds_per_step": round(step, 4), "tokens_per_s": round(rate),
                           "batches_per_s": round(1 / step, 2)}  # fmt: skip
        report["loading_over_model"] = round(report["loading"]["tokens_per_s"] / rate, 1)
        report["ru_maxrss_mib"] = _maxrss_mib()
        report["ru_maxrss_children_mib"] = _maxrss_mib(resource.RUSAGE_CHILDREN)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)

    load = report["loading"]
    print(f"corpus {report['corpus_mib']:,.0f} MiB Arrow, {tokens:,} tokens; encoded {report['encoded_mib']:,.0f} MiB "
          f"({report['encoded_bytes_per_token']} bytes/token); vocabulary {report['vocab']}", file=sys.stderr)
    print(f"loading: {load['batches_per_s']:,.0f} batches/s, {load['tokens_per_s']:,.0f} tokens/s "
          f"(padding {100 * load['padding']:.1f}%)", file=sys.stderr)
    print(f"default model (training step): {report['model']['batches_per_s']:,.1f} batches/s, "
          f"{report['model']['tokens_per_s']:,.0f} tokens/s: loading is {report['loading_over_model']}x faster",
          file=sys.stderr)
    print(f"peak RSS (ru_maxrss): {report['ru_maxrss_mib']:,} MiB this process, "
          f"{report['ru_maxrss_children_mib']:,} MiB largest child", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
