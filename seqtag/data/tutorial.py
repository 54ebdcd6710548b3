"""The PyTorch LSTM tutorial's corpora and settings, kept as regression fixtures and for ``seqtag demo``.

>>> [s.tokens for s in tutorial_corpus()]
[['The', 'dog', 'ate', 'the', 'apple'], ['Everybody', 'read', 'that', 'book']]
>>> s = sonnet_corpus()[0]
>>> s.tokens[:3], s.tags[:3]
(['When', 'forty', 'winters'], ['forty', 'winters', 'shall'])
"""

from __future__ import annotations

from importlib import resources

from seqtag.config import TaggerConfig, TrainConfig
from seqtag.data.corpus import Sentence

END = "<end>"


def _resource(name: str) -> str:
    return resources.files("seqtag").joinpath("resources", name).read_text(encoding="utf-8")


def tutorial_corpus() -> list[Sentence]:
    """The tutorial's two tagged sentences (tags DET, NN, V)."""
    sentences = []
    for block in _resource("tutorial.conll").strip().split("\n\n"):
        pairs = [line.split("\t") for line in block.splitlines()]
        sentences.append(Sentence([p[0] for p in pairs], [p[1] for p in pairs]))
    return sentences


def sonnet_corpus() -> list[Sentence]:
    """Shakespeare's Sonnet 2 from the tutorial's n-gram section, as a next-word task:
    one sentence per line, each word tagged with the word that follows it in the poem
    (the poem's last word with ``<end>``)."""
    lines = [line.split() for line in _resource("sonnet2.txt").splitlines() if line.strip()]
    words = [w for line in lines for w in line] + [END]
    sentences, i = [], 0
    for line in lines:
        sentences.append(Sentence(line, words[i + 1 : i + 1 + len(line)]))
        i += len(line)
    return sentences


# The tutorial's tagger: embedding 6, hidden 6, one direction, softmax, SGD lr 0.1, 300 epochs, batch 1.
TUTORIAL_MODEL = TaggerConfig(
    embedding_dim=6,
    hidden_dim=6,
    num_layers=1,
    bidirectional=False,
    dropout=0.0,
    crf=False,
    char_filters=0,
    case_embedding_dim=0,
    lowercase=False,
)
TUTORIAL_TRAINING = TrainConfig(
    epochs=300,
    batch_size=1,
    optimizer="sgd",
    lr=0.1,
    clip=0.0,
    patience=0,
    lr_halving=0,
    word_dropout=0.0,
    device="cpu",
)
