"""The Hugging Face reference for the encoder benchmarks: a pretrained encoder fine-tuned for
UD English-EWT UPOS with transformers' ``Trainer``, and its inference speed, to set beside
seqtag's encoder tagger on the same host.

``--mode train`` fine-tunes ``AutoModelForTokenClassification`` as transformers' run_ner example
does: words tokenized with ``is_split_into_words=True``, each word's tag on its first subword and
-100 on its other subwords and on the special tokens; AdamW, lr 1e-4, linear warm-up over 10% of
the steps then linear decay, batch 32, length-grouped batches, gradients clipped at norm 1.0;
bf16 autocast only with ``--bf16`` and where the hardware has native bf16 (on a CPU: AVX-512 BF16
or AMX). It reports dev and test accuracy over words (a word's prediction is its first
subword's; a word left without a subword counts as an error), the training time and training
words/s, and saves the model in ``OUTPUT/model``.

``--mode infer`` times the EWT test sentences, strings in and tags out, two ways:

- ``pipeline``: ``pipeline("token-classification", aggregation_strategy=...)`` on each
  sentence's words joined by spaces, in corpus order, at each of ``--batch-sizes``. The pipeline
  takes text, not words, and merges adjacent words of the same tag into one group, so its output
  is not one tag per word; it is not mapped back (that is not needed to time it).
- ``loop``: length-sorted batches of words through the same model and fast tokenizer
  (``is_split_into_words=True``), one tag per word (its first subword's), fp32 and bf16
  autocast (where native).

The model is ``OUTPUT/model`` from ``--mode train`` or, where there is none, the base encoder
with a randomly initialized head: speed only (the output says ``"random_head": true``).

Every timing is the median of ``--repeats`` passes after one untimed pass; words/s counts EWT
words, not subwords. The result (with the host: CPU, torch threads, versions) is printed as JSON
and written to ``OUTPUT/train.json`` or ``OUTPUT/infer.json``.

The encoder is read from a local directory only (``local_files_only=True``); all-MiniLM-L6-v2 is
put there by ``bash ../shared/models/get-minilm.sh DIR`` (the folder beside the checkout that holds
the corpora).

Needs transformers and, for ``Trainer``, accelerate: ``pip install accelerate``. Not part of the
test run. Examples::

    python benchmarks/hf_reference.py --mode train --encoder /tmp/minilm --output /tmp/hf-ref
    python benchmarks/hf_reference.py --mode infer --encoder /tmp/minilm --output /tmp/hf-ref
    python benchmarks/hf_reference.py --mode train --max-train-sentences 200 --max-sentences 100 \\
        --epochs 1 --encoder /tmp/minilm --output /tmp/hf-ref-smoke          # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch

import seqtag
from seqtag.host import host_info

SHARED = Path(__file__).resolve().parents[1].parent / "shared"  # beside the checkout
CORPORA = Path(os.environ.get("SEQTAG_CORPORA", SHARED / "corpora"))
ENCODER = Path.home() / ".cache" / "seqtag-encoders" / "all-MiniLM-L6-v2"  # get-minilm.sh's default
UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"]  # fmt: skip


def read_split(split: str, limit: int | None) -> list[seqtag.Sentence]:
    path = CORPORA / "ud_english_ewt" / f"en_ewt-ud-{split}.conllu"
    return seqtag.read_conllu(path, column="upos")[:limit]


def bf16_problem(device: str) -> str:
    """Why bf16 is not used on ``device`` ("" where its hardware has native bf16)."""
    if device == "cuda":
        return "" if torch.cuda.is_bf16_supported() else "this GPU has no bf16"
    flags = host_info(matmul=False)["cpu_flags"] or []
    if {"avx512_bf16", "amx_bf16"} & set(flags):
        return ""
    return "this CPU has neither AVX-512 BF16 nor AMX: bf16 would be emulated"


def host(device: str) -> dict:
    # no matmul rates: without native bf16 the bf16 one alone takes over a minute
    info = host_info(device, matmul=False)
    for package in ("transformers", "tokenizers", "accelerate"):
        try:
            info[f"{package}_version"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[f"{package}_version"] = None
    return info


def load_model(source: Path, fine_tuned: bool, device: str):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    labels = {} if fine_tuned else {"num_labels": len(UPOS), "id2label": dict(enumerate(UPOS)),
                                    "label2id": {t: i for i, t in enumerate(UPOS)}}
    model = AutoModelForTokenClassification.from_pretrained(str(source), local_files_only=True,
                                                            **labels)
    return model.to(device), tokenizer


def encode(tokenizer, sentences: list[seqtag.Sentence]) -> list[dict]:
    """run_ner's features: each word's tag id on its first subword, -100 elsewhere."""
    enc = tokenizer([s.tokens for s in sentences], is_split_into_words=True, truncation=True)
    features = []
    for i, sentence in enumerate(sentences):
        labels, previous = [], None
        for word in enc.word_ids(i):
            first = word is not None and word != previous
            labels.append(UPOS.index(sentence.tags[word]) if first else -100)
            previous = word
        features.append({**{key: enc[key][i] for key in enc.keys()}, "labels": labels})
    return features


def accuracy(trainer, features: list[dict], sentences: list[seqtag.Sentence]) -> dict:
    logits, labels, _ = trainer.predict(features)
    scored = labels != -100
    correct = int((logits.argmax(-1)[scored] == labels[scored]).sum())
    words = sum(len(s) for s in sentences)
    return {"accuracy": correct / words, "words": words, "sentences": len(sentences),
            "words_without_prediction": words - int(scored.sum())}


def train(args: argparse.Namespace) -> dict:
    from transformers import (
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    train_set = read_split("train", args.max_train_sentences)
    dev, test = read_split("dev", args.max_sentences), read_split("test", args.max_sentences)
    problem = bf16_problem(args.device)
    set_seed(args.seed)
    model, tokenizer = load_model(args.encoder, False, args.device)
    training_args = TrainingArguments(
        output_dir=str(args.output / "trainer"), num_train_epochs=args.epochs, seed=args.seed,
        per_device_train_batch_size=32, per_device_eval_batch_size=64, learning_rate=1e-4,
        lr_scheduler_type="linear", warmup_steps=0.1, max_grad_norm=1.0,
        train_sampling_strategy="group_by_length",  # was group_by_length=True before 5.0
        bf16=args.bf16 and not problem, use_cpu=args.device == "cpu",
        eval_strategy="no", save_strategy="no", report_to="none")
    features = encode(tokenizer, train_set)
    trainer = Trainer(model=model, args=training_args, train_dataset=features,
                      data_collator=DataCollatorForTokenClassification(tokenizer),
                      processing_class=tokenizer)
    with contextlib.redirect_stdout(sys.stderr):  # Trainer's logs; stdout is the JSON
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
        trainer.save_model(str(args.output / "model"))
        start = time.perf_counter()
        scores = {"dev": accuracy(trainer, encode(tokenizer, dev), dev),
                  "test": accuracy(trainer, encode(tokenizer, test), test)}
        eval_seconds = time.perf_counter() - start
    words = sum(len(s) for s in train_set)  # per epoch
    return {
        "mode": "train", "encoder": str(args.encoder), "model": str(args.output / "model"),
        "train_sentences": len(train_set), "epochs": args.epochs, "seed": args.seed,
        "optimizer": getattr(training_args.optim, "value", training_args.optim),
        "bf16": args.bf16 and not problem, "bf16_note": problem if args.bf16 else "",
        "train_loss": output.training_loss, "train_seconds": seconds,
        "train_words_per_epoch": words, "train_words_per_s": words * args.epochs / seconds,
        "train_subwords_per_epoch": sum(len(f["input_ids"]) for f in features),
        **scores, "eval_seconds": eval_seconds, "host": host(args.device),
    }


def timed(run, words: int, repeats: int) -> tuple[object, dict]:
    """One untimed pass, then the median of ``repeats`` timed ones."""
    result = run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return result, {"seconds": seconds, "words_per_s": words / statistics.median(seconds)}


@torch.inference_mode()
def tag_loop(model, tokenizer, sentences: list[list[str]], batch_size: int,
             bf16: bool) -> list[list[str | None]]:
    """One tag per word (its first subword's; None for a word without one), in input order."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[list[str | None]] = [[] for _ in sentences]
    for k in range(0, len(order), batch_size):
        batch = order[k : k + batch_size]
        enc = tokenizer([sentences[i] for i in batch], is_split_into_words=True, truncation=True,
                        padding=True, return_tensors="pt").to(model.device)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            best = model(**enc).logits.argmax(-1).tolist()
        for row, i in enumerate(batch):
            tags: list[str | None] = [None] * len(sentences[i])
            previous = None
            for position, word in enumerate(enc.word_ids(row)):
                if word is not None and word != previous:
                    tags[word] = model.config.id2label[best[row][position]]
                previous = word
            out[i] = tags
    return out


def infer(args: argparse.Namespace) -> dict:
    from transformers import pipeline, set_seed

    test = read_split("test", args.max_sentences)
    sentences = [s.tokens for s in test]
    words = sum(len(s) for s in sentences)
    fine_tuned = (args.output / "model" / "config.json").is_file()
    set_seed(args.seed)  # the random head, where there is no fine-tuned model
    model, tokenizer = load_model(args.output / "model" if fine_tuned else args.encoder, fine_tuned,
                                  args.device)
    model.eval()
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer,
                      aggregation_strategy=args.aggregation, device=torch.device(args.device))
    texts = [" ".join(s) for s in sentences]
    runs = {}
    for size in args.batch_sizes:
        _, runs[size] = timed(lambda size=size: tagger(texts, batch_size=size), words, args.repeats)
    best = max(runs, key=lambda size: runs[size]["words_per_s"])
    result = {
        "mode": "infer", "model": str(args.output / "model" if fine_tuned else args.encoder),
        "random_head": not fine_tuned, "test_sentences": len(sentences), "test_words": words,
        "pipeline": {"aggregation_strategy": args.aggregation, "input": "words joined by spaces",
                     "output": "word groups (adjacent words of one tag merged), not mapped back",
                     "batch_sizes": runs, "best_batch_size": best,
                     "best_words_per_s": runs[best]["words_per_s"]},
        "loop": {"batch_size": args.loop_batch_size, "order": "sorted by length"},
    }
    problem = bf16_problem(args.device)
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and problem:
            result["loop"]["bf16"] = {"skipped": problem}
            continue
        tags, timing = timed(lambda p=precision: tag_loop(model, tokenizer, sentences,
                                                          args.loop_batch_size, p == "bf16"),
                             words, args.repeats)
        if fine_tuned:
            correct = sum(p == g for pred, s in zip(tags, test) for p, g in zip(pred, s.tags))
            timing["test_accuracy"] = correct / words
        result["loop"][precision] = timing
    result["host"] = host(args.device)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("train", "infer"), required=True)
    parser.add_argument("--encoder", type=Path, default=ENCODER,
                        help="local directory of the pretrained encoder (default: %(default)s)")
    parser.add_argument("--output", type=Path,
                        default=Path(tempfile.gettempdir()) / "seqtag-hf-reference",
                        help="OUTPUT/model, OUTPUT/train.json, OUTPUT/infer.json")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--bf16", action="store_true", help="train in bf16 where it is native")
    parser.add_argument("--max-train-sentences", type=int, default=None)
    parser.add_argument("--max-sentences", type=int, default=None,
                        help="dev and test sentences used (evaluation in train, timing in infer)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64],
                        help="pipeline batch sizes (infer)")
    parser.add_argument("--loop-batch-size", type=int, default=64)
    parser.add_argument("--aggregation", default="first",
                        choices=("none", "simple", "first", "average", "max"))
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (infer)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    result = train(args) if args.mode == "train" else infer(args)
    text = json.dumps(result, indent=1)
    (args.output / f"{args.mode}.json").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
