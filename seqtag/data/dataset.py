"""From sentences to padded batches: encoding, the dataset, collate, length bucketing and the
inference batch plan.

For training and evaluation, a sentence is encoded once (:func:`encode_tokens`) into NumPy
arrays; :func:`collate` pads a list of them to the longest sentence of the batch;
:class:`BucketBatchSampler` groups sentences of similar length so that padding stays small.

For inference from strings, :func:`encode_strings` encodes each distinct token of a call once
(the same ids as :func:`encode_tokens`) and :func:`collate_strings` pads a batch of it;
:func:`plan_batches` is the batch plan. The encoder and the planner are the torch-free
:mod:`seqtag.data.encoding`, which TorchScript also compiles and the ONNX runner imports, so the
eager tagger and every exported format run the same code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from seqtag.config import TaggerConfig
from seqtag.data.encoding import cut_sorted, default_max_tokens, encode_table, lowercase_table
from seqtag.data.subwords import EncoderInputs, Subwords, WindowLayout
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError


def lengths_to_mask(lengths: Tensor, max_len: int, device: torch.device) -> Tensor:
    """``(batch,)`` lengths ► ``(batch, max_len)`` bool mask, True at real tokens."""
    return torch.arange(max_len, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


@dataclass
class Encoded:
    """One encoded sentence: ``words``, ``cases`` and ``tags`` have shape ``(n,)``; ``chars`` has
    shape ``(n, w)`` with ``w`` the longest (capped) word, or ``(n, 0)`` without character
    features; ``subwords`` its encoder subwords and word spans for a model with a pretrained
    encoder (:class:`~seqtag.data.subwords.Subwords`), else None."""

    words: np.ndarray
    cases: np.ndarray
    chars: np.ndarray
    tags: np.ndarray
    subwords: Subwords | None = None

    def __len__(self) -> int:
        return len(self.words)


class SubwordBatch(NamedTuple):
    """A batch's subwords in windows, as :class:`~seqtag.model.encoder.SubwordEncoder` takes them:
    the int64 tensors of :class:`~seqtag.data.subwords.EncoderInputs`.

    Attributes:
        window_ids, window_mask: ``(n_windows, width)``.
        source: ``(batch, max_subwords)``.
        word_starts, word_ends: ``(batch, max_words)``.
    """

    window_ids: Tensor
    window_mask: Tensor
    source: Tensor
    word_starts: Tensor
    word_ends: Tensor

    @classmethod
    def from_inputs(cls, inputs: EncoderInputs) -> SubwordBatch:
        """The tensors of :func:`~seqtag.data.subwords.encoder_inputs`' lists (an empty row
        gives a ``(rows, 0)`` tensor)."""
        b, n_windows = len(inputs.lengths), len(inputs.window_ids)

        def tensor(rows: list[list[int]], n_rows: int) -> Tensor:
            if not rows or not rows[0]:
                return torch.zeros(n_rows, 0, dtype=torch.int64)
            return torch.from_numpy(np.array(rows, dtype=np.int64))

        return cls(
            tensor(inputs.window_ids, n_windows),
            tensor(inputs.window_mask, n_windows),
            tensor(inputs.source, b),
            tensor(inputs.word_starts, b),
            tensor(inputs.word_ends, b),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SubwordBatch:
        return SubwordBatch(*(t.to(device, non_blocking=non_blocking) for t in self))

    def pin_memory(self) -> SubwordBatch:
        return SubwordBatch(*(t.pin_memory() for t in self))


@dataclass
class Batch:
    """A padded batch, ``batch_first``.

    Attributes:
        words: ``(batch, seq_len)`` int64 word ids, 0 = padding.
        cases: ``(batch, seq_len)`` int64 case-feature ids, 0 = padding.
        chars: ``(batch, seq_len, word_len)`` int64 character ids (``word_len`` may be 0).
        tags: ``(batch, seq_len)`` int64 tag ids, 0 at padding (use ``lengths`` to mask).
        lengths: ``(batch,)`` int64 sentence lengths, always on the CPU.
        subwords: the batch's subwords in windows (:class:`SubwordBatch`) for a model with a
            pretrained encoder, else None.
    """

    words: torch.Tensor
    cases: torch.Tensor
    chars: torch.Tensor
    tags: torch.Tensor
    lengths: torch.Tensor
    subwords: SubwordBatch | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move everything but ``lengths`` (which stays on the CPU, as packing needs) to ``device``."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        subwords = self.subwords.to(device, non_blocking) if self.subwords is not None else None
        return Batch(move(self.words), move(self.cases), move(self.chars), move(self.tags), self.lengths, subwords)

    def pin_memory(self) -> Batch:
        subwords = self.subwords.pin_memory() if self.subwords is not None else None
        return Batch(*(t.pin_memory() for t in (self.words, self.cases, self.chars, self.tags)), self.lengths, subwords)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def encode_tokens(tokens: Sequence[str], vocabs: Vocabularies, config: TaggerConfig) -> Encoded:
    """Encode one sentence's tokens (tags are left empty: see :func:`encode_tags`) through the
    one string encoder, :func:`seqtag.data.encoding.encode_table`."""
    entry, _, words, cases, chars, widths = encode_table([list(tokens)], *string_rules(vocabs, config))
    width = max(widths, default=0)
    table = np.zeros((len(words), width), dtype=np.int64)
    table[np.arange(width)[None, :] < np.asarray(widths)[:, None]] = chars  # row r: widths[r] ids, then 0
    rows = np.asarray(entry, dtype=np.int64)
    return Encoded(np.asarray(words, np.int64)[rows], np.asarray(cases, np.int64)[rows], table[rows], np.zeros(0, np.int64))


# -- strings: each distinct token encoded once (plain Python that TorchScript also compiles) --


def encode_strings(
    tokens: list[list[str]],
    word_ids: dict[str, int],
    char_ids: dict[str, int],
    lower_map: dict[str, str],
    lowercase: bool,
    char_width: int,
) -> tuple[Tensor, list[int], Tensor, Tensor, Tensor, Tensor]:
    """Encode each distinct token once (:func:`seqtag.data.encoding.encode_table`), as tensors.

    Returns:
        ``(entry, starts, words, cases, chars, widths)``: ``(N,)`` the table row of each of the
        ``N`` tokens in sentence order, where each sentence starts in it, and per row
        ``(E,)`` word ids, ``(E,)`` case ids, ``(E, char_width)`` character ids padded with 0
        and ``(E,)`` their counts.
    """
    entry, starts, words, cases, chars, widths = encode_table(
        tokens, word_ids, char_ids, lower_map, lowercase, char_width
    )
    counts = _int64(widths)
    padded = torch.zeros((len(words), char_width), dtype=torch.long)
    if char_width > 0:  # row r holds its counts[r] ids, then zeros
        padded = padded.masked_scatter(torch.arange(char_width)[None, :] < counts[:, None], _int64(chars))
    return _int64(entry), starts, _int64(words), _int64(cases), padded, counts


def _int64(ints: list[int]) -> Tensor:
    """``torch.tensor(ints, dtype=torch.long)``; in Python through NumPy, which reads a list of
    ints about three times faster."""
    if torch.jit.is_scripting():
        return torch.tensor(ints, dtype=torch.long)
    return _int64_numpy(ints)


@torch.jit.unused
def _int64_numpy(ints: list[int]) -> Tensor:
    return torch.from_numpy(np.fromiter(ints, dtype=np.int64, count=len(ints)))


def collate_strings(
    table: tuple[Tensor, list[int], Tensor, Tensor, Tensor, Tensor], lens: list[int], chunk: list[int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pad the sentences ``chunk`` (indices) of an :func:`encode_strings` table as
    :func:`collate` pads their encodings.

    Returns:
        ``(words, cases, chars, lengths)``: ``(batch, seq_len)``, ``(batch, seq_len)``,
        ``(batch, seq_len, word_len)`` and ``(batch,)`` int64 on the CPU, 0 at padding;
        ``seq_len`` is the chunk's longest sentence, ``word_len`` its longest (capped) word.
    """
    entry, starts, words, cases, chars, widths = table
    b = len(chunk)
    lengths = torch.tensor([lens[i] for i in chunk], dtype=torch.long)
    t = int(lengths.max()) if b > 0 else 0
    # rows, shape (N_chunk,): the table rows of the chunk's tokens, sentence after sentence;
    # token k of the chunk is entry[first[s] + k - before[s]] for its sentence s (one gather,
    # not a slice per sentence: 6 instead of 9 ms per pass over EWT test at batch 256)
    first = torch.tensor([starts[i] for i in chunk], dtype=torch.long)
    before = torch.cumsum(lengths, 0) - lengths  # tokens of the chunk ahead of each sentence
    rows = entry[torch.repeat_interleave(first - before, lengths) + torch.arange(int(lengths.sum()))]
    mask = lengths_to_mask(lengths, t, torch.device("cpu"))  # shape: (B, T)
    batch_words = torch.zeros((b, t), dtype=torch.long).masked_scatter(mask, words[rows])
    batch_cases = torch.zeros((b, t), dtype=torch.long).masked_scatter(mask, cases[rows])
    w = int(widths[rows].max()) if rows.numel() > 0 else 0
    batch_chars = torch.zeros((b, t, w), dtype=torch.long)
    if w > 0:
        batch_chars = batch_chars.masked_scatter(mask.unsqueeze(2).expand(b, t, w), chars[rows][:, :w])
    return batch_words, batch_cases, batch_chars, lengths


