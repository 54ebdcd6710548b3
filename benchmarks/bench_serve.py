"""Load test of ``seqtag serve``: throughput, latency and batch sizes, batching on and off.

One-sentence requests drawn from EWT test go to a real server (``python -m seqtag serve`` on a
loopback port) from C concurrent clients, C in 1, 8 and 64, for each model given (an ONNX file,
a model directory), with the default batcher and with batching off (``--max-batch-size 1``),
all in one run. The clients are one asyncio loop with one raw HTTP/1.1 keep-alive socket each
(no HTTP library: the generator costs little CPU, and the share of a core it took is printed).
Each cell is bounded in requests and in seconds.

Printed per cell: sentences/s, tokens/s, p50 and p99 latency, the mean batch size and the
server's own time per request outside queueing and the model call (from its ``/metrics``); and
the in-process latency of the same one-sentence call on the same predictor, the reference for
the server's latency at concurrency 1. The host (CPU model, cores, load) goes with the results.

    python benchmarks/bench_serve.py --onnx runs/ewt.onnx --model runs/ewt \\
        --json benchmarks/results/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EWT_TEST = ROOT.parent / "shared" / "corpora" / "ud_english_ewt" / "en_ewt-ud-test.conllu"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", metavar="FILE", help="an ONNX file written by seqtag export --format onnx")
    p.add_argument("--model", metavar="DIR", help="a model directory written by seqtag train")
    p.add_argument("--corpus", default=str(EWT_TEST), metavar="FILE", help="CoNLL-U sentences to send (EWT test)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64], metavar="C")
    p.add_argument("--requests", type=int, default=3000, metavar="N", help="requests per cell at most")
    p.add_argument("--seconds", type=float, default=15.0, metavar="S", help="seconds per cell at most")
    p.add_argument("--serve-args", default="", metavar="ARGS", help="more options for seqtag serve (quoted)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p


# -- the load generator -------------------------------------------------------------------------


def _request(sentence: list[str]) -> bytes:
    body = json.dumps({"sentences": [sentence]}).encode()
    head = f"POST /v1/tag HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _client(port: int, requests: list[bytes], start: int, step: int, deadline: float, latencies: list,
                  budget: list) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{head.splitlines()[0]!r}: {body[:200]!r}")
            i += step
    finally:
        writer.close()


def load(port: int, requests: list[bytes], concurrency: int, n: int, seconds: float) -> dict:
    """``n`` requests (or ``seconds``) from ``concurrency`` keep-alive connections."""
    latencies: list[float] = []
    budget = [n]

    async def run():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(_client(port, requests, c, concurrency, deadline, latencies, budget)
                               for c in range(concurrency)))  # fmt: skip

    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    latencies.sort()
    return {"requests": len(latencies), "seconds": wall, "client_cpu_share": cpu / wall,
            "p50_ms": 1000 * latencies[len(latencies) // 2], "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}  # fmt: skip


# -- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


class Server:
    def __init__(self, model: str, args: list[str]) -> None:
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([sys.executable, "-m", "seqtag", "serve", model, "--port", str(self.port), *args],
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                _get(self.port, "/ready")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"seqtag serve {model} did not get ready")

    def metrics(self) -> dict:
        text = _get(self.port, "/metrics")
        names = ("seqtag_server_seconds_sum", "seqtag_server_seconds_count", "seqtag_batch_sentences_sum",
                 "seqtag_batch_sentences_count", "seqtag_tokens_tagged_total", "seqtag_sentences_tagged_total")  # fmt: skip
        return {n: _metric(text, n) for n in names}

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


# -- the run ---------------------------------------------------------------------------------


def in_process_ms(model: str, sentences: list[list[str]], n: int = 500) -> float:
    """p50 of one one-sentence call on the predictor the server runs (same config)."""
    from seqtag.config import ServeConfig
    from seqtag.serving.predictor import tag_sentences
    from seqtag.serving.server import load as load_model

    predictor = load_model(model, ServeConfig())
    times = []
    for s in sentences[:n]:
        t0 = time.perf_counter()
        tag_sentences(predictor, [s])
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def host() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if line.startswith("Model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "load": os.getloadavg(),
            "python": platform.python_version()}  # fmt: skip


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    from seqtag.data.corpus import read_conllu

    sentences = [s.tokens for s in read_conllu(args.corpus)]
    requests = [_request(s) for s in sentences]
    tokens_per_request = sum(map(len, sentences)) / len(sentences)
    models = [("onnx", args.onnx), ("directory", args.model)]
    results = {"host": host(), "cells": [], "in_process_p50_ms": {}}
    print(f"host: {results['host']['cpu']}, {results['host']['cores']} cores, load {results['host']['load']}")
    for kind, model in models:
        if not model:
            continue
        results["in_process_p50_ms"][kind] = in_process_ms(model, sentences)
        print(f"{kind} {model}: in-process one-sentence call p50 {results['in_process_p50_ms'][kind]:.2f} ms")
        print(f"{'batching':>8} {'C':>3} {'requests':>8} {'sent/s':>8} {'tokens/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'batch':>6} {'server ms/req':>13} {'client CPU':>10}")  # fmt: skip
        for batching in ("on", "off"):
            extra = (["--max-batch-size", "1"] if batching == "off" else []) + args.serve_args.split()
            server = Server(model, extra)
            try:
                load(server.port, requests, 4, 200, 5)  # warm-up
                for c in args.concurrency:
                    before = server.metrics()
                    cell = load(server.port, requests, c, args.requests, args.seconds)
                    after = server.metrics()
                    d = {k: after[k] - before[k] for k in after}
                    cell.update(model=kind, batching=batching, concurrency=c,
                                sentences_per_s=cell["requests"] / cell["seconds"],
                                tokens_per_s=d["seqtag_tokens_tagged_total"] / cell["seconds"],
                                mean_batch=d["seqtag_batch_sentences_sum"] / max(d["seqtag_batch_sentences_count"], 1),
                                server_ms_per_request=1000 * d["seqtag_server_seconds_sum"]
                                / max(d["seqtag_server_seconds_count"], 1))  # fmt: skip
                    results["cells"].append(cell)
                    print(f"{batching:>8} {c:>3} {cell['requests']:>8} {cell['sentences_per_s']:>8,.0f} "
                          f"{cell['tokens_per_s']:>9,.0f} {cell['p50_ms']:>7.2f} {cell['p99_ms']:>7.2f} "
                          f"{cell['mean_batch']:>6.1f} {cell['server_ms_per_request']:>13.3f} "
                          f"{100 * cell['client_cpu_share']:>9.0f}%", flush=True)  # fmt: skip
            finally:
                results.setdefault("exit_status", []).append(server.stop())
    results["load_after"] = os.getloadavg()
    results["tokens_per_request"] = tokens_per_request
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
