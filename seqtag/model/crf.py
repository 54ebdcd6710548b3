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

Besides the best sequence, :meth:`CRF.marginals` gives the posterior probability of each
tag at each token (forward-backward) and :meth:`CRF.nbest` the ``k`` best sequences (k-best
Viterbi). Both treat forbidden moves as impossible (``-inf``, probability exactly 0) rather
than as ``NEG_SCORE``; they are for inference and return tensors without gradient.

Batches are ``batch_first``: emissions ``(batch_size, seq_len, num_tags)``, tags and
mask ``(batch_size, seq_len)``. The mask is a prefix mask (``mask[b, :len_b]`` True,
the rest False, ``len_b >= 1``); padded positions are ignored whatever they hold.
The module is TorchScript-compatible, and ``decode``/``viterbi`` also trace under
``torch.export`` (the checks that read tensor values are skipped while tracing or exporting).

How it runs: on the CPU the negative log-likelihood goes eagerly through
:class:`_LogPartition`, a scaled forward algorithm with one ``(B, K+1) @ (K+1, K+1)`` matmul a
step and no autograd graph, whose backward is forward-backward; scripted, traced or exported
code, other devices and any batch whose exponentials would lose precision use the log-space
recursion. Both give the same values and gradients to rounding. Viterbi takes ``amax`` over the
moves each step and recomputes the best previous tag only while backtracking. Measurements:
docs/benchmarks.md (the CRF's training cost) and ``benchmarks/bench_crf.py``.
"""

from typing import Final

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqtag.schemes import allowed_moves

NEG_SCORE = -10000.0
"""Score given to a forbidden start, transition or end (finite: -inf gives NaN gradients)."""



def _tracing() -> bool:
    """Whether the code runs under ``torch.jit.trace``, ``torch.export`` or ``torch.compile``,
    where checks that read tensor values would be frozen into the graph or fail."""
    if torch.jit.is_scripting():
        return False
    return torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.compiler.is_compiling()


class _LogPartition(torch.autograd.Function):
    """``log Z`` by the forward algorithm in scaled probability space, with the gradient by
    forward-backward (the marginals): the eager training path.

    The sentences get one extra tag, END, and one extra position: every move into END scores
    ``end``, END only follows END, and at padded positions END is the only tag. Every
    sentence then ends in END at position ``seq_len``, so both recursions run over the whole
    batch without masking. Messages are kept normalized (``a[t]`` sums to 1, ``c[t]`` is the
    normalizer) and ``log Z = sum(log c) + the shifts``; each step is one ``(B, K+1) @ (K+1,
    K+1)`` matmul, a product and a normalization, with no autograd graph.

    Exponentials can underflow where log space cannot: :func:`_scaled_forward` also runs the
    backward recursion (which the gradient needs anyway) and returns ``ok`` False when what
    underflow lost could move log Z or the gradient by more than ``eps**2`` (see there); the
    caller then uses the log-space recursion, so results agree with it to rounding.

    Inputs: emissions ``(B, T, K)`` prepared (padding zeroed), mask ``(B, T)``, start ``(K,)``,
    trans ``(K, K)``, end ``(K,)`` with forbidden moves at ``NEG_SCORE``. Outputs: log Z
    ``(B,)`` and ok, a bool scalar tensor.
    """

    @staticmethod
    def forward(ctx, emissions, mask, start, trans, end):
        with torch.autocast(emissions.device.type, enabled=False):  # keep the matmuls in fp32
            log_z, ok, alphas, betas, weighted, matrix = _scaled_forward(
                emissions, mask, start, trans, end
            )
        ctx.save_for_backward(alphas, betas, weighted, matrix)
        ctx.mark_non_differentiable(ok)
        return log_z, ok

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_log_z, grad_ok):
        alphas, betas, weighted, matrix = ctx.saved_tensors
        with torch.autocast(grad_log_z.device.type, enabled=False):
            grad_emissions, grad_start, grad_trans, grad_end = _scaled_backward(
                grad_log_z, alphas, betas, weighted, matrix
            )
        return grad_emissions, None, grad_start, grad_trans, grad_end


def _scaled_forward(
    emissions: Tensor, mask: Tensor, start: Tensor, trans: Tensor, end: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward pass of :class:`_LogPartition`.

    Returns:
        ``(log_z, ok, alphas, betas, weighted, matrix)``: ``(B,)``; bool ``()``; ``(T+1, B,
        K+1)`` the normalized forward messages ``a[t]`` (time first); the backward messages
        and ``weighted`` of :func:`_backward_messages`; ``(K+1, K+1)`` the move factors
        ``exp(trans - shift)`` with END.
    """
    batch_size, seq_len, k = emissions.shape
    lengths = mask.sum(1)
    # shape: (B, T, 1); exp(e - max) <= 1, so the factors cannot overflow
    top = emissions.amax(2, keepdim=True)
    factors = emissions.new_zeros(seq_len + 1, batch_size, k + 1)
    factors[:seq_len, :, :k] = (emissions - top).exp_().transpose(0, 1)
    factors[:seq_len, :, k] = (~mask).t().to(emissions.dtype)  # END where padded
    factors[seq_len, :, k] = 1.0
    factors[:seq_len, :, :k].masked_fill_(~mask.t().unsqueeze(2), 0.0)
    # END -> END is exp(0) = 1 exactly, so the padding adds nothing; moves into a real tag or
    # into END are shifted by the largest score so that the factors are <= 1.
    shift = torch.maximum(trans.max(), end.max())
    matrix = emissions.new_zeros(k + 1, k + 1)
    matrix[:k, :k] = (trans - shift).exp()
    matrix[:k, k] = (end - shift).exp()
    matrix[k, k] = 1.0
    first = start.max()
    # shape: (T+1, B, K+1) the messages; sums (T+1, B, K+1) before the emission factor;
    # normalizers (T+1, B, 1)
    alphas = torch.empty_like(factors)
    sums = torch.empty_like(factors)
    norms = emissions.new_empty(seq_len + 1, batch_size, 1)
    torch.mul(factors[0, :, :k], (start - first).exp(), out=alphas[0, :, :k])
    alphas[0, :, k] = 0.0
    # Views made once (unbind) instead of indexing inside the loop: ~15 us a step.
    a, s, c, f = alphas.unbind(0), sums.unbind(0), norms.unbind(0), factors.unbind(0)
    torch.sum(a[0], 1, keepdim=True, out=c[0])
    a[0].div_(c[0])
    for t in range(1, seq_len + 1):
        torch.mm(a[t - 1], matrix, out=s[t])
        torch.mul(s[t], f[t], out=a[t])
        torch.sum(a[t], 1, keepdim=True, out=c[t])
        a[t].div_(c[t])
    # shape: (B,)
    log_z = norms.log().sum(0).squeeze(1) + top.squeeze(2).sum(1) + first + lengths * shift
    factors[1:].div_(norms[1:])
    betas, weighted = _backward_messages(factors, matrix)
    # Precision: a factor or product below finfo.tiny is flushed or denormal, an absolute error
    # of at most (K+2) * tiny / c[t] in each message a[t] (K+1 terms of its sum, and the
    # product with the emission factor). Z is linear in a[t] with coefficients b[t] (the
    # normalized Z is a[t] @ b[t] = 1), so those errors move log Z and the marginals by at
    # most (K+2) * (K+1) * tiny * sum_t max_j b[t, j] / c[t]; ok where that is below eps**2
    # (1.4e-14 in float32). Not ok: extreme emissions that a tag with a tiny forward mass
    # would need, a sentence without allowed sequence, inf or NaN (the comparison is False).
    info = torch.finfo(emissions.dtype)
    limit = info.eps**2 / ((k + 2) * (k + 1) * (seq_len + 1) * info.tiny)
    ok = (betas / norms <= limit).all()
    return log_z, ok, alphas, betas, weighted, matrix


def _backward_messages(factors: Tensor, matrix: Tensor) -> tuple[Tensor, Tensor]:
    """The backward messages of :class:`_LogPartition`, ``b[t-1] = (factors[t] * b[t]) @
    matrix.T`` from ``b[T] = 1`` (``factors`` already divided by the normalizers).

    Returns:
        ``(betas, weighted)``: ``(T+1, B, K+1)``, ``a[t] * b[t]`` summing to 1 over the tags;
        ``(T, B, K+1)``, ``weighted[t - 1] = factors[t] * b[t]``.
    """
    steps = factors.size(0) - 1
    betas = torch.empty_like(factors)
    weighted = torch.empty_like(factors[1:])
    betas[steps] = 1.0
    moves = matrix.t()
    b, w, f = betas.unbind(0), weighted.unbind(0), factors.unbind(0)
    for t in range(steps, 0, -1):
        torch.mul(f[t], b[t], out=w[t - 1])
        torch.mm(w[t - 1], moves, out=b[t - 1])
    return betas, weighted


def _scaled_backward(
    grad: Tensor, alphas: Tensor, betas: Tensor, weighted: Tensor, matrix: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The gradient of ``grad @ log_z`` from :func:`_scaled_forward`'s outputs: the marginals
    ``a[t] * b[t]`` (for emissions and start) and the expected moves (for trans and end) in
    one ``(K+1, B*T) @ (B*T, K+1)`` matmul.

    Returns:
        Gradients for emissions ``(B, T, K)``, start ``(K,)``, trans ``(K, K)``, end ``(K,)``.
    """
    steps, batch_size, k = alphas.size(0) - 1, alphas.size(1), alphas.size(2) - 1
    scale = grad.view(1, batch_size, 1)
    # shape: (T, B, K) -> (B, T, K); 0 where padded, since alphas are 0 there
    grad_emissions = (alphas[:steps, :, :k] * betas[:steps, :, :k] * scale).transpose(0, 1)
    # shape: (K+1, K+1) expected number of each move, weighted by grad
    expected = alphas[:steps].reshape(-1, k + 1).t() @ (weighted * scale).reshape(-1, k + 1)
    expected = expected * matrix
    grad_start = grad_emissions[:, 0].sum(0)
    return grad_emissions, grad_start, expected[:k, :k], expected[:k, k]


def allowed_transitions(tags: list[str], scheme: str) -> tuple[Tensor, Tensor, Tensor]:
    """Allowed moves between the tags of a tagging scheme (:func:`seqtag.schemes.allowed_moves`)
    as masks, for :meth:`CRF.set_constraints`.

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
    start, transitions, end = allowed_moves(tags, scheme)
    trans = torch.tensor(transitions, dtype=torch.bool).reshape(len(tags), len(tags))
    return torch.tensor(start, dtype=torch.bool), trans, torch.tensor(end, dtype=torch.bool)


class CRF(torch.nn.Module):
    """Linear-chain CRF: negative log-likelihood for training; Viterbi, marginals and k-best
    sequences for inference.

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

    Note:
        Ties are broken the same way everywhere: among tag sequences with equal scores, the
        one whose tags read from the last token backwards, ``(y[L-1], y[L-2], ..., y[0])``,
        are lexicographically smaller comes first. :meth:`decode` and :meth:`viterbi` return
        the first such best sequence and :meth:`nbest` lists sequences in that order (it is
        what taking the lowest index among equal maxima gives at each step).

    >>> crf = CRF(3)
    >>> emissions, mask = torch.randn(2, 4, 3), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    >>> crf(emissions, torch.zeros(2, 4, dtype=torch.long), mask).shape
    torch.Size([2])
    >>> crf.decode(emissions, mask).shape
    torch.Size([2, 4])
    >>> paths, scores = crf.viterbi(emissions, mask)
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

        Raises:
            ValueError: for emissions, tags or a mask of the wrong shape or dtype, or (for
                CPU tensors) a mask that is not a prefix mask with ``mask[:, 0]`` all True.
        """
        self._validate(emissions, mask, tags)
        emissions = self._prepare(emissions, mask)
        start, trans, end = self._masked_params(emissions.dtype)
        log_z = self._log_partition(emissions, mask, start, trans, end)
        return log_z - self._score(emissions, tags, mask, start, trans, end)

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
        emissions = self._prepare(emissions, mask)
        return self._log_partition(emissions, mask, *self._masked_params(emissions.dtype))

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
        emissions = self._prepare(emissions, mask)
        return self._score(emissions, tags, mask, *self._masked_params(emissions.dtype))

    @torch.jit.export
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Best tag sequence of each sentence (batched Viterbi); :meth:`viterbi` without scores.

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            mask: ``(batch_size, seq_len)`` bool prefix mask.

        Returns:
            ``(batch_size, seq_len)`` int64 tags, 0 where padded.
        """
        return self.viterbi(emissions, mask)[0]

    @torch.jit.export
    def viterbi(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Best tag sequence of each sentence and its score (batched Viterbi).

        Forbidden moves score ``NEG_SCORE``, as in training, so a sentence always gets a path
        (one without forbidden moves whenever one exists and emissions are not extreme).
        Works eagerly, scripted and under ``torch.export``.

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            mask: ``(batch_size, seq_len)`` bool prefix mask.

        Returns:
            ``(paths, scores)``: ``(batch_size, seq_len)`` int64 tags, 0 where padded,
            and ``(batch_size,)`` the score of each path (equal to :meth:`score` of it).
        """
        self._validate(emissions, mask, None)
        return self._viterbi(self._prepare(emissions, mask), mask)

    @torch.jit.export
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Posterior probability of each tag at each token, ``p(y[t] = k | emissions)``.

        Computed by the forward-backward algorithm in log space; the backward pass is the
        forward recursion run over the reversed sentences with transposed transitions.
        Forbidden moves are impossible: a tag that no allowed sequence puts at a token gets
        exactly 0. A sentence with no allowed sequence at all gets rows of 0.

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            mask: ``(batch_size, seq_len)`` bool prefix mask.

        Returns:
            ``(batch_size, seq_len, num_tags)`` probabilities, each real token's row summing
            to 1, rows of 0 where padded; float32 (float64 for float64 emissions),
            without gradient. Computed in float64 either way.

        >>> crf = CRF(3)
        >>> crf.set_constraints(*allowed_transitions(["O", "B-PER", "I-PER"], "bio"))
        >>> emissions = torch.randn(2, 4, 3)
        >>> mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
        >>> probs = crf.marginals(emissions, mask)
        >>> probs.shape
        torch.Size([2, 4, 3])
        >>> torch.allclose(probs.sum(2), mask.float())  # 1 per token, 0 at padding
        True
        >>> probs[:, 0, 2]  # no sentence starts with I-PER under BIO
        tensor([0., 0.])
        """
        self._validate(emissions, mask, None)
        emissions = self._prepare(emissions, mask)
        with torch.no_grad():  # -inf scores would give NaN gradients
            # In float64 whatever the input: in float32 the sum of forward and backward scores
            # of a long sentence loses ~1e-4 (probabilities above 1 at 70 tokens on EWT).
            return self._marginals(emissions.double(), mask).to(emissions.dtype)

    @torch.jit.export
    def nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` best tag sequences of each sentence, best first (batched k-best Viterbi).

        Each step keeps the ``k`` best partial scores per tag with pointers to the previous
        (tag, rank). Forbidden moves are impossible, so every returned sequence is allowed;
        when a sentence has fewer than ``k`` allowed sequences, the missing entries have
        score ``-inf`` and paths of zeros. Ties are broken as in the class note, so the
        first path is :meth:`viterbi`'s. ``scores - log_partition(...)[:, None]`` are the
        log-probabilities.

        Args:
            emissions: ``(batch_size, seq_len, num_tags)`` float emission scores.
            mask: ``(batch_size, seq_len)`` bool prefix mask.
            k: number of sequences per sentence, ``>= 1``.

        Returns:
            ``(paths, scores)``: ``(batch_size, k, seq_len)`` int64 tags, 0 where padded,
            and ``(batch_size, k)`` their scores, non-increasing along ``k``; float32
            (float64 for float64 emissions), without gradient.

        Raises:
            ValueError: for ``k < 1``, or the input errors of :meth:`forward`.

        >>> crf = CRF(3)
        >>> crf.set_constraints(*allowed_transitions(["O", "B-PER", "I-PER"], "bio"))
        >>> emissions = torch.randn(2, 4, 3)
        >>> mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]]).bool()
        >>> paths, scores = crf.nbest(emissions, mask, k=3)
        >>> paths.shape, scores.shape
        (torch.Size([2, 3, 4]), torch.Size([2, 3]))
        >>> torch.equal(paths[:, 0], crf.decode(emissions, mask))
        True
        >>> scores[1, 2]  # one token: only O and B-PER may start and end a sentence
        tensor(-inf)
        >>> log_probs = scores - crf.log_partition(emissions, mask).unsqueeze(1)
        >>> bool((log_probs[0] <= 0).all())
        True
        """
        if k < 1:
            raise ValueError(f"expected k >= 1, got {k}")
        self._validate(emissions, mask, None)
        with torch.no_grad():  # -inf scores would give NaN gradients
            return self._nbest(self._prepare(emissions, mask), mask, k)

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
        # Reading values would sync with an accelerator, and cannot be traced or exported.
        if mask.device.type == "cpu" and not _tracing():
            if not bool(mask[:, 0].all()):
                raise ValueError("expected mask[:, 0] all True (a token in every sentence), got False")
            if bool((mask[:, 1:] > mask[:, :-1]).any()):
                raise ValueError("expected a prefix mask (True, then False), got True after False")

    def _prepare(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Promote half precision to float32 and zero the padded positions."""
        if emissions.dtype == torch.float16 or emissions.dtype == torch.bfloat16:
            emissions = emissions.float()
        # Zeroing makes padding inert even when it holds inf or NaN (no NaN gradients).
        return emissions.masked_fill(~mask.unsqueeze(2), 0.0)

    def _masked_params(
        self, dtype: torch.dtype, forbidden: float = NEG_SCORE
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Start, transition and end scores in ``dtype``, forbidden moves set to ``forbidden``
        (``NEG_SCORE`` for training and Viterbi, ``-inf`` for marginals and n-best)."""
        start = self.start_transitions.to(dtype).masked_fill(~self.start_mask, forbidden)
        trans = self.transitions.to(dtype).masked_fill(~self.transition_mask, forbidden)
        end = self.end_transitions.to(dtype).masked_fill(~self.end_mask, forbidden)
        return start, trans, end

    def _reverse(self, values: Tensor, mask: Tensor) -> Tensor:
        """``(batch_size, seq_len, n)`` values with each sentence's real positions reversed
        (``t -> len - 1 - t``) and the padding left in place; its own inverse."""
        # shape: (1, seq_len)
        positions = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)
        # shape: (batch_size, seq_len)
        index = torch.where(mask, mask.sum(1, keepdim=True) - 1 - positions, positions)
        return values.gather(1, index.unsqueeze(2).expand(-1, -1, values.size(2)))

    def _score(
        self,
        emissions: Tensor,
        tags: Tensor,
        mask: Tensor,
        start: Tensor,
        trans: Tensor,
        end: Tensor,
    ) -> Tensor:
        tags = tags.masked_fill(~mask, 0)  # any in-range tag will do where padded
        weights = mask.to(emissions.dtype)
        # shape: (batch_size, seq_len)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        # shape: (batch_size, seq_len - 1)
        moved = trans[tags[:, :-1], tags[:, 1:]] * weights[:, 1:]
        # shape: (batch_size,)
        last = tags.gather(1, mask.sum(1, keepdim=True) - 1).squeeze(1)
        return start[tags[:, 0]] + emitted.sum(1) + moved.sum(1) + end[last]

    def _forward_algorithm(
        self, emissions: Tensor, mask: Tensor, start: Tensor, trans: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        """The forward recursion in log space, shared by the partition function and both
        passes of the marginals.

        Returns:
            ``(incoming, alpha)``: ``incoming[t]`` of shape ``(batch_size, num_tags)`` is the
            log-sum of the scores of all prefixes ``y[0..t]`` ending in each tag, without
            the emission at ``t`` (``incoming[0]`` is ``start``; meaningless past a
            sentence's end); ``alpha`` ``(batch_size, num_tags)`` is the same with the
            emission, at each sentence's last token.
        """
        steps = emissions.unbind(1)  # seq_len tensors of shape (batch_size, num_tags)
        keep = mask.unsqueeze(2).unbind(1)  # seq_len tensors of shape (batch_size, 1)
        incoming = [start.expand(emissions.size(0), self.num_tags)]
        # shape: (batch_size, num_tags), log-sum of all prefixes ending in each tag
        alpha = start + steps[0]
        for t in range(1, len(steps)):
            # shape: (batch_size, num_tags [to]), log-sum over the previous tag
            into = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1)
            incoming.append(into)
            alpha = torch.where(keep[t], into + steps[t], alpha)
        return incoming, alpha

    def _log_partition(
        self, emissions: Tensor, mask: Tensor, start: Tensor, trans: Tensor, end: Tensor
    ) -> Tensor:
        """``log Z`` ``(batch_size,)``: eagerly on the CPU by :class:`_LogPartition` (scaled
        forward algorithm, backward by forward-backward) unless its precision check fails;
        scripted, traced, exported, on other devices (not yet measured there, and a float32
        matmul may run in TF32 on a GPU) and on that failure, by the log-space recursion."""
        if not torch.jit.is_scripting():
            if emissions.device.type == "cpu" and not _tracing():
                log_z, ok = _LogPartition.apply(emissions, mask, start, trans, end)
                if bool(ok):
                    return log_z
        return self._log_partition_log_space(emissions, mask, start, trans, end)

    def _log_partition_log_space(
        self, emissions: Tensor, mask: Tensor, start: Tensor, trans: Tensor, end: Tensor
    ) -> Tensor:
        alpha = self._forward_algorithm(emissions, mask, start, trans)[1]
        # shape: (batch_size,); alpha stopped at each sentence's last token
        return torch.logsumexp(alpha + end, dim=1)

    def _marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        start, trans, end = self._masked_params(emissions.dtype, float("-inf"))
        forward, alpha = self._forward_algorithm(emissions, mask, start, trans)
        # The backward messages: the forward recursion from each sentence's end.
        backward, _ = self._forward_algorithm(
            self._reverse(emissions, mask), mask, end, trans.t()
        )
        # shape: (batch_size, 1, 1)
        log_z = torch.logsumexp(alpha + end, dim=1).view(-1, 1, 1)
        # No allowed sequence (log Z = -inf): every term below is -inf, so probabilities 0.
        log_z = log_z.masked_fill(log_z == float("-inf"), 0.0)
        # shape: (batch_size, seq_len, num_tags)
        backward_in_order = self._reverse(torch.stack(backward, dim=1), mask)
        log_p = torch.stack(forward, dim=1) + emissions + backward_in_order - log_z
        return log_p.exp().masked_fill(~mask.unsqueeze(2), 0.0)

    def _viterbi(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        start, trans, end = self._masked_params(emissions.dtype)
        steps = emissions.unbind(1)  # seq_len tensors of shape (batch_size, num_tags)
        keep = mask.unsqueeze(2).unbind(1)  # seq_len tensors of shape (batch_size, 1)
        # bests[t]: (batch_size, num_tags), best prefix score ending in each tag at step t
        bests = [start + steps[0]]
        for t in range(1, len(steps)):
            # amax, not max: the pointers are recomputed for the chosen tags only, below
            score = (bests[-1].unsqueeze(2) + trans).amax(dim=1)
            bests.append(torch.where(keep[t], score + steps[t], bests[-1]))
        # shape: (batch_size, 1)
        scores, tag = (bests[-1] + end).max(dim=1, keepdim=True)
        path = [tag]
        moves_into = trans.t().contiguous()  # moves_into[j, i] = trans[i, j]
        for t in range(len(steps) - 2, -1, -1):
            # The best previous tag of the chosen one, from the same sums as amax saw;
            # argmax takes the lowest index among equal maxima (the documented tie-breaking).
            into = moves_into.index_select(0, tag.squeeze(1))  # (batch_size, num_tags [from])
            pointer = (bests[t] + into).argmax(1, keepdim=True)
            # Follow the pointer only inside the sentence: the tag chosen at its last token is
            # carried unchanged through the padding.
            tag = torch.where(keep[t + 1], pointer, tag)
            path.append(tag)
        path.reverse()
        # shape: (batch_size, seq_len)
        return torch.cat(path, dim=1).masked_fill(~mask, 0), scores.squeeze(1)

    def _nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        start, trans, end = self._masked_params(emissions.dtype, float("-inf"))
        batch_size, num_tags = emissions.size(0), self.num_tags
        steps = emissions.unbind(1)  # seq_len tensors of shape (batch_size, num_tags)
        keep = mask.unsqueeze(2).unsqueeze(3).unbind(1)  # seq_len of shape (batch_size, 1, 1)
        first = start + steps[0]
        # shape: (batch_size, num_tags, k), the k best prefix scores ending in each tag, best
        # first; ranks that no prefix fills yet are -inf
        best = torch.cat(
            [first.unsqueeze(2), first.new_full((batch_size, num_tags, k - 1), float("-inf"))], 2
        )
        # pointers[t - 1]: (batch_size, num_tags [to] * k) previous (tag * k + rank) at step t
        pointers: list[Tensor] = []
        for t in range(1, len(steps)):
            # shape: (batch_size, num_tags [from] * k [rank], num_tags [to])
            candidates = (best.unsqueeze(3) + trans.unsqueeze(1)).reshape(
                batch_size, num_tags * k, num_tags
            )
            # A stable sort puts the lowest (tag, rank) first among equal scores.
            score, pointer = candidates.sort(dim=1, descending=True, stable=True)
            pointers.append(pointer[:, :k].transpose(1, 2).reshape(batch_size, num_tags * k))
            best = torch.where(keep[t], score[:, :k].transpose(1, 2) + steps[t].unsqueeze(2), best)
        # shape: (batch_size, num_tags * k) -> (batch_size, k)
        final = (best + end.unsqueeze(1)).reshape(batch_size, num_tags * k)
        scores, index = final.sort(dim=1, descending=True, stable=True)
        scores, index = scores[:, :k], index[:, :k]
        # index: (batch_size, k) tag * k + rank at the current position
        path = [torch.div(index, k, rounding_mode="floor")]
        for t in range(len(steps) - 2, -1, -1):
            index = torch.where(keep[t + 1][:, :, 0], pointers[t].gather(1, index), index)
            path.append(torch.div(index, k, rounding_mode="floor"))
        path.reverse()
        # shape: (batch_size, k, seq_len)
        paths = torch.stack(path, dim=2).masked_fill(~mask.unsqueeze(1), 0)
        return paths.masked_fill((scores == float("-inf")).unsqueeze(2), 0), scores
