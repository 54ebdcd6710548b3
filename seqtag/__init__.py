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

import sys

from seqtag.lazy import MovedModules, attach

# Names and the module that defines each, imported on first use (PEP 562), so that
# ``import seqtag`` and its torch-free modules (``seqtag.serving.onnx_runner``,
# ``seqtag.data.corpus``, ``seqtag.config``) work where ``import torch`` fails.
_name, _dir, __all__ = attach(__name__, {
    "config": ["DataConfig", "TaggerConfig", "TrainConfig"],
    "data.corpus": ["CorpusError", "Sentence", "read_conll", "read_conllu", "read_corpus", "write_conll", "write_conllu"],
    "data.tutorial": ["sonnet_corpus", "tutorial_corpus"],
    "data.vocab": ["Vocab", "Vocabularies"],
    "device": ["resolve_device"],
    "errors": ["SeqtagError"],
    "model.tagger": ["Tagger"],
    "training.evaluation": ["evaluate"],
    "training.loop": ["train"],
})  # fmt: skip
__all__ = sorted([*__all__, "load"])


def __getattr__(name: str):
    if name == "load":  # seqtag.load(directory, device) is Tagger.load
        return _name("Tagger").load
    return _name(name)


def __dir__() -> list[str]:
    return sorted({*_dir(), "load"})


# The module paths of 0.2.0, importable until 0.4.0 with a FutureWarning naming the new one
# (seqtag.data, .model, .training and .cli are packages now, which hand on the old modules' names).
sys.meta_path.append(MovedModules({
    "seqtag.arrow_data": "seqtag.data.arrow",
    "seqtag.bench": "seqtag.training.bench",
    "seqtag.calibration": "seqtag.serving.calibration",
    "seqtag.checkpoint": "seqtag.training.checkpoint",
    "seqtag.corpus": "seqtag.data.corpus",
    "seqtag.corpus_formats": "seqtag.data.formats",
    "seqtag.crf": "seqtag.model.crf",
    "seqtag.distributed": "seqtag.training.distributed",
    "seqtag.encoding": "seqtag.data.encoding",
    "seqtag.evaluation": "seqtag.training.evaluation",
    "seqtag.export": ("seqtag.serving.torchscript", "seqtag.serving.torch_export"),
    "seqtag.heads": "seqtag.model.heads",
    "seqtag.hf": ("seqtag.data.hf", "seqtag.data.arrow"),
    "seqtag.hf_tagging": "seqtag.serving.hf_tagging",
    "seqtag.interrupts": "seqtag.training.interrupts",
    "seqtag.layers": "seqtag.model.layers",
    "seqtag.model_dir": "seqtag.model.directory",
    "seqtag.onnx_export": "seqtag.serving.onnx_export",
    "seqtag.onnx_tagger": "seqtag.serving.onnx_runner",
    "seqtag.plot": "seqtag.training.plot",
    "seqtag.predict": (
        "seqtag.cli.predict", "seqtag.serving.predictor", "seqtag.serving.hf_tagging", "seqtag.config",
    ),
    "seqtag.predictors": ("seqtag.serving.predictor", "seqtag.config"),
    "seqtag.runs": "seqtag.training.runs",
    "seqtag.sources": "seqtag.data.sources",
    "seqtag.step": "seqtag.training.step",
    "seqtag.torch_export": "seqtag.serving.torch_export",
    "seqtag.tutorial": ("seqtag.data.tutorial", "seqtag.cli.demo"),
    "seqtag.vectors": "seqtag.data.vectors",
    "seqtag.vocab": "seqtag.data.vocab",
}, until="0.4.0"))  # fmt: skip
