"""The training loop: one :func:`train_step`, the run's :class:`TrainState`, and the epochs.

:func:`train` builds vocabularies and a :class:`~seqtag.model.tagger.Tagger` and trains it on bucketed
minibatches: optimizer (SGD, Adam, AdamW), learning-rate schedule (constant, linear, plateau;
optional warm-up), gradient clipping, mixed precision (bf16, fp16), evaluation on dev after each
epoch, best-model selection, early stopping. With an ``output_dir`` it also keeps the best model,
``metrics.jsonl`` and a learning-curve plot there, writes a resumable checkpoint after each epoch
(and every ``checkpoint_every`` steps), turns SIGINT/SIGTERM into a checkpoint and a clean stop,
and continues a stopped run with ``resume=True``, exactly as if it had never stopped.
Under ``torchrun`` (or in a process group the caller started) it trains with
``DistributedDataParallel``: each rank takes its own share of the batches, rank 0 writes the
files. See ``docs/training.md`` and ``docs/distributed.md``.

The parts a loop needs but that are not the loop live beside it: the step (:mod:`seqtag.training.step`), the run's
directory and resume checks (:mod:`seqtag.training.runs`), the signals (:mod:`seqtag.training.interrupts`).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from seqtag.config import DataConfig, TaggerConfig, TrainConfig, config_argument, for_encoder
from seqtag.data.dataset import EncodedDataset, check_encoding, check_tags, make_loader
from seqtag.data.encoding import check_tagged
from seqtag.data.sources import follow_scheme, scheme_of
from seqtag.data.vectors import init_embedding, read_vectors
from seqtag.data.vocab import Vocabularies
from seqtag.device import autocast, check_precision
from seqtag.errors import SeqtagError
from seqtag.fileio import WriteError, hold_directory
from seqtag.model.tagger import Tagger
from seqtag.schemes import foreign_tags, resolve_scheme
from seqtag.training import distributed
from seqtag.training.checkpoint import (
    LAST,
    Progress,
    checkpoint_dir,
    data_fingerprint,
    encode_checkpoint,
    find_checkpoint,
    read_checkpoint,
    rng_state,
    write_checkpoint,
)
from seqtag.training.distributed import Distributed
from seqtag.training.evaluation import evaluate
from seqtag.training.interrupts import StopSignals, TrainingInterrupted, agreed_signal, first_signal
from seqtag.training.runs import (
    all_finite,
    check_data,
    check_output_dir,
    check_ranks_agree,
    check_run,
    log,
    new_run_id,
    on_main,
    plot_run,
    prepare_output_dir,
    restore_rng,
    resumed_configs,
    save_model,
    write_metrics,
)
from seqtag.training.step import (
    ENCODER_GROUP,
    LossModule,
    StepResult,
    train_step,
    word_dropout_probabilities,
)

# Row fields that measure wall-clock time, so differ between an interrupted run and a straight one.
WALL_CLOCK_FIELDS = ("tokens_per_s", "epoch_seconds", "wall_time")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def learning_rate(tc: TrainConfig, step: int, halvings: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0 = the first).

    Warm-up multiplies by ``(step + 1) / warmup`` during the first ``warmup`` steps
    (:meth:`TrainConfig.warmup_for <seqtag.config.TrainConfig.warmup_for>`: ``warmup_steps``, or
    the fraction ``warmup`` of ``total_steps``); then ``linear`` decays to 0 at ``total_steps``,
    ``plateau`` halves ``halvings`` times, ``constant`` keeps ``tc.lr``.

    >>> tc = TrainConfig(lr=1.0, schedule="linear", warmup_steps=2)
    >>> [learning_rate(tc, s, 0, 6) for s in range(6)]
    [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    """
    return _scheduled(tc.lr, tc.schedule, tc.warmup_for(total_steps), step, halvings, total_steps)


