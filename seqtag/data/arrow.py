"""The second :class:`~seqtag.data.dataset.EncodedDataset`: sentences of a Hugging Face dataset encoded
into a memory-mapped Arrow table (:class:`ArrowTaggingDataset`), for corpora larger than memory.
Loading a dataset and finding its columns is :mod:`seqtag.data.hf`'s part.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch

from seqtag import __version__
from seqtag.config import TaggerConfig
from seqtag.data.dataset import Encoded, encode_tags, encode_tokens
from seqtag.data.hf import Columns, resolve_columns, sentence_of_row, tags_of_row, tokens_of_row
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.fileio import make_dir

# -- the encoded, memory-mapped dataset ------------------------------------------------------

_STORAGE = "unpadded-chars-1"  # part of the cache key: change it when encoded_features changes


def _id_type(size: int) -> str:
    """The narrowest Arrow integer type for ids ``0..size-1``."""
    return "uint8" if size <= 1 << 8 else "uint16" if size <= 1 << 16 else "int32"


def encoded_features(vocabs: Vocabularies, config: TaggerConfig) -> datasets.Features:
    """The columns of an encoded dataset: per sentence, ``words``, ``cases``, ``tags`` (one id
    per token), ``char_lengths`` (characters per token, after ``max_word_length``), ``chars``
    (every token's character ids, concatenated, without padding) and ``length``.

    Ids take the narrowest integer type their vocabulary allows, and characters are stored
    unpadded (padding is restored when an item is read), so the file stays small: about
    11 bytes a token for English text with the default configuration (UD English-EWT: 10.6).
    """
    ids = lambda size: datasets.List(datasets.Value(_id_type(size)))  # noqa: E731
    return datasets.Features(
        {
            "words": ids(len(vocabs.words)),
            "cases": ids(4),
            "tags": ids(len(vocabs.tags)),
            "char_lengths": ids(config.max_word_length + 1),
            "chars": ids(len(vocabs.chars)),
            "length": datasets.Value("int32"),
        }
    )


def _list_array(values: list[np.ndarray], sizes: np.ndarray, dtype) -> pa.ListArray:
    offsets = np.zeros(len(sizes) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    flat = np.concatenate(values) if values else np.zeros(0, np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(dtype, copy=False)))


def _encode_batch(
    batch: dict,
    indices: list[int],
    *,
    columns: Columns,
    vocabs: Vocabularies,
    config: TaggerConfig,
    with_tags: bool,
    schema: pa.Schema,
) -> pa.Table:
    """``Dataset.map`` function: encode a batch with :func:`~seqtag.data.dataset.encode_tokens` and
    :func:`~seqtag.data.dataset.encode_tags` into the columns of :func:`encoded_features`."""
    encoded: list[Encoded] = []
    tag_rows = batch[columns.tags] if with_tags else itertools.repeat(None)
    for index, tokens, tags in zip(indices, batch[columns.tokens], tag_rows):
        tokens = tokens_of_row(tokens, columns, index)
        enc = encode_tokens(tokens, vocabs, config)
        if with_tags:
            names = sentence_of_row(tokens, tags_of_row(tags, columns, index), None, index).tags
            try:
                enc.tags = encode_tags(names, vocabs)
            except SeqtagError as e:
                raise SeqtagError(f"row {index}: {e}") from None
        encoded.append(enc)
    lengths = np.asarray([len(e) for e in encoded], dtype=np.int64)
    # Character id 0 is padding, never a character: the nonzero ids, row by row, are the
    # characters, and the count per row is the (capped) word length.
    real = [e.chars != 0 for e in encoded]
    char_lengths = [m.sum(axis=1) for m in real]
    types = {f.name: f.type.value_type.to_pandas_dtype() for f in schema if pa.types.is_list(f.type)}
    return pa.table(
        {
            "words": _list_array([e.words for e in encoded], lengths, types["words"]),
            "cases": _list_array([e.cases for e in encoded], lengths, types["cases"]),
            "tags": _list_array([e.tags for e in encoded], np.asarray([len(e.tags) for e in encoded]), types["tags"]),
            "char_lengths": _list_array(char_lengths, lengths, types["char_lengths"]),
            "chars": _list_array(
                [e.chars[m] for e, m in zip(encoded, real)],
                np.asarray([int(n.sum()) for n in char_lengths]),
                types["chars"],
            ),
            "length": pa.array(lengths.astype(np.int32)),
        },
        schema=schema,
    )


class _ListColumns:
    """Zero-copy NumPy views of an encoded table's list columns, record batch by record batch.

    The Arrow file stays memory-mapped: building the views reads nothing, and reading rows
    touches only their pages. (Views are not pickled: see ``ArrowTaggingDataset.__getstate__``.)
    """

    def __init__(self, table: pa.Table) -> None:
        self.starts = np.cumsum([0] + [len(c) for c in table.column("words").chunks])  # first row of each batch
        self.batches = []
        for k in range(len(self.starts) - 1):
            chunks = {name: table.column(name).chunk(k) for name in ("words", "cases", "tags", "char_lengths", "chars")}
            # a chunk's offsets index its (unsliced) values, so each pair also reads a sliced chunk
            tokens = chunks["words"].offsets.to_numpy()
            for name in ("cases", "char_lengths"):
                if not np.array_equal(chunks[name].offsets.to_numpy(), tokens):
                    raise SeqtagError(f"damaged encoded dataset: column {name!r} does not have a value per token")
            self.batches.append(
                (
                    tokens,
                    chunks["tags"].offsets.to_numpy(),
                    chunks["chars"].offsets.to_numpy(),
                    *(chunks[name].values.to_numpy() for name in ("words", "cases", "tags", "char_lengths", "chars")),
                )
            )

    def gather(self, rows: np.ndarray) -> tuple[list[np.ndarray], ...]:
        """Per row: its words, cases, tags, char_lengths and chars arrays (views)."""
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out: tuple[list[np.ndarray], ...] = ([], [], [], [], [])
        words, cases, tags, char_lengths, chars = out
        for k, r in zip(which.tolist(), (rows - self.starts[which]).tolist()):
            tok, tag, char, w, c, t, cl, ch = self.batches[k]
            lo, hi = tok[r : r + 2].tolist()
            words.append(w[lo:hi])
            cases.append(c[lo:hi])
            char_lengths.append(cl[lo:hi])
            lo, hi = tag[r : r + 2].tolist()
            tags.append(t[lo:hi])
            lo, hi = char[r : r + 2].tolist()
            chars.append(ch[lo:hi])
        return out


def _concat(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, np.int64)


def _decode_rows(columns: _ListColumns, rows: np.ndarray) -> list[Encoded]:
    """Rows of :func:`encoded_features` ► :class:`~seqtag.data.dataset.Encoded` (int64 arrays, characters
    padded to the sentence's longest word, as :func:`~seqtag.data.dataset.encode_tokens` gives them).

    Vectorized over the rows: the padded characters of all rows go into one buffer, of which
    each row's ``chars`` is a view.
    """
    pieces = columns.gather(rows)
    lengths = np.fromiter(map(len, pieces[0]), dtype=np.int64, count=len(rows))  # shape: (rows,)
    tag_sizes = np.fromiter(map(len, pieces[2]), dtype=np.int64, count=len(rows))
    words, cases, tags, char_lengths, chars = map(_concat, pieces)  # char_lengths: (tokens,) chars: (characters,)
    starts = np.concatenate([[0], np.cumsum(lengths)])  # shape: (rows + 1,) first token of each row
    widths = np.zeros(len(lengths), np.int64)  # the longest (capped) word of each row
    if len(char_lengths):
        widths = np.maximum.reduceat(char_lengths, np.minimum(starts[:-1], len(char_lengths) - 1))
        widths[lengths == 0] = 0
    base = np.concatenate([[0], np.cumsum(lengths * widths)])  # shape: (rows + 1,) offsets in `padded`
    row_of_token = np.repeat(np.arange(len(lengths)), lengths)  # shape: (tokens,)
    token_at = base[row_of_token] + (np.arange(len(char_lengths)) - starts[row_of_token]) * widths[row_of_token]
    first_char = np.cumsum(char_lengths) - char_lengths  # shape: (tokens,) each token's first in `chars`
    padded = np.zeros(int(base[-1]), np.int64)
    padded[np.repeat(token_at - first_char, char_lengths) + np.arange(len(chars))] = chars
    tag_starts = np.concatenate([[0], np.cumsum(tag_sizes)]).tolist()
    token_starts, base, widths = starts.tolist(), base.tolist(), widths.tolist()
    return [
        Encoded(
            words[token_starts[i] : token_starts[i + 1]],
            cases[token_starts[i] : token_starts[i + 1]],
            padded[base[i] : base[i + 1]].reshape(token_starts[i + 1] - token_starts[i], widths[i]),
            tags[tag_starts[i] : tag_starts[i + 1]],
        )
        for i in range(len(lengths))
    ]


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


class ArrowTaggingDataset(torch.utils.data.Dataset):
    """Sentences encoded into a memory-mapped Arrow table: :class:`~seqtag.data.dataset.TaggingDataset`'s
    interface, for corpora larger than memory.

    Encoding runs once through ``Dataset.map(batched=True)`` with
    :func:`~seqtag.data.dataset.encode_tokens` / :func:`~seqtag.data.dataset.encode_tags`; the result (word,
    case, tag and character ids, and each sentence's ``length``) is cached on disk and reused
    by later runs with the same data, vocabularies and configuration. Items are read on demand:
    ``__getitem__`` gives an :class:`~seqtag.data.dataset.Encoded` equal to ``TaggingDataset``'s, and
    ``__getitems__`` (which ``DataLoader`` calls with a whole batch of indices) reads a batch
    in one Arrow gather. It works with :func:`~seqtag.data.dataset.collate` and
    :func:`~seqtag.data.dataset.make_loader` unchanged, with any number of workers.

    Args:
        dataset: one split with tokens (and tags).
        vocabs: the tagger's vocabularies (:func:`build_vocabs` for a training split).
        config: the tagger's configuration (``lowercase``, ``char_filters``, ``max_word_length``
            decide the encoding).
        tokens_column: as :func:`sentences`.
        tags_column: as :func:`sentences`.
        label_names: as :func:`sentences`.
        with_tags: encode the tags too (False for prediction).
        num_proc: processes for the encoding ``map`` (default: one).
        cache_dir: folder for the encoded Arrow file. Default: next to ``dataset``'s own cache
            files (``datasets``' convention), or ``HF_DATASETS_CACHE/seqtag-encoded`` when that
            folder is read-only; in memory for an in-memory dataset.
        batch_size: sentences per ``map`` batch (and per Arrow record batch written).

    Attributes:
        lengths: ``(num_sentences,)`` int64 sentence lengths, for the bucketing sampler.
        encoded: the encoded ``datasets.Dataset``.
        vocabs: as given.
        config: as given.
        fingerprint: a hash of the source dataset's fingerprint, the columns, the vocabularies
            and the encoding options: the cache key, and what a resumed run compares.

    Raises:
        SeqtagError: see :func:`resolve_columns`; a tag the vocabularies lack, naming the row.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        vocabs: Vocabularies,
        config: TaggerConfig,
        tokens_column: str | None = None,
        tags_column: str | None = None,
        label_names: Sequence[str] | None = None,
        with_tags: bool = True,
        num_proc: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 1000,
    ) -> None:
        columns = resolve_columns(dataset, tokens_column, tags_column, label_names, with_tags=with_tags)
        self.vocabs, self.config = vocabs, config
        self.fingerprint = fingerprint = self._fingerprint(dataset, columns, vocabs, config, with_tags)
        cache_file = None
        if cache_dir is None and dataset.cache_files:
            folder = Path(dataset.cache_files[0]["filename"]).parent
            if not _writable(folder):
                cache_dir = Path(datasets.config.HF_DATASETS_CACHE) / "seqtag-encoded"
        if cache_dir is not None:
            make_dir(cache_dir)
            cache_file = str(Path(cache_dir) / f"seqtag-encoded-{fingerprint}.arrow")
        source = dataset.select_columns([c for c in (columns.tokens, columns.tags) if c is not None])
        source = source.with_format(None)  # the map function reads Python lists, whatever the format
        features = encoded_features(vocabs, config)
        encoded = source.map(
            _encode_batch,
            batched=True,
            batch_size=batch_size,
            with_indices=True,
            remove_columns=source.column_names,
            features=features,
            fn_kwargs={
                "columns": columns, "vocabs": vocabs, "config": config, "with_tags": with_tags,
                "schema": features.arrow_schema,
            },
            num_proc=num_proc if num_proc and num_proc > 1 else None,
            cache_file_name=cache_file,
            writer_batch_size=batch_size,
            new_fingerprint=fingerprint,
            desc="encoding",
        )
        self.encoded = encoded
        self.lengths = encoded.data.column("length").to_numpy().astype(np.int64)
        self._views: _ListColumns | None = None

    @staticmethod
    def _fingerprint(dataset, columns: Columns, vocabs: Vocabularies, config: TaggerConfig, with_tags: bool) -> str:
        h = hashlib.sha256()
        h.update(f"seqtag {__version__} {_STORAGE} {dataset._fingerprint} {columns} {with_tags}".encode())
        h.update(json.dumps([config.lowercase, config.char_filters, config.max_word_length]).encode())
        h.update(json.dumps(vocabs.to_dict(), sort_keys=True).encode())
        return h.hexdigest()[:32]

    def _rows(self, rows: np.ndarray) -> list[Encoded]:
        if self._views is None:
            self._views = _ListColumns(self.encoded.data.table)
        return _decode_rows(self._views, rows)

    def __getstate__(self) -> dict:
        # A DataLoader worker started by spawn (macOS, Windows) gets a pickled copy: pickling the
        # NumPy views would copy the data, while the Dataset pickles as its file paths.
        return {**self.__dict__, "_views": None}

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Encoded:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sentence index {index} out of range for {n} sentences")
        return self._rows(np.asarray([int(index) % n]))[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Encoded]:
        """The items at ``indices``, read together (``DataLoader`` calls this with a batch)."""
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(rows) and not (rows.min() >= 0 and rows.max() < len(self)):
            raise IndexError(f"sentence indices out of range for {len(self)} sentences")
        return self._rows(rows)

    def __iter__(self) -> Iterator[Encoded]:
        for start in range(0, len(self), 1000):
            yield from self._rows(np.arange(start, min(start + 1000, len(self))))

    def __repr__(self) -> str:
        return f"ArrowTaggingDataset({len(self)} sentences, {int(self.lengths.sum())} tokens)"
