"""The layers of the tagger below its head: the character CNN, the two ways of running the LSTM,
and the CPU dropout they use.

:class:`CharCNN` turns each word's characters into a vector (Ma & Hovy 2016). The LSTM's weights
live in one ``nn.LSTM`` (``Tagger.lstm``); :class:`PackedLSTM` and :class:`PaddedLSTM` are two
weightless ways of running them, chosen once per device by :func:`resolve_rnn_mode`.
:func:`dropout` is the inverted dropout of every layer; :func:`reverse_padded` reverses each
sentence within its own length (the padded path's backward direction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout of a tensor of any shape; returns the same shape. On the CPU the
    keep-mask comes from 7 random bytes per int64 draw, with ``p`` rounded to a multiple of
    1/256: several times faster than ``F.dropout``, whose per-element Bernoulli draws cost more
    than the LSTM's input product at these sizes."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    n = x.numel()
    draws = (n + 6) // 7
    raw = torch.randint(0, 72057594037927936, (draws,), dtype=torch.int64, device=x.device)  # 2**56
    bytes_ = raw.view(torch.uint8).view(draws, 8)[:, :7].reshape(-1)[:n].view(x.shape)
    threshold = int(round(p * 256))
    return x * (bytes_ >= threshold).to(x.dtype) * (256.0 / (256 - threshold))


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sentence of ``x`` ``(batch, seq_len, dim)`` within its own length.

    Padding positions stay where they are; applying it twice gives ``x`` back.
    """
    b, t, d = x.shape
    steps = torch.arange(t, device=x.device).unsqueeze(0)  # shape: (1, T)
    lens = lengths.to(x.device).unsqueeze(1)  # shape: (B, 1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)  # shape: (B, T)
    # rows of the flattened batch, not x.gather(1, index expanded over dim): a row copy instead
    # of an index per element, 5.5 -> 0.9 ms for (256, 40, 220) on the CPU (docs/design.md)
    rows = index + torch.arange(b, device=x.device).unsqueeze(1) * t  # shape: (B, T)
    return x.reshape(b * t, d).index_select(0, rows.reshape(-1)).reshape(b, t, d)


def _word_max(x: Tensor, word: Tensor, num_words: int) -> Tensor:
    """Each word's max over its rows: ``x`` ``(R, F)``, ``word`` ``(R,)`` the word of each row ►
    ``(num_words, F)``, ``-inf`` for a word without rows."""
    index = word.unsqueeze(1).expand(-1, x.shape[1])  # shape: (R, F)
    return x.new_full((num_words, x.shape[1]), float("-inf")).scatter_reduce(0, index, x, "amax")


class _WordMax(torch.autograd.Function):
    """:func:`_word_max` with its gradient from rows, not elements: each word's gradient goes to
    the rows at its max, split evenly among ties, as ``amax`` and ``scatter_reduce`` split it.
    The same values as autograd's ``scatter_reduce`` backward, which gathers and scatters with
    an index per element: 0.70 ms of an EWT training step's backward, 0.27 ms this way (0.5 ms
    less with the forward's extra work; docs/design.md)."""

    @staticmethod
    def forward(ctx, x, word, num_words):
        out = _word_max(x, word, num_words)
        at_max = (x == out.index_select(0, word)).to(x.dtype)  # shape: (R, F)
        ties = torch.zeros_like(out).index_add_(0, word, at_max)  # shape: (N, F), >= 1 where rows exist
        ctx.save_for_backward(word, at_max, ties)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        word, at_max, ties = ctx.saved_tensors
        return (grad_out / ties.clamp_min(1)).index_select(0, word) * at_max, None, None


