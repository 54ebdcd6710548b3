"""A training run and its directory: the checks before a run starts or resumes (the output
directory, which settings a resumed run may change, the data it is given, the ranks' agreement),
the run's writes (model, metrics, plot; on rank 0 under DDP) and each rank's generators on resume.
The loop itself is :mod:`seqtag.training.loop`.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from seqtag.config import DataConfig, JsonConfig, TaggerConfig, TrainConfig, resumable_fields
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.fileio import WriteError, atomic_write_text, make_dir, remove_temp_files
from seqtag.model.directory import CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE
from seqtag.model.tagger import Tagger
from seqtag.training.checkpoint import (
    LAST,
    METRICS_FILE,
    PLOT_FILE,
    Progress,
    checkpoint_dir,
    checkpoint_name,
    data_fingerprint,
    is_run_id,
    remove_checkpoints,
    set_rng_state,
)
from seqtag.training.distributed import Distributed
from seqtag.training.plot import plot_learning_curve


def log(message: str, quiet: bool) -> None:
    """``message`` on standard error, unless ``quiet``."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def resumed_config(saved: dict, given: JsonConfig | None, cls: type, what: str) -> JsonConfig | None:
    """The configuration ``saved[what]`` (a checkpoint's ``"train_config"``, ``"data_config"``)
    as a ``cls``, with the changes in ``given`` that resuming allows (the fields declared
    ``resumable``); None if the run saved none and none is given.

    Raises:
        SeqtagError: naming every other field that ``given`` changes.
    """
    stored = saved[what]
    saved_config = cls.from_dict(stored) if stored is not None else None
    if given is None or saved_config is None:
        return saved_config if given is None else given
    allowed = resumable_fields(cls)
    changed = [n for n, v in given.to_dict().items() if v != getattr(saved_config, n) and n not in allowed]
    if changed:
        shown = ", ".join(f"{n} (saved {getattr(saved_config, n)!r}, given {getattr(given, n)!r})" for n in changed)
        can = f"only {', '.join(allowed)}" if allowed else "none of them"
        raise SeqtagError(f"resume continues the saved run; of its {cls.__name__} it can change {can}, not {shown}")
    return given


def check_data(saved: dict, key: str, sentences: Sequence | None, what: str) -> None:
    expected, given = saved["data"][key], data_fingerprint(sentences)
    if expected != given:
        describe = lambda d: "none" if d is None else f"{d['sentences']} sentences, {d['tokens']} tokens"  # noqa: E731
        raise SeqtagError(
            f"the {what} data is not what the saved run was trained with "
            f"(saved: {describe(expected)}; given: {describe(given)}, or the same counts with other content)"
        )


RUN_FILE = "run.json"
"""The file of a run directory that names its run: ``{"run_id": "<32 hex digits>"}``, written with
the run's first write; every checkpoint of the run carries the same ``run_id``."""


def new_run_id() -> str:
    """A fresh run id: 32 random hex digits (from the OS, not the seeded generators)."""
    return uuid.uuid4().hex


def read_run_id(out: Path) -> str | None:
    """The run id in ``out/run.json``; None where there is no such file (a run of seqtag 0.2.0,
    or no run).

    Raises:
        SeqtagError: the file is unreadable or does not hold a run id.
    """
    path = out / RUN_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SeqtagError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    if not is_run_id(run_id):
        raise SeqtagError(f'{path}: expected {{"run_id": "<32 hex digits>"}}, got {json.dumps(data)[:120]}')
    return run_id


