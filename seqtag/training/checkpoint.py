"""Resumable training checkpoints: what they hold, how they are written and read.

A run's output directory looks like this::

    OUTPUT_DIR/
        config.json vocab.json weights.pt    the best model so far (Tagger.save / Tagger.load)
        metrics.jsonl                        one JSON row per finished epoch
        run.json                             the run's id, which every checkpoint of the run carries
        learning_curve.png                   written at the end (seqtag.training.plot)
        checkpoints/
            last.pt                          the newest checkpoint: resume from here
            best.pt                          the checkpoint of the best epoch
            epoch-0003.pt                    older ones, when keep > 0: after epoch 3
            epoch-0004-step-000000150.pt     ... and inside epoch 4, at step 150

A checkpoint is one ``torch.save`` file of tensors and plain containers (dict, list, str, int,
float, bool, None) only, so that it loads with ``torch.load(..., weights_only=True)``: a crafted
file cannot run code. It holds the model and optimizer states, the gradient scaler (fp16), the
state of every random number generator, the configurations and vocabularies, a fingerprint of
the training data, and :class:`Progress` (epoch, position within the epoch, best score,
early-stopping counters, metrics history) and the id of its run (``run_id``, since 0.3.0:
``--resume`` refuses a checkpoint of another run, :func:`seqtag.training.runs.check_run`). A run under ``torchrun`` adds ``distributed``: its
``world_size`` and the generator states of ranks 1 and up (``rng`` is rank 0's); rank 0 writes.

Files are written atomically (temporary file in the same directory, fsync, rename): a crash or a
full disk leaves the previous checkpoint as it was.

>>> p = Progress(epoch=2, step=40)
>>> Progress.from_dict(p.to_dict()) == p
True
>>> checkpoint_name(Progress(epoch=2, batch=5, step=45))
'epoch-0003-step-000000045.pt'
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import pickle
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtag import __version__
from seqtag.config import DataConfig, TaggerConfig, TrainConfig
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.fileio import WriteError, atomic_write_bytes, make_dir
from seqtag.model.directory import load_tensors

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "learning_curve.png"
CHECKPOINT_DIR = "checkpoints"
LAST, BEST = "last.pt", "best.pt"
FORMAT = "seqtag-checkpoint"
VERSION = 2  # 2: with data_config (seqtag 0.2.0)
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_NUMBERED = re.compile(r"^epoch-\d{4,}(-step-\d{9,})?\.pt$")
_REQUIRED = (
    "format", "version", "model_config", "train_config", "data_config", "vocab", "data", "progress",
    "model", "best_model", "optimizer", "scaler", "rng",
)  # fmt: skip


@dataclass
class Progress:
    """Where a training run stands: everything a resumed run needs besides tensors.

    The epoch in progress is ``epoch + 1``; ``batch`` of its batches are done (0 at an epoch
    boundary). ``epoch_*`` sum over those batches, so that a resumed epoch reports the same
    training loss as an uninterrupted one.
    """

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of epoch ``epoch + 1`` already trained
    step: int = 0  # optimizer steps taken in all
    best_score: float = -math.inf  # best dev score so far (-inf without dev data)
    best_epoch: int = 0  # the epoch whose model is kept (0 = none yet)
    stale: int = 0  # finished epochs since the best one (early stopping, plateau schedule)
    halvings: int = 0  # times the plateau schedule has halved the learning rate
    epoch_loss: float = 0.0  # token-weighted training loss summed over the epoch's done batches
    epoch_tokens: int = 0  # tokens in those batches
    epoch_seconds: float = 0.0  # seconds spent on the epoch so far
    seconds: float = 0.0  # training wall time of the run so far, summed over sessions
    history: list[dict] = field(default_factory=list)  # the metrics.jsonl rows

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**d)


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a run id: 32 lowercase hex digits (``uuid.uuid4().hex``)."""
    return isinstance(value, str) and _RUN_ID.match(value) is not None


