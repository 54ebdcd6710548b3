"""Inference speed of a tagger: eager vs TorchScript vs torch.export, strings in, tags out.

Tags the sentences of a corpus at several batch sizes and reports tokens per second (median
of ``--repeats`` timed passes after ``--warmup`` untimed ones). Each pass includes encoding
the strings and decoding the tags, as a user's call would. Without ``--model``, a randomly
initialised tagger of the default architecture, with the corpus's vocabulary, stands in:
the speed does not depend on the weights.

    python benchmarks/bench_export.py --sentences 400 --repeats 3
    python benchmarks/bench_export.py --model runs/ewt --json results.json
"""

import argparse
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import seqtag
from seqtag.export import load_torch_export, load_torchscript, to_torch_export, to_torchscript

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "ud_english_ewt" / "en_ewt-ud-test.conllu"
FORMATS = ("eager", "torchscript", "torch-export")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help=f"CoNLL-U or CoNLL file (default: {DEFAULT_CORPUS})")
    p.add_argument("--model", type=Path, help="model directory (default: random default-architecture tagger)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    p.add_argument("--batch-sizes", default="1,32,256", help="comma-separated (default: 1,32,256)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
    p.add_argument("--sentences", type=int, default=0, help="use only the first N sentences (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per measurement (default: 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first (default: 1)")
    p.add_argument("--max-length", type=int, default=0,
                   help="torch.export: the longest bucket (default: the longest sentence)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return p


def timed(fn, repeats: int, warmup: int) -> tuple[float, object]:
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    corpus = seqtag.read_corpus(args.corpus)
    if args.sentences:
        corpus = corpus[: args.sentences]
    sentences = [s.tokens for s in corpus]
    tokens = sum(map(len, sentences))
    if args.model:
        tagger = seqtag.Tagger.load(args.model, device="cpu")
    else:
        torch.manual_seed(0)
        tagger = seqtag.Tagger(seqtag.TaggerConfig(), seqtag.Vocabularies.build(corpus)).eval()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    formats = args.formats.split(",")
    longest = max(map(len, sentences))
    max_length = args.max_length or longest

    print(f"{len(sentences)} sentences, {tokens} tokens (longest {longest}) from {args.corpus}", file=sys.stderr)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}",
          file=sys.stderr)
    runners, export_seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        if "eager" in formats:
            runners["eager"] = lambda bs: tagger.predict(sentences, batch_size=bs)
        if "torchscript" in formats:
            start = time.perf_counter()
            module = load_torchscript(to_torchscript(tagger, Path(tmp) / "tagger.pt"))
            export_seconds["torchscript"] = time.perf_counter() - start

            def run_script(bs, module=module):
                module.batch_size = bs
                return module(sentences)

            runners["torchscript"] = run_script
        if "torch-export" in formats:
            start = time.perf_counter()
            exported = load_torch_export(to_torch_export(tagger, Path(tmp) / "pt2", max_length=max_length))
            export_seconds["torch-export"] = time.perf_counter() - start
            runners["torch-export"] = lambda bs: exported.predict(sentences, batch_size=bs)
        for name, seconds in export_seconds.items():
            print(f"export {name}: {seconds:.1f} s", file=sys.stderr)

        results, reference = [], {}
        for bs in batch_sizes:
            for name in formats:
                seconds, tags = timed(functools.partial(runners[name], bs), args.repeats, args.warmup)
                reference.setdefault(bs, tags)
                agree = sum(a == b for a, b in zip(tags, reference[bs])) / len(sentences)
                results.append({"format": name, "batch_size": bs, "seconds": seconds,
                                "tokens_per_s": tokens / seconds, "agreement": agree})
                print(f"  {name:>12} batch {bs:>4}: {tokens / seconds:>9.0f} tokens/s", file=sys.stderr)

    print(f"\n{'batch':>6} " + " ".join(f"{name:>14}" for name in formats) + "   (tokens/s, median)")
    for bs in batch_sizes:
        row = {r["format"]: r["tokens_per_s"] for r in results if r["batch_size"] == bs}
        print(f"{bs:>6} " + " ".join(f"{row[name]:>14.0f}" for name in formats))
    disagreements = [r for r in results if r["agreement"] < 1.0]
    for r in disagreements:
        print(f"note: {r['format']} at batch {r['batch_size']} agrees with the first format on "
              f"{100 * r['agreement']:.2f}% of sentences")
    if args.json:
        args.json.write_text(json.dumps({
            "corpus": str(args.corpus), "sentences": len(sentences), "tokens": tokens, "threads": args.threads,
            "torch": torch.__version__, "model": str(args.model) if args.model else "random default architecture",
            "max_length": max_length, "export_seconds": export_seconds, "results": results,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
