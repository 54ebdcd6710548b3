"""Configuration dataclasses: what the model is (:class:`TaggerConfig`), how it is trained
(:class:`TrainConfig`) and where the data comes from (:class:`DataConfig`).

Each field carries its help text in ``metadata``, and its range (``min``, ``max``; ``above``
and ``below`` for open bounds; ``choices``), checked in one place (:func:`check_value`) for
every dataclass; the command line is generated from these fields, so the defaults live here
and nowhere else. All round-trip through JSON.

>>> c = TaggerConfig(hidden_dim=64)
>>> TaggerConfig.from_dict(c.to_dict()) == c
True
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


POOLINGS = ("first", "mean", "last")
"""How a word's subword vectors become its encoder vector (:class:`TaggerConfig` ``encoder_pooling``)."""

PRECISIONS = ("fp32", "bf16", "fp16")
"""The precisions a model computes in: float32, or bf16/fp16 autocast (``seqtag.device.check_precision``
says which a device can run)."""

INFERENCE_PRECISION = (
    "fp32; bf16 or fp16 autocast (bf16: a GPU, or a CPU with AVX-512 or AMX; fp16: CUDA), for a model directory: "
    "exported files run in float32"
)

DEFAULT_BATCH_SIZE = 256
"""Sentences per batch when evaluating or predicting: the one home of this default."""

MAX_PARALLEL = 4 * (os.cpu_count() or 1)
"""The most threads or processes a count option takes (threads, workers, num_proc): four per
CPU core of this machine. More only oversubscribes the cores, and far more (100,000 threads)
crashed torch's thread pool (a segmentation fault)."""


