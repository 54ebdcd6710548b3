"""Linear-chain conditional random field (CRF) on top of per-token emission scores.

For a sentence of length ``L`` with emission scores ``e`` of shape ``(L, num_tags)``
(usually the output of a BiLSTM) and a tag sequence ``y``, the unnormalized score is::

    score(y) = start[y_0] + sum_{t<L} e[t, y_t] + sum_{t<L-1} trans[y_t, y_{t+1}] + end[y_{L-1}]

and ``p(y | e) = exp(score(y)) / Z`` with ``log Z = logsumexp_y score(y)``, computed
by the forward algorithm in ``O(L * num_tags**2)``. Training minimizes the negative
log-likelihood ``log Z - score(gold)``; decoding finds ``argmax_y score(y)`` by Viterbi.

Tagging schemes (BIO, IOB1, BIOES) forbid some moves, e.g. ``O -> I-PER`` under BIO.
:func:`allowed_transitions` builds boolean masks of the allowed moves and
:meth:`CRF.set_constraints` stores them; forbidden moves then score ``NEG_SCORE``
(a large but finite negative number, so gradients stay finite) in training and decoding.

Batches are ``batch_first``: emissions ``(batch_size, seq_len, num_tags)``, tags and
mask ``(batch_size, seq_len)``. The mask is a prefix mask (``mask[b, :len_b]`` True,
the rest False, ``len_b >= 1``); padded positions are ignored whatever they hold.
The module is TorchScript-compatible.
"""

from typing import Final

import torch
from torch import Tensor

NEG_SCORE = -10000.0
"""Score given to a forbidden start, transition or end (finite: -inf gives NaN gradients)."""

_PREFIXES = {"bio": "BI", "iob1": "BI", "bioes": "BIES"}


def _split_tag(tag: str, scheme: str) -> tuple[str, str]:
    """Split ``"B-creative-work"`` into ``("B", "creative-work")``; ``"O"`` into ``("O", "")``."""
    if tag == "O":
        return "O", ""
    prefix, hyphen, kind = tag.partition("-")
    if not hyphen or not kind or len(prefix) != 1 or prefix not in _PREFIXES[scheme]:
        raise ValueError(
            f"expected a tag like 'O' or one of {list(_PREFIXES[scheme])} + '-TYPE' "
            f"under scheme {scheme!r}, got {tag!r}"
        )
    return prefix, kind


def _allowed(scheme: str, src: tuple[str, str] | None, dst: tuple[str, str] | None) -> bool:
    """Whether ``dst`` may follow ``src``; ``src=None`` means the start, ``dst=None`` the end."""
    if scheme == "bioes":
        if src is not None and src[0] in "BI":  # inside a chunk: continue or close it
            return dst is not None and dst[0] in "IE" and dst[1] == src[1]
        return dst is None or dst[0] in "BSO"
    if dst is None:  # bio and iob1: any tag may end
        return True
    # bio: I-X continues B-X / I-X; iob1: B-X separates two adjacent chunks of type X
    continuing = "I" if scheme == "bio" else "B"
    if dst[0] != continuing:
        return True
    return src is not None and src[0] in "BI" and src[1] == dst[1]


def allowed_transitions(tags: list[str], scheme: str) -> tuple[Tensor, Tensor, Tensor]:
    """Allowed moves between the tags of a tagging scheme, for :meth:`CRF.set_constraints`.

    Args:
        tags: tag names in id order, e.g. ``["O", "B-PER", "I-PER"]``: ``"O"`` or a
            one-letter prefix, a hyphen and a type (split on the first hyphen only, so
            ``"B-creative-work"`` has type ``"creative-work"``). No padding tags.
        scheme: ``"bio"`` (IOB2), ``"iob1"`` or ``"bioes"``.

    Returns:
        ``(start, transitions, end)``: bool tensors of shape ``(num_tags,)``,
        ``(num_tags, num_tags)`` indexed ``[from, to]`` and ``(num_tags,)``.

    Raises:
        ValueError: for another scheme, or a tag whose prefix the scheme lacks.

    >>> start, trans, end = allowed_transitions(["O", "B-PER", "I-PER"], "bio")
    >>> start.tolist(), trans[0].tolist()
    ([True, True, False], [True, True, False])
    """
    if scheme not in _PREFIXES:
        raise ValueError(f"expected scheme in {sorted(_PREFIXES)}, got {scheme!r}")
    parsed = [_split_tag(tag, scheme) for tag in tags]
    start = torch.tensor([_allowed(scheme, None, dst) for dst in parsed], dtype=torch.bool)
    trans = torch.tensor(
        [[_allowed(scheme, src, dst) for dst in parsed] for src in parsed], dtype=torch.bool
    ).reshape(len(tags), len(tags))
    end = torch.tensor([_allowed(scheme, src, None) for src in parsed], dtype=torch.bool)
    return start, trans, end


