"""The heads of the tagger: what turns emissions into a loss, tag ids, probabilities and n-best lists.

A head is an ``nn.Module`` with four methods, each taking ``emissions`` ``(batch, seq_len,
num_tags)`` and a ``(batch, seq_len)`` bool prefix ``mask``: ``loss(emissions, tags, mask)``,
``decode(emissions, mask)``, ``marginals(emissions, mask)`` and ``nbest(emissions, mask, k)``.
:class:`CRFHead` is a linear-chain CRF (:class:`~seqtag.model.crf.CRF`); :class:`SoftmaxHead` is an
independent softmax per token. ``Tagger`` builds one of them (``TaggerConfig.crf``); a new head
is a new class here with the same four methods (TorchScript compiles them), an option in
``config.py``, a branch in :func:`build_head` and its graph in ``onnx_export.py``, which knows
each head by its exact class: ``docs/design.md``, "How to extend: a head".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtag.config import TaggerConfig
from seqtag.model.crf import CRF, allowed_transitions


def _promote(emissions: Tensor) -> Tensor:
    """Half-precision emissions in float32 (what the CRF computes in); others unchanged."""
    if emissions.dtype == torch.float16 or emissions.dtype == torch.bfloat16:
        return emissions.float()
    return emissions


def _zero_transition_crf(num_tags: int) -> CRF:
    """A CRF with all start, transition and end scores 0 and nothing saved in a state dict.

    Over log-softmax emissions its sequence scores are the softmax model's log-probabilities,
    so its k-best search is the exact n-best of a softmax head.
    """
    crf = CRF(num_tags)
    for name in ("start_transitions", "end_transitions", "transitions"):
        zeros = torch.zeros_like(getattr(crf, name))
        delattr(crf, name)
        crf.register_buffer(name, zeros, persistent=False)
    for name in ("start_mask", "transition_mask", "end_mask"):
        crf.register_buffer(name, getattr(crf, name), persistent=False)
    return crf


class SoftmaxHead(nn.Module):
    """Independent per-token softmax over the emissions.

    Every method takes ``emissions`` ``(batch, seq_len, num_tags)`` and a ``(batch, seq_len)``
    bool prefix ``mask`` (each row at least one True).
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.chain = _zero_transition_crf(num_tags)

    @torch.jit.export
    def loss(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Cross-entropy, mean over real tokens (float32 scalar); ``tags`` ``(batch, seq_len)``."""
        return F.cross_entropy(emissions.float().flatten(0, 1), tags.masked_fill(~mask, -100).flatten())

    @torch.jit.export
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Argmax tag ids ``(batch, seq_len)`` int64, 0 at padding."""
        return emissions.argmax(dim=2).masked_fill(~mask, 0)

    @torch.jit.export
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """The softmax ``(batch, seq_len, num_tags)``, rows of 0 at padding; float32 (float64
        for float64 emissions)."""
        probs = torch.softmax(_promote(emissions), dim=2)
        return probs.masked_fill(~mask.unsqueeze(2), 0.0)

    @torch.jit.export
    def nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` most probable tag sequences: ``(paths (batch, k, seq_len), log_probs
        (batch, k))``, best first, ``-inf`` (and a path of zeros) where a sentence has fewer
        than ``k`` sequences. The CRF's k-best search over log-softmax emissions with zero
        transitions: its scores are the log-probabilities, so the result is exact."""
        log_probs = torch.log_softmax(_promote(emissions), dim=2)
        paths, scores = self.chain.nbest(log_probs, mask, k)
        return paths, scores - self.chain.log_partition(log_probs, mask).unsqueeze(1)


class CRFHead(nn.Module):
    """A linear-chain CRF over the emissions (:class:`~seqtag.model.crf.CRF`, attribute ``crf``).

    Every method takes ``emissions`` ``(batch, seq_len, num_tags)`` and a ``(batch, seq_len)``
    bool prefix ``mask`` (each row at least one True).
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.crf = CRF(num_tags)

    @torch.jit.export
    def loss(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood, summed over sentences and divided by the real tokens
        (float32 scalar); ``tags`` ``(batch, seq_len)``."""
        return self.crf(emissions, tags, mask).sum() / mask.sum()

    @torch.jit.export
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Viterbi tag ids ``(batch, seq_len)`` int64, 0 at padding (constraints respected)."""
        return self.crf.decode(emissions, mask)

    @torch.jit.export
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """``p(y_t = k | x)`` by forward-backward, ``(batch, seq_len, num_tags)``, rows of 0 at
        padding, 0 for tags the constraints rule out; float32 (float64 for float64 emissions)."""
        return self.crf.marginals(emissions, mask)

    @torch.jit.export
    def nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` best tag sequences: ``(paths (batch, k, seq_len), log_probs (batch, k))``,
        best first (the first is :meth:`decode`'s), ``-inf`` (and a path of zeros) where a
        sentence has fewer than ``k`` allowed sequences."""
        paths, scores = self.crf.nbest(emissions, mask, k)
        # log Z in float64: in float32 it is off by up to ~1e-3 on long sentences
        log_z = self.crf.log_partition(emissions.double(), mask).unsqueeze(1)
        return paths, (scores.double() - log_z).to(scores.dtype)


def build_head(config: TaggerConfig, tags: Sequence[str], scheme: str) -> nn.Module:
    """The head ``config`` names, for the tag set ``tags`` (names in id order) of span scheme
    ``scheme`` (``"none"`` or one of :func:`~seqtag.model.crf.allowed_transitions`'s): the one place
    a head is chosen and built, so a new head is added here and in ``config.py``."""
    if not config.crf:
        return SoftmaxHead(len(tags))
    head = CRFHead(len(tags))
    if config.constrain and scheme != "none":
        head.crf.set_constraints(*allowed_transitions(list(tags), scheme))
    return head
