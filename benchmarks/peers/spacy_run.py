"""spaCy's tagger: the config of ``spacy init config --pipeline tagger --optimize efficiency``
(tok2vec from scratch + tagger), trained by ``spacy train``'s own loop and early stopping
(``training.patience``, ``max_steps``) on DocBin files with the gold tokens.

The config changes in two places only: the paths of the training and dev DocBins, and
``gold_preproc = true`` for both corpora (train and evaluate on the gold tokens). The UPOS tags
are the Docs' ``tag`` attribute, so the score is the tagger's ``tag_acc``.

The dev curve is spaCy's own evaluation every ``eval_frequency`` steps, read from the loop's
``train_while_improving`` generator, which this driver wraps to time the evaluations and to stop
at the time cap (the loop then ends as after its own early stopping). The ``model-best``
that spaCy saves tags dev and test.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import spacy
import spacy.training.loop
from protocol import elapsed, load_job, read_split, time_inference, write_predictions, write_result
from spacy.cli.train import train as spacy_train
from spacy.tokens import Doc, DocBin


def to_docbin(sentences: list[dict], path: Path) -> None:
    vocab = spacy.blank("en").vocab
    docs = DocBin(attrs=["TAG"])
    for s in sentences:
        docs.add(Doc(vocab, words=s["tokens"], tags=s["tags"]))
    docs.to_disk(path)


def main() -> None:
    job = load_job()
    out = Path(job["out"])
    train, dev, test = (read_split(job["data"][k]) for k in ("train", "dev", "test"))
    to_docbin(train, out / "train.spacy")
    to_docbin(dev, out / "dev.spacy")
    config = out / "config.cfg"
    subprocess.run([sys.executable, "-m", "spacy", "init", "config", str(config), "--lang", "en",
                    "--pipeline", "tagger", "--optimize", "efficiency", "--force"], check=True)
    overrides = {"paths.train": str(out / "train.spacy"), "paths.dev": str(out / "dev.spacy"),
                 "corpora.train.gold_preproc": True, "corpora.dev.gold_preproc": True}

    record = {"curve": [], "train_loop_seconds": 0.0, "train_tokens": 0, "stopped": "own early stopping"}
    inner_loop = spacy.training.loop.train_while_improving

    def timed_loop(nlp, optimizer, train_data, evaluate, **kwargs):
        evaluation = [0.0]

        def timed_evaluate():
            start = time.perf_counter()
            try:
                return evaluate()
            finally:
                evaluation[0] += time.perf_counter() - start

        info, mark = None, time.perf_counter()
        for batch, info, is_best in inner_loop(nlp, optimizer, train_data, timed_evaluate, **kwargs):
            now = time.perf_counter()
            record["train_loop_seconds"] += now - mark - evaluation[0]
            evaluation[0] = 0.0
            record["train_tokens"] = info["words"]
            if info["score"] is not None:
                record["curve"].append({"t": elapsed(), "step": info["step"], "epoch": info["epoch"],
                                        "dev_accuracy": info["other_scores"]["tag_acc"]})
            yield batch, info, is_best
            if job["max_train_seconds"] and elapsed() >= job["max_train_seconds"]:
                record["stopped"] = "time cap"
                return
            mark = time.perf_counter()
        if info is not None and info["step"] + 1 >= kwargs["max_steps"] > 0:
            record["stopped"] = "maximum steps"

    spacy.training.loop.train_while_improving = timed_loop
    spacy_train(config, out / "model", use_gpu=-1, overrides=overrides)
    train_end = elapsed()

    start = elapsed()
    nlp = spacy.load(out / "model" / "model-best")
    load_seconds = elapsed() - start

    def tag(sentences):
        docs = nlp.pipe(Doc(nlp.vocab, words=words) for words in sentences)
        return [[token.tag_ for token in doc] for doc in docs]

    write_predictions(job, "dev", tag([s["tokens"] for s in dev]))
    predictions, timing = time_inference(tag, [s["tokens"] for s in test], job["infer_repeats"])
    write_predictions(job, "test", predictions)
    write_result(job, record | {
        "version": spacy.__version__, "train_end": train_end, "load_seconds": load_seconds,
        "inference": timing | {"batch_size": nlp.batch_size},
        "config": {"file": str(config), "overrides": overrides},
    })


if __name__ == "__main__":
    main()
