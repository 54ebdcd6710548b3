"""The tagger: embeddings (words, case, characters) ► (Bi)LSTM ► emissions ► CRF or softmax.

:class:`Tagger` is an ``nn.Module`` built from parts that exist only when configured
(:class:`CharCNN`, the case embedding), an LSTM run by one of two paths (:class:`PackedLSTM`,
:class:`PaddedLSTM`) and a head (:class:`CRFHead` or :class:`SoftmaxHead`). Its tensor methods
(``forward``, ``loss``, ``decode``, and the id-level entry points ``tag_ids``,
``tag_confidence``, ``tag_marginals``, ``tag_nbest``) are TorchScript-compatible; ``predict``,
``predict_with_confidence``, ``marginals``, ``nbest``, ``save`` and ``load`` work with strings
and files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import __version__
from .config import TaggerConfig, TrainConfig
from .crf import CRF, allowed_transitions
from .data import (
    Encoded,
    TaggingDataset,
    collate,
    collate_strings,
    encode_strings,
    lengths_to_mask,
    plan_batches,
    string_rules,
)
from .device import resolve_device
from .errors import SeqtagError
from .fileio import atomic_write_bytes, atomic_write_text
from .metrics import detect_scheme
from .vocab import Vocabularies

CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "weights.pt"


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
    t = x.size(1)
    steps = torch.arange(t, device=x.device).unsqueeze(0)  # shape: (1, T)
    lens = lengths.to(x.device).unsqueeze(1)  # shape: (B, 1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)  # shape: (B, T)
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.size(2)))


def resolve_scheme(scheme: str, tags: Sequence[str]) -> str:
    """``"auto"`` ► the scheme the tag set follows (``bio``, ``iob1``, ``bioes``) or ``"none"``."""
    if scheme != "auto":
        return scheme
    return detect_scheme(tags) or "none"


def check_id_batch(words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
    """Check an id-level batch as :meth:`Tagger.tag_ids` takes it: ``(batch, seq_len)`` words and
    cases, ``(batch, seq_len, word_len)`` chars, ``(batch,)`` lengths with ``0 <= length <=
    seq_len``. Returns the lengths as int64 on the CPU.

    Raises:
        ValueError: naming what disagrees.
    """
    if words.dim() != 2:
        raise ValueError(f"expected words of shape (batch, seq_len), got {list(words.shape)}")
    b, t = words.size(0), words.size(1)
    if cases.shape != words.shape:
        raise ValueError(f"expected cases of shape {list(words.shape)}, got {list(cases.shape)}")
    if chars.dim() != 3 or chars.size(0) != b or chars.size(1) != t:
        raise ValueError(f"expected chars of shape [{b}, {t}, word_len], got {list(chars.shape)}")
    if lengths.dim() != 1 or lengths.size(0) != b:
        raise ValueError(f"expected lengths of shape [{b}], got {list(lengths.shape)}")
    lengths = lengths.cpu().long()
    if b > 0 and (int(lengths.min()) < 0 or int(lengths.max()) > t):
        low, high = int(lengths.min()), int(lengths.max())
        raise ValueError(f"expected 0 <= lengths <= seq_len = {t}, got lengths from {low} to {high}")
    return lengths


class CharCNN(nn.Module):
    """Ma & Hovy (2016) character encoder: embed characters, convolve, max-pool over the word.

    Input ``(batch, seq_len, word_len)`` character ids (0 = padding) ► ``(batch, seq_len, filters)``.
    Padding characters embed to zero and are excluded from the max, so a word's vector does not
    depend on how much the batch pads it; an all-padding word gives zeros.

    Most words are short while ``word_len`` is set by the batch's longest word, so words are
    encoded in groups by length (up to 8 characters, up to 16, longer), each group cut to its
    own longest word: the same result for a fraction of the convolution work.
    """

    def __init__(self, num_chars: int, embedding_dim: int, filters: int, kernel_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(embedding_dim, filters, kernel_size, padding=kernel_size // 2)
        self.filters = filters
        self.group_limits = [8, 16]

    def encode_words(self, chars: Tensor) -> Tensor:
        """``(num_words, word_len)`` character ids ► ``(num_words, filters)``."""
        x = self.embedding(chars).transpose(1, 2)  # shape: (N, E, W)
        x = self.conv(x)  # shape: (N, F, W)
        x = x.masked_fill((chars == 0).unsqueeze(1), float("-inf")).amax(dim=2)  # shape: (N, F)
        return x.masked_fill(torch.isinf(x), 0.0)

    def forward(self, chars: Tensor) -> Tensor:
        """``(batch, seq_len, word_len)`` character ids (0 = padding) to ``(batch, seq_len, filters)``
        word vectors (zeros for padding words)."""
        b, t, w = chars.shape
        if w == 0:
            return torch.zeros((b, t, self.filters), dtype=self.conv.weight.dtype, device=chars.device)
        flat = chars.reshape(b * t, w)
        if w <= self.group_limits[0] or chars.device.type != "cpu":
            return self.encode_words(flat).reshape(b, t, self.filters)
        lengths = (flat != 0).sum(dim=1)  # shape: (N,)
        out = torch.zeros((b * t, self.filters), dtype=self.conv.weight.dtype, device=chars.device)
        low = 0
        for high in self.group_limits + [w]:
            index = ((lengths > low) & (lengths <= high)).nonzero().squeeze(1)
            if index.numel() > 0:
                out = out.index_copy(0, index, self.encode_words(flat.index_select(0, index)[:, : min(high, w)]))
            low = high
            if high >= w:
                break
        return out.reshape(b, t, self.filters)


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
    """A linear-chain CRF over the emissions (:class:`~seqtag.crf.CRF`, attribute ``crf``).

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
        return paths, scores - self.crf.log_partition(emissions, mask).unsqueeze(1)