class CharCNN(nn.Module):
    """Ma & Hovy (2016) character encoder: embed characters, convolve, max-pool over the word.

    Input ``(batch, seq_len, word_len)`` character ids (0 = padding) ► ``(batch, seq_len, filters)``.
    Padding characters embed to zero and are excluded from the max, so a word's vector does not
    depend on how much the batch pads it; an all-padding word gives zeros.

    On the CPU the convolution runs over the real characters only (:meth:`encode_characters`):
    ``word_len`` is set by the batch's longest word, and about three quarters of the slots of an
    EWT batch are padding. Elsewhere, and wherever ``dense`` is set (``torch.export`` traces
    it), it runs over every slot (:meth:`encode_words`): the same values.
    """

    def __init__(self, num_chars: int, embedding_dim: int, filters: int, kernel_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(embedding_dim, filters, kernel_size, padding=kernel_size // 2)
        self.filters = filters
        self.dense = False

    def _product_weight(self) -> Tensor:
        """``self.conv.weight`` ``(F, E, k)`` as the ``(k * E, F)`` matrix of the product over
        ``k`` shifted copies: row ``j * E + e`` is ``weight[:, e, j]``."""
        return self.conv.weight.permute(2, 1, 0).reshape(-1, self.filters)

    def _finish(self, x: Tensor) -> Tensor:
        """Each word's max ``(N, F)`` (``-inf`` for a word without characters) ► its vector."""
        bias = self.conv.bias
        if bias is not None:
            # after the max, not in the product: max(x + b) = max(x) + b exactly (rounding is
            # monotonic), for W times fewer additions (docs/design.md)
            x = x + bias
        return x.masked_fill(torch.isinf(x), 0.0)

    def encode_words(self, chars: Tensor) -> Tensor:
        """``(num_words, word_len)`` character ids ► ``(num_words, filters)``, over every slot.

        The convolution is one matrix product over ``kernel_size`` shifted copies of the
        embedded characters (``(N * W, k * E) @ (k * E, F)``): the same sums as ``self.conv``,
        several times faster on the CPU at these channel counts (a few dozen), where the
        convolution kernels fall far below the matrix-multiply rate (docs/design.md)."""
        n, w = chars.shape
        k = self.conv.kernel_size[0]
        pad = k // 2
        x = F.pad(self.embedding(chars), (0, 0, pad, k - 1 - pad))  # shape: (N, W + k - 1, E)
        shifted = torch.cat([x[:, j : j + w] for j in range(k)], dim=2)  # shape: (N, W, k * E)
        x = (shifted.reshape(n * w, -1) @ self._product_weight()).reshape(n, w, self.filters)  # shape: (N, W, F)
        return self._finish(x.masked_fill((chars == 0).unsqueeze(2), float("-inf")).amax(dim=1))

    def encode_characters(self, chars: Tensor) -> Tensor:
        """``(num_words, word_len)`` character ids ► ``(num_words, filters)``, over the real
        characters only: the same values as :meth:`encode_words` without the padding's work.

        Each real character's window of ``kernel_size`` ids (0 beyond its word) is embedded as
        one row, so the product is ``(R, k * E) @ (k * E, F)`` for the ``R`` real characters,
        and each word's max is a ``scatter_reduce`` over its own rows (docs/design.md)."""
        n, w = chars.shape
        k = self.conv.kernel_size[0]
        pad = k // 2
        windows = F.pad(chars, (pad, k - 1 - pad)).unfold(1, k, 1).reshape(n * w, k)  # shape: (N * W, k)
        slots = (chars != 0).reshape(-1).nonzero().squeeze(1)  # shape: (R,) the real characters
        e = self.embedding.embedding_dim
        x = self.embedding(windows.index_select(0, slots)).reshape(-1, k * e) @ self._product_weight()  # shape: (R, F)
        word = torch.div(slots, w, rounding_mode="floor")  # shape: (R,) the word of each row
        if not torch.jit.is_scripting() and x.requires_grad:
            return self._finish(_WordMax.apply(x, word, n))
        return self._finish(_word_max(x, word, n))

    def forward(self, chars: Tensor) -> Tensor:
        """``(batch, seq_len, word_len)`` character ids (0 = padding) to ``(batch, seq_len, filters)``
        word vectors (zeros for padding words)."""
        b, t, w = chars.shape
        if w == 0:
            return torch.zeros((b, t, self.filters), dtype=self.conv.weight.dtype, device=chars.device)
        flat = chars.reshape(b * t, w)
        if self.dense or chars.device.type != "cpu":
            return self.encode_words(flat).reshape(b, t, self.filters)
        return self.encode_characters(flat).reshape(b, t, self.filters)


class PackedLSTM(nn.Module):
    """The LSTM over ``pack_padded_sequence``: cuDNN's native input on CUDA.

    Holds no weights: :meth:`forward` takes the ``nn.LSTM``'s flat weights, so the two paths
    (this one and :class:`PaddedLSTM`) share one set of parameters under the usual
    ``lstm.weight_ih_l0``... names.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.hidden_size = lstm.hidden_size
        self.num_layers = lstm.num_layers
        self.bidirectional = lstm.bidirectional
        self.dropout = float(lstm.dropout)

    def forward(self, x: Tensor, lengths: Tensor, weights: list[Tensor]) -> Tensor:
        """``(batch, seq_len, input_dim)`` ► ``(batch, seq_len, hidden * directions)``, zeros at
        padding; ``lengths`` ``(batch,)`` int64 on the CPU, each >= 1; ``weights`` is
        ``lstm._flat_weights``."""
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        directions = 2 if self.bidirectional else 1
        h0 = x.new_zeros((self.num_layers * directions, x.size(0), self.hidden_size))
        # what nn.LSTM.forward runs for a PackedSequence and a zero initial state
        out = torch.lstm(
            packed.data, packed.batch_sizes, [h0, h0], weights, True, self.num_layers,
            self.dropout, self.training, self.bidirectional,
        )[0]
        out_packed = PackedSequence(out, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        return pad_packed_sequence(out_packed, batch_first=True, total_length=x.size(1))[0]


class PaddedLSTM(nn.Module):
    """The LSTM over the padded batch, the backward direction over each sentence reversed within
    its own length: the packed result at real positions (to float rounding), without the
    slow per-step path PyTorch's CPU LSTM takes for a mixed-length ``PackedSequence``.

    Holds no weights (see :class:`PackedLSTM`).
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.hidden_size = lstm.hidden_size
        self.num_layers = lstm.num_layers
        self.num_directions = 2 if lstm.bidirectional else 1
        self.dropout = float(lstm.dropout)

    def forward(self, x: Tensor, lengths: Tensor, weights: list[Tensor]) -> Tensor:
        """``(batch, seq_len, input_dim)`` ► ``(batch, seq_len, hidden * directions)`` (values at
        padding are meaningless); ``lengths`` ``(batch,)``; ``weights`` is ``lstm._flat_weights``."""
        # Padding comes after each sentence, so a forward LSTM over the padded batch gives the
        # packed result at real positions; the backward direction runs over each sentence
        # reversed within its own length.
        h0 = x.new_zeros((1, x.size(0), self.hidden_size))
        for layer in range(self.num_layers):
            if layer > 0:
                x = dropout(x, self.dropout, self.training)
            k = 4 * self.num_directions * layer
            fwd = torch.lstm(x, [h0, h0], weights[k : k + 4], True, 1, 0.0, self.training, False, True)[0]
            if self.num_directions == 2:
                xr = reverse_padded(x, lengths)
                bwd = torch.lstm(xr, [h0, h0], weights[k + 4 : k + 8], True, 1, 0.0, self.training, False, True)[0]
                x = torch.cat([fwd, reverse_padded(bwd, lengths)], dim=2)
            else:
                x = fwd
        return x


def resolve_rnn_mode(mode: str, device: torch.device, exporting: bool = False) -> str:
    """The LSTM path for ``rnn_mode`` (``auto``, ``packed`` or ``padded``) on ``device``:
    ``auto`` is packed on CUDA (cuDNN takes packed sequences natively) and padded elsewhere;
    ``torch.export`` always gets the padded path (packing has data-dependent shapes).

    >>> resolve_rnn_mode("auto", torch.device("cpu")), resolve_rnn_mode("packed", torch.device("cpu"), True)
    ('padded', 'padded')
    """
    if exporting or mode == "padded":
        return "padded"
    if mode == "packed" or (mode == "auto" and device.type == "cuda"):
        return "packed"
    return "padded"
