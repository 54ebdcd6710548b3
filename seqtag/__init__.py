"""seqtag: neural sequence tagging (POS, NER, chunking) on PyTorch.

A small BiLSTM-CRF with character features, trained in minibatches on the PyTorch LSTM
tutorial's two sentences (the tutorial's own settings are ``seqtag.tutorial.TUTORIAL_MODEL``
and ``TUTORIAL_TRAINING``):

>>> import seqtag
>>> corpus = seqtag.tutorial_corpus()
>>> config = seqtag.TaggerConfig(embedding_dim=16, hidden_dim=16, dropout=0.0)
>>> train_config = seqtag.TrainConfig(epochs=60, batch_size=2, lr=0.05, patience=0, lr_halving=0,
...                                   word_dropout=0.0, device="cpu")
>>> tagger = seqtag.train(corpus, config=config, train_config=train_config, quiet=True)
>>> tagger.predict([["The", "dog", "ate", "the", "apple"]])
[['DET', 'NN', 'V', 'DET', 'NN']]
"""

__version__ = "0.1.0"

from .config import TaggerConfig, TrainConfig
from .corpus import (
    CorpusError,
    Sentence,
    read_conll,
    read_conllu,
    read_corpus,
    write_conll,
    write_conllu,
)
from .device import resolve_device
from .errors import SeqtagError
from .model import Tagger
from .train import evaluate, train
from .tutorial import sonnet_corpus, tutorial_corpus
from .vocab import Vocab, Vocabularies

load = Tagger.load

__all__ = [
    "CorpusError",
    "SeqtagError",
    "Sentence",
    "Tagger",
    "TaggerConfig",
    "TrainConfig",
    "Vocab",
    "Vocabularies",
    "evaluate",
    "load",
    "read_conll",
    "read_conllu",
    "read_corpus",
    "resolve_device",
    "sonnet_corpus",
    "train",
    "tutorial_corpus",
    "write_conll",
    "write_conllu",
]