def checkpoint_name(progress: Progress) -> str:
    """The file name of a numbered checkpoint; names sort in the order they were written."""
    if progress.batch == 0:
        return f"epoch-{progress.epoch:04d}.pt"
    return f"epoch-{progress.epoch + 1:04d}-step-{progress.step:09d}.pt"


def data_fingerprint(sentences: Sequence | None) -> dict[str, Any] | None:
    """Sentence and token counts and a SHA-256 of the tokens and tags, to tell whether a resumed
    run is given the data it started with.

    For an encoded dataset (one with ``lengths``), the hash is its ``fingerprint`` attribute when
    it has one (``arrow.ArrowTaggingDataset``: data, vocabularies and encoding options, so a large
    corpus is not read again at every checkpoint), else a hash of the word and tag ids.
    """
    if sentences is None:
        return None
    lengths = getattr(sentences, "lengths", None)
    if lengths is not None:
        key = getattr(sentences, "fingerprint", None)
        if key is None:
            ids = hashlib.sha256()
            for e in sentences:
                ids.update(e.words.tobytes() + e.tags.tobytes() + b"\x1e")
            key = ids.hexdigest()
        return {"sentences": len(sentences), "tokens": int(np.sum(lengths)), "sha256": key}
    digest = hashlib.sha256()
    tokens = 0
    for s in sentences:
        digest.update("\x1f".join(s.tokens).encode("utf-8", "surrogatepass") + b"\x1e")
        digest.update("\x1f".join(s.tags).encode("utf-8", "surrogatepass") + b"\x1d")
        tokens += len(s.tokens)
    return {"sentences": len(sentences), "tokens": tokens, "sha256": digest.hexdigest()}