class CRF(torch.nn.Module):
    """Linear-chain CRF: negative log-likelihood for training, Viterbi for decoding.

    Args:
        num_tags: number of tags ``K``.

    Attributes:
        start_transitions: ``(num_tags,)`` score of starting with each tag.
        end_transitions: ``(num_tags,)`` score of ending with each tag.
        transitions: ``(num_tags, num_tags)`` score of moving from tag ``i`` to tag ``j``.
        start_mask: ``(num_tags,)`` bool buffer; False marks a forbidden first tag (all True
            until :meth:`set_constraints`).
        transition_mask: ``(num_tags, num_tags)`` bool buffer; False marks a forbidden move.
        end_mask: ``(num_tags,)`` bool buffer; False marks a forbidden last tag.

    Note:
        Scores are computed in float32, or in float64 for float64 emissions; the
        parameters are cast to that dtype.

    >>> crf = CRF(3)
    >>> emissions, mask = torch.randn(2, 4, 3), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    >>> crf(emissions, torch.zeros(2, 4, dtype=torch.long), mask).shape
    torch.Size([2])
    >>> paths, scores = crf.decode(emissions, mask)
    >>> paths.shape, scores.shape
    (torch.Size([2, 4]), torch.Size([2]))
    """

    neg_score: Final[float] = NEG_SCORE

    def __init__(self, num_tags: int) -> None:
        if num_tags < 1:
            raise ValueError(f"expected num_tags >= 1, got {num_tags}")
        super().__init__()
        self.num_tags = num_tags
        self.start_transitions = torch.nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = torch.nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = torch.nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.register_buffer("start_mask", torch.ones(num_tags, dtype=torch.bool))
        self.register_buffer("transition_mask", torch.ones(num_tags, num_tags, dtype=torch.bool))
        self.register_buffer("end_mask", torch.ones(num_tags, dtype=torch.bool))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def set_constraints(self, start: Tensor, transitions: Tensor, end: Tensor) -> None:
        """Forbid the moves whose mask is False (see :func:`allowed_transitions`).

        Args:
            start: ``(num_tags,)`` bool, allowed first tags.
            transitions: ``(num_tags, num_tags)`` bool, allowed ``[from, to]`` moves.
            end: ``(num_tags,)`` bool, allowed last tags.
        """
        k = self.num_tags
        for name, mask, shape in (
            ("start", start, [k]),
            ("transitions", transitions, [k, k]),
            ("end", end, [k]),
        ):
            if mask.dtype != torch.bool or list(mask.shape) != shape:
                raise ValueError(
                    f"expected {name} to be a bool tensor of shape {shape}, "
                    f"got {mask.dtype} of shape {list(mask.shape)}"
                )
        with torch.no_grad():
            self.start_mask.copy_(start)
            self.transition_mask.copy_(transitions)
            self.end_mask.copy_(end)

    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood of the gold tags, one value per sentence.

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            tags: ``(batch_size, seq_len)`` int64 gold tags (any value where padded).
            mask: ``(batch_size, seq_len)`` bool prefix mask, ``mask[:, 0]`` all True.

        Returns:
            ``(batch_size,)`` ``log Z - score(tags)``, ``>= 0``; float32 (float64 for
            float64 emissions). Reduce it (sum or mean) for the loss.
        """
        self._validate(emissions, mask, tags)
        emissions = self._prepare(emissions, mask)
        return self._log_partition(emissions, mask) - self._score(emissions, tags, mask)

    @torch.jit.export
    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Log of the sum of ``exp(score)`` over all tag sequences (forward algorithm).

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            mask: ``(batch_size, seq_len)`` bool prefix mask.

        Returns:
            ``(batch_size,)`` ``log Z``.
        """
        self._validate(emissions, mask, None)
        return self._log_partition(self._prepare(emissions, mask), mask)

    @torch.jit.export
    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Unnormalized score of the given tag sequences (see the module docstring).

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            tags: ``(batch_size, seq_len)`` int64 tags (any value where padded).
            mask: ``(batch_size, seq_len)`` bool prefix mask.

        Returns:
            ``(batch_size,)`` scores.
        """
        self._validate(emissions, mask, tags)
        return self._score(self._prepare(emissions, mask), tags, mask)

    @torch.jit.export
    def decode(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Best tag sequence of each sentence (batched Viterbi).

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            mask: ``(batch_size, seq_len)`` bool prefix mask.

        Returns:
            ``(paths, scores)``: ``(batch_size, seq_len)`` int64 tags, 0 where padded,
            and ``(batch_size,)`` the score of each path.
        """
        self._validate(emissions, mask, None)
        return self._viterbi(self._prepare(emissions, mask), mask)

    def _validate(self, emissions: Tensor, mask: Tensor, tags: Tensor | None) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(
                f"expected emissions of shape (batch_size, seq_len, {self.num_tags}), "
                f"got {list(emissions.shape)}"
            )
        if not emissions.is_floating_point():
            raise ValueError(f"expected floating-point emissions, got {emissions.dtype}")
        if emissions.size(0) < 1 or emissions.size(1) < 1:
            raise ValueError(f"expected batch_size, seq_len >= 1, got {list(emissions.shape)}")
        shape = list(emissions.shape[:2])
        if mask.dtype != torch.bool or list(mask.shape) != shape:
            raise ValueError(
                f"expected a bool mask of shape {shape}, got {mask.dtype} of shape {list(mask.shape)}"
            )
        if tags is not None and (tags.dtype != torch.long or list(tags.shape) != shape):
            raise ValueError(
                f"expected int64 tags of shape {shape}, got {tags.dtype} of shape {list(tags.shape)}"
            )
        if mask.device.type == "cpu":  # checking on an accelerator would sync with the host
            assert bool(mask[:, 0].all()), "every sentence needs at least one token"
            assert not bool((mask[:, 1:] > mask[:, :-1]).any()), "mask must be a prefix mask"

    def _prepare(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Promote half precision to float32 and zero the padded positions."""
        if emissions.dtype == torch.float16 or emissions.dtype == torch.bfloat16:
            emissions = emissions.float()
        # Zeroing makes padding inert even when it holds inf or NaN (no NaN gradients).
        return emissions.masked_fill(~mask.unsqueeze(2), 0.0)

    def _masked_params(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """Start, transition and end scores in ``dtype``, forbidden moves set to NEG_SCORE."""
        start = self.start_transitions.to(dtype).masked_fill(~self.start_mask, self.neg_score)
        trans = self.transitions.to(dtype).masked_fill(~self.transition_mask, self.neg_score)
        end = self.end_transitions.to(dtype).masked_fill(~self.end_mask, self.neg_score)
        return start, trans, end

    def _score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        start, trans, end = self._masked_params(emissions.dtype)
        tags = tags.masked_fill(~mask, 0)  # any in-range tag will do where padded
        weights = mask.to(emissions.dtype)
        # shape: (batch_size, seq_len)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        # shape: (batch_size, seq_len - 1)
        moved = trans[tags[:, :-1], tags[:, 1:]] * weights[:, 1:]
        # shape: (batch_size,)
        last = tags.gather(1, mask.sum(1, keepdim=True) - 1).squeeze(1)
        return start[tags[:, 0]] + emitted.sum(1) + moved.sum(1) + end[last]

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        start, trans, end = self._masked_params(emissions.dtype)
        # shape: (batch_size, num_tags), log-sum of all prefixes ending in each tag
        alpha = start + emissions[:, 0]
        for t in range(1, emissions.size(1)):
            # shape: (batch_size, num_tags [from], num_tags [to])
            step = alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1)
            # shape: (batch_size, num_tags)
            alpha = torch.where(mask[:, t].unsqueeze(1), torch.logsumexp(step, dim=1), alpha)
        # shape: (batch_size,); alpha stopped at each sentence's last token
        return torch.logsumexp(alpha + end, dim=1)

    def _viterbi(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        start, trans, end = self._masked_params(emissions.dtype)
        batch_size, seq_len = mask.shape
        # shape: (batch_size, num_tags), best prefix score ending in each tag
        best = start + emissions[:, 0]
        # shape: (batch_size, seq_len, num_tags), best previous tag (row 0 unused)
        backpointers = torch.zeros(
            batch_size, seq_len, self.num_tags, dtype=torch.long, device=emissions.device
        )
        for t in range(1, seq_len):
            # shape: (batch_size, num_tags [to]), max over the previous tag
            step, pointer = (best.unsqueeze(2) + trans).max(dim=1)
            backpointers[:, t] = pointer
            best = torch.where(mask[:, t].unsqueeze(1), step + emissions[:, t], best)
        # shape: (batch_size,)
        scores, tag = (best + end).max(dim=1)
        # shape: (batch_size, seq_len)
        paths = torch.zeros(batch_size, seq_len, dtype=torch.long, device=emissions.device)
        for t in range(seq_len - 1, -1, -1):
            if t < seq_len - 1:
                # Follow the pointer only inside the sentence: the tag chosen at its last
                # token is carried unchanged through the padding.
                previous = backpointers[:, t + 1].gather(1, tag.unsqueeze(1)).squeeze(1)
                tag = torch.where(mask[:, t + 1], previous, tag)
            paths[:, t] = tag.masked_fill(~mask[:, t], 0)
        return paths, scores
