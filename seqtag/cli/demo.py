"""``seqtag demo``: the tutorial's tagger and a batched BiLSTM-CRF on the tutorial corpus."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from seqtag.config import TaggerConfig, TrainConfig
from seqtag.data.tutorial import TUTORIAL_MODEL, TUTORIAL_TRAINING, tutorial_corpus
from seqtag.training.loop import train


def add_parser(subparsers) -> None:
    """Add ``demo`` to ``seqtag``'s subparsers."""
    subparsers.add_parser("demo", help="train the tutorial's tagger and a batched BiLSTM-CRF on the tutorial corpus")


def run(args: argparse.Namespace) -> None:
    demo()


def demo(out=sys.stdout) -> None:
    """Train the tutorial's tagger, then a batched BiLSTM-CRF with characters, on the tutorial
    corpus, and print how each tags the tutorial's sentence."""
    corpus = tutorial_corpus()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this small run fastest on one thread
    sentence = corpus[0].tokens
    runs = [
        ("tutorial tagger (batch 1, one direction, softmax)", TUTORIAL_MODEL, TUTORIAL_TRAINING),
        (
            "batched BiLSTM-CRF with characters (batch 2)",
            TaggerConfig(embedding_dim=16, hidden_dim=16, dropout=0.0),
            TrainConfig(epochs=60, batch_size=2, lr=0.05, patience=0, lr_halving=0, word_dropout=0.0, device="cpu"),
        ),
    ]
    for title, model_config, train_config in runs:
        start = time.perf_counter()
        tagger = train(corpus, config=model_config, train_config=train_config, quiet=True)
        tags = tagger.predict([sentence])[0]
        print(f"{title}: trained in {time.perf_counter() - start:.1f}s", file=out)
        print("  " + " ".join(f"{w}/{t}" for w, t in zip(sentence, tags)), file=out)
    torch.set_num_threads(threads)
