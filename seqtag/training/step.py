"""One training step, the one that :func:`seqtag.train`, ``seqtag bench`` and the benchmarks
run (:func:`train_step`; also ``seqtag.training.loop.train_step``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqtag.data.dataset import Batch, SubwordBatch
from seqtag.data.vocab import UNK, Vocabularies
from seqtag.device import autocast
from seqtag.model.tagger import Tagger
from seqtag.training.distributed import Distributed


def word_dropout_probabilities(vocabs: Vocabularies, alpha: float, device: torch.device) -> Tensor | None:
    """The probability (shape ``(num_words,)``) of replacing each word id by ``<unk>`` in training:
    ``alpha / (alpha + count)``; never for padding, ``<unk>`` or words unseen in training.
    None when ``alpha`` is 0 (no word dropout)."""
    if alpha <= 0:
        return None
    counts = torch.tensor(vocabs.word_counts, dtype=torch.float32)
    probs = torch.where(counts > 0, alpha / (alpha + counts), torch.zeros_like(counts))
    return probs.to(device)


ENCODER_GROUP = "encoder"
"""The name of the optimizer's parameter group of a pretrained encoder's weights (its own
learning rate, ``TrainConfig.encoder_lr``)."""


class LossModule(nn.Module):
    """The tagger and its loss in one ``forward``, the module that ``DistributedDataParallel``
    wraps: its gradient hooks must see every parameter that the loss uses, the CRF's included."""

    def __init__(self, tagger: Tagger) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, tags: Tensor,
        subwords: SubwordBatch | None = None,
    ) -> Tensor:
        """The mean loss per real token of a padded batch (see :meth:`Tagger.loss`): ``words``,
        ``cases``, ``tags`` of shape ``(batch, seq_len)``, ``chars`` ``(batch, seq_len,
        max_word_length)``, ``lengths`` ``(batch,)`` on the CPU, and for a model with an encoder
        the batch's ``subwords`` (the encoder runs here, inside the module DDP wraps); a float32
        scalar."""
        emissions = self.tagger(words, cases, chars, lengths, self.tagger.word_vectors(subwords))
        return self.tagger.loss(emissions, tags, lengths)  # float32 (the CRF upcasts)


@dataclass
class StepResult:
    """What :func:`train_step` did. Under DDP the sums are over all ranks (the same on every rank).

    Attributes:
        loss_sum: the loss summed over the step's real tokens (of every rank).
        tokens: the real tokens of the step (of every rank).
        local_loss: this rank's ``loss_sum`` alone.
        norm: the gradient norm before clipping (0.0 unless clipping without a gradient scaler).
        agreed: the sums over the ranks of ``train_step``'s ``agree`` values.
    """

    loss_sum: float
    tokens: int
    local_loss: float
    norm: float
    agreed: list[float]

    @property
    def finite(self) -> bool:
        """Whether the loss and the gradient norm are finite, that is, whether the step was taken."""
        return math.isfinite(self.loss_sum) and math.isfinite(self.norm)


def train_step(
    tagger: Tagger,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    *,
    lr: float | None = None,
    encoder_lr: float | None = None,
    precision: str = "fp32",
    clip: float = 0.0,
    scaler: torch.amp.GradScaler | None = None,
    word_dropout: Tensor | None = None,
    model: nn.Module | None = None,
    world: Distributed | None = None,
    agree: Callable[[], Sequence[float]] | None = None,
) -> StepResult:
    """One training step, the one that :func:`train`, ``seqtag bench`` and the benchmarks run:
    forward and loss under ``precision``'s autocast (with word dropout), backward (under DDP:
    averaging the gradients over the ranks), unscaling (fp16), clipping and the optimizer step.

    Args:
        tagger: the model being trained (in train mode).
        optimizer: its optimizer; ``lr`` (when given) is set on every parameter group first, but
            for the pretrained encoder's group (named :data:`ENCODER_GROUP`), which gets
            ``encoder_lr`` (when given).
        batch: a padded batch (:class:`~seqtag.data.dataset.Batch`: ``words`` of shape ``(batch,
            seq_len)``, ...), moved to the tagger's device here.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (then ``scaler`` scales the loss).
        clip: clip the gradient norm to this (0 = no clipping).
        word_dropout: ``(num_words,)`` probability of replacing each word id by ``<unk>``
            (:func:`word_dropout_probabilities`), or None.
        model: the module whose ``forward(words, cases, chars, lengths, tags)`` returns the loss:
            ``LossModule(tagger)`` (the default) or its ``DistributedDataParallel`` wrapper.
        world: the process group (:func:`seqtag.training.distributed.setup`); None: one process.
        agree: called after the forward pass: numbers to sum over the ranks in the step's one
            all-reduce (e.g. whether a rank has had a signal), so that every rank takes the
            same decision at the same step.

    Returns:
        A :class:`StepResult`. When the loss (of any rank) or the gradient norm is not finite,
        no step is taken (``result.finite`` is False).
    """
    device = next(tagger.parameters()).device
    batch = batch.to(device, non_blocking=True)
    words = batch.words
    if word_dropout is not None:
        drop = torch.rand(words.shape, device=device) < word_dropout[words]
        words = words.masked_fill(drop, tagger.vocabs.words.stoi[UNK])
    with autocast(device, precision):
        loss = (model or LossModule(tagger))(words, batch.cases, batch.chars, batch.lengths, batch.tags, batch.subwords)
    local = float(loss.detach()) * batch.num_tokens
    # One all-reduce a step (none in a single process): the loss summed over all ranks' tokens,
    # and the values to agree on.
    values = [local, batch.num_tokens, *(agree() if agree is not None else ())]
    loss_sum, tokens, *agreed = world.sum(values) if world is not None else values
    optimizer.zero_grad(set_to_none=True)
    norm = _update(tagger, loss, optimizer, scaler, lr, encoder_lr, clip) if math.isfinite(loss_sum) else 0.0
    return StepResult(loss_sum, int(tokens), local, norm, agreed)


def _update(
    tagger: Tagger,
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    lr: float | None,
    encoder_lr: float | None,
    clip: float,
) -> float:
    """Back-propagate ``loss`` and take one optimizer step; the gradient norm (see
    :class:`StepResult`). If the norm is not finite, no step is taken."""
    for group in optimizer.param_groups:
        rate = encoder_lr if group.get("name") == ENCODER_GROUP else lr
        if rate is not None:
            group["lr"] = rate
    if scaler is None:
        loss.backward()
    else:  # fp16: scale the loss so small gradients do not flush to zero; unscale before clipping
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    norm = 0.0
    if clip > 0:
        grads = [p.grad for p in tagger.parameters() if p.grad is not None]
        total_norm = torch.nn.utils.get_total_norm(grads)
        total = float(total_norm)
        # clip_grad_norm_ would scale every gradient, by 1.0 when the norm is within ``clip``:
        # a pass over the word embedding's gradient each step for nothing.
        if total > clip:
            torch.nn.utils.clip_grads_with_norm_(tagger.parameters(), clip, total_norm)
        if scaler is None:  # the scaler skips steps with overflowing gradients by itself
            norm = total
    if not math.isfinite(norm):
        return norm
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return norm