def encoder_learning_rate(tc: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of a pretrained encoder's weights at step ``step``: ``encoder_lr`` with
    :func:`learning_rate`'s warm-up, then a linear decay to 0 at ``total_steps`` whatever
    ``tc.schedule`` (the fine-tuning schedule of BERT and Hugging Face's Trainer).

    >>> tc = TrainConfig(encoder_lr=1.0, warmup=0.25)
    >>> [encoder_learning_rate(tc, s, 8) for s in range(8)]
    [0.5, 1.0, 1.0, 0.8333333333333334, 0.6666666666666666, 0.5, 0.3333333333333333, 0.16666666666666666]
    """
    return _scheduled(tc.encoder_lr, "linear", tc.warmup_for(total_steps), step, 0, total_steps)


def _scheduled(lr: float, schedule: str, warmup: int, step: int, halvings: int, total_steps: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "linear":
        lr *= max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    elif schedule == "plateau":
        lr *= 0.5**halvings
    return lr


def _optimizer(tagger: Tagger, tc: TrainConfig) -> torch.optim.Optimizer:
    """The run's optimizer: one parameter group, and a second (:data:`ENCODER_GROUP`, at
    ``encoder_lr``) for a pretrained encoder's weights unless it is frozen (then they have none)."""
    encoder = tagger.encoder.model if tagger.encoder is not None and not tagger.encoder.frozen else None
    in_encoder = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    params: list = [p for p in tagger.parameters() if p.requires_grad and id(p) not in in_encoder]
    if encoder is not None:
        own = [p for p in encoder.parameters() if p.requires_grad]
        params = [{"params": params}, {"params": own, "lr": tc.encoder_lr, "name": ENCODER_GROUP}]
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    cls = torch.optim.Adam if tc.optimizer == "adam" else torch.optim.AdamW
    # The fused kernel updates the large word embedding several times faster than the default.
    return cls(params, lr=tc.lr, weight_decay=tc.weight_decay, fused=True)


@contextlib.contextmanager
def _flush_denormal() -> Iterator[None]:
    # Adam's state for rare words decays into denormal floats, which are ~30x slower on x86 CPUs.
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _build_tagger(
    train_data: Sequence, config: TaggerConfig, tc: TrainConfig, saved_vocab: dict | None, quiet: bool
) -> Tagger:
    """A new tagger: vocabularies from ``train_data`` (and pretrained vectors), the encoded
    dataset's, or the saved ones."""
    if saved_vocab is not None:
        tagger = Tagger(config, Vocabularies.from_dict(saved_vocab))
    else:
        vectors = read_vectors(tc.vectors, tc.vectors_max_words) if tc.vectors else None
        if isinstance(train_data, EncodedDataset):
            vocabs = train_data.vocabs
        else:
            vocabs = Vocabularies.build(
                train_data, lowercase=config.lowercase, min_freq=tc.min_freq, extra_words=vectors[0] if vectors else ()
            )
        tagger = Tagger(config, vocabs)
        if vectors is not None and tagger.word_embedding is None:
            raise SeqtagError("--vectors initialise the word embedding, which this model has none of (embedding_dim 0)")
        if vectors is not None:
            found = init_embedding(tagger.word_embedding.weight, vocabs.words, *vectors)
            log(f"{tc.vectors}: {len(vectors[0]):,} vectors; {found:,} of {len(vocabs.words):,} words initialised", quiet)
    if tc.vectors and tc.freeze_vectors and tagger.word_embedding is not None:
        tagger.word_embedding.weight.requires_grad_(False)
    return tagger


# (tagger, encoded dev set, batch size) -> metrics, as :func:`seqtag.training.evaluation.evaluate`.
Evaluator = Callable[[Tagger, EncodedDataset, int], dict]


# About 120 lines, 75 of them the documented interface; the body (about 45) is the order a run
# needs: the lock, every check, the configurations, then setup and the loop (_setup, _loop).
def train(
    train_data: Sequence | EncodedDataset,
    dev: Sequence | EncodedDataset | None = None,
    config: TaggerConfig | None = None,
    train_config: TrainConfig | None = None,
    output_dir: str | Path | None = None,
    quiet: bool = False,
    resume: bool | str | os.PathLike = False,
    dist_backend: str | None = None,
    overwrite: bool = False,
    evaluator: Evaluator | None = None,
    data_config: DataConfig | None = None,
) -> Tagger:
    """Train a tagger on ``train_data`` (a list of :class:`~seqtag.data.corpus.Sentence`).

    Under ``torchrun`` (``WORLD_SIZE`` > 1), or in a process group that the caller started,
    every process calls ``train`` with the same arguments: it trains with
    ``DistributedDataParallel``, ``batch_size`` sentences per rank and step, and only rank 0
    writes to ``output_dir`` and prints. Every rank returns the same model. See
    ``docs/distributed.md``.

    Args:
        train_data: gold-tagged training sentences, or an encoded dataset
            (:class:`~seqtag.data.dataset.EncodedDataset`, e.g. ``arrow.ArrowTaggingDataset`` for a corpus
            larger than memory): the model then takes its vocabularies, so ``min_freq`` and the
            vectors' extra words are set where they were built (``hf.build_vocabs``).
        dev: gold-tagged sentences (or an encoded dataset with the same vocabularies) evaluated
            after each epoch; the best epoch's model is kept (by ``train_config.select``).
            Without ``dev``, the last epoch's.
        config: the architecture (default :class:`TaggerConfig`).
        train_config: optimizer, batch size, epochs, ... (default :class:`TrainConfig`).
        output_dir: where to keep the best model, ``metrics.jsonl``, ``learning_curve.png`` and
            ``checkpoints/`` (optional; without it nothing is saved and nothing can be resumed).
            A directory that already holds a model or a run is refused unless ``overwrite``
            (or ``resume``). The run holds the directory (an OS lock on
            ``.seqtag.lock``) from start to end: a second run into it fails at once. Every
            check (settings, device, data, vectors, tag scheme) runs before anything in the
            directory changes.
        quiet: no progress bar or log lines.
        resume: continue the run saved in ``output_dir`` from ``checkpoints/last.pt`` (``True``)
            or from the checkpoint file given. The model configuration, vocabularies and
            training configuration come from the checkpoint; ``config`` must be None and
            ``train_config`` may differ from the saved one only in the fields declared
            ``resumable`` (:func:`seqtag.config.resumable_fields`; with more ``epochs``,
            training continues up to that many epochs in all). ``train_data`` and ``dev`` must
            be the data the run started with.
        dist_backend: the ``torch.distributed`` backend when ``train`` starts the process group:
            ``"nccl"``, ``"gloo"`` or None (``nccl`` on CUDA, else ``gloo``).
        overwrite: start a new run in an ``output_dir`` that holds an earlier model or run,
            removing its model files, checkpoints, metrics and plot once every check has passed.
        data_config: where ``train_data`` and ``dev`` came from (files or a dataset, columns),
            kept in every checkpoint and in ``config.json`` so that ``seqtag train --resume``
            reads the same data and ``seqtag evaluate`` the same tag column; on resume, None
            keeps the saved one. It is recorded, not applied: ``train_data`` and ``dev`` are
            used as given (read them with :func:`seqtag.data.sources.training_data` to apply it).
        evaluator: scores the model on ``dev`` after each epoch: ``evaluator(tagger, dataset,
            batch_size) -> dict`` with the ``select`` metric (default:
            :func:`seqtag.training.evaluation.evaluate`).

    Returns:
        The trained tagger (the best epoch's weights), in eval mode, on the training device.

    Raises:
        SeqtagError: for bad settings or data, a non-finite loss (the checkpoints on disk stay
            as they were: the message names the step and the last good checkpoint) and a failed
            write (e.g. a full disk; the previous checkpoint stays intact).
        TrainingInterrupted: on SIGINT or SIGTERM (with an ``output_dir``), after writing a
            checkpoint at the next step boundary (under DDP: on every rank, when any rank has
            had the signal).

    Example:
        >>> import seqtag, tempfile
        >>> tiny = seqtag.TrainConfig(epochs=2, batch_size=1, device="cpu")
        >>> out = tempfile.mkdtemp()
        >>> _ = seqtag.train(seqtag.tutorial_corpus(), train_config=tiny, output_dir=out, quiet=True)
        >>> tagger = seqtag.train(seqtag.tutorial_corpus(), train_config=tiny.replace(epochs=3),
        ...                       output_dir=out, quiet=True, resume=True)
        >>> from seqtag.training.plot import read_metrics
        >>> [row["epoch"] for row in read_metrics(out)]
        [1, 2, 3]
    """
    config, train_config, data_config = (config_argument(value, cls, name) for value, cls, name in (
        (config, TaggerConfig, "config"), (train_config, TrainConfig, "train_config"),
        (data_config, DataConfig, "data_config")))  # fmt: skip
    _check_arguments(output_dir, quiet, resume, dist_backend, overwrite, evaluator)
    if not isinstance(train_data, EncodedDataset):
        train_data = check_tagged(train_data, "train_data")
    if not len(train_data):
        raise SeqtagError("no training sentences")
    if not isinstance(dev, EncodedDataset):
        dev = check_tagged(dev, "dev") if dev is not None else None
        dev = dev or None
    out = Path(output_dir) if output_dir is not None else None
    if resume is not False and out is None:
        raise SeqtagError("resume needs output_dir, the directory of the run to continue")
    # A run owns its directory: first the lock (a second run into it fails at once), then every
    # check, then the first write (prepare_output_dir). Under torchrun, rank 0 holds the lock.
    hold = out is not None and distributed.is_main_process()
    with hold_directory(out) if hold else contextlib.nullcontext():
        saved, source = None, None
        if resume is not False:
            source = find_checkpoint(out, resume)
            saved = read_checkpoint(source)
            run_id = check_run(saved, out, source)
            config, tc, data_config = resumed_configs(saved, config, train_config, data_config)
            check_data(saved, "train", train_data, "training")
            check_data(saved, "dev", dev, "dev")
        else:
            if out is not None:
                check_output_dir(out, overwrite)
            run_id = new_run_id()
            config = config or TaggerConfig()
            # an encoder model without a train_config trains by the measured recipe (config.ENCODER_RECIPE)
            tc = train_config or (for_encoder(TrainConfig()) if config.encoder else TrainConfig())
        _check_scheme(config, train_data, dev)
        fingerprints = {"train": data_fingerprint(train_data), "dev": data_fingerprint(dev)}
        world = distributed.setup(tc.device, dist_backend)
        try:
            quiet = quiet or not world.is_main
            check_precision(world.device, tc.precision)
            seed_everything(tc.seed)
            tagger = _build_tagger(train_data, config, tc, saved["vocab"] if saved is not None else None, quiet)
            # Encoded once, here: the loop below sees only encoded datasets.
            train_set = _encoded(tagger, train_data, "training")
            dev_set = _encoded(tagger, dev, "dev") if dev is not None else None
            session, state = _setup(tagger, train_set, dev_set, tc, out, saved, source, fingerprints, world, quiet,
                                    run_id)  # fmt: skip
            session.evaluator, session.data_config = evaluator or evaluate, data_config
            return _loop(session, state)
        finally:
            distributed.teardown(world)


def _check_arguments(output_dir: object, quiet: object, resume: object, dist_backend: object, overwrite: object,
                     evaluator: object) -> None:  # fmt: skip
    """:func:`train`'s other arguments: of the types it documents (TypeError saying what came)."""
    paths = (str, os.PathLike)
    for name, value, ok, expected in (
        ("output_dir", output_dir, _value_is(output_dir, paths, none=True), "a directory path or None"),
        ("quiet", quiet, isinstance(quiet, bool), "True or False"),
        ("overwrite", overwrite, isinstance(overwrite, bool), "True or False"),
        ("resume", resume, _value_is(resume, (bool, *paths)), "True, False or a checkpoint path"),
        ("dist_backend", dist_backend, _value_is(dist_backend, (str,), none=True), '"nccl", "gloo" or None'),
        ("evaluator", evaluator, evaluator is None or callable(evaluator), "a function (tagger, dataset, batch_size) or None"),
    ):
        if not ok:
            raise TypeError(f"expected {name} {expected}, got {value!r}"[:200])


def _value_is(value: object, types: tuple, none: bool = False) -> bool:
    return (none and value is None) or isinstance(value, types)


def _check_scheme(config: TaggerConfig, train_data: Sequence | EncodedDataset, dev) -> None:
    """Refuse data that the span scheme of the model to train does not fit (files and datasets
    are checked, or repaired, where they are read: :mod:`seqtag.data.sources`)."""
    if isinstance(train_data, EncodedDataset):  # its tag set; its sentences were checked when read
        tags = train_data.vocabs.tags.itos
        scheme = resolve_scheme(config.tag_scheme, tags)
        foreign = foreign_tags(tags, scheme) if scheme != "none" else []
        if foreign:
            raise SeqtagError(f"the training dataset has tags that are not {scheme.upper()} tags: {', '.join(foreign)}")
        return
    scheme = scheme_of(config, train_data)
    follow_scheme(train_data, scheme, "the training data", by_line=False)
    if dev is not None and not isinstance(dev, EncodedDataset):
        follow_scheme(dev, scheme, "the dev data", by_line=False)


def _encoded(tagger: Tagger, data: Sequence | EncodedDataset, what: str) -> EncodedDataset:
    if isinstance(data, EncodedDataset):
        check_encoding(data, tagger.vocabs, tagger.config, f"the {what} dataset")
        return data
    if what != "training":  # the training data made the vocabularies (or is the run's, on resume)
        check_tags(data, tagger.vocabs, f"the {what} data")
    return tagger.dataset(data)


@dataclass
class TrainState:
    """Everything a training run changes as it goes, and what a checkpoint restores.

    Attributes:
        tagger: the model being trained.
        optimizer: its optimizer.
        scaler: the fp16 gradient scaler, else None.
        progress: epoch, step, position within the epoch, best score, history (:class:`Progress`).
        best_state: the weights of epoch ``progress.best_epoch`` (None before the first).
        best_is_current: whether ``tagger`` still holds exactly ``best_state`` (a checkpoint
            then stores the weights once).
    """

    tagger: Tagger
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None = None
    progress: Progress = field(default_factory=Progress)
    best_state: dict | None = None
    best_is_current: bool = False

    def keep_best(self) -> None:
        """The model's current weights become the best ones."""
        self.best_state = {k: v.detach().clone() for k, v in self.tagger.state_dict().items()}
        self.best_is_current = True

    def to_checkpoint(
        self, train_config: TrainConfig, data_config: DataConfig | None, data: dict, rng: list[dict]
    ) -> dict:
        """The checkpoint dictionary (see :func:`~seqtag.training.checkpoint.read_checkpoint`), with
        ``data`` (the fingerprints of the training and dev data) and every rank's generator
        states ``rng`` (rank 0's first)."""
        return {
            "model_config": self.tagger.config.to_dict(),
            "train_config": train_config.to_dict(),
            "data_config": data_config.to_dict() if data_config is not None else None,
            "vocab": self.tagger.vocabs.to_dict(),
            "data": data,
            "progress": self.progress.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.tagger.state_dict().items()},
            "best_model": None
            if self.best_is_current or self.best_state is None
            else {k: v.cpu() for k, v in self.best_state.items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng[0],
            "distributed": {"world_size": len(rng), "rng": rng[1:]},
        }

    def restore(self, saved: dict) -> None:
        """Take the state of a checkpoint read by :func:`~seqtag.training.checkpoint.read_checkpoint`
        (the generators are restored separately: each rank takes its own)."""
        self.progress = saved["progress"]
        self.tagger.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(saved["scaler"])
        self.best_state, self.best_is_current = None, False
        if saved["best_model"] is not None:
            device = next(self.tagger.parameters()).device
            self.best_state = {k: v.to(device) for k, v in saved["best_model"].items()}
        elif self.progress.best_epoch > 0:
            self.keep_best()


@dataclass
class _Session:
    """What stays fixed while a run trains in this process (one call of :func:`train`)."""

    tc: TrainConfig
    out: Path | None
    world: Distributed
    model: nn.Module  # LossModule(tagger), or its DistributedDataParallel wrapper
    loader: torch.utils.data.DataLoader
    dev_set: EncodedDataset | None
    select: str  # the dev metric that picks the best epoch
    word_dropout: Tensor | None
    total_steps: int  # what the linear schedule plans with
    fingerprints: dict
    quiet: bool
    run_id: str = ""  # the run's id (runs.RUN_FILE), in every checkpoint
    data_config: DataConfig | None = None
    evaluator: Evaluator = evaluate
    stop: StopSignals | None = None
    started: float = 0.0  # time.perf_counter() when this session's training began
    seconds_before: float = 0.0  # training time of earlier sessions of the run


def _select_metric(tc: TrainConfig, tagger: Tagger) -> str:
    if tc.select == "auto":
        return "f1" if tagger.tag_scheme != "none" else "accuracy"
    if tc.select == "f1" and tagger.tag_scheme == "none":
        raise SeqtagError("--select f1 needs span tags (BIO, IOB1 or BIOES); these tags have no span scheme")
    return tc.select


def _setup(
    tagger: Tagger,
    train_set: EncodedDataset,
    dev_set: EncodedDataset | None,
    tc: TrainConfig,
    out: Path | None,
    saved: dict | None,
    source: Path | None,
    fingerprints: dict,
    world: Distributed,
    quiet: bool,
    run_id: str,
) -> tuple[_Session, TrainState]:
    """The model on its device, the loader, the optimizer, the state restored from ``saved``,
    the DDP wrapper; then (rank 0) the output directory prepared for the run."""
    device = world.device
    select = _select_metric(tc, tagger)
    tagger.set_rnn_mode(device)
    tagger.to(device)
    if world.enabled:
        check_ranks_agree(world, tagger.config, tc, tagger.vocabs, fingerprints, out is not None)
        # Every rank initialised the model from ``seed`` (and DDP broadcasts rank 0's weights);
        # dropout and word dropout draw from ``seed + rank``, so that the ranks drop differently.
        seed_everything(tc.seed + world.rank)
    # Each rank takes its own share of every epoch's batches, all ranks the same number of them.
    loader = make_loader(
        train_set,
        tc.batch_size,
        shuffle=True,
        seed=tc.seed,
        num_workers=tc.num_workers,
        pin_memory=device.type == "cuda",
        num_replicas=world.world_size,
        rank=world.rank,
    )
    scaler = torch.amp.GradScaler(device.type) if tc.precision == "fp16" else None
    state = TrainState(tagger, _optimizer(tagger, tc), scaler)
    if saved is not None:
        if saved["progress"].epoch > tc.epochs:
            raise SeqtagError(
                f"the saved run has trained {saved['progress'].epoch} epochs already; expected epochs >= that"
            )
        state.restore(saved)
        restore_rng(saved, world, source, quiet)
        p = state.progress
        where = f"in epoch {p.epoch + 1} after {p.batch} batches" if p.batch else f"after epoch {p.epoch}"
        log(f"resuming {out} from {source.name}: {where}, step {p.step}", quiet)
    # The batch count can vary a little between epochs (the token cap cuts batches of long
    # sentences): the linear schedule plans with epoch 0's, each epoch counts its own.
    session = _Session(
        tc=tc,
        out=out,
        world=world,
        model=_loss_model(tagger, world),
        loader=loader,
        dev_set=dev_set,
        select=select,
        word_dropout=word_dropout_probabilities(tagger.vocabs, tc.word_dropout, device),
        total_steps=tc.epochs * len(loader),
        fingerprints=fingerprints,
        quiet=quiet,
        run_id=run_id,
    )
    if world.enabled:
        log(f"distributed: {world.world_size} processes, {tc.batch_size} sentences per process and step "
             f"({tc.batch_size * world.world_size} in all), {len(loader)} steps per epoch", quiet)  # fmt: skip
    if out is not None:
        on_main(world, lambda: prepare_output_dir(out, state.progress, resumed=saved is not None, run_id=run_id))
    return session, state


def _loss_model(tagger: Tagger, world: Distributed) -> nn.Module:
    """The loss inside the module that DDP wraps; DDP broadcasts rank 0's weights here (the
    ranks hold the same ones already) and averages the gradients over the ranks in backward()."""
    model: nn.Module = LossModule(tagger)
    if not world.enabled:
        return model
    # The buffers (the CRF's transition masks) never change: no need to broadcast them each step.
    constant_buffers = (
        {"forward_sync_buffers": False}  # torch >= 2.13 (which deprecates broadcast_buffers)
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else {"broadcast_buffers": False}
    )
    device = world.device
    # a transformers encoder has weights the tagger never reads (BERT's pooler): DDP must not
    # wait for their gradients
    unused = {"find_unused_parameters": True} if tagger.encoder is not None else {}
    return DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, **constant_buffers, **unused
    )