def resumable_fields(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` declared ``resumable=True``: what ``resume`` lets a caller change.
    The others would not fit the saved state (batch positions, optimizer and scaler state,
    vocabularies) or would make it a different run from the start; ``lr`` and ``clip`` are
    resumable to recover from a diverging run (resume an earlier checkpoint lower).

    >>> resumable_fields(TrainConfig)[:3]
    ('epochs', 'lr', 'clip')
    """
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


def command_fields(cls: type, command: str) -> tuple[str, ...]:
    """The fields of ``cls`` that the subcommand ``command`` offers as flags: those whose
    ``commands`` metadata names it (a field without ``commands``: every subcommand that takes
    ``cls``).

    >>> command_fields(DataConfig, "bench")
    ('format', 'token_column', 'tag_column')
    """
    return tuple(f.name for f in dataclasses.fields(cls) if command in f.metadata.get("commands", (command,)))


def required_fields(cls: type) -> tuple[str, ...]:
    """The fields a saved ``cls`` (``config.json``, a checkpoint) must hold: all but those
    declared ``since="X.Y.Z"``, the release that added them. A field added after a release is
    declared so, with a default that behaves as before it existed; files saved by the earlier
    release then load with that default instead of failing. While unreleased, ``since`` is the
    version the next release will carry (after 0.2.0: ``"0.3.0"``); ``tests/test_config.py``
    holds each release's fields and fails for a new field without ``since``.

    >>> "embedding_dim" in required_fields(TaggerConfig)
    True
    """
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("since"))


def check_value(name: str, value: Any, metadata: Mapping[str, Any], kind: type | None = None) -> None:
    """Check ``value`` against a field's ``metadata`` (``choices``, ``min``, ``max``, ``above``,
    ``below``) and its type ``kind`` (int, float, str, bool).

    >>> check_value("batch_size", 0, {"min": 1}, int)
    Traceback (most recent call last):
    ...
    ValueError: expected batch_size >= 1, got 0

    Raises:
        ValueError: ``expected NAME ..., got VALUE``.
    """
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"expected {name} true or false, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"expected {name} an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"expected {name} a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"expected {name} a string, got {value!r}")
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"expected {name} in {tuple(choices)}, got {value!r}")
    if kind in (int, float) and isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected {name} a finite number, got {value}")
    for key, ok, op in (
        ("min", lambda v, b: v >= b, ">="),
        ("max", lambda v, b: v <= b, "<="),
        ("above", lambda v, b: v > b, ">"),
        ("below", lambda v, b: v < b, "<"),
    ):
        bound = metadata.get(key)
        if bound is not None and not ok(value, bound):
            raise ValueError(f"expected {name} {op} {bound}, got {value!r}")


_KINDS = {"int": int, "float": float, "str": str, "bool": bool}


def field_kind(f: dataclasses.Field) -> type:
    """The Python type of a config field (int, float, str or bool)."""
    return f.type if isinstance(f.type, type) else _KINDS[str(f.type)]


def config_argument(value: object, cls: type, name: str):
    """``value`` (a ``cls`` or None) checked as the command line checks its flags: every field
    against its metadata (``JsonConfig.__post_init__``, run again by ``dataclasses.replace``:
    a field may have been set since the object was made, ``tc.batch_size = 2.5``). The Python
    API's functions that take a configuration call this at their boundary.

    Raises:
        TypeError: ``value`` is not a ``cls``.
        ValueError: a field out of its range or of another type.
    """
    if value is None:
        return None
    if not isinstance(value, cls):
        hint = f" (seqtag.{cls.__name__}.from_dict reads a dict)" if isinstance(value, dict) else ""
        raise TypeError(f"expected {name} a seqtag.{cls.__name__} or None, got a {type(value).__name__}{hint}")
    return dataclasses.replace(value)


class JsonConfig:
    def __post_init__(self) -> None:
        """Every field is checked against its metadata (:func:`check_value`)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if field_kind(f) is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # JSON writes 1.0 as 1 in some tools
                object.__setattr__(self, f.name, value)
            check_value(f.name, value, f.metadata, field_kind(f))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of JSON values (what ``config.json`` holds)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], complete: bool = False):
        """Rebuild from :meth:`to_dict`'s output; missing keys take their defaults unless
        ``complete`` (then a missing key is an error, as for a saved file, except for the
        fields added after a release: :func:`required_fields`).

        Raises:
            ValueError: for something other than a dict, a key that is not a field, a missing
                key (``complete``), a value of the wrong type or out of range.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"expected {cls.__name__} fields as a JSON object, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"expected {cls.__name__} fields, got unknown keys {unknown}")
        missing = [n for n in required_fields(cls) if n not in d]
        if complete and missing:
            raise ValueError(f"{cls.__name__} lacks {', '.join(missing)} (no defaults are assumed for a saved file)")
        return cls(**d)

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied, checked like a new instance (``ValueError``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass
class TaggerConfig(JsonConfig):
    """The architecture. Defaults are the recipe that reaches 95%+ UPOS on UD English-EWT."""

    embedding_dim: int = _f(100, "word embedding size (0 = no word embedding: only with an encoder)", min=0)
    hidden_dim: int = _f(256, "LSTM hidden size per direction", min=1)
    num_layers: int = _f(1, "stacked LSTM layers (0 = none, the features straight to the head: only with an encoder)", min=0)
    bidirectional: bool = _f(True, "run a backward LSTM too and concatenate")
    dropout: float = _f(0.33, "dropout on the LSTM's input and output (and between layers)", min=0.0, below=1.0)
    crf: bool = _f(True, "a linear-chain CRF head (its loss and Viterbi decoding) instead of per-token softmax")
    tag_scheme: str = _f(
        "auto",
        "span scheme of the tags, for CRF constraints and span F1 (auto = detect from the tag set)",
        choices=("auto", "bio", "iob1", "bioes", "none"),
    )
    constrain: bool = _f(True, "forbid the CRF transitions that the tag scheme rules out (e.g. O -> I-PER)")
    char_embedding_dim: int = _f(30, "character embedding size for the character CNN", min=1)
    char_filters: int = _f(100, "character CNN filters (0 = no character features)", min=0)
    char_kernel_size: int = _f(3, "character CNN window width (odd)", min=1)
    max_word_length: int = _f(30, "characters per word seen by the CNN; longer words are cut", min=1)
    lowercase: bool = _f(True, "look words up lowercased (the case goes to the case feature)")
    case_embedding_dim: int = _f(4, "size of the case feature (lower/Title/OTHER); 0 = none", min=0)
    rnn_mode: str = _f(
        "auto",
        "how the LSTM skips padding: packed (pack_padded_sequence), padded (per-length reversal), "
        "auto (packed on CUDA, padded elsewhere); all give the same scores",
        choices=("auto", "packed", "padded"),
    )
    encoder: str = _f(
        "", "a pretrained transformer encoder under the tagger: a local directory or a name in the local "
        "Hugging Face cache, never downloaded (\"\" = none)", metavar="NAME_OR_DIR", since="0.3.0",
    )
    encoder_pooling: str = _f("first", "which subwords of a word make its encoder vector", choices=POOLINGS,
                              since="0.3.0")  # fmt: skip
    encoder_layers: int = _f(1, "encoder layers read: 1 = the last, N = a learned scalar mix of the last N", min=1,
                             since="0.3.0")  # fmt: skip
    encoder_frozen: bool = _f(False, "keep the encoder's weights fixed (it runs in eval mode; a scalar mix still "
                              "learns)", since="0.3.0")  # fmt: skip
    encoder_window: int = _f(
        0, "encoder tokens per window, special tokens included; longer sentences are read in overlapping "
        "windows (0 = the encoder's limit, at most 512)", min=0, since="0.3.0",
    )
    encoder_stride: int = _f(0, "subwords between the starts of overlapping windows (0 = half a window)", min=0,
                             since="0.3.0")  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.char_kernel_size % 2 == 0:
            raise ValueError(f"expected an odd char_kernel_size, got {self.char_kernel_size}")
        if not self.encoder:
            for name in ("num_layers", "embedding_dim"):
                if getattr(self, name) == 0:
                    raise ValueError(f"expected {name} >= 1 without an encoder, got 0")
            for f in dataclasses.fields(self):  # an encoder's setting without one would be ignored
                if f.name.startswith("encoder_") and getattr(self, f.name) != f.default:
                    raise ValueError(f"expected {f.name} only with an encoder, got {getattr(self, f.name)!r} without one")
        if self.encoder_window and self.encoder_stride > self.encoder_window:
            raise ValueError(
                f"expected encoder_stride <= encoder_window = {self.encoder_window}, got {self.encoder_stride}"
            )


@dataclass
class TrainConfig(JsonConfig):
    """How to train. Defaults: Adam 2e-3, batch 32, early stopping on dev accuracy."""

    epochs: int = _f(30, "maximum number of passes over the training data", resumable=True, min=1)
    batch_size: int = _f(32, "sentences per batch", min=1)
    optimizer: str = _f("adam", "optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = _f(2e-3, "learning rate", resumable=True, above=0.0)
    momentum: float = _f(0.0, "SGD momentum", min=0.0)
    weight_decay: float = _f(0.0, "weight decay", min=0.0)
    clip: float = _f(5.0, "clip the gradient norm to this (0 = no clipping)", resumable=True, min=0.0)
    patience: int = _f(5, "stop after this many epochs without a better dev score (0 = never)", resumable=True, min=0)
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
        0, "raise the learning rate linearly from lr/N to lr over the first N steps", metavar="N", min=0,
    )
    warmup: float = _f(
        0.0, "warm-up over this fraction of all steps (as --warmup-steps; give one of the two)", min=0.0, below=1.0,
        since="0.3.0",
    )
    encoder_lr: float = _f(
        1e-4, "learning rate of a pretrained encoder's weights (after warm-up it decays linearly to 0, whatever "
        "--schedule says; lr is the rest's)", resumable=True, above=0.0, since="0.3.0",
    )
    lr_halving: int = _f(2, "plateau schedule: halve the learning rate after this many epochs without dev gain (0 = never)", min=0)
    precision: str = _f(
        "fp32", "fp32; bf16 (autocast, CPU or GPU); fp16 (autocast with gradient scaling, CUDA only)",
        choices=PRECISIONS,
    )
    checkpoint_every: int = _f(
        0, "also write a resumable checkpoint every N steps (0 = only after each epoch)", metavar="N",
        resumable=True, min=0,
    )
    keep: int = _f(
        0, "also keep the N newest checkpoints as numbered files beside checkpoints/last.pt and best.pt",
        metavar="N", resumable=True, min=0,
    )
    word_dropout: float = _f(
        0.25, "replace training word w by <unk> with probability a/(a+count(w)) for this a (0 = off)", min=0.0,
    )
    min_freq: int = _f(1, "keep training words seen at least this often", min=1)
    vectors: str = _f("", "pretrained word vectors (word2vec/GloVe text, optionally .gz) to start the word embedding from", metavar="FILE")
    vectors_max_words: int = _f(200_000, "read at most this many vectors (file order); their words join the vocabulary", min=1)
    freeze_vectors: bool = _f(False, "keep the word embedding fixed during training")
    seed: int = _f(1, "seed for Python, NumPy and torch", min=0, max=2**32 - 1)  # NumPy takes no other
    device: str = _f("auto", "auto, cpu, cuda, cuda:N or mps", resumable=True)
    num_workers: int = _f(0, "DataLoader worker processes", resumable=True, min=0, max=MAX_PARALLEL)
    eval_batch_size: int = _f(
        DEFAULT_BATCH_SIZE, "sentences per batch when evaluating or predicting", resumable=True, min=1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup and self.warmup_steps:
            raise ValueError(f"expected warmup or warmup_steps, not both; got {self.warmup} and {self.warmup_steps}")

    def warmup_for(self, total_steps: int) -> int:
        """The warm-up steps of a run of ``total_steps`` steps: ``warmup_steps``, or ``warmup``
        of ``total_steps`` (rounded).

        >>> TrainConfig(warmup=0.1).warmup_for(95), TrainConfig(warmup_steps=3).warmup_for(95)
        (10, 3)
        """
        return self.warmup_steps or round(self.warmup * total_steps)


ENCODER_RECIPE: dict[str, dict[str, Any]] = {
    "TaggerConfig": {
        "embedding_dim": 0,  # the encoder's vector replaces the word embedding
        "char_filters": 0,
        "case_embedding_dim": 16,  # an uncased encoder: +0.3 test UPOS on EWT with MiniLM (docs/design.md)
        "num_layers": 0,  # the encoder's vectors straight to the head, as measured
        "dropout": 0.1,  # as the Hugging Face reference's classifier dropout
    },
    "TrainConfig": {
        "optimizer": "adamw",
        "lr": 1e-3,  # the rest; the encoder's is encoder_lr
        "schedule": "linear",
        "warmup": 0.1,
        "clip": 1.0,
        "epochs": 5,
        "word_dropout": 0.0,
    },
}
"""The settings an encoder model starts from, where :func:`for_encoder` applies them (``seqtag
train --encoder``; ``train()`` without a ``train_config``): the recipe measured on UD
English-EWT with all-MiniLM-L6-v2 (docs/design.md, "Encoders"). Every other field keeps its
default."""


def for_encoder(config: JsonConfig) -> JsonConfig:
    """``config`` with :data:`ENCODER_RECIPE`'s settings for its class.

    >>> for_encoder(TrainConfig()).lr, for_encoder(TaggerConfig(encoder="m")).num_layers
    (0.001, 0)
    """
    return config.replace(**ENCODER_RECIPE[type(config).__name__])


# The subcommands that read data: training data, files, datasets.
_TRAIN = ("train",)
_READ_FILES = ("train", "evaluate", "bench")
_READ_DATASETS = ("train", "evaluate", "predict")


@dataclass
class DataConfig(JsonConfig):
    """Where the training data comes from and how it is read: CoNLL or CoNLL-U files, or a
    Hugging Face dataset. Saved in every checkpoint and in ``config.json`` (``"data"``), so that
    ``--resume`` reads the same data and ``seqtag evaluate`` the same tag column. Empty strings
    take the defaults named in the help. The fingerprint of the data itself is checked on resume,
    so the paths may change (files that moved); the columns may not."""

    # ``commands``: the subcommands that offer the field as a flag; ``from_model``: how the data
    # is read, which ``seqtag evaluate`` takes from the model's run unless given.
    train_file: str = _f("", "training data: a CoNLL or CoNLL-U file", flag="--train", metavar="FILE", resumable=True,
                         commands=_TRAIN)  # fmt: skip
    validation_file: str = _f("", "dev data, evaluated after each epoch to pick the best model", flag="--dev",
                              metavar="FILE", resumable=True, commands=_TRAIN)  # fmt: skip
    format: str = _f("auto", "file format (auto: CoNLL-U for a .conllu file, else CoNLL)",
                     choices=("auto", "conll", "conllu"), commands=_READ_FILES, from_model=True)  # fmt: skip
    token_column: str = _f(
        "", "token column: an index of a CoNLL file (default: 0), or a dataset column (default: tokens)",
        metavar="COLUMN", aliases=("--tokens-column",), commands=_READ_FILES + ("predict",), from_model=True,
    )
    tag_column: str = _f(
        "", "tag column: a CoNLL-U column name or index (default: upos), an index of a CoNLL file (default: "
        "the last), or a dataset column (default: the first of ner_tags, pos_tags, upos, tags, labels, xpos)",
        metavar="COLUMN", aliases=("--tags-column",), commands=_READ_FILES + ("predict",), from_model=True,
    )
    hf_dataset: str = _f(
        "", "a Hugging Face dataset instead of files: a Hub name, a save_to_disk folder, a .json/.jsonl/"
        ".parquet/.csv file or a folder of them", metavar="NAME_OR_PATH", resumable=True, commands=_READ_DATASETS,
    )
    hf_config: str = _f("", "the Hub dataset's configuration", metavar="NAME", commands=_READ_DATASETS)
    train_split: str = _f("train", "training split of the dataset", metavar="SPLIT", commands=_TRAIN)
    dev_split: str = _f("", "dev split of the dataset (default: validation, when there is one)", metavar="SPLIT",
                        commands=_TRAIN)  # fmt: skip
    label_names: str = _f(
        "", "tag names by id, comma-separated, for integer tags without ClassLabel names", metavar="A,B,...",
        commands=("train", "evaluate"), from_model=True,
    )
    cache_dir: str = _f("", "where converted and encoded Arrow files go (default: HF_DATASETS_CACHE)",
                        flag="--hf-cache-dir", metavar="DIR", resumable=True, commands=_READ_DATASETS)  # fmt: skip
    num_proc: int = _f(1, "processes that encode the dataset", metavar="N", min=1, max=MAX_PARALLEL, resumable=True, commands=_TRAIN)
    repair_tags: bool = _f(
        False, "gold tags that break their span scheme (an I-X after O under BIO, ...) are repaired as conlleval "
        "reads them (I-X after O as B-X; docs/training.md, Tag schemes) instead of refused: in training, dev and evaluation data "
        "alike", commands=("train", "evaluate"), from_model=True, since="0.3.0",
    )

    @property
    def labels(self) -> list[str] | None:
        """``label_names`` as a list (None when empty)."""
        return self.label_names.split(",") if self.label_names else None

    def file_reader_options(self) -> dict[str, Any]:
        """``format``, ``tag_column`` and ``token_column`` as :func:`seqtag.data.corpus.read_corpus`
        takes them."""
        if self.token_column and not self.token_column.lstrip("-").isdigit():
            raise ValueError(f"expected an integer token column for a CoNLL file, got {self.token_column!r}")
        return {
            "format": None if self.format == "auto" else self.format,
            "tag_column": self.tag_column or None,
            "token_column": int(self.token_column or 0),
        }


DEFAULT_WORKERS = 1  # on 2 cores, 1 process x 2 threads tagged 60k EWT sentences as fast as 2 x 1 in 45% of the memory (docs/tagging.md)


def _ranged(default: Any, help: str, **limits: Any) -> Any:
    return _f(default, help, metavar="N", **limits)


@dataclass
class PredictConfig(JsonConfig):
    """How ``seqtag predict`` runs; the same checks for every model format.

    Ranges live in the field metadata (``min``/``max``) and are checked on construction.

    >>> PredictConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: expected batch_size >= 1, got 0
    """

    batch_size: int = _ranged(DEFAULT_BATCH_SIZE, "sentences per forward pass", min=1)
    device: str = _f("cpu", "auto, cpu, cuda, cuda:N or mps (exported torch.export and ONNX models: cpu)")
    threads: int = _ranged(
        0, "intra-op CPU threads per process (0 = torch's choice with one worker, else cores // workers)", min=0,
        max=MAX_PARALLEL,
    )
    workers: int = _ranged(
        DEFAULT_WORKERS, "processes that tag chunks side by side, each with its own model", min=1, max=MAX_PARALLEL
    )
    chunk_size: int = _ranged(10_000, "sentences read, tagged and written at a time (bounds memory)", min=1)
    precision: str = _f("fp32", INFERENCE_PRECISION, choices=PRECISIONS, since="0.3.0")

    def threads_per_worker(self) -> int:
        """The torch threads each process uses: ``threads``, else cores // workers (0: torch's choice)."""
        if self.threads:
            return self.threads
        if self.workers == 1:
            return 0
        return max(1, _cores() // self.workers)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass
class ServeConfig(JsonConfig):
    """How ``seqtag serve`` runs: the address, the batcher and the limits of a request.

    >>> ServeConfig(max_batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: expected max_batch_size >= 1, got 0
    """

    host: str = _f("127.0.0.1", "address to listen on (0.0.0.0: every interface)", metavar="ADDRESS")
    port: int = _f(8000, "TCP port to listen on", metavar="PORT", min=1, max=65535)
    workers: int = _ranged(1, "server processes, each with its own model, sharing the port", min=1, max=MAX_PARALLEL)
    threads: int = _ranged(0, "inference threads per process (0 = the runtime's choice with one process, else cores // workers)", min=0, max=MAX_PARALLEL)
    device: str = _f("cpu", "auto, cpu, cuda, cuda:N or mps (ONNX and torch.export models: cpu)")
    precision: str = _f("fp32", INFERENCE_PRECISION, choices=PRECISIONS, since="0.3.0")
    max_batch_size: int = _ranged(64, "sentences per batch: the batcher runs a batch as soon as it is this full", min=1)
    max_batch_tokens: int = _ranged(0, "padded tokens per batch (0 = max_batch_size * 128, as in prediction)", min=0)
    inference_batch_size: int = _ranged(
        16, "sentences per model call: a batch is sorted by length and cut by the planner, so that short "
        "sentences are not padded to long ones (on 2 cores, EWT batches of 64 ran 1.7x faster cut into 16s)", min=1,
    )
    max_wait_ms: float = _f(
        0.0, "longest wait of the oldest queued request for a batch to fill (0 = run what is queued as soon "
        "as the inference thread is free)", metavar="MS", min=0.0,
    )
    max_queue: int = _ranged(2048, "sentences waiting for inference; beyond, requests get 503 with Retry-After", min=1)
    max_body_bytes: int = _ranged(1 << 20, "largest request body (413 beyond)", min=1)
    max_sentences: int = _ranged(256, "sentences per request (413 beyond)", min=1)
    max_tokens: int = _ranged(512, "tokens per sentence (422 beyond)", min=1)
    max_nbest: int = _ranged(16, "largest n-best K a request may ask for", min=1)
    timeout_s: float = _f(30.0, "seconds a request may take before it gets 504", metavar="SECONDS", above=0.0)
    shutdown_timeout_s: float = _f(
        20.0, "on SIGTERM: seconds to answer the requests in flight before closing", metavar="SECONDS", min=0.0,
    )
    log_requests: bool = _f(False, "log one line per request (errors are always logged)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_sentences > self.max_queue:
            raise ValueError(f"expected max_sentences <= max_queue ({self.max_queue}), got {self.max_sentences}")

    def batch_tokens(self) -> int:
        """The padded-token cap of a batch: ``max_batch_tokens``, else ``max_batch_size * 128``."""
        return self.max_batch_tokens or self.max_batch_size * 128
