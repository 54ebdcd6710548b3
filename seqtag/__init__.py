"""seqtag: neural sequence tagging (POS, NER, chunking) on PyTorch.

A small BiLSTM-CRF with character features, trained in minibatches on the PyTorch LSTM
tutorial's two sentences (the tutorial's own settings are ``seqtag.data.tutorial.TUTORIAL_MODEL``
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

__version__ = "0.2.0"

import importlib

# Names and the module that defines each. They are imported on first use (PEP 562), so that
# ``import seqtag`` and its torch-free modules (``seqtag.serving.onnx_runner``,
# ``seqtag.data.corpus``, ``seqtag.config``) work where ``import torch`` fails.
_EXPORTS = {
    "DataConfig": "config",
    "TaggerConfig": "config",
    "TrainConfig": "config",
    "CorpusError": "data.corpus",
    "Sentence": "data.corpus",
    "read_conll": "data.corpus",
    "read_conllu": "data.corpus",
    "read_corpus": "data.corpus",
    "write_conll": "data.corpus",
    "write_conllu": "data.corpus",
    "resolve_device": "device",
    "SeqtagError": "errors",
    "Tagger": "model.tagger",
    "evaluate": "training.evaluation",
    "train": "training.loop",
    "sonnet_corpus": "data.tutorial",
    "tutorial_corpus": "data.tutorial",
    "Vocab": "data.vocab",
    "Vocabularies": "data.vocab",
}


def __getattr__(name: str):
    if name == "load":  # seqtag.load(directory, device) is Tagger.load
        return __getattr__("Tagger").load
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seqtag' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CorpusError",
    "DataConfig",
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