class Tagger(nn.Module):
    """A BiLSTM(-CRF) sequence tagger with its vocabularies.

    Args:
        config: the architecture.
        vocabs: word, character and tag vocabularies (see :class:`~seqtag.vocab.Vocabularies`).

    Attributes:
        word_embedding: ``nn.Embedding`` of the words.
        case_embedding: ``nn.Embedding`` of the case feature, or None (``case_embedding_dim = 0``).
        char_cnn: :class:`CharCNN`, or None (``char_filters = 0``).
        lstm: the ``nn.LSTM`` holding the recurrent weights.
        rnn: how the LSTM runs, :class:`PackedLSTM` or :class:`PaddedLSTM` (:meth:`set_rnn_mode`).
        output: ``nn.Linear`` to tag scores.
        head: :class:`CRFHead` (``config.crf``) or :class:`SoftmaxHead`.

    Example:
        >>> import seqtag
        >>> data = seqtag.tutorial_corpus()
        >>> vocabs = seqtag.Vocabularies.build(data)
        >>> tagger = seqtag.Tagger(seqtag.TaggerConfig(hidden_dim=8), vocabs)
        >>> [len(tags) for tags in tagger.predict([["The", "dog"], []])]
        [2, 0]
    """

    def __init__(self, config: TaggerConfig, vocabs: Vocabularies) -> None:
        super().__init__()
        self.config = config
        self.vocabs = vocabs
        self.num_tags = len(vocabs.tags)
        self.word_embedding = nn.Embedding(len(vocabs.words), config.embedding_dim, padding_idx=0)
        input_dim = config.embedding_dim
        self.case_embedding = None
        if config.case_embedding_dim > 0:
            self.case_embedding = nn.Embedding(4, config.case_embedding_dim, padding_idx=0)
            input_dim += config.case_embedding_dim
        self.char_cnn = None
        if config.char_filters > 0:
            self.char_cnn = CharCNN(
                len(vocabs.chars), config.char_embedding_dim, config.char_filters, config.char_kernel_size
            )
            input_dim += config.char_filters
        self.dropout_p = config.dropout
        self.lstm = nn.LSTM(
            input_dim,
            config.hidden_dim,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.set_rnn_mode(torch.device("cpu"))  # sets self.rnn
        directions = 2 if config.bidirectional else 1
        self.output = nn.Linear(config.hidden_dim * directions, self.num_tags)
        self.tag_scheme = resolve_scheme(config.tag_scheme, vocabs.tags.itos)
        if config.crf:
            self.head: nn.Module = CRFHead(self.num_tags)
            if config.constrain and self.tag_scheme != "none":
                self.head.crf.set_constraints(*allowed_transitions(vocabs.tags.itos, self.tag_scheme))
        else:
            self.head = SoftmaxHead(self.num_tags)

    # -- tensor methods (TorchScript-compatible) ------------------------------------------

    def forward(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        """Tag scores (emissions) for a padded batch.

        Args:
            words: ``(batch, seq_len)`` word ids.
            cases: ``(batch, seq_len)`` case-feature ids (unused without a case embedding).
            chars: ``(batch, seq_len, word_len)`` character ids (``word_len`` may be 0; unused
                without a character CNN).
            lengths: ``(batch,)`` int64 lengths on the CPU, each >= 1.

        Returns:
            ``(batch, seq_len, num_tags)`` scores; values at padded positions are meaningless.
        """
        x = self.word_embedding(words)
        if self.case_embedding is not None:
            x = torch.cat([x, self.case_embedding(cases)], dim=2)
        if self.char_cnn is not None:
            x = torch.cat([x, self.char_cnn(chars)], dim=2)
        x = dropout(x, self.dropout_p, self.training)
        x = self.recurrent(x, lengths)
        return self.output(dropout(x, self.dropout_p, self.training))

    @torch.jit.export
    def recurrent(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The LSTM by the chosen path: ``(batch, seq_len, input_dim)`` ►
        ``(batch, seq_len, hidden * directions)``; ``lengths`` ``(batch,)`` on the CPU."""
        return self.rnn(x, lengths, self.lstm._flat_weights)

    @torch.jit.export
    def loss(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """Mean loss per real token: CRF negative log-likelihood or cross-entropy.

        Args:
            emissions: ``(batch, seq_len, num_tags)``.
            tags: ``(batch, seq_len)`` gold tag ids.
            lengths: ``(batch,)``.

        Returns:
            A float32 scalar.
        """
        return self.head.loss(emissions, tags, lengths_to_mask(lengths, emissions.size(1), emissions.device))

    @torch.jit.export
    def decode(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """Best tag ids ``(batch, seq_len)``, 0 at padded positions (Viterbi with a CRF, else argmax)."""
        return self.head.decode(emissions, lengths_to_mask(lengths, emissions.size(1), emissions.device))

    @torch.jit.export
    def tag_ids(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        """Best tag ids for a padded batch: :meth:`forward`, then :meth:`decode` (CRF Viterbi with
        its constraints, or argmax). The one id-level entry point: eager prediction, the
        TorchScript module and the ``torch.export`` programs all call it. Call it in eval mode.

        Args:
            words: ``(batch, seq_len)`` int64 word ids, on any device.
            cases: ``(batch, seq_len)`` int64 case ids (1 lower, 2 Title, 3 other, 0 padding).
            chars: ``(batch, seq_len, word_len)`` int64 character ids (``word_len`` may be 0).
            lengths: ``(batch,)`` int64 sentence lengths, ``0 <= length <= seq_len``.

        Returns:
            ``(batch, seq_len)`` int64 tag ids on ``words.device``; 0 at padded positions and in
            rows of length 0. Each row equals the result for that sentence alone.

        Raises:
            ValueError: for inconsistent shapes or lengths (``torch.jit.Error`` once scripted).
                While ``torch.export`` traces it, nothing is checked and every length must be >= 1.
        """
        if not torch.jit.is_scripting():
            if torch.compiler.is_exporting():
                return self._tag_rows(words, cases, chars, lengths)
        lengths = check_id_batch(words, cases, chars, lengths)
        out = torch.zeros(words.shape, dtype=torch.long, device=words.device)
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() == words.size(0) and keep.numel() > 0:
            return self._tag_rows(words, cases, chars, lengths).to(words.device)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            out[rows] = self._tag_rows(words[rows], cases[rows], chars[rows], lengths[keep]).to(words.device)
        return out

    @torch.jit.export
    def tag_confidence(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`tag_ids` and the marginal probability of each chosen tag.

        Returns:
            ``(paths, confidence)``: ``(batch, seq_len)`` int64 tag ids as :meth:`tag_ids`
            gives them, and ``(batch, seq_len)`` float32 ``p(y_t = paths[:, t] | x)`` (the CRF's
            forward-backward marginal, or the softmax), 0 at padding and in rows of length 0.
        """
        lengths = check_id_batch(words, cases, chars, lengths)
        b, t = words.size(0), words.size(1)
        paths = torch.zeros((b, t), dtype=torch.long, device=words.device)
        confidence = torch.zeros((b, t), dtype=torch.float32, device=words.device)
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            emissions, mask = self._emissions(words[rows], cases[rows], chars[rows], lengths[keep])
            best = self.head.decode(emissions, mask)
            probs = self.head.marginals(emissions, mask).gather(2, best.unsqueeze(2)).squeeze(2)
            paths[rows] = best.to(words.device)
            confidence[rows] = probs.float().to(words.device)
        return paths, confidence

    @torch.jit.export
    def tag_marginals(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        """``(batch, seq_len, num_tags)`` float32 ``p(y_t = k | x)`` for the batch of
        :meth:`tag_ids` (the CRF's forward-backward marginals, or the softmax); rows of 0 at
        padding and in rows of length 0."""
        lengths = check_id_batch(words, cases, chars, lengths)
        b, t = words.size(0), words.size(1)
        out = torch.zeros((b, t, self.num_tags), dtype=torch.float32, device=words.device)
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            emissions, mask = self._emissions(words[rows], cases[rows], chars[rows], lengths[keep])
            out[rows] = self.head.marginals(emissions, mask).float().to(words.device)
        return out

    @torch.jit.export
    def tag_nbest(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, k: int
    ) -> tuple[Tensor, Tensor]:
        """The ``k`` best tag sequences of each sentence of the batch of :meth:`tag_ids`.

        Returns:
            ``(paths, log_probs)``: ``(batch, k, seq_len)`` int64 tag ids (0 at padding) and
            ``(batch, k)`` float32 log-probabilities, best first (``paths[:, 0]`` is
            :meth:`tag_ids`'s); ``-inf`` and a path of zeros where a sentence has fewer than
            ``k`` allowed sequences; a row of length 0 has one sequence (log-probability 0).

        Raises:
            ValueError: ``k < 1``, or the input errors of :meth:`tag_ids`.
        """
        if k < 1:
            raise ValueError(f"expected k >= 1, got {k}")
        lengths = check_id_batch(words, cases, chars, lengths)
        b, t = words.size(0), words.size(1)
        paths = torch.zeros((b, k, t), dtype=torch.long, device=words.device)
        log_probs = torch.full((b, k), float("-inf"), dtype=torch.float32, device=words.device)
        log_probs[:, 0] = 0.0  # the empty sequence of an empty sentence; overwritten below
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            emissions, mask = self._emissions(words[rows], cases[rows], chars[rows], lengths[keep])
            best, scores = self.head.nbest(emissions, mask, k)
            paths[rows] = best.to(words.device)
            log_probs[rows] = scores.float().to(words.device)
        return paths, log_probs

    def _emissions(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Emissions ``(B, T, K)`` and mask ``(B, T)`` on the model's device (lengths >= 1)."""
        device = self.output.weight.device
        emissions = self(words.to(device), cases.to(device), chars.to(device), lengths)
        return emissions, lengths_to_mask(lengths, emissions.size(1), device)

    def _tag_rows(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        emissions, mask = self._emissions(words, cases, chars, lengths)
        return self.head.decode(emissions, mask)

    # -- strings in, strings out ---------------------------------------------------------

    @torch.jit.unused
    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 256) -> list[list[str]]:
        """Tag tokenized sentences.

        Args:
            sentences: each a list of token strings (an empty list gives an empty list).
            batch_size: at most this many sentences per forward pass (and at most
                ``batch_size * 128`` tokens counting padding: :func:`~seqtag.data.plan_batches`).

        Returns:
            One list of tag strings per sentence.

        Raises:
            ValueError: ``batch_size < 1``.
        """
        itos = self.vocabs.tags.itos
        return [[itos[i] for i in s] for s in self.predict_ids(sentences, batch_size)]

    @torch.jit.unused
    def predict_ids(self, sentences: Sequence[Sequence[str]], batch_size: int = 256) -> list[list[int]]:
        """Like :meth:`predict`, returning tag ids."""
        return self._run(self._string_batches(sentences, batch_size, None), len(sentences), self._paths, list)

    @torch.jit.unused
    def decode_encoded(
        self, items: Sequence[Encoded], batch_size: int = 256, max_tokens: int | None = None
    ) -> list[list[int]]:
        """Best tag ids for already encoded sentences (a list, or an encoded dataset such as
        :class:`~seqtag.data.TaggingDataset` or ``hf.ArrowTaggingDataset``), batched by
        :func:`~seqtag.data.plan_batches` (at most ``batch_size`` sentences and ``max_tokens``
        padded tokens, default ``batch_size * 128``, per batch); one host transfer per batch."""
        lengths = getattr(items, "lengths", None)  # an encoded dataset knows them without reading items
        lengths = [len(e) for e in items] if lengths is None else [int(n) for n in lengths]
        fetch = getattr(items, "__getitems__", None)  # one read per batch from a memory-mapped dataset

        def batches() -> Iterator[tuple[list[int], tuple[Tensor, Tensor, Tensor, Tensor]]]:
            for chunk in plan_batches(lengths, batch_size, max_tokens):
                b = collate(fetch(chunk) if fetch else [items[i] for i in chunk])
                yield chunk, (b.words, b.cases, b.chars, b.lengths)

        return self._run(batches(), len(lengths), self._paths, list)

    @torch.jit.unused
    def predict_with_confidence(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 256
    ) -> list[tuple[list[str], list[float]]]:
        """Tag tokenized sentences and give each chosen tag its probability under the model.

        Args:
            sentences: each a list of token strings.
            batch_size: as in :meth:`predict`.

        Returns:
            Per sentence ``(tags, confidence)``: the tags of :meth:`predict` and, per token, the
            marginal probability of the chosen tag, ``p(y_t = tag_t | sentence)`` (the CRF's
            forward-backward marginal; the softmax for a softmax head).
        """
        itos = self.vocabs.tags.itos

        def step(words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> list:
            paths, probs = self.tag_confidence(words, cases, chars, lengths)
            return [([itos[i] for i in p[:n]], q[:n])
                    for p, q, n in zip(paths.cpu().tolist(), probs.cpu().tolist(), lengths.tolist())]

        return self._run(self._string_batches(sentences, batch_size, None), len(sentences), step, lambda: ([], []))

    @torch.jit.unused
    def marginals(self, sentences: Sequence[Sequence[str]], batch_size: int = 256) -> list[np.ndarray]:
        """The probability of every tag at every token: per sentence an ``(n_tokens, num_tags)``
        float32 array, columns in ``vocabs.tags.itos`` order, each row summing to 1 (the CRF's
        forward-backward marginals, 0 for tags its constraints rule out; the softmax for a
        softmax head). ``batch_size`` as in :meth:`predict`."""

        def step(words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> list:
            probs = self.tag_marginals(words, cases, chars, lengths).cpu().numpy()
            return [probs[i, :n].copy() for i, n in enumerate(lengths.tolist())]

        k = self.num_tags
        batches = self._string_batches(sentences, batch_size, None)
        return self._run(batches, len(sentences), step, lambda: np.zeros((0, k), dtype=np.float32))

    @torch.jit.unused
    def nbest(
        self, sentences: Sequence[Sequence[str]], k: int, batch_size: int = 256
    ) -> list[list[tuple[list[str], float]]]:
        """The ``k`` most probable tag sequences of each sentence.

        Returns:
            Per sentence up to ``k`` ``(tags, log_prob)``, best first (the first is
            :meth:`predict`'s), fewer when the sentence has fewer allowed sequences; an empty
            sentence has one, ``([], 0.0)``. Ties follow :meth:`CRF.nbest <seqtag.crf.CRF.nbest>`.

        Raises:
            ValueError: ``k < 1`` or ``batch_size < 1``.
        """
        if k < 1:
            raise ValueError(f"expected k >= 1, got {k}")
        itos = self.vocabs.tags.itos

        def step(words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> list:
            paths, log_probs = self.tag_nbest(words, cases, chars, lengths, k)
            return [[([itos[i] for i in p[:n]], s) for p, s in zip(ps, ss) if s != float("-inf")]
                    for ps, ss, n in zip(paths.cpu().tolist(), log_probs.cpu().tolist(), lengths.tolist())]

        return self._run(self._string_batches(sentences, batch_size, None), len(sentences), step,
                         lambda: [([], 0.0)])

    @torch.jit.unused
    def _string_batches(
        self, sentences: Sequence[Sequence[str]], batch_size: int, max_tokens: int | None
    ) -> Iterator[tuple[list[int], tuple[Tensor, Tensor, Tensor, Tensor]]]:
        """The planned batches of token strings: ``(indices, (words, cases, chars, lengths))``."""
        lens = [len(s) for s in sentences]
        plan = plan_batches(lens, batch_size, max_tokens)  # checks batch_size before any work
        table = encode_strings(sentences, *string_rules(self.vocabs, self.config))
        for chunk in plan:
            yield chunk, collate_strings(table, lens, chunk)

    @torch.jit.unused
    def _run(self, batches: Iterable, n: int, step: Callable, empty: Callable) -> list:
        """The eager inference loop: ``step(words, cases, chars, lengths)`` gives one result per
        row of each batch, in eval mode without autograd; sentences in no batch (empty ones)
        get ``empty()``."""
        out = [empty() for _ in range(n)]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for chunk, batch in batches:
                    for i, result in zip(chunk, step(*batch)):
                        out[i] = result
        finally:
            self.train(was_training)
        return out

    @torch.jit.unused
    def _paths(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> list[list[int]]:
        paths = self.tag_ids(words, cases, chars, lengths).cpu().tolist()
        return [path[:n] for path, n in zip(paths, lengths.tolist())]

    @torch.jit.unused
    def dataset(self, sentences: Sequence, with_tags: bool = True) -> TaggingDataset:
        """Encode ``sentences`` with this tagger's vocabularies."""
        return TaggingDataset(sentences, self.vocabs, self.config, with_tags=with_tags)

    def _apply(self, fn, recurse=True):
        # after a move to CUDA, cuDNN wants the LSTM's weights in one contiguous block
        result = super()._apply(fn, recurse)
        self.lstm.flatten_parameters()
        return result

    @torch.jit.unused
    def set_rnn_mode(self, device: torch.device, exporting: bool = False) -> None:
        """Choose the LSTM path (attribute ``rnn``) for ``device`` by :func:`resolve_rnn_mode`."""
        path = resolve_rnn_mode(self.config.rnn_mode, device, exporting)
        self.rnn = PackedLSTM(self.lstm) if path == "packed" else PaddedLSTM(self.lstm)

    # -- files ------------------------------------------------------------------------------

    @torch.jit.unused
    def save(
        self, directory: str | Path, training: TrainConfig | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        """Write ``config.json``, ``vocab.json`` and ``weights.pt`` into ``directory``.

        ``config.json`` holds ``seqtag_version``, ``model`` (the :class:`~seqtag.config.TaggerConfig`)
        and, when given, ``training`` (the :class:`~seqtag.config.TrainConfig`) and ``data`` (the
        data configuration, a dict of JSON values, such as ``DataConfig.to_dict()``).

        Each file is written to a temporary name and renamed, so a crash leaves either the old
        file or the new one, never a torn one.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        buf = io.BytesIO()
        torch.save(state, buf)
        meta: dict[str, Any] = {"seqtag_version": __version__, "model": self.config.to_dict()}
        if training is not None:
            meta["training"] = training.to_dict()
        if data is not None:
            meta["data"] = dict(data.to_dict() if hasattr(data, "to_dict") else data)
        config_text = json.dumps(meta, indent=2) + "\n"  # fails here, before any write, if not JSON
        atomic_write_bytes(directory / WEIGHTS_FILE, buf.getvalue())
        atomic_write_text(directory / VOCAB_FILE, json.dumps(self.vocabs.to_dict(), ensure_ascii=False))
        atomic_write_text(directory / CONFIG_FILE, config_text)

    @classmethod
    @torch.jit.unused
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> Tagger:
        """Load a model directory written by :meth:`save`, checked as a whole.

        Weights load with ``weights_only=True``, so a crafted file cannot run code.

        Raises:
            SeqtagError: one line naming the file and what is wrong: a file missing or
                unreadable, a key missing from ``config.json`` (no defaults are filled in),
                weights that do not match ``config.json``/``vocab.json`` (another model's
                weights, a training checkpoint copied over ``weights.pt``, an edited
                vocabulary), or a weights file that holds Python objects.
        """
        directory = Path(directory)
        for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise SeqtagError(f"{directory}: not a seqtag model directory (no {name})")
        config = _read_config(directory / CONFIG_FILE)
        vocabs = _read_vocabs(directory / VOCAB_FILE)
        try:
            tagger = cls(config, vocabs)
        except ValueError as e:  # e.g. tags that do not follow the configured tag scheme
            raise SeqtagError(f"{directory}: config.json and vocab.json disagree ({e})") from None
        state = _read_weights(directory / WEIGHTS_FILE)
        problem = _state_mismatch(state, tagger.state_dict())
        if problem:
            raise SeqtagError(f"{directory / WEIGHTS_FILE} does not match {CONFIG_FILE}/{VOCAB_FILE}: {problem}")
        tagger.load_state_dict(state)
        dev = resolve_device(device)
        tagger.set_rnn_mode(dev)
        return tagger.to(dev)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SeqtagError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _read_config(path: Path) -> TaggerConfig:
    """The ``model`` entry of ``config.json``: every field present, each value valid."""
    meta = _read_json(path)
    model = meta.get("model") if isinstance(meta, dict) else None
    if not isinstance(model, dict):
        raise SeqtagError(f'{path}: expected a JSON object with a "model" object')
    missing = [f.name for f in dataclasses.fields(TaggerConfig) if f.name not in model]
    if missing:
        raise SeqtagError(f'{path}: "model" lacks {", ".join(missing)} (no defaults are assumed for a saved model)')
    try:
        return TaggerConfig.from_dict(model)
    except (TypeError, ValueError) as e:
        raise SeqtagError(f'{path}: bad "model" ({e})') from None


def _read_vocabs(path: Path) -> Vocabularies:
    try:
        return Vocabularies.from_dict(_read_json(path))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SeqtagError(f"{path}: not a seqtag vocabulary ({type(e).__name__}: {e})") from None


def _read_weights(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, which would run the file's code
        raise SeqtagError(f"{path}: refused to load: it holds Python objects, not only tensors") from None
    except Exception as e:  # a torn or foreign file: RuntimeError, EOFError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SeqtagError(f"{path}: not a readable weights file ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise SeqtagError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def _state_mismatch(state: dict, expected: dict[str, Tensor]) -> str:
    """What keeps ``state`` from loading into a model whose state dict is ``expected`` ("" if nothing)."""
    if "model" in state and "optimizer" in state:
        return "it is a training checkpoint (checkpoints/*.pt), not the weights of a model directory"
    if any(isinstance(k, str) and k.startswith("crf.") for k in state):
        return "its tensor names (crf.*) are those of seqtag before 0.2.0, whose model directories do not load"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"no {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(map(str, unexpected[:4]))}{' ...' if len(unexpected) > 4 else ''}")
    for k, v in expected.items():
        if k in state:
            if not isinstance(state[k], Tensor):
                problems.append(f"{k} is a {type(state[k]).__name__}, not a tensor")
            elif state[k].shape != v.shape:
                problems.append(f"{k} has shape {list(state[k].shape)}, expected {list(v.shape)}")
    return "; ".join(problems[:3])