def _loop(session: _Session, state: TrainState) -> Tagger:
    """Epochs until ``epochs`` or early stopping; the best model, in eval mode."""
    tc, progress = session.tc, state.progress
    stopped_early = bool(session.dev_set is not None and tc.patience and progress.stale >= tc.patience)
    if progress.epoch >= tc.epochs or stopped_early:
        log(f"nothing to train: the run has {progress.epoch} epochs of {tc.epochs}"
             + (f" and stopped early (patience {tc.patience})" if stopped_early else ""), session.quiet)  # fmt: skip
    session.started, session.seconds_before = time.perf_counter(), progress.seconds
    with StopSignals(enabled=session.out is not None) as stop, _flush_denormal():
        session.stop = stop
        for epoch in range(progress.epoch + 1, tc.epochs + 1):
            if stopped_early:
                break
            lr, seconds = run_epoch(session, state, epoch)
            stopped_early = end_epoch(session, state, epoch, lr, seconds)
    if session.out is not None and session.world.is_main:
        plot_run(session.out, session.quiet)
    if state.best_state is not None:
        state.tagger.load_state_dict(state.best_state)
    state.tagger.eval()
    return state.tagger


def run_epoch(session: _Session, state: TrainState, epoch: int) -> tuple[float, float]:
    """Train the batches of ``epoch`` that ``state.progress`` has not trained yet, writing a
    checkpoint every ``checkpoint_every`` steps and on a signal (then raising
    :class:`TrainingInterrupted`).

    Returns:
        The last step's learning rate and the epoch's training seconds (over all sessions).
    """
    tc, progress, loader = session.tc, state.progress, session.loader
    loader.batch_sampler.set_epoch(epoch)
    steps_per_epoch = len(loader)
    session.model.train()
    lr = learning_rate(tc, progress.step, progress.halvings, session.total_steps)
    epoch_start, seconds_at_start = time.perf_counter(), progress.epoch_seconds
    # Creating the iterator draws a worker seed from torch's global generator: keep that draw
    # out of the stream that dropout uses, so a resumed run draws what a straight one does.
    with torch.random.fork_rng(devices=[]):
        batches = iter(loader)
    # A mid-epoch checkpoint resumes after the batches already trained (they are only padded);
    # under DDP each rank skips as many of its own batches.
    batches = islice(batches, progress.batch, None)
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", initial=progress.batch, total=steps_per_epoch,
               leave=False, disable=session.quiet, file=sys.stderr)  # fmt: skip
    stop = session.stop
    encoder_lr = None
    for batch in bar:
        lr = learning_rate(tc, progress.step, progress.halvings, session.total_steps)
        if state.tagger.encoder is not None:
            encoder_lr = encoder_learning_rate(tc, progress.step, session.total_steps)
        # Every rank learns whether any rank has had a signal in the step's all-reduce, so that
        # all stop at the same step: a rank that stopped alone would leave the others waiting.
        signals = lambda: [stop.signal_number == signal.SIGINT, stop.signal_number == signal.SIGTERM]
        result = train_step(state.tagger, state.optimizer, batch, lr=lr, encoder_lr=encoder_lr,
                            precision=tc.precision, clip=tc.clip,
                            scaler=state.scaler, word_dropout=session.word_dropout, model=session.model,
                            world=session.world, agree=signals)  # fmt: skip
        if not result.finite:
            bar.close()
            raise _diverged(session, result, epoch, progress, steps_per_epoch)
        state.best_is_current = False
        progress.step += 1
        progress.batch += 1
        progress.epoch_loss += result.loss_sum
        progress.epoch_tokens += result.tokens
        if progress.step % 10 == 0 and not session.quiet:
            elapsed = time.perf_counter() - epoch_start
            bar.set_postfix(loss=f"{progress.epoch_loss / progress.epoch_tokens:.4f}", lr=f"{lr:.2g}",
                            tok_s=f"{progress.epoch_tokens / (seconds_at_start + elapsed):,.0f}")  # fmt: skip
        if progress.batch < steps_per_epoch:  # the epoch's end writes its own checkpoint
            signal_number = first_signal(result.agreed)
            due = tc.checkpoint_every and progress.step % tc.checkpoint_every == 0
            if due or signal_number is not None:
                progress.epoch_seconds = seconds_at_start + time.perf_counter() - epoch_start
                path = save_checkpoint(session, state, best=False)
                if signal_number is not None:
                    bar.close()
                    where = f"at step {progress.step} (epoch {epoch}, batch {progress.batch} of {steps_per_epoch})"
                    raise TrainingInterrupted(signal_number, session.out, path, where)
    bar.close()
    return lr, seconds_at_start + time.perf_counter() - epoch_start


