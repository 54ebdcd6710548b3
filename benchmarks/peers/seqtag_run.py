"""seqtag with its defaults (what ``seqtag train --train ... --dev ...`` trains), from this checkout.

The dev curve is seqtag's own per-epoch dev evaluation (``metrics.jsonl``: ``wall_time`` after
the epoch's evaluation, ``dev_accuracy``); the time cap sends this process SIGINT, on which
seqtag stops at the next step boundary. The best epoch's model (seqtag's own selection, saved
in the output folder) tags dev and test.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import torch
from protocol import elapsed, load_job, read_split, time_inference, write_predictions, write_result

import seqtag


def main() -> None:
    job = load_job()
    torch.set_num_threads(job["threads"])
    train, dev, test = (read_split(job["data"][k]) for k in ("train", "dev", "test"))
    train = [seqtag.Sentence(s["tokens"], s["tags"]) for s in train]
    dev_sentences = [seqtag.Sentence(s["tokens"], s["tags"]) for s in dev]
    model_dir = Path(job["out"]) / "model"
    train_config = seqtag.TrainConfig(device="cpu")  # the defaults, on the CPU also on a GPU machine
    training = threading.Event()

    def stop() -> None:
        if training.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    timer = None
    if job["max_train_seconds"]:
        timer = threading.Timer(max(job["max_train_seconds"] - elapsed(), 0.0), stop)
        timer.start()
    train_start = elapsed()
    stopped = "own early stopping"
    training.set()
    try:
        seqtag.train(train, dev_sentences, seqtag.TaggerConfig(), train_config, output_dir=model_dir, quiet=True)
    except KeyboardInterrupt:  # seqtag's TrainingInterrupted, after the time cap's SIGINT
        stopped = "time cap"
    finally:
        training.clear()
    if timer is not None:
        timer.cancel()
    train_end = elapsed()
    rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    if stopped != "time cap" and len(rows) == train_config.epochs:
        stopped = "maximum epochs"
    curve = [{"t": train_start + r["wall_time"], "epoch": r["epoch"], "dev_accuracy": r["dev_accuracy"]}
             for r in rows]
    start = elapsed()
    tagger = seqtag.load(model_dir)
    load_seconds = elapsed() - start

    def tag(sentences):
        return tagger.predict(sentences)

    write_predictions(job, "dev", tag([s["tokens"] for s in dev]))
    predictions, timing = time_inference(tag, [s["tokens"] for s in test], job["infer_repeats"])
    write_predictions(job, "test", predictions)
    write_result(job, {
        "version": seqtag.__version__, "torch": torch.__version__, "curve": curve, "stopped": stopped,
        "train_end": train_end, "epochs": len(rows),
        "train_tokens": sum(r["tokens_per_s"] * r["epoch_seconds"] for r in rows),
        "train_loop_seconds": sum(r["epoch_seconds"] for r in rows),
        "load_seconds": load_seconds, "inference": timing | {"batch_size": 256},
        "config": {"model": seqtag.TaggerConfig().to_dict(), "training": train_config.to_dict()},
    })


if __name__ == "__main__":
    main()
