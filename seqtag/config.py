"""Configuration dataclasses: what the model is (:class:`TaggerConfig`) and how it is trained
(:class:`TrainConfig`).

Each field carries its help text in ``metadata``; the command line is generated from these
fields, so the defaults live here and nowhere else. Both round-trip through JSON.

>>> c = TaggerConfig(hidden_dim=64)
>>> TaggerConfig.from_dict(c.to_dict()) == c
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


def resumable_fields(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` declared ``resumable=True``: what ``resume`` lets a caller change.
    The others would not fit the saved state (batch positions, optimizer and scaler state,
    vocabularies) or would make it a different run from the start; ``lr`` and ``clip`` are
    resumable to recover from a diverging run (resume an earlier checkpoint lower).

    >>> resumable_fields(TrainConfig)[:3]
    ('epochs', 'lr', 'clip')
    """
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


class _JsonConfig:
    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of JSON values (what ``config.json`` holds)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Rebuild from :meth:`to_dict`'s output; missing keys take their defaults.

        Raises:
            ValueError: for a key that is not a field, or a value out of range.
        """
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"expected {cls.__name__} fields, got unknown keys {unknown}")
        return cls(**d)

    def _check_choices(self) -> None:
        """Every field declared with ``choices`` holds one of them (the CLI offers the same list)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(f"expected {f.name} in {choices}, got {getattr(self, f.name)!r}")

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied, checked like a new instance (``ValueError``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass
class TaggerConfig(_JsonConfig):
    """The architecture. Defaults are the recipe that reaches 95%+ UPOS on UD English-EWT."""

    embedding_dim: int = _f(100, "word embedding size")
    hidden_dim: int = _f(256, "LSTM hidden size per direction")
    num_layers: int = _f(1, "stacked LSTM layers")
    bidirectional: bool = _f(True, "run a backward LSTM too and concatenate")
    dropout: float = _f(0.33, "dropout on the LSTM's input and output (and between layers)")
    crf: bool = _f(True, "decode with a linear-chain CRF instead of per-token softmax")
    tag_scheme: str = _f(
        "auto",
        "span scheme of the tags, for CRF constraints and span F1 (auto = detect from the tag set)",
        choices=("auto", "bio", "iob1", "bioes", "none"),
    )
    constrain: bool = _f(True, "forbid the CRF transitions that the tag scheme rules out (e.g. O -> I-PER)")
    char_embedding_dim: int = _f(30, "character embedding size for the character CNN")
    char_filters: int = _f(100, "character CNN filters (0 = no character features)")
    char_kernel_size: int = _f(3, "character CNN window width (odd)")
    max_word_length: int = _f(30, "characters per word seen by the CNN; longer words are cut")
    lowercase: bool = _f(True, "look words up lowercased (the case goes to the case feature)")
    case_embedding_dim: int = _f(4, "size of the case feature (lower/Title/OTHER); 0 = none")
    rnn_mode: str = _f(
        "auto",
        "how the LSTM skips padding: packed (pack_padded_sequence), padded (per-length reversal), "
        "auto (packed on CUDA, padded elsewhere); all give the same scores",
        choices=("auto", "packed", "padded"),
    )

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "hidden_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"expected {name} >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"expected 0 <= dropout < 1, got {self.dropout}")
        if self.char_filters < 0 or self.char_embedding_dim < 1 or self.max_word_length < 1:
            raise ValueError("expected char_filters >= 0, char_embedding_dim >= 1, max_word_length >= 1")
        if self.char_kernel_size < 1 or self.char_kernel_size % 2 == 0:
            raise ValueError(f"expected an odd char_kernel_size >= 1, got {self.char_kernel_size}")
        if self.case_embedding_dim < 0:
            raise ValueError(f"expected case_embedding_dim >= 0, got {self.case_embedding_dim}")
        self._check_choices()


@dataclass
class TrainConfig(_JsonConfig):
    """How to train. Defaults: Adam 2e-3, batch 32, early stopping on dev accuracy."""

    epochs: int = _f(30, "maximum number of passes over the training data", resumable=True)
    batch_size: int = _f(32, "sentences per batch")
    optimizer: str = _f("adam", "optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = _f(2e-3, "learning rate", resumable=True)
    momentum: float = _f(0.0, "SGD momentum")
    weight_decay: float = _f(0.0, "weight decay")
    clip: float = _f(5.0, "clip the gradient norm to this (0 = no clipping)", resumable=True)
    patience: int = _f(5, "stop after this many epochs without a better dev score (0 = never)", resumable=True)
    select: str = _f(
        "auto",
        "dev metric that picks the best epoch (auto = f1 for span tag sets such as BIO, else accuracy)",
        choices=("auto", "accuracy", "f1"),
    )
    schedule: str = _f(
        "plateau",
        "learning-rate schedule: constant; linear (decay to 0 over all steps); "
        "plateau (halve after --lr-halving epochs without dev gain)",
        choices=("constant", "linear", "plateau"),
    )
    warmup_steps: int = _f(
        0, "raise the learning rate linearly from lr/N to lr over the first N steps", metavar="N"
    )
    lr_halving: int = _f(2, "plateau schedule: halve the learning rate after this many epochs without dev gain (0 = never)")
    precision: str = _f(
        "fp32",
        "fp32; bf16 (autocast, CPU or GPU); fp16 (autocast with gradient scaling, CUDA only)",
        choices=("fp32", "bf16", "fp16"),
    )
    checkpoint_every: int = _f(
        0, "also write a resumable checkpoint every N steps (0 = only after each epoch)", metavar="N",
        resumable=True,
    )
    keep: int = _f(
        0, "also keep the N newest checkpoints as numbered files beside checkpoints/last.pt and best.pt",
        metavar="N", resumable=True,
    )
    word_dropout: float = _f(
        0.25, "replace training word w by <unk> with probability a/(a+count(w)) for this a (0 = off)"
    )
    min_freq: int = _f(1, "keep training words seen at least this often")
    vectors: str = _f("", "pretrained word vectors (word2vec/GloVe text, optionally .gz) to start the word embedding from")
    vectors_max_words: int = _f(200_000, "read at most this many vectors (file order); their words join the vocabulary")
    freeze_vectors: bool = _f(False, "keep the word embedding fixed during training")
    seed: int = _f(1, "seed for Python, NumPy and torch")
    device: str = _f("auto", "auto, cpu, cuda, cuda:N or mps", resumable=True)
    num_workers: int = _f(0, "DataLoader worker processes", resumable=True)
    eval_batch_size: int = _f(256, "sentences per batch when evaluating or predicting", resumable=True)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("expected epochs, batch_size and eval_batch_size >= 1")
        if self.lr <= 0:
            raise ValueError(f"expected lr > 0, got {self.lr}")
        if self.word_dropout < 0 or self.clip < 0 or self.patience < 0 or self.lr_halving < 0:
            raise ValueError("expected word_dropout, clip, patience and lr_halving >= 0")
        if self.min_freq < 1 or self.num_workers < 0:
            raise ValueError("expected min_freq >= 1 and num_workers >= 0")
        self._check_choices()
        if self.warmup_steps < 0 or self.checkpoint_every < 0 or self.keep < 0:
            raise ValueError("expected warmup_steps, checkpoint_every and keep >= 0")