def string_rules(vocabs: Vocabularies, config: TaggerConfig) -> tuple[dict[str, int], dict[str, int], dict[str, str], bool, int]:
    """The arguments of :func:`encode_strings` after ``tokens`` for a model's vocabularies and
    configuration: ``(word_ids, char_ids, lower_map, lowercase, char_width)``. ``lower_map`` is
    :func:`~seqtag.data.encoding.lowercase_table` of the vocabulary's;
    ``char_width`` is ``max_word_length``, or 0 without character features."""
    lower_map = lowercase_table(vocabs.lower_map)
    width = config.max_word_length if config.char_filters > 0 else 0
    return vocabs.words.stoi, vocabs.chars.stoi, lower_map, config.lowercase, width


def encode_tags(tags: Sequence[str], vocabs: Vocabularies) -> np.ndarray:
    ids = [vocabs.tags.stoi.get(t, -1) for t in tags]
    if -1 in ids:
        unknown = sorted({t for t, i in zip(tags, ids) if i < 0})
        raise SeqtagError(f"tags not in the model's tag set: {', '.join(unknown)}")
    return np.asarray(ids, dtype=np.int64)


def check_tags(sentences: Sequence, vocabs: Vocabularies, where: str = "the data") -> None:
    """Raise :class:`SeqtagError` listing every tag of ``sentences`` that ``vocabs`` lacks."""
    unknown = sorted({t for s in sentences for t in s.tags} - set(vocabs.tags.stoi))
    if unknown:
        shown = ", ".join(unknown[:20]) + (" ..." if len(unknown) > 20 else "")
        raise SeqtagError(
            f"{where} has {len(unknown)} tag(s) the model was not trained with: {shown} "
            f"(the model knows {len(vocabs.tags)} tags)"
        )