# -- random number generators ----------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's (CPU and CUDA) global generators, as tensors
    and plain containers."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> str | None:
    """Restore what :func:`rng_state` captured. Returns a note when the CUDA states could not be
    restored (a different number of GPUs, or none), else None."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if not cuda:
        return None
    if not torch.cuda.is_available() or torch.cuda.device_count() != len(cuda):
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"the checkpoint has CUDA generator states for {len(cuda)} GPU(s), this machine {found}: not restored"
    torch.cuda.set_rng_state_all(cuda)
    return None


# -- files -----------------------------------------------------------------------------------


def checkpoint_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR


def find_checkpoint(output_dir: str | os.PathLike, resume: bool | str | os.PathLike = True) -> Path:
    """The checkpoint file to resume from: ``output_dir/checkpoints/last.pt`` for ``resume=True``,
    else ``resume`` itself (a checkpoint file, or a run directory whose ``last.pt`` to take)."""
    path = checkpoint_dir(output_dir) / LAST if resume is True else Path(resume)
    if path.is_dir():
        path = checkpoint_dir(path) / LAST
    if not path.is_file():
        raise SeqtagError(f"{path}: no checkpoint to resume from")
    return path


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """Serialize a checkpoint dictionary (see :func:`read_checkpoint` for the keys)."""
    missing = [k for k in _REQUIRED if k not in state and k not in ("format", "version")]
    if missing:
        raise ValueError(f"expected a checkpoint with {', '.join(missing)}, got none")
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "seqtag_version": __version__, **state}, buf)
    return buf.getvalue()


def write_checkpoint(
    output_dir: str | os.PathLike, data: bytes, progress: Progress, best: bool = False, keep: int = 0
) -> Path:
    """Write ``data`` (from :func:`encode_checkpoint`) as ``last.pt``, as ``best.pt`` when
    ``best``, and as a numbered checkpoint when ``keep > 0``, removing all but the ``keep``
    newest numbered ones. Each file is replaced atomically; ``last.pt`` comes last, so that it
    never points past a file that failed to write.

    Returns:
        The path of ``last.pt``.

    Raises:
        WriteError: if a write fails (e.g. the disk is full); the files already on disk stay intact.
    """
    directory = make_dir(checkpoint_dir(output_dir))
    if keep > 0:
        atomic_write_bytes(directory / checkpoint_name(progress), data)
        for old in numbered_checkpoints(directory)[:-keep]:
            try:
                old.unlink(missing_ok=True)
            except OSError as e:
                raise WriteError(old, e) from None
    if best:
        atomic_write_bytes(directory / BEST, data)
    atomic_write_bytes(directory / LAST, data)
    return directory / LAST


def numbered_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The numbered checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NUMBERED.match(p.name))


def remove_checkpoints(output_dir: str | os.PathLike, after: str | None = None) -> None:
    """Remove the checkpoints of a run (and temporary files left by a crash mid-write).

    With ``after`` (a numbered checkpoint name), remove only the numbered checkpoints written
    after it: what a run resumed from an older checkpoint would otherwise leave behind.
    """
    directory = checkpoint_dir(output_dir)
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        stale_temp = p.name.startswith(".") and ".tmp" in p.name
        if after is not None:
            doomed = stale_temp or (_NUMBERED.match(p.name) is not None and p.name > after)
        else:
            doomed = stale_temp or p.name in (LAST, BEST) or _NUMBERED.match(p.name) is not None
        if doomed and p.is_file():
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                raise WriteError(p, e) from None


def _refusal(error: Exception) -> str:
    """One line for a checkpoint that ``torch.load(weights_only=True)`` refused, without torch's
    advice to load it with ``weights_only=False`` (which would run whatever code it holds)."""
    if isinstance(error, pickle.UnpicklingError):
        return "refused to load checkpoint: it holds Python objects besides tensors, which could run code"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"refused to load checkpoint: truncated or not a checkpoint ({type(error).__name__}: {first[:200]})"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint onto the CPU without executing pickled code.

    Returns:
        A dictionary with ``model_config``, ``train_config``, ``data_config`` (None for a run
        given sentences) and ``vocab`` (plain dicts, checked),
        ``data`` (fingerprints of the training and dev data), ``progress`` (a
        :class:`Progress`), ``model`` and ``best_model`` (state dicts; ``best_model`` is None
        when it equals ``model`` or there is no best model yet), ``optimizer``, ``scaler``
        (None unless fp16) and ``rng`` (for :func:`set_rng_state`); from newer runs also
        ``distributed`` (``world_size``, and ``rng``: the states of ranks 1 and up) and ``run_id``
        (32 hex digits; checkpoints of seqtag 0.2.0 have none).

    Raises:
        SeqtagError: one line, if the file is missing, truncated, not a seqtag checkpoint,
            damaged or hand-edited (settings that do not parse), or carries anything but
            tensors and plain containers (a pickle that would run code).
    """
    path = Path(path)
    if not path.is_file():
        raise SeqtagError(f"{path}: no such checkpoint")
    try:
        state = load_tensors(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        # UnpicklingError: a global that weights_only forbids; the others: a torn or foreign file.
        raise SeqtagError(f"{path}: {_refusal(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SeqtagError(f"{path}: not a seqtag training checkpoint")
    if state.get("version") != VERSION:
        raise SeqtagError(f"{path}: checkpoint format version {state.get('version')}, expected {VERSION}")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise SeqtagError(f"{path}: incomplete checkpoint (no {', '.join(missing)})")
    try:
        state["progress"] = Progress.from_dict(state["progress"])
        TaggerConfig.from_dict(state["model_config"], complete=True)
        TrainConfig.from_dict(state["train_config"], complete=True)
        if state["data_config"] is not None:
            DataConfig.from_dict(state["data_config"], complete=True)
        Vocabularies.from_dict(state["vocab"])
        if "run_id" in state and not is_run_id(state["run_id"]):
            raise ValueError(f"expected run_id 32 hex digits, got {state['run_id']!r}")
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SeqtagError(f"{path}: damaged or hand-edited checkpoint ({reason}); resume from another one") from None
    return state