def check_run(saved: dict, out: Path, source: Path) -> str:
    """The run id a resumed run continues under, after checking that the checkpoint ``source``
    belongs to the run in ``out``: a checkpoint copied in from another run would mix the two
    (its weights and progress, this directory's model and metrics).

    Checkpoints and directories of seqtag 0.2.0 have no run id: such a run resumes, and takes a
    new id from then on. A checkpoint with an id resumes into a directory without one only if
    that directory holds no run (its checkpoints aside): a run moved to a new directory.

    Raises:
        SeqtagError: naming the checkpoint's run and the directory's.
    """
    saved_id, dir_id = saved.get("run_id"), read_run_id(out)
    advice = "resuming would mix the two runs; resume it in its own run's directory, or start a new run"
    if saved_id is not None and dir_id is not None and saved_id != dir_id:
        raise SeqtagError(f"{source} belongs to run {saved_id}, but {out} holds run {dir_id} ({RUN_FILE}): {advice}")
    if saved_id is None and dir_id is not None:
        raise SeqtagError(f"{source} has no run id (seqtag 0.2.0), but {out} holds run {dir_id} ({RUN_FILE}): {advice}")
    if saved_id is not None and dir_id is None and any((out / name).exists() for name in (CONFIG_FILE, METRICS_FILE)):
        raise SeqtagError(f"{source} belongs to run {saved_id}, but {out} holds a run without an id (seqtag 0.2.0): {advice}")
    return saved_id or dir_id or new_run_id()


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse to start a new run in a directory that holds a model or a run, unless ``overwrite``."""
    out = Path(output_dir)
    if not overwrite and ((out / CONFIG_FILE).exists() or (checkpoint_dir(out) / LAST).exists()):
        raise SeqtagError(
            f"{out} already holds a model: replace it (--overwrite; overwrite=True in Python), continue "
            f"its training (--resume {out}; resume=True), or choose another output directory"
        )


def clear_output_dir(out: Path) -> None:
    """A new run owns its output directory: remove what an earlier run left there."""
    remove_checkpoints(out)
    for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE, METRICS_FILE, PLOT_FILE):
        try:
            (out / name).unlink(missing_ok=True)
        except OSError as e:
            raise WriteError(out / name, e) from None


def write_metrics(out: Path, rows: list[dict]) -> None:
    # Each epoch rewrites the whole file (atomically) rather than appending a row: a full disk
    # or a kill then leaves the previous rows intact, never a torn last row; the rows are few.
    atomic_write_text(out / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def save_model(tagger: Tagger, out: Path, tc: TrainConfig, data_config: DataConfig | None) -> None:
    # ``data=`` goes into config.json where Tagger.save takes it; the checkpoints hold it too.
    if "data" in inspect.signature(tagger.save).parameters:
        tagger.save(out, tc, data=data_config.to_dict() if data_config is not None else None)
    else:
        tagger.save(out, tc)


def all_finite(tagger: Tagger) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in tagger.parameters())


def plot_run(out: Path, quiet: bool) -> None:
    # matplotlib is optional (the "plot" extra): without it, say so and carry on.
    try:
        path = plot_learning_curve(out)
    except (SeqtagError, OSError) as e:
        log(f"no learning-curve plot: {e}", quiet)
        return
    log(f"learning curve: {path}", quiet)


def on_main(world: Distributed, action: Callable[[], object]) -> None:
    """Run ``action`` (a write) on rank 0 only. If it fails, every rank stops: rank 0 with its
    error, the others with a :class:`SeqtagError` that quotes it (rather than wait forever in
    the next collective for a rank that is gone)."""
    if not world.enabled:
        action()
        return
    if world.is_main:
        try:
            action()
        except Exception as e:
            world.broadcast(str(e) or type(e).__name__)
            raise
        world.broadcast(None)
        return
    error = world.broadcast(None)
    if error is not None:
        raise SeqtagError(f"rank 0 stopped: {error}")


def check_ranks_agree(world: Distributed, config: TaggerConfig, tc: TrainConfig, vocabs: Vocabularies,
                       fingerprints: dict, saving: bool) -> None:  # fmt: skip
    """Every rank must build the same model from the same data: DDP averages gradients by
    parameter position, so ranks with other vocabularies would train nonsense without an error.
    And all or none must have an output directory (saving a checkpoint is a collective)."""
    key = json.dumps([config.to_dict(), tc.to_dict(), vocabs.to_dict(), fingerprints, saving], sort_keys=True)
    if not world.same_text(key):
        raise SeqtagError(
            "the ranks disagree on the data, the vocabularies, the training settings or whether there "
            "is an output directory: every rank must be given the same data and options"
        )


def restore_rng(saved: dict, world: Distributed, source: Path, quiet: bool) -> None:
    """Give each rank its generators back from the checkpoint (rank 0's are ``rng``, the
    others' ``distributed.rng``). A checkpoint from another number of ranks resumes only at an
    epoch boundary: a mid-epoch position counts batches of one particular split."""
    progress = saved["progress"]
    saved_world = saved.get("distributed", {}).get("world_size", 1)
    if saved_world != world.world_size:
        if progress.batch > 0:
            raise SeqtagError(
                f"{source} was written in the middle of epoch {progress.epoch + 1} by {saved_world} "
                f"process(es); resume it with {saved_world} (torchrun --nproc_per_node ...), or resume "
                f"an epoch-end checkpoint to change the number of processes"
            )
        log(
            f"resuming a run of {saved_world} process(es) with {world.world_size}: the effective batch "
            f"size and the steps per epoch change, and the run is no longer an exact continuation",
            quiet,
        )
    states = [saved["rng"], *saved.get("distributed", {}).get("rng", [])]
    if world.rank < len(states):  # a rank the saved run lacked keeps its fresh seed + rank stream
        note = set_rng_state(states[world.rank])
        if note:
            log(f"resuming: {note}", quiet)


def resumed_configs(
    saved: dict, config: TaggerConfig | None, train_config: TrainConfig | None, data_config: DataConfig | None
) -> tuple[TaggerConfig, TrainConfig, DataConfig | None]:
    """The saved run's configurations, with the changes that resuming allows."""
    saved_config = TaggerConfig.from_dict(saved["model_config"])
    if config is not None and config != saved_config:
        raise SeqtagError("resume continues the saved run with its model configuration: pass config=None")
    tc = resumed_config(saved, train_config, TrainConfig, "train_config")
    return saved_config, tc, resumed_config(saved, data_config, DataConfig, "data_config")


def prepare_output_dir(out: Path, progress: Progress, resumed: bool, run_id: str) -> None:
    """The first change to the directory, after every check has passed; it names the run
    (:data:`RUN_FILE`)."""
    make_dir(out)
    remove_temp_files(out)  # of model or metrics writes that a kill interrupted
    if resumed:
        remove_checkpoints(out, after=checkpoint_name(progress))
    else:
        clear_output_dir(out)
    atomic_write_text(out / RUN_FILE, json.dumps({"run_id": run_id}) + "\n")
    # A resumed run restarts from the checkpoint's history: rows written after it are redone.
    write_metrics(out, progress.history)