def _diverged(session: _Session, result: StepResult, epoch: int, progress: Progress, steps: int) -> SeqtagError:
    if not math.isfinite(result.loss_sum):
        what = f"loss became {result.loss_sum / max(result.tokens, 1)}"
        if session.world.enabled:
            what += f" on rank {session.world.rank}" if not math.isfinite(result.local_loss) else " on another rank"
    else:
        what = f"gradient norm became {result.norm}"
    last = checkpoint_dir(session.out) / LAST if session.out is not None else None
    return SeqtagError(
        f"{what} in epoch {epoch} at step {progress.step + 1} (batch {progress.batch + 1} of "
        f"{steps}); stopping without taking that step (try a smaller --lr or --clip)"
        + (f"; the last good checkpoint is {last}" if last is not None and last.exists() else "")
    )


def end_epoch(session: _Session, state: TrainState, epoch: int, lr: float, seconds: float) -> bool:
    """After the last batch of ``epoch``: evaluation on dev, model selection, the schedule, the
    metrics row, the model and checkpoint writes, the epoch line.

    Returns:
        Whether to stop early (no dev gain for ``patience`` epochs).

    Raises:
        TrainingInterrupted: if a signal came during the epoch's last step or the evaluation.
    """
    tc, progress, world, out = session.tc, state.progress, session.world, session.out
    row = {
        "epoch": epoch,
        "step": progress.step,
        "train_loss": progress.epoch_loss / max(progress.epoch_tokens, 1),
        "tokens_per_s": progress.epoch_tokens / seconds,
        "lr": lr,
        "epoch_seconds": seconds,
    }
    improved = True
    if session.dev_set is not None:
        # Rank 0 scores the whole dev set and tells the others, so that every rank makes the
        # same model-selection, schedule and early-stopping decisions.
        metrics = None
        if world.is_main:
            with autocast(world.device, tc.precision):
                metrics = session.evaluator(state.tagger, session.dev_set, tc.eval_batch_size)
        metrics = world.broadcast(metrics)
        row.update({f"dev_{k}": v for k, v in metrics.items() if k != "per_type"})
        improved = metrics[session.select] > progress.best_score
        if improved:
            progress.best_score = metrics[session.select]
    if improved:
        progress.best_epoch, progress.stale = epoch, 0
        state.keep_best()
    else:
        progress.stale += 1
        if tc.schedule == "plateau" and tc.lr_halving and progress.stale % tc.lr_halving == 0:
            progress.halvings += 1
    row["wall_time"] = session.seconds_before + time.perf_counter() - session.started
    progress.history.append(row)
    progress.epoch, progress.batch = epoch, 0
    progress.epoch_loss, progress.epoch_tokens, progress.epoch_seconds = 0.0, 0, 0.0
    path = None
    if out is not None:
        if improved:
            on_main(world, lambda: save_model(state.tagger, out, tc, session.data_config))
        path = save_checkpoint(session, state, best=improved)
        on_main(world, lambda: write_metrics(out, progress.history))
    select = session.select
    dev_text = f" dev {select} {row[f'dev_{select}']:.4f}" if session.dev_set is not None else ""
    star = " *" if improved and session.dev_set is not None else ""
    log(f"epoch {epoch}: loss {row['train_loss']:.4f}{dev_text} {row['tokens_per_s']:,.0f} tok/s {seconds:.1f}s{star}",
         session.quiet)  # fmt: skip
    signal_number = agreed_signal(world, session.stop)
    if signal_number is not None and epoch < tc.epochs:
        raise TrainingInterrupted(signal_number, out, path, f"after epoch {epoch} (step {progress.step})")
    if session.dev_set is not None and tc.patience and progress.stale >= tc.patience:
        log(f"no dev gain for {progress.stale} epochs: stopping; best epoch {progress.best_epoch}", session.quiet)
        return True
    return False


def save_checkpoint(session: _Session, state: TrainState, best: bool) -> Path | None:
    """Write the current state to ``out/checkpoints`` (rank 0; a collective under DDP, which
    gathers every rank's random generators); the path of ``last.pt``, None without an ``output_dir``."""
    out, world = session.out, session.world
    if out is None:
        return None
    if not all_finite(state.tagger):
        raise SeqtagError(
            f"the weights are no longer finite at step {state.progress.step}; stopping without saving "
            f"(try a smaller --lr or --clip); the last good checkpoint is in {checkpoint_dir(out)}"
        )
    state.progress.seconds = session.seconds_before + time.perf_counter() - session.started
    rng_states = world.gather(rng_state())

    def write() -> None:
        checkpoint = state.to_checkpoint(session.tc, session.data_config, session.fingerprints, rng_states)
        data = encode_checkpoint({**checkpoint, "run_id": session.run_id})
        try:
            write_checkpoint(out, data, state.progress, best=best, keep=session.tc.keep)
        except WriteError as e:
            raise WriteError(e.path, f"{e.reason}; stopping (the checkpoints already there are intact)") from None

    on_main(world, write)
    return checkpoint_dir(out) / LAST
