"""Serving speed of a tagger in every format: eager, TorchScript, ONNX Runtime and torch.export.

Two measurements per format, strings in and tag strings out (encoding and decoding included, as
a user's call would):

- throughput: the corpus's sentences at each batch size, tokens per second (median of
  ``--repeats`` timed passes after ``--warmup`` untimed ones; each pass runs every format once,
  so that the formats share any drift of the host's speed);
- latency: one 20-token sentence tagged alone, ``--latency-runs`` calls, p50 and p99 in ms.

``pre-encoded`` is eager prediction from already encoded sentences (``Tagger.decode_encoded``):
the model's own speed, to which the string formats are compared. The CPU model and the thread
count (torch's intra-op threads and ONNX Runtime's ``intra_op_num_threads``) are printed with
the results. Without ``--model``, a randomly initialised tagger of the default architecture,
with the corpus's vocabulary, stands in: the speed does not depend on the weights.

    python benchmarks/bench_export.py --sentences 400 --repeats 3
    python benchmarks/bench_export.py --model runs/ewt --threads 2 --json results.json
    python benchmarks/bench_export.py --formats eager,onnx --batch-sizes 1,32 --repeats 1
"""

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import seqtag
from seqtag.data.dataset import encode_tokens
from seqtag.host import host_info
from seqtag.serving.torch_export import load_torch_export, to_torch_export
from seqtag.serving.torchscript import load_torchscript, to_torchscript

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "ud_english_ewt" / "en_ewt-ud-test.conllu"
FORMATS = ("pre-encoded", "eager", "torchscript", "onnx", "torch-export")
LATENCY_TOKENS = 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help=f"CoNLL-U or CoNLL file (default: {DEFAULT_CORPUS})")
    p.add_argument("--model", type=Path, help="model directory (default: random default-architecture tagger)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch intra-op threads and ONNX Runtime intra_op_num_threads (default: 2)")
    p.add_argument("--batch-sizes", default="1,32,256", help="comma-separated (default: 1,32,256)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
    p.add_argument("--sentences", type=int, default=0, help="use only the first N sentences (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per measurement (default: 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first (default: 1)")
    p.add_argument("--latency-runs", type=int, default=200,
                   help=f"single-sentence calls ({LATENCY_TOKENS} tokens) per format for p50/p99; 0 = skip (default: 200)")
    p.add_argument("--max-length", type=int, default=0,
                   help="torch.export: the longest bucket (default: the longest sentence)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return p


def timed(fns: dict, repeats: int, warmup: int) -> dict[str, tuple[float, object]]:
    """``{name: (median seconds, result)}`` of each ``fns[name]()``, the formats interleaved
    (each pass times every format once), so that a drift of the host's speed during the run
    (a shared VM's is often 10-20%) moves every format alike instead of favouring one."""
    results = {name: None for name in fns}
    for _ in range(warmup):
        for name, fn in fns.items():
            results[name] = fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in fns}


def latency(fn, runs: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``runs`` calls of ``fn`` (after ``runs // 10 + 1`` untimed)."""
    for _ in range(runs // 10 + 1):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(0.99 * len(times)))]


def latency_sentence(sentences: list[list[str]]) -> list[str]:
    """The corpus's first sentence of 20 tokens (else the first 20 tokens of its tokens)."""
    for s in sentences:
        if len(s) == LATENCY_TOKENS:
            return s
    tokens = [t for s in sentences for t in s]
    return (tokens * (LATENCY_TOKENS // max(len(tokens), 1) + 1))[:LATENCY_TOKENS]


def make_runners(tagger, formats: list[str], inputs: dict[str, list[list[str]]], tmp: Path, threads: int,
                 max_length: int) -> tuple[dict, dict]:
    """``{format: run(key, batch_size) -> tags}`` tagging ``inputs[key]``, and the export time of each
    exported format."""
    runners, export_seconds = {}, {}
    if "pre-encoded" in formats:
        encoded = {key: [encode_tokens(s, tagger.vocabs, tagger.config) for s in batch] for key, batch in inputs.items()}

        def run_encoded(key, bs):
            return [tagger.vocabs.tags.decode(ids) for ids in tagger.decode_encoded(encoded[key], batch_size=bs)]

        runners["pre-encoded"] = run_encoded
    if "eager" in formats:
        runners["eager"] = lambda key, bs: tagger.predict(inputs[key], batch_size=bs)
    if "torchscript" in formats:
        start = time.perf_counter()
        module = load_torchscript(to_torchscript(tagger, tmp / "tagger.pt"))
        export_seconds["torchscript"] = time.perf_counter() - start

        def run_script(key, bs, module=module):
            module.batch_size = bs
            return module(inputs[key])

        runners["torchscript"] = run_script
    if "onnx" in formats:
        from seqtag.serving.onnx_export import to_onnx
        from seqtag.serving.onnx_runner import OnnxTagger

        start = time.perf_counter()
        onnx_tagger = OnnxTagger(to_onnx(tagger, tmp / "tagger.onnx"), intra_op_num_threads=threads)
        export_seconds["onnx"] = time.perf_counter() - start
        runners["onnx"] = lambda key, bs: onnx_tagger.predict(inputs[key], batch_size=bs)
    if "torch-export" in formats:
        start = time.perf_counter()
        exported = load_torch_export(to_torch_export(tagger, tmp / "pt2", max_length=max_length))
        export_seconds["torch-export"] = time.perf_counter() - start
        runners["torch-export"] = lambda key, bs: exported.predict(inputs[key], batch_size=bs)
    return runners, export_seconds


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    formats = args.formats.split(",")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        build_parser().error(f"unknown formats {unknown}; expected a subset of {','.join(FORMATS)}")
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
    longest = max(map(len, sentences))
    max_length = args.max_length or max(longest, LATENCY_TOKENS)
    single = latency_sentence(sentences)
    host = host_info()
    cpu = host["cpu_model"]

    print(f"{len(sentences)} sentences, {tokens} tokens (longest {longest}) from {args.corpus}", file=sys.stderr)
    print(f"CPU {cpu}; {args.threads} threads; torch {torch.__version__}", file=sys.stderr)
    results, latencies = [], []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {"corpus": sentences, "single": [single]}
        runners, export_seconds = make_runners(tagger, formats, inputs, Path(tmp), args.threads, max_length)
        for name, seconds in export_seconds.items():
            print(f"export {name}: {seconds:.1f} s", file=sys.stderr)
        with torch.inference_mode():
            reference = {}
            for bs in batch_sizes:
                fns = {name: functools.partial(runners[name], "corpus", bs) for name in formats}
                for name, (seconds, tags) in timed(fns, args.repeats, args.warmup).items():
                    reference.setdefault(bs, tags)
                    agree = sum(a == b for a, b in zip(tags, reference[bs])) / len(sentences)
                    results.append({"format": name, "batch_size": bs, "seconds": seconds,
                                    "tokens_per_s": tokens / seconds, "agreement": agree})
                    print(f"  {name:>12} batch {bs:>4}: {tokens / seconds:>9.0f} tokens/s", file=sys.stderr)
            if args.latency_runs > 0:
                for name in formats:
                    p50, p99 = latency(functools.partial(runners[name], "single", 1), args.latency_runs)
                    latencies.append({"format": name, "tokens": len(single), "p50_ms": p50, "p99_ms": p99})

    print(f"CPU: {cpu}; threads: {args.threads} (torch intra-op, ONNX Runtime intra_op_num_threads); "
          f"torch {torch.__version__}")
    print(f"{len(sentences)} sentences, {tokens} tokens; model: {args.model or 'random default architecture'}")
    print(f"\n{'batch':>6} " + " ".join(f"{name:>14}" for name in formats) + "   (tokens/s, strings in, tags out; median)")
    for bs in batch_sizes:
        row = {r["format"]: r["tokens_per_s"] for r in results if r["batch_size"] == bs}
        print(f"{bs:>6} " + " ".join(f"{row[name]:>14.0f}" for name in formats))
    if latencies:
        print(f"\none {len(single)}-token sentence, batch 1, {args.latency_runs} calls (ms):")
        print(f"{'':>6} " + " ".join(f"{r['format']:>14}" for r in latencies))
        print(f"{'p50':>6} " + " ".join(f"{r['p50_ms']:>14.3f}" for r in latencies))
        print(f"{'p99':>6} " + " ".join(f"{r['p99_ms']:>14.3f}" for r in latencies))
    for r in results:
        if r["agreement"] < 1.0:
            print(f"note: {r['format']} at batch {r['batch_size']} agrees with {formats[0]} on "
                  f"{100 * r['agreement']:.2f}% of sentences")
    if args.json:
        args.json.write_text(json.dumps({
            "corpus": str(args.corpus), "sentences": len(sentences), "tokens": tokens, "threads": args.threads,
            "cpu": cpu, "torch": torch.__version__, "host": host,
            "model": str(args.model) if args.model else "random default architecture",
            "max_length": max_length, "export_seconds": export_seconds, "results": results,
            "latency": latencies,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