@runtime_checkable
class EncodedDataset(Protocol):
    """Encoded sentences, as :func:`make_loader`, ``train`` and ``evaluate`` take them:
    :class:`TaggingDataset` (in memory) or :class:`seqtag.data.arrow.ArrowTaggingDataset` (memory-mapped).

    Attributes:
        lengths: ``(num_sentences,)`` int64 sentence lengths, for the bucketing sampler.
        vocabs: the vocabularies the ids come from.
        config: the configuration whose encoding options (``lowercase``, ``char_filters``,
            ``max_word_length``) were used.
    """

    lengths: np.ndarray
    vocabs: Vocabularies
    config: TaggerConfig

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Encoded: ...


def check_encoding(dataset: EncodedDataset, vocabs: Vocabularies, config: TaggerConfig, what: str) -> None:
    """Raise :class:`SeqtagError` unless ``dataset`` was encoded with ``vocabs`` and ``config``'s
    encoding options, as a model with them expects."""
    if dataset.vocabs is not vocabs and dataset.vocabs != vocabs:
        raise SeqtagError(f"{what} was encoded with other vocabularies than the model's")
    given, expected = dataset.config, config
    if expected.encoder and getattr(dataset, "windows", None) is None:
        raise SeqtagError(f"{what} was encoded without subwords, which a model with an encoder reads (Tagger.dataset)")
    options = ("lowercase", "max_word_length")
    if any(getattr(given, o) != getattr(expected, o) for o in options) or (given.char_filters > 0) != (
        expected.char_filters > 0
    ):
        raise SeqtagError(
            f"{what} was encoded with other options than the model's (lowercase, char_filters > 0, max_word_length)"
        )


