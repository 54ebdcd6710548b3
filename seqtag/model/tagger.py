"""The tagger: features (a pretrained encoder's word vectors, word embedding, case, characters)
► (Bi)LSTM ► emissions ► CRF or softmax.

:class:`Tagger` is an ``nn.Module`` built from parts that exist only when configured (the
pretrained encoder, the word embedding, the character CNN, the case embedding, the LSTM), the
LSTM run by one of two paths, and a head; the parts are in
:mod:`seqtag.model.layers` (:class:`~seqtag.model.layers.CharCNN`, :class:`~seqtag.model.layers.PackedLSTM`,
:class:`~seqtag.model.layers.PaddedLSTM`), :mod:`seqtag.model.encoder`
(:class:`~seqtag.model.encoder.SubwordEncoder`) and :mod:`seqtag.model.heads` (:class:`~seqtag.model.heads.CRFHead`,
:class:`~seqtag.model.heads.SoftmaxHead`), the model directory's files in :mod:`seqtag.model.directory`.

Its tensor methods (``forward``, ``loss``, ``decode``, and the id-level entry points
``tag_ids``, ``tag_confidence``, ``tag_marginals``, ``tag_nbest``) are TorchScript-compatible;
a model with an encoder gives them its word vectors (``vectors``, from :meth:`Tagger.word_vectors`),
which they treat as one more per-word input. ``predict``, ``predict_with_confidence``,
``marginals``, ``nbest``, ``save`` and ``load`` work with strings and files.

"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from seqtag.config import DEFAULT_BATCH_SIZE, TaggerConfig, TrainConfig, check_value
from seqtag.data.dataset import (
    Encoded,
    SubwordBatch,
    TaggingDataset,
    collate,
    collate_strings,
    encode_strings,
    lengths_to_mask,
    string_rules,
)
from seqtag.data.encoding import check_batch_size, check_sentences, plan_batches
from seqtag.data.subwords import SubwordTokenizer, WindowLayout
from seqtag.data.vocab import Vocabularies
from seqtag.device import autocast
from seqtag.errors import SeqtagError
from seqtag.model.directory import load_tagger, save_tagger
from seqtag.model.encoder import SubwordEncoder, load_encoder, max_window_size
from seqtag.model.heads import build_head
from seqtag.model.layers import CharCNN, PackedLSTM, PaddedLSTM, dropout, resolve_rnn_mode
from seqtag.schemes import resolve_scheme

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def check_id_batch(
    words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None = None, vector_dim: int = 0
) -> Tensor:
    """Check an id-level batch as :meth:`Tagger.tag_ids` takes it: ``(batch, seq_len)`` words and
    cases, ``(batch, seq_len, word_len)`` chars, ``(batch,)`` lengths with ``0 <= length <=
    seq_len``, and ``(batch, seq_len, vector_dim)`` encoder vectors when ``vector_dim > 0`` (a
    model with a pretrained encoder), else none. Returns the lengths as int64 on the CPU.

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
    if vector_dim > 0:
        if vectors is None:
            raise ValueError("expected the encoder's vectors (Tagger.word_vectors) for a model with an encoder")
        if vectors.dim() != 3 or vectors.size(0) != b or vectors.size(1) != t or vectors.size(2) != vector_dim:
            raise ValueError(f"expected vectors of shape [{b}, {t}, {vector_dim}], got {list(vectors.shape)}")
    elif vectors is not None:
        raise ValueError("expected no vectors: the model has no encoder")
    lengths = lengths.cpu().long()
    if b > 0 and (int(lengths.min()) < 0 or int(lengths.max()) > t):
        low, high = int(lengths.min()), int(lengths.max())
        raise ValueError(f"expected 0 <= lengths <= seq_len = {t}, got lengths from {low} to {high}")
    return lengths


def _rows(vectors: Tensor | None, rows: Tensor) -> Tensor | None:
    """``vectors[rows]``, or None."""
    if vectors is None:
        return None
    return vectors[rows.to(vectors.device)]


