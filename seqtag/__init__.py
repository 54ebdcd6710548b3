"""seqtag: neural sequence tagging (POS, NER, chunking) on PyTorch.

>>> import seqtag
>>> corpus = seqtag.tutorial_corpus()
>>> config = seqtag.TaggerConfig(embedding_dim=6, hidden_dim=6, bidirectional=False, crf=False,
...                              char_filters=0, case_embedding_dim=0, lowercase=False, dropout=0.0)
>>> tagger = seqtag.train(corpus, config=config, quiet=True,
...                       train_config=seqtag.TrainConfig(epochs=300, batch_size=1, optimizer="sgd", lr=0.1,
...                                                       word_dropout=0.0, clip=0.0, lr_halving=0, patience=0))
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