class TaggingDataset(Dataset):
    """Sentences encoded once, up front. ``lengths`` is a NumPy array for the bucketing sampler.

    For a model with a pretrained encoder, ``windows`` is its
    :class:`~seqtag.data.subwords.WindowLayout` (``Tagger.windows``): each sentence is also
    tokenized into subwords once, here (:attr:`Encoded.subwords`); ``subword_lengths`` holds their
    counts, which the bucketing sampler then sorts by, and :func:`collate` lays them out in
    windows. Without one (``windows`` None) nothing of this is done.
    """

    def __init__(
        self,
        sentences: Sequence,
        vocabs: Vocabularies,
        config: TaggerConfig,
        with_tags: bool = True,
        windows: WindowLayout | None = None,
    ):
        if bool(config.encoder) != (windows is not None):
            raise SeqtagError("a model with an encoder encodes its data with its windows, and only such a model")
        self.vocabs, self.config, self.windows = vocabs, config, windows
        if with_tags:
            check_tags(sentences, vocabs)
        self.items: list[Encoded] = []
        for s in sentences:
            enc = encode_tokens(s.tokens, vocabs, config)
            if with_tags:
                enc.tags = encode_tags(s.tags, vocabs)
            self.items.append(enc)
        self.lengths = np.asarray([len(e) for e in self.items], dtype=np.int64)
        self.subword_lengths: np.ndarray | None = None
        if windows is not None:
            tokenized = windows.tokenizer.tokenize([list(s.tokens) for s in sentences])
            for enc, sub in zip(self.items, tokenized):
                enc.subwords = sub
            self.subword_lengths = np.asarray([len(sub.ids) for sub in tokenized], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Encoded:
        return self.items[index]


def collate(items: Sequence[Encoded], windows: WindowLayout | None = None) -> Batch:
    """Pad encoded sentences to the longest one: see :class:`Batch` for the shapes. With
    ``windows`` (a model with a pretrained encoder), also lay out their subwords in windows
    (:attr:`Batch.subwords`)."""
    lengths = np.fromiter((len(e) for e in items), dtype=np.int64, count=len(items))
    b, t = len(items), int(lengths.max(initial=0))
    w = max((e.chars.shape[1] for e in items), default=0)
    words = np.zeros((b, t), np.int64)
    cases = np.zeros((b, t), np.int64)
    tags = np.zeros((b, t), np.int64)
    chars = np.zeros((b, t, w), np.int64)
    for i, e in enumerate(items):
        n = len(e)
        words[i, :n] = e.words
        cases[i, :n] = e.cases
        if len(e.tags):
            tags[i, :n] = e.tags
        if w:
            chars[i, :n, : e.chars.shape[1]] = e.chars
    subwords = None
    if windows is not None:
        subwords = SubwordBatch.from_inputs(windows.inputs([_subwords_of(e) for e in items]))
    return Batch(
        torch.from_numpy(words),
        torch.from_numpy(cases),
        torch.from_numpy(chars),
        torch.from_numpy(tags),
        torch.from_numpy(lengths),
        subwords,
    )


def _subwords_of(item: Encoded) -> Subwords:
    if item.subwords is None:
        raise SeqtagError("a model with an encoder needs its sentences encoded with their subwords (Tagger.dataset)")
    return item.subwords


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of sentences of similar length, in random order.

    Each epoch: shuffle all indices (seeded by ``seed + epoch``), cut them into pools of
    ``pool_size`` batches, sort each pool by length, cut it into batches, shuffle the batches.
    The last partial batch is kept. Without ``shuffle``, batches come sorted by length.

    A batch also holds at most ``max_tokens`` tokens counting padding (default
    :func:`~seqtag.data.encoding.default_max_tokens`), so a very long sentence gets a smaller batch (down to itself alone)
    instead of padding 31 others to its length; batches of ordinary sentences are unaffected.

    With ``num_replicas > 1`` (distributed training), rank ``rank`` takes every
    ``num_replicas``-th batch; when the batch count does not divide evenly, the first batches
    are repeated so that every rank runs the same number of steps. Every rank computes the same
    epoch's batches (same ``seed``, same :meth:`set_epoch`), so the ranks' shares are disjoint
    but for those repeats, and skipping a rank's first ``k`` batches (a mid-epoch resume) skips
    what that rank trained before.

    Args:
        lengths: ``(num_sentences,)`` sentence lengths.
        batch_size: sentences per batch.
        shuffle: randomize (training) or not (evaluation).
        seed: base seed; call :meth:`set_epoch` each epoch.
        pool_size: batches per sorting pool.
        max_tokens: most tokens (sentences × longest length) in a batch.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        pool_size: int = 200,
        num_replicas: int = 1,
        rank: int = 0,
        max_tokens: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"expected 0 <= rank < num_replicas, got rank {rank} of {num_replicas}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self._lengths = self.lengths.tolist()
        self.batch_size, self.shuffle, self.seed, self.pool_size = batch_size, shuffle, seed, pool_size
        self.num_replicas, self.rank = num_replicas, rank
        self.max_tokens = max_tokens if max_tokens is not None else default_max_tokens(batch_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        return cut_sorted(order.tolist(), self._lengths, self.batch_size, self.max_tokens)

    def _all_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            return self._cut(np.argsort(self.lengths, kind="stable"))
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(n)
        pool = self.batch_size * self.pool_size
        batches = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            batches.extend(self._cut(chunk[np.argsort(self.lengths[chunk], kind="stable")]))
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            # cyclically: fewer batches than ranks still gives every rank one
            batches = [batches[i % len(batches)] for i in range(total)]
            batches = batches[self.rank :: self.num_replicas]
        yield from batches

    def __len__(self) -> int:
        return math.ceil(len(self._all_batches()) / self.num_replicas)


def _worker_init(_: int) -> None:
    # Worker processes only pad arrays: one intra-op thread each, so that they do not
    # oversubscribe the cores the model runs on.
    torch.set_num_threads(1)


def make_loader(
    dataset: EncodedDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` with length bucketing; its ``batch_sampler`` has ``set_epoch``.
    A dataset with subwords (``windows``: a model with a pretrained encoder) is bucketed by its
    ``subword_lengths``, the encoder's cost, and collated with its windows."""
    windows = getattr(dataset, "windows", None)
    lengths = dataset.subword_lengths if windows is not None else dataset.lengths
    sampler = BucketBatchSampler(
        lengths, batch_size, shuffle=shuffle, seed=seed, num_replicas=num_replicas, rank=rank
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate if windows is None else functools.partial(collate, windows=windows),
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )
