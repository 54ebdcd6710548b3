"""The tagger: embeddings (words, case, characters) ► (Bi)LSTM ► emissions ► CRF or softmax.

:class:`Tagger` is an ``nn.Module`` whose tensor methods (``forward``, ``loss``, ``decode``) are
TorchScript-compatible; ``predict``, ``save`` and ``load`` work with strings and files.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import __version__
from .config import TaggerConfig, TrainConfig
from .crf import CRF, allowed_transitions
from .data import Encoded, TaggingDataset, collate, cut_batches, encode_tokens
from .device import resolve_device
from .errors import SeqtagError
from .fileio import atomic_write_bytes, atomic_write_text
from .metrics import detect_scheme
from .vocab import Vocabularies

CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "weights.pt"


def lengths_to_mask(lengths: Tensor, max_len: int, device: torch.device) -> Tensor:
    """``(batch,)`` lengths ► ``(batch, max_len)`` bool mask, True at real tokens."""
    return torch.arange(max_len, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


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


class Tagger(nn.Module):
    """A BiLSTM(-CRF) sequence tagger with its vocabularies.

    Args:
        config: the architecture.
        vocabs: word, character and tag vocabularies (see :class:`~seqtag.vocab.Vocabularies`).

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
        self.use_case = config.case_embedding_dim > 0
        self.case_embedding = nn.Embedding(4, max(config.case_embedding_dim, 1), padding_idx=0)
        if self.use_case:
            input_dim += config.case_embedding_dim
        self.use_chars = config.char_filters > 0
        self.char_cnn = CharCNN(
            len(vocabs.chars), config.char_embedding_dim, max(config.char_filters, 1), config.char_kernel_size
        )
        if self.use_chars:
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
        self.num_directions = 2 if config.bidirectional else 1
        self.num_layers = config.num_layers
        self.output = nn.Linear(config.hidden_dim * self.num_directions, self.num_tags)
        self.use_crf = config.crf
        self.crf = CRF(self.num_tags)
        self.tag_scheme = resolve_scheme(config.tag_scheme, vocabs.tags.itos)
        if self.use_crf and config.constrain and self.tag_scheme != "none":
            self.crf.set_constraints(*allowed_transitions(vocabs.tags.itos, self.tag_scheme))
        self.packed = config.rnn_mode == "packed"
        if not self.use_case:
            self.case_embedding.requires_grad_(False)
        if not self.use_chars:
            self.char_cnn.requires_grad_(False)
        if not self.use_crf:
            self.crf.requires_grad_(False)

    # -- tensor methods (TorchScript-compatible) ------------------------------------------

    def forward(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        """Tag scores (emissions) for a padded batch.

        Args:
            words: ``(batch, seq_len)`` word ids.
            cases: ``(batch, seq_len)`` case-feature ids.
            chars: ``(batch, seq_len, word_len)`` character ids (``word_len`` may be 0).
            lengths: ``(batch,)`` int64 lengths on the CPU, each >= 1.

        Returns:
            ``(batch, seq_len, num_tags)`` scores; values at padded positions are meaningless.
        """
        x = self.word_embedding(words)
        if self.use_case:
            x = torch.cat([x, self.case_embedding(cases)], dim=2)
        if self.use_chars:
            x = torch.cat([x, self.char_cnn(chars)], dim=2)
        x = dropout(x, self.dropout_p, self.training)
        if self.packed:
            x = self._lstm_packed(x, lengths)
        else:
            x = self._lstm_padded(x, lengths)
        return self.output(dropout(x, self.dropout_p, self.training))

    def _lstm_packed(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]

    def _lstm_padded(self, x: Tensor, lengths: Tensor) -> Tensor:
        # Padding comes after each sentence, so a forward LSTM over the padded batch gives the
        # packed result at real positions; the backward direction runs over each sentence
        # reversed within its own length. Same weights as self.lstm, same result as packing.
        weights = self.lstm._flat_weights
        b = x.size(0)
        h0 = x.new_zeros((1, b, self.lstm.hidden_size))
        for layer in range(self.num_layers):
            if layer > 0:
                x = dropout(x, self.lstm.dropout, self.training)
            k = 4 * self.num_directions * layer
            fwd = torch.lstm(x, [h0, h0], weights[k : k + 4], True, 1, 0.0, self.training, False, True)[0]
            if self.num_directions == 2:
                xr = reverse_padded(x, lengths)
                bwd = torch.lstm(xr, [h0, h0], weights[k + 4 : k + 8], True, 1, 0.0, self.training, False, True)[0]
                x = torch.cat([fwd, reverse_padded(bwd, lengths)], dim=2)
            else:
                x = fwd
        return x

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
        mask = lengths_to_mask(lengths, emissions.size(1), emissions.device)
        if self.use_crf:
            return self.crf(emissions, tags, mask).sum() / mask.sum()
        return F.cross_entropy(emissions.float().flatten(0, 1), tags.masked_fill(~mask, -100).flatten())

    @torch.jit.export
    def decode(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """Best tag ids ``(batch, seq_len)``, 0 at padded positions (Viterbi with a CRF, else argmax)."""
        mask = lengths_to_mask(lengths, emissions.size(1), emissions.device)
        if self.use_crf:
            return self.crf.decode(emissions, mask)
        return emissions.argmax(dim=2).masked_fill(~mask, 0)

    # -- strings in, strings out ---------------------------------------------------------

    @torch.jit.unused
    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 256) -> list[list[str]]:
        """Tag tokenized sentences.

        Args:
            sentences: each a list of token strings (an empty list gives an empty list).
            batch_size: sentences per forward pass.

        Returns:
            One list of tag strings per sentence.
        """
        ids = self.predict_ids(sentences, batch_size)
        return [self.vocabs.tags.decode(s) for s in ids]

    @torch.jit.unused
    def predict_ids(self, sentences: Sequence[Sequence[str]], batch_size: int = 256) -> list[list[int]]:
        """Like :meth:`predict`, returning tag ids."""
        items = [encode_tokens(s, self.vocabs, self.config) for s in sentences]
        return self.decode_encoded(items, batch_size)

    @torch.jit.unused
    def decode_encoded(
        self, items: Sequence[Encoded], batch_size: int = 256, max_tokens: int | None = None
    ) -> list[list[int]]:
        """Best tag ids for already encoded sentences (a list, or an encoded dataset such as
        :class:`~seqtag.data.TaggingDataset` or ``hf.ArrowTaggingDataset``), batched by length
        (at most ``batch_size`` sentences and ``max_tokens`` padded tokens, default
        ``batch_size * 128``, per batch); one host transfer per batch."""
        device = next(self.parameters()).device
        lengths = getattr(items, "lengths", None)  # an encoded dataset knows them without reading items
        lengths = [len(e) for e in items] if lengths is None else [int(n) for n in lengths]
        fetch = getattr(items, "__getitems__", None)  # one read per batch from a memory-mapped dataset
        out: list[list[int]] = [[] for _ in lengths]
        order = np.array(sorted((i for i, n in enumerate(lengths) if n), key=lengths.__getitem__), dtype=np.int64)
        cap = max_tokens if max_tokens is not None else batch_size * 128
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for chunk in cut_batches(order, np.asarray(lengths, dtype=np.int64)[order], batch_size, cap):
                    chunk = chunk.tolist()
                    batch = collate(fetch(chunk) if fetch else [items[i] for i in chunk]).to(device)
                    emissions = self(batch.words, batch.cases, batch.chars, batch.lengths)
                    paths = self.decode(emissions, batch.lengths).cpu().tolist()
                    for i, path, n in zip(chunk, paths, batch.lengths.tolist()):
                        out[i] = path[:n]
        finally:
            self.train(was_training)
        return out

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
    def set_rnn_mode(self, device: torch.device) -> None:
        """Resolve ``rnn_mode="auto"`` for ``device``: packed on CUDA (cuDNN), padded elsewhere."""
        mode = self.config.rnn_mode
        self.packed = mode == "packed" or (mode == "auto" and device.type == "cuda")

    # -- files ------------------------------------------------------------------------------

    @torch.jit.unused
    def save(self, directory: str | Path, training: TrainConfig | None = None) -> None:
        """Write ``config.json``, ``vocab.json`` and ``weights.pt`` into ``directory``.

        ``config.json`` holds the model configuration and, when given, the training configuration.

        Each file is written to a temporary name and renamed, so a crash leaves either the old
        file or the new one, never a torn one.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(directory / WEIGHTS_FILE, buf.getvalue())
        atomic_write_text(directory / VOCAB_FILE, json.dumps(self.vocabs.to_dict(), ensure_ascii=False))
        meta = {"seqtag_version": __version__, "model": self.config.to_dict()}
        if training is not None:
            meta["training"] = training.to_dict()
        atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    @torch.jit.unused
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> Tagger:
        """Load a model directory written by :meth:`save`. Weights load with ``weights_only=True``,
        so a crafted file cannot run code."""
        directory = Path(directory)
        for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise SeqtagError(f"{directory}: not a seqtag model directory (no {name})")
        try:
            meta = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            config = TaggerConfig.from_dict(meta["model"])
            vocabs = Vocabularies.from_dict(json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as e:
            raise SeqtagError(f"{directory}: unreadable model files ({e})") from None
        tagger = cls(config, vocabs)
        try:
            state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for bad files
            raise SeqtagError(f"{directory / WEIGHTS_FILE}: refused to load ({type(e).__name__}: {e})") from None
        tagger.load_state_dict(state)
        dev = resolve_device(device)
        tagger.set_rnn_mode(dev)
        return tagger.to(dev)