class Tagger(nn.Module):
    """A BiLSTM(-CRF) sequence tagger with its vocabularies.

    Args:
        config: the architecture.
        vocabs: word, character and tag vocabularies (see :class:`~seqtag.data.vocab.Vocabularies`).
        pretrained: for ``config.encoder``, the transformer and its tokenizer; None loads them
            from ``config.encoder`` (:func:`~seqtag.model.encoder.load_encoder`: offline).

    Attributes:
        encoder: the :class:`~seqtag.model.encoder.SubwordEncoder` (``config.encoder``), or None.
        windows: how the encoder reads sentences (:class:`~seqtag.data.subwords.WindowLayout`), or None.
        word_embedding: ``nn.Embedding`` of the words, or None (``embedding_dim = 0``).
        case_embedding: ``nn.Embedding`` of the case feature, or None (``case_embedding_dim = 0``).
        char_cnn: :class:`~seqtag.model.layers.CharCNN`, or None (``char_filters = 0``).
        lstm: the ``nn.LSTM`` holding the recurrent weights, or None (``num_layers = 0``).
        rnn: how the LSTM runs, :class:`~seqtag.model.layers.PackedLSTM` or
            :class:`~seqtag.model.layers.PaddedLSTM` (:meth:`set_rnn_mode`), or None.
        output: ``nn.Linear`` to tag scores.
        head: :class:`~seqtag.model.heads.CRFHead` (``config.crf``) or :class:`~seqtag.model.heads.SoftmaxHead`.

    Example:
        >>> import seqtag
        >>> data = seqtag.tutorial_corpus()
        >>> vocabs = seqtag.Vocabularies.build(data)
        >>> tagger = seqtag.Tagger(seqtag.TaggerConfig(hidden_dim=8), vocabs)
        >>> [len(tags) for tags in tagger.predict([["The", "dog"], []])]
        [2, 0]
    """

    def __init__(
        self,
        config: TaggerConfig,
        vocabs: Vocabularies,
        pretrained: tuple[PreTrainedModel, SubwordTokenizer] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.vocabs = vocabs
        self.num_tags = len(vocabs.tags)
        self.encoder: SubwordEncoder | None = None
        self.windows: WindowLayout | None = None
        self.vector_dim = 0  # the encoder's vector size; 0 without an encoder
        if config.encoder:
            model, tokenizer = pretrained if pretrained is not None else load_encoder(config.encoder)
            self.encoder = SubwordEncoder(model, config.encoder_pooling, config.encoder_layers, config.encoder_frozen)
            limit = max_window_size(model.config)
            self.windows = WindowLayout.resolve(tokenizer, config.encoder_window, config.encoder_stride, limit)
            self.vector_dim = self.encoder.dim
        input_dim = self.vector_dim + config.embedding_dim
        self.word_embedding = None
        if config.embedding_dim > 0:
            self.word_embedding = nn.Embedding(len(vocabs.words), config.embedding_dim, padding_idx=0)
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
        self.lstm = None
        output_dim = input_dim
        if config.num_layers > 0:
            self.lstm = nn.LSTM(
                input_dim,
                config.hidden_dim,
                num_layers=config.num_layers,
                bidirectional=config.bidirectional,
                batch_first=True,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
            )
            output_dim = config.hidden_dim * (2 if config.bidirectional else 1)
        self.set_rnn_mode(torch.device("cpu"))  # sets self.rnn
        self.output = nn.Linear(output_dim, self.num_tags)
        self.tag_scheme = resolve_scheme(config.tag_scheme, vocabs.tags.itos)
        self.head: nn.Module = build_head(config, vocabs.tags.itos, self.tag_scheme)

    # -- tensor methods (TorchScript-compatible) ------------------------------------------

    def forward(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None = None
    ) -> Tensor:
        """Tag scores (emissions) for a padded batch.

        Args:
            words: ``(batch, seq_len)`` word ids (unused without a word embedding).
            cases: ``(batch, seq_len)`` case-feature ids (unused without a case embedding).
            chars: ``(batch, seq_len, word_len)`` character ids (``word_len`` may be 0; unused
                without a character CNN).
            lengths: ``(batch,)`` int64 lengths on the CPU, each >= 1.
            vectors: ``(batch, seq_len, encoder dim)``, the encoder's word vectors
                (:meth:`word_vectors`) for a model with an encoder; else None.

        Returns:
            ``(batch, seq_len, num_tags)`` scores; values at padded positions are meaningless.
        """
        parts: list[Tensor] = []
        if vectors is not None:
            parts.append(vectors)
        if self.word_embedding is not None:
            parts.append(self.word_embedding(words))
        if self.case_embedding is not None:
            parts.append(self.case_embedding(cases))
        if self.char_cnn is not None:
            parts.append(self.char_cnn(chars))
        x = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        x = dropout(x, self.dropout_p, self.training)
        x = self.recurrent(x, lengths)
        return self.output(dropout(x, self.dropout_p, self.training))

    @torch.jit.unused
    def word_vectors(self, subwords: SubwordBatch | None) -> Tensor | None:
        """The encoder's word vectors ``(batch, max_words, dim)`` for a batch's subwords
        (:attr:`Batch.subwords <seqtag.data.dataset.Batch.subwords>`), on the model's device; None
        for a model without an encoder.

        Raises:
            ValueError: a model with an encoder given no subwords, or one without given some.
        """
        if self.encoder is None:
            if subwords is not None:
                raise ValueError("expected no subwords: the model has no encoder")
            return None
        if subwords is None:
            raise ValueError("expected the batch's subwords (Batch.subwords) for a model with an encoder")
        return self.encoder(*subwords.to(self.output.weight.device))

    @torch.jit.export
    def recurrent(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The LSTM by the chosen path: ``(batch, seq_len, input_dim)`` ►
        ``(batch, seq_len, hidden * directions)``; ``lengths`` ``(batch,)`` on the CPU. Without
        LSTM layers (``num_layers = 0``), ``x`` itself."""
        if self.rnn is None or self.lstm is None:
            return x
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
    def tag_ids(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None = None
    ) -> Tensor:
        """Best tag ids for a padded batch: :meth:`forward`, then :meth:`decode` (CRF Viterbi with
        its constraints, or argmax). The one id-level entry point: eager prediction, the
        TorchScript module and the ``torch.export`` programs all call it. Call it in eval mode.

        Args:
            words: ``(batch, seq_len)`` int64 word ids, on any device.
            cases: ``(batch, seq_len)`` int64 case ids (1 lower, 2 Title, 3 other, 0 padding).
            chars: ``(batch, seq_len, word_len)`` int64 character ids (``word_len`` may be 0).
            lengths: ``(batch,)`` int64 sentence lengths, ``0 <= length <= seq_len``.
            vectors: ``(batch, seq_len, encoder dim)``: the encoder's word vectors
                (:meth:`word_vectors`), for a model with an encoder only.

        Returns:
            ``(batch, seq_len)`` int64 tag ids on ``words.device``; 0 at padded positions and in
            rows of length 0. Each row equals the result for that sentence alone.

        Raises:
            ValueError: for inconsistent shapes or lengths (``torch.jit.Error`` once scripted).
                While ``torch.export`` traces it, nothing is checked and every length must be >= 1.
        """
        if not torch.jit.is_scripting():
            if torch.compiler.is_exporting():
                return self._tag_rows(words, cases, chars, lengths, vectors)
        lengths = check_id_batch(words, cases, chars, lengths, vectors, self.vector_dim)
        out = torch.zeros(words.shape, dtype=torch.long, device=words.device)
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() == words.size(0) and keep.numel() > 0:
            return self._tag_rows(words, cases, chars, lengths, vectors).to(words.device)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            kept = _rows(vectors, rows)
            out[rows] = self._tag_rows(words[rows], cases[rows], chars[rows], lengths[keep], kept).to(words.device)
        return out

    @torch.jit.export
    def tag_confidence(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`tag_ids` and the marginal probability of each chosen tag.

        Returns:
            ``(paths, confidence)``: ``(batch, seq_len)`` int64 tag ids as :meth:`tag_ids`
            gives them, and ``(batch, seq_len)`` float32 ``p(y_t = paths[:, t] | x)`` (the CRF's
            forward-backward marginal, or the softmax), 0 at padding and in rows of length 0.
        """
        lengths = check_id_batch(words, cases, chars, lengths, vectors, self.vector_dim)
        b, t = words.size(0), words.size(1)
        paths = torch.zeros((b, t), dtype=torch.long, device=words.device)
        confidence = torch.zeros((b, t), dtype=torch.float32, device=words.device)
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            emissions, mask = self._emissions(words[rows], cases[rows], chars[rows], lengths[keep], _rows(vectors, rows))
            best = self.head.decode(emissions, mask)
            probs = self.head.marginals(emissions, mask).gather(2, best.unsqueeze(2)).squeeze(2)
            paths[rows] = best.to(words.device)
            confidence[rows] = probs.float().to(words.device)
        return paths, confidence

    @torch.jit.export
    def tag_marginals(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None = None
    ) -> Tensor:
        """``(batch, seq_len, num_tags)`` float32 ``p(y_t = k | x)`` for the batch of
        :meth:`tag_ids` (the CRF's forward-backward marginals, or the softmax); rows of 0 at
        padding and in rows of length 0."""
        lengths = check_id_batch(words, cases, chars, lengths, vectors, self.vector_dim)
        b, t = words.size(0), words.size(1)
        out = torch.zeros((b, t, self.num_tags), dtype=torch.float32, device=words.device)
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            emissions, mask = self._emissions(words[rows], cases[rows], chars[rows], lengths[keep], _rows(vectors, rows))
            out[rows] = self.head.marginals(emissions, mask).float().to(words.device)
        return out

    @torch.jit.export
    def tag_nbest(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, k: int, vectors: Tensor | None = None
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
        lengths = check_id_batch(words, cases, chars, lengths, vectors, self.vector_dim)
        b, t = words.size(0), words.size(1)
        paths = torch.zeros((b, k, t), dtype=torch.long, device=words.device)
        log_probs = torch.full((b, k), float("-inf"), dtype=torch.float32, device=words.device)
        log_probs[:, 0] = 0.0  # the empty sequence of an empty sentence; overwritten below
        keep = (lengths > 0).nonzero().squeeze(1)
        if keep.numel() > 0:
            rows = keep.to(words.device)
            emissions, mask = self._emissions(words[rows], cases[rows], chars[rows], lengths[keep], _rows(vectors, rows))
            best, scores = self.head.nbest(emissions, mask, k)
            paths[rows] = best.to(words.device)
            log_probs[rows] = scores.float().to(words.device)
        return paths, log_probs

    def _emissions(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Emissions ``(B, T, K)`` and mask ``(B, T)`` on the model's device (lengths >= 1)."""
        device = self.output.weight.device
        if vectors is not None:
            vectors = vectors.to(device)
        emissions = self(words.to(device), cases.to(device), chars.to(device), lengths, vectors)
        return emissions, lengths_to_mask(lengths, emissions.size(1), device)

    def _tag_rows(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None
    ) -> Tensor:
        emissions, mask = self._emissions(words, cases, chars, lengths, vectors)
        return self.head.decode(emissions, mask)

    # -- strings in, strings out ---------------------------------------------------------

    @torch.jit.unused
    def predict(
        self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32"
    ) -> list[list[str]]:
        """Tag tokenized sentences.

        Args:
            sentences: each a list of token strings (an empty list gives an empty list).
            batch_size: at most this many sentences per forward pass (and at most
                :func:`~seqtag.data.encoding.default_max_tokens` tokens counting padding: :func:`~seqtag.data.dataset.plan_batches`).
            precision: ``fp32``, or ``bf16``/``fp16`` autocast where the model's device runs it
                (:func:`~seqtag.device.check_precision`; a request it cannot serve is a
                :class:`~seqtag.errors.SeqtagError`, never fp32 in its place).

        Returns:
            One list of tag strings per sentence.

        Raises:
            ValueError: ``batch_size < 1``.
        """
        itos = self.vocabs.tags.itos
        return [[itos[i] for i in s] for s in self.predict_ids(sentences, batch_size, precision)]

    @torch.jit.unused
    def predict_ids(
        self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32"
    ) -> list[list[int]]:
        """Like :meth:`predict`, returning tag ids."""
        sentences = check_sentences(sentences)
        check_batch_size(batch_size)
        batches = self._string_batches(sentences, batch_size, None)
        return self._run(batches, len(sentences), self._paths, list, precision)

    @torch.jit.unused
    def decode_encoded(
        self, items: Sequence[Encoded], batch_size: int = DEFAULT_BATCH_SIZE, max_tokens: int | None = None,
        precision: str = "fp32",
    ) -> list[list[int]]:
        """Best tag ids for already encoded sentences (a list, or an encoded dataset such as
        :class:`~seqtag.data.dataset.TaggingDataset` or ``arrow.ArrowTaggingDataset``), batched by
        :func:`~seqtag.data.dataset.plan_batches` (at most ``batch_size`` sentences and ``max_tokens``
        padded tokens, default :func:`~seqtag.data.encoding.default_max_tokens`, per batch); one host transfer per batch;
        ``precision`` as in :meth:`predict`."""
        lengths = getattr(items, "lengths", None)  # an encoded dataset knows them without reading items
        lengths = [len(e) for e in items] if lengths is None else [int(n) for n in lengths]
        fetch = getattr(items, "__getitems__", None)  # one read per batch from a memory-mapped dataset
        planned = lengths
        subword_lengths = getattr(items, "subword_lengths", None)
        if self.windows is not None and subword_lengths is not None:  # an encoder's cost: its subwords
            planned = [int(n) for n in subword_lengths]

        def batches() -> Iterator[tuple[list[int], tuple[Tensor, Tensor, Tensor, Tensor, SubwordBatch | None]]]:
            for chunk in plan_batches(planned, batch_size, max_tokens):
                b = collate(fetch(chunk) if fetch else [items[i] for i in chunk], self.windows)
                yield chunk, (b.words, b.cases, b.chars, b.lengths, b.subwords)

        return self._run(batches(), len(lengths), self._paths, list, precision)

    @torch.jit.unused
    def predict_with_confidence(
        self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32"
    ) -> list[tuple[list[str], list[float]]]:
        """Tag tokenized sentences and give each chosen tag its probability under the model.

        Args:
            sentences: each a list of token strings.
            batch_size: as in :meth:`predict`.
            precision: as in :meth:`predict`.

        Returns:
            Per sentence ``(tags, confidence)``: the tags of :meth:`predict` and, per token, the
            marginal probability of the chosen tag, ``p(y_t = tag_t | sentence)`` (the CRF's
            forward-backward marginal; the softmax for a softmax head).
        """
        sentences = check_sentences(sentences)
        check_batch_size(batch_size)
        itos = self.vocabs.tags.itos

        def step(words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None) -> list:
            paths, probs = self.tag_confidence(words, cases, chars, lengths, vectors)
            return [([itos[i] for i in p[:n]], q[:n])
                    for p, q, n in zip(paths.cpu().tolist(), probs.cpu().tolist(), lengths.tolist())]

        batches = self._string_batches(sentences, batch_size, None)
        return self._run(batches, len(sentences), step, lambda: ([], []), precision)

    @torch.jit.unused
    def marginals(
        self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32"
    ) -> list[np.ndarray]:
        """The probability of every tag at every token: per sentence an ``(n_tokens, num_tags)``
        float32 array, columns in ``vocabs.tags.itos`` order, each row summing to 1 (the CRF's
        forward-backward marginals, 0 for tags its constraints rule out; the softmax for a
        softmax head). ``batch_size`` and ``precision`` as in :meth:`predict`."""
        sentences = check_sentences(sentences)
        check_batch_size(batch_size)

        def step(words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None) -> list:
            probs = self.tag_marginals(words, cases, chars, lengths, vectors).cpu().numpy()
            return [probs[i, :n].copy() for i, n in enumerate(lengths.tolist())]

        k = self.num_tags
        batches = self._string_batches(sentences, batch_size, None)
        return self._run(batches, len(sentences), step, lambda: np.zeros((0, k), dtype=np.float32), precision)

    @torch.jit.unused
    def nbest(
        self, sentences: Sequence[Sequence[str]], k: int, batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32"
    ) -> list[list[tuple[list[str], float]]]:
        """The ``k`` most probable tag sequences of each sentence.

        Returns:
            Per sentence up to ``k`` ``(tags, log_prob)``, best first (the first is
            :meth:`predict`'s), fewer when the sentence has fewer allowed sequences; an empty
            sentence has one, ``([], 0.0)``. Ties follow :meth:`CRF.nbest <seqtag.model.crf.CRF.nbest>`.

        Raises:
            ValueError: ``k`` or ``batch_size`` not an int >= 1.
        """
        sentences = check_sentences(sentences)
        check_batch_size(batch_size)
        check_value("k", k, {"min": 1}, int)  # an int >= 1: not True, not 2.5
        itos = self.vocabs.tags.itos

        def step(words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None) -> list:
            paths, log_probs = self.tag_nbest(words, cases, chars, lengths, k, vectors)
            return [[([itos[i] for i in p[:n]], s) for p, s in zip(ps, ss) if s != float("-inf")]
                    for ps, ss, n in zip(paths.cpu().tolist(), log_probs.cpu().tolist(), lengths.tolist())]

        batches = self._string_batches(sentences, batch_size, None)
        return self._run(batches, len(sentences), step, lambda: [([], 0.0)], precision)

    @torch.jit.unused
    def _string_batches(
        self, sentences: Sequence[Sequence[str]], batch_size: int, max_tokens: int | None
    ) -> Iterator[tuple[list[int], tuple[Tensor, Tensor, Tensor, Tensor, SubwordBatch | None]]]:
        """The planned batches of token strings: ``(indices, (words, cases, chars, lengths,
        subwords))``; with an encoder, each sentence is tokenized once and the plan sorts and
        cuts by subword counts (every word has at least one subword, so the same sentences are
        empty)."""
        lens = [len(s) for s in sentences]
        if self.windows is None:
            plan = plan_batches(lens, batch_size, max_tokens)  # checks batch_size before any work
            tokenized = None
        else:
            plan_batches([], batch_size, max_tokens)  # checks batch_size before any work
            tokenized = self.windows.tokenizer.tokenize([list(s) for s in sentences])
            plan = plan_batches([len(sub.ids) for sub in tokenized], batch_size, max_tokens)
        table = encode_strings(sentences, *string_rules(self.vocabs, self.config))
        for chunk in plan:
            subwords = None
            if self.windows is not None and tokenized is not None:
                subwords = SubwordBatch.from_inputs(self.windows.inputs([tokenized[i] for i in chunk]))
            yield chunk, (*collate_strings(table, lens, chunk), subwords)

    @torch.jit.unused
    def _run(self, batches: Iterable, n: int, step: Callable, empty: Callable, precision: str = "fp32") -> list:
        """The eager inference loop: ``step(words, cases, chars, lengths, vectors)`` gives one
        result per row of each batch (``vectors`` from the batch's subwords: :meth:`word_vectors`),
        in eval mode without autograd and under ``precision``'s autocast (checked before any
        work); sentences in no batch (empty ones) get ``empty()``."""
        cast = autocast(self.output.weight.device, precision)
        out = [empty() for _ in range(n)]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(), cast:
                for chunk, (*batch, subwords) in batches:
                    for i, result in zip(chunk, step(*batch, self.word_vectors(subwords))):
                        out[i] = result
        finally:
            self.train(was_training)
        return out

    @torch.jit.unused
    def _paths(
        self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor, vectors: Tensor | None
    ) -> list[list[int]]:
        paths = self.tag_ids(words, cases, chars, lengths, vectors).cpu().tolist()
        return [path[:n] for path, n in zip(paths, lengths.tolist())]

    @torch.jit.unused
    def dataset(self, sentences: Sequence, with_tags: bool = True) -> TaggingDataset:
        """Encode ``sentences`` with this tagger's vocabularies."""
        return TaggingDataset(sentences, self.vocabs, self.config, with_tags=with_tags, windows=self.windows)

    def _apply(self, fn, recurse=True):
        # after a move to CUDA, cuDNN wants the LSTM's weights in one contiguous block
        result = super()._apply(fn, recurse)
        if self.lstm is not None:
            self.lstm.flatten_parameters()
        return result

    @torch.jit.unused
    def set_rnn_mode(self, device: torch.device, exporting: bool = False) -> None:
        """Choose the LSTM path (attribute ``rnn``) for ``device`` by :func:`~seqtag.model.layers.resolve_rnn_mode`."""
        if self.lstm is None:
            self.rnn = None
            return
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
        save_tagger(self, directory, training, data)

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
        return load_tagger(cls, directory, device)


def refuse_encoder(tagger: Tagger, form: str) -> None:
    """Raise :class:`~seqtag.errors.SeqtagError` (one line naming what does hold one: ONNX, the
    model directory) when ``tagger`` has a pretrained encoder, which the export ``form`` cannot
    hold: a transformers model neither scripts nor exports by length bucket as the tagger does."""
    if tagger.encoder is not None:
        raise SeqtagError(
            f"{form} cannot hold a model with a pretrained encoder: export it as ONNX (seqtag export "
            "--format onnx), or serve its model directory as it is"
        )


def as_tagger(model_or_dir: Tagger | str | os.PathLike) -> Tagger:
    """``model_or_dir`` itself if it is a :class:`Tagger`, else the model directory it names,
    loaded on the CPU (what every export takes)."""
    if isinstance(model_or_dir, Tagger):
        return model_or_dir
    return Tagger.load(model_or_dir, device="cpu")
