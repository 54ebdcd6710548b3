"""What every driver of benchmarks/peers.py shares (standard library only: each driver runs in its
own virtual environment).

A driver is started as ``python DRIVER.py JOB.json``. The job names the data (JSON lines with
``tokens`` and ``tags``), an output folder, the thread count, the time cap and the number of
timed inference passes. The driver trains with its library's own training loop, keeps that
loop's own best model, tags the dev and test sentences with it and writes ``dev_pred.jsonl``,
``test_pred.jsonl`` and ``result.json`` into the output folder. Times are seconds since the
driver's process was launched (``PEERS_LAUNCHED``, set by peers.py just before), so that the
interpreter's start-up, imports and data preparation count as training time, as a user waits
for them.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

START = float(os.environ.get("PEERS_LAUNCHED", time.time()))


def elapsed() -> float:
    """Seconds since this driver's process was launched."""
    return time.time() - START


def load_job() -> dict:
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    Path(job["out"]).mkdir(parents=True, exist_ok=True)
    return job


def read_split(path: str) -> list[dict]:
    """Sentences as ``{"tokens": [...], "tags": [...]}``."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def time_inference(tag: Callable[[list[list[str]]], list[list[str]]], sentences: list[list[str]],
                   repeats: int) -> tuple[list[list[str]], dict]:
    """Tag ``sentences`` (token strings in, tag strings out) once untimed, then ``repeats`` timed
    passes; the predictions of the last pass and the timings."""
    predictions = tag(sentences)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictions = tag(sentences)
        seconds.append(time.perf_counter() - start)
    tokens = sum(len(s) for s in sentences)
    timing = {"seconds": seconds, "tokens": tokens, "sentences": len(sentences),
              "tokens_per_s": tokens / statistics.median(seconds)}
    return predictions, timing


def write_predictions(job: dict, split: str, predictions: list[list[str]]) -> None:
    with open(Path(job["out"]) / f"{split}_pred.jsonl", "w", encoding="utf-8") as f:
        for tags in predictions:
            f.write(json.dumps(tags) + "\n")


def write_result(job: dict, result: dict) -> None:
    """``result.json``: ``version``, ``curve`` (``[{"t", "dev_accuracy", ...}]``, the training
    loop's own dev scores), ``stopped``, ``train_end`` (seconds), ``train_tokens`` and
    ``train_loop_seconds`` (training steps only, evaluation excluded), ``load_seconds`` and
    ``inference`` (from :func:`time_inference`)."""
    with open(Path(job["out"]) / "result.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
