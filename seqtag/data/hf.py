"""Hugging Face ``datasets`` adapter: token-classification datasets in, seqtag data out.

Inputs, all resolved by :func:`load_splits` / :func:`load_split`:

- a ``datasets.Dataset`` or ``DatasetDict`` (splits ``train``/``validation``/``test``);
- a directory written by ``save_to_disk`` (read with ``load_from_disk``, memory-mapped);
- local data files (``.json``, ``.jsonl``, ``.parquet``, ``.csv``, ``.arrow``, optionally
  compressed), a ``{split: file(s)}`` mapping of them, or a folder holding them;
- CoNLL and CoNLL-U files (converted once by :func:`from_conll`, cached as Arrow);
- a Hub name with an optional configuration (``"conll2003"``, ``"universal_dependencies",
  "en_ewt"``); offline without a cached copy it raises :class:`~seqtag.errors.SeqtagError`.

Columns follow the ecosystem's names: tokens in ``tokens``; tags in the first of
:data:`TAG_COLUMNS`. ``Sequence(ClassLabel)`` tags become their names (``.feature.names``),
string tags are taken as they are, integer tags need ``label_names``. In CSV files, where a
cell cannot hold a list, tokens and tags are whitespace-separated strings.

Two ways to train:

- small data: :func:`sentences` gives a lazy sequence of :class:`~seqtag.data.corpus.Sentence`
  that :func:`seqtag.train` and :func:`seqtag.evaluate` take like any list of sentences;
- large data: :func:`build_vocabs` (one streaming pass) and
  :class:`~seqtag.data.arrow.ArrowTaggingDataset` (in :mod:`seqtag.data.arrow`),
  encoded by ``Dataset.map(batched=True)`` into a memory-mapped Arrow cache, so memory stays
  bounded whatever the corpus size.

Its sections: resolving a source, columns, sentences, CoNLL <-> datasets, vocabularies and tag schemes in one
pass; the encoded dataset is :mod:`seqtag.data.arrow`.

>>> import datasets
>>> ds = datasets.Dataset.from_dict({"tokens": [["The", "dog"]], "tags": [["DET", "NN"]]})
>>> list(sentences(ds))
[Sentence(tokens=['The', 'dog'], tags=['DET', 'NN'], comments=[])]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqtag import __version__
from seqtag.data.corpus import (
    CONLLU_COLUMNS,
    Sentence,
    conllu_column,
    file_format,
    read_corpus,
    write_conll,
    write_conllu,
)
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.schemes import allowed_moves, describe_break, detect_scheme, foreign_tags

TOKENS_COLUMN = "tokens"
TAG_COLUMNS = ("ner_tags", "pos_tags", "upos", "tags", "labels", "xpos")
"""Tag columns looked for, in this order, when no ``tags_column`` is given."""

COMMENTS_COLUMN = "comments"
"""CoNLL-U ``#`` lines, kept by :func:`from_conll` and written back by :func:`to_conll`."""

# Builders of ``datasets.load_dataset`` for local data files, by suffix.
FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
CONLL_SUFFIXES = (".conll", ".conllu")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4")
_SAVED_DATASET_FILES = ("dataset_dict.json", "state.json")
_LIST_TYPES = (datasets.List, datasets.LargeList, datasets.Sequence)


# -- resolving sources ------------------------------------------------------------------------


def _suffix(path: str | os.PathLike) -> str:
    """The data suffix of ``path``, compression suffixes skipped (``a.jsonl.gz`` ► ``.jsonl``)."""
    name = Path(path).name.lower()
    for comp in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(comp)
    return Path(name).suffix


def _file_format(paths: Sequence[str]) -> str:
    formats = {FILE_FORMATS.get(_suffix(p)) for p in paths}
    if None in formats or len(formats) != 1:
        raise SeqtagError(
            f"expected data files of one format ({', '.join(sorted(FILE_FORMATS))}, or "
            f"{' / '.join(CONLL_SUFFIXES)}), got {', '.join(map(str, paths))}"
        )
    return formats.pop()


def _is_offline() -> bool:
    return bool(datasets.config.HF_HUB_OFFLINE)


def _from_files(files: Mapping[str, list[str]], cache_dir: str | None) -> datasets.DatasetDict:
    for paths in files.values():
        for p in paths:
            if not Path(p).is_file():
                raise SeqtagError(f"{p}: no such file")
            if not Path(p).read_bytes()[:4096].strip():  # datasets' JSON builder fails on it with StopIteration
                raise SeqtagError(f"{p}: an empty file: no rows to read")
    conll = [p for paths in files.values() for p in paths if _suffix(p) in CONLL_SUFFIXES]
    if conll:
        if any(len(paths) != 1 for paths in files.values()) or len(conll) != sum(map(len, files.values())):
            raise SeqtagError("expected one CoNLL/CoNLL-U file per split, not mixed with other formats")
        return datasets.DatasetDict(
            {split: from_conll(paths[0], cache_dir=cache_dir) for split, paths in files.items()}
        )
    fmt = _file_format([p for paths in files.values() for p in paths])
    try:
        loaded = datasets.load_dataset(fmt, data_files=dict(files), cache_dir=cache_dir)
    except (OSError, ValueError, pa.ArrowException, StopIteration, datasets.exceptions.DatasetsError) as e:
        raise SeqtagError(f"cannot read {fmt} files {dict(files)}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return _split_text_columns(loaded) if fmt == "csv" else loaded


def _split_words(batch: dict, columns: list[str]) -> dict:
    return {c: [None if v is None else v.split() for v in batch[c]] for c in columns}


def _split_text_columns(splits: datasets.DatasetDict) -> datasets.DatasetDict:
    """A CSV cell cannot hold a list, so CSV files give tokens and tags as whitespace-separated
    strings: split every string column into a list of strings, once, here (``Dataset.map``,
    cached), so that everything downstream reads lists."""
    out = {}
    for name, split in splits.items():
        text = [c for c, f in split.features.items() if _kind(f) == "text"]
        if text:
            features = split.features.copy()
            for c in text:
                features[c] = datasets.List(datasets.Value("string"))
            split = split.map(_split_words, batched=True, features=features, fn_kwargs={"columns": text},
                              desc="splitting CSV strings")  # fmt: skip
        out[name] = split
    return datasets.DatasetDict(out)


def load_splits(
    source: datasets.Dataset | datasets.DatasetDict | str | os.PathLike | Mapping[str, str | Sequence[str]],
    name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """Resolve any supported input into a ``DatasetDict``.

    A single ``Dataset``, saved ``Dataset``, data file or CoNLL file becomes one split named
    ``train``, as ``datasets.load_dataset`` names the split of a lone data file.

    Args:
        source: a ``Dataset``; a ``DatasetDict``; a ``save_to_disk`` directory; a data file
            (``.json``/``.jsonl``/``.parquet``/``.csv``/``.arrow``, ``.conll``/``.conllu``);
            a folder of data files (splits from the file names, as ``datasets`` infers them);
            a mapping ``{split: file or files}``; or a Hub dataset name.
        name: the Hub configuration (``datasets.load_dataset``'s ``name``); Hub and folders only.
        cache_dir: where converted Arrow files are cached (default: ``HF_DATASETS_CACHE``).

    Returns:
        The splits, Arrow-backed (memory-mapped when they come from files).

    Raises:
        SeqtagError: a missing file, an unsupported format, a streaming dataset, or a Hub
            dataset that cannot be reached (offline mode without a cached copy, no network,
            no such dataset or configuration).

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({"tokens": [["Hi"]], "tags": [["X"]]})
        >>> load_splits(ds)["train"].num_rows
        1
    """
    cache = None if cache_dir is None else str(cache_dir)
    if isinstance(source, datasets.DatasetDict):
        return source
    if isinstance(source, datasets.Dataset):
        return datasets.DatasetDict({"train": source})
    if isinstance(source, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise SeqtagError(
            "expected a Dataset or DatasetDict, got a streaming (iterable) dataset: load it without "
            "streaming=True; Arrow datasets are memory-mapped, so size is not a reason to stream"
        )
    if isinstance(source, Mapping):
        files = {
            str(split): [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
            for split, paths in source.items()
        }
        return _from_files(files, cache)
    if not isinstance(source, (str, os.PathLike)):
        raise SeqtagError(f"expected a Dataset, DatasetDict, path or Hub name, got {type(source).__name__}")
    path = Path(source).expanduser()
    if path.is_dir():
        if any((path / f).is_file() for f in _SAVED_DATASET_FILES):
            try:
                loaded = datasets.load_from_disk(str(path))
            except (OSError, ValueError) as e:
                raise SeqtagError(f"{path}: unreadable saved dataset ({e})") from None
            return load_splits(loaded)
        try:
            return datasets.load_dataset(str(path), name, cache_dir=cache)
        except (OSError, ValueError, pa.ArrowException) as e:
            raise SeqtagError(f"{path}: cannot load the folder as a dataset ({e})") from None
    if path.is_file():
        return _from_files({"train": [str(path)]}, cache)
    text = str(source)
    # A Hub name is "name" or "owner/name"; anything else is a path that does not exist.
    looks_local = (
        text.startswith((".", "/", "~", "\\"))
        or text.count("/") > 1
        or _suffix(text) in FILE_FORMATS
        or _suffix(text) in CONLL_SUFFIXES
    )
    if looks_local:
        raise SeqtagError(f"{source}: no such file or directory")
    return _from_hub(text, name, cache)


def _from_hub(name_or_path: str, config_name: str | None, cache_dir: str | None) -> datasets.DatasetDict:
    try:
        loaded = datasets.load_dataset(name_or_path, config_name, cache_dir=cache_dir)
    except (OSError, ValueError) as e:  # ConnectionError, OfflineModeIsEnabled, DatasetNotFoundError, ...
        where = f"{name_or_path!r}" + (f" (configuration {config_name!r})" if config_name else "")
        hint = (
            " Offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and no cached copy was found"
            f" in {cache_dir or datasets.config.HF_DATASETS_CACHE}: run once online, or pass a local"
            " path (a save_to_disk folder or data files)."
            if _is_offline()
            else ""
        )
        raise SeqtagError(f"cannot load the Hugging Face dataset {where}: {type(e).__name__}: {e}.{hint}") from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise SeqtagError(f"{name_or_path!r}: expected a DatasetDict from the Hub, got {type(loaded).__name__}")
    return loaded


def load_split(
    source: datasets.Dataset | datasets.DatasetDict | str | os.PathLike | Mapping[str, str | Sequence[str]],
    split: str | None = None,
    name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """One split of ``source`` (see :func:`load_splits`); ``split=None`` takes the only split.

    Raises:
        SeqtagError: the split is missing (the message lists those there are), or ``split`` is
            None and there are several.
    """
    if isinstance(source, datasets.Dataset) and split is None:
        return source
    where = str(source) if isinstance(source, (str, os.PathLike)) else f"the {type(source).__name__}"
    return pick_split(load_splits(source, name, cache_dir), split, where)


def pick_split(splits: datasets.DatasetDict, split: str | None, where: str = "the dataset") -> datasets.Dataset:
    """``splits[split]`` with a clear error; ``split=None`` takes the only split."""
    names = list(splits)
    if split is None:
        if len(names) != 1:
            raise SeqtagError(f"{where} has splits {', '.join(names)}: choose one")
        return splits[names[0]]
    if split not in splits:
        raise SeqtagError(f"{where} has no split {split!r}; it has {', '.join(names) or 'none'}")
    return splits[split]


# -- columns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Where a dataset keeps its tokens and tags, and how to read them.

    Attributes:
        tokens: the tokens column.
        tags: the tags column (None when reading tokens only).
        names: tag names by id, for integer (``ClassLabel``) tags; None for string tags.
    """

    tokens: str
    tags: str | None
    names: tuple[str, ...] | None


# Plain string columns are split into words only where a file format cannot hold lists (CSV).
_TEXT_HINT = " (whitespace-separated strings are split into words only when read from a CSV file)"


def _kind(feature) -> str:
    """``"str"``/``"int"``/``"classlabel"`` for a list column, ``"text"`` for a plain string column."""
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return "text"
    if isinstance(feature, _LIST_TYPES):
        inner = feature.feature
        if isinstance(inner, datasets.ClassLabel):
            return "classlabel"
        if isinstance(inner, datasets.Value):
            if inner.dtype in ("string", "large_string"):
                return "str"
            if inner.dtype.startswith(("int", "uint")):
                return "int"
    return "other"


def resolve_columns(
    dataset: datasets.Dataset,
    tokens_column: str | None = None,
    tags_column: str | None = None,
    label_names: Sequence[str] | None = None,
    with_tags: bool = True,
) -> Columns:
    """Find the tokens and tags columns of ``dataset`` and how to read them.

    Args:
        dataset: the split.
        tokens_column: default ``"tokens"``.
        tags_column: default the first of :data:`TAG_COLUMNS` present.
        label_names: tag names by id for integer tags; they override ``ClassLabel`` names.
        with_tags: look for a tags column at all.

    Raises:
        SeqtagError: a missing column, a column of the wrong type, or integer tags without names.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise SeqtagError(f"expected a datasets.Dataset (one split), got {type(dataset).__name__}")
    features = dataset.features
    present = ", ".join(features) or "none"
    tokens = tokens_column or TOKENS_COLUMN
    if tokens not in features:
        raise SeqtagError(
            f"the dataset has no tokens column {tokens!r} (columns: {present}); pass tokens_column "
            "(--token-column)"
        )
    if _kind(features[tokens]) != "str":
        raise SeqtagError(f"expected column {tokens!r} to hold lists of strings, got {features[tokens]}{_TEXT_HINT}")
    if not with_tags:
        return Columns(tokens, None, None)
    if tags_column is None:
        tags_column = next((c for c in TAG_COLUMNS if c in features and c != tokens), None)
        if tags_column is None:
            raise SeqtagError(
                f"the dataset has no tags column: looked for {', '.join(TAG_COLUMNS)} (columns: {present}); "
                "pass tags_column (--tag-column)"
            )
    elif tags_column not in features:
        raise SeqtagError(f"the dataset has no tags column {tags_column!r} (columns: {present})")
    feature = features[tags_column]
    kind = _kind(feature)
    names: tuple[str, ...] | None = None
    if label_names is not None:
        if kind not in ("int", "classlabel"):
            raise SeqtagError(f"label_names given, but column {tags_column!r} holds {feature}, not integer ids")
        names = tuple(str(n) for n in label_names)
    elif kind == "classlabel":
        names = tuple(feature.feature.names)
    elif kind == "int":
        raise SeqtagError(
            f"column {tags_column!r} holds integer tag ids without names ({feature}): pass label_names "
            "(the tag name of each id, in id order), or cast the column to Sequence(ClassLabel(names=...))"
        )
    elif kind in ("other", "text"):
        raise SeqtagError(
            f"expected column {tags_column!r} to hold lists of tags (strings or ids), got {feature}{_TEXT_HINT}"
        )
    return Columns(tokens, tags_column, names)


def tags_of_row(tags, columns: Columns, index: int) -> list[str]:
    if tags is None:
        raise SeqtagError(f"row {index}: column {columns.tags!r} is empty (null)")
    if columns.names is None:
        return list(tags)
    names = columns.names
    try:
        if min(tags, default=0) < 0:
            raise IndexError
        return [names[i] for i in tags]
    except IndexError:
        raise SeqtagError(
            f"row {index}: tag ids {sorted({i for i in tags if not 0 <= i < len(names)})} are outside "
            f"the {len(names)} label names of column {columns.tags!r}"
        ) from None


def tokens_of_row(tokens, columns: Columns, index: int) -> list[str]:
    if tokens is None:
        raise SeqtagError(f"row {index}: column {columns.tokens!r} is empty (null)")
    return list(tokens)


def sentence_of_row(tokens: list[str], tags: list[str], comments, index: int) -> Sentence:
    if len(tokens) != len(tags):
        raise SeqtagError(
            f"row {index}: expected as many tags as tokens, got {len(tokens)} tokens and {len(tags)} tags"
        )
    return Sentence(tokens, tags, list(comments or []))


# -- sentences -------------------------------------------------------------------------------


class DatasetSentences(Sequence):
    """A lazy, read-only sequence of :class:`~seqtag.data.corpus.Sentence` over an Arrow dataset.

    Rows are converted when read: indexing reads one row, iteration reads batches of 1,000.
    ``list(view)`` materializes everything, which :func:`seqtag.train` does today; that is fine
    for corpora that fit in memory (for larger ones, see :class:`~seqtag.data.arrow.ArrowTaggingDataset`).
    """

    _BATCH = 1000

    def __init__(self, dataset: datasets.Dataset, columns: Columns) -> None:
        keep = [columns.tokens, columns.tags]
        self.with_comments = (
            COMMENTS_COLUMN in dataset.features and _kind(dataset.features[COMMENTS_COLUMN]) == "str"
        )
        if self.with_comments:
            keep.append(COMMENTS_COLUMN)
        self.dataset = dataset.select_columns(list(dict.fromkeys(keep))).with_format(None)  # Python objects
        self.columns = columns

    def __len__(self) -> int:
        return self.dataset.num_rows

    def _convert(self, row_tokens, row_tags, row_comments, index: int) -> Sentence:
        c = self.columns
        return sentence_of_row(tokens_of_row(row_tokens, c, index), tags_of_row(row_tags, c, index), row_comments, index)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sentence index {index} out of range for {n} sentences")
        index %= n
        row = self.dataset[index]
        c = self.columns
        return self._convert(row[c.tokens], row[c.tags], row.get(COMMENTS_COLUMN), index)

    def __iter__(self) -> Iterator[Sentence]:
        c = self.columns
        start = 0
        for batch in self.dataset.iter(batch_size=self._BATCH):
            comments = batch[COMMENTS_COLUMN] if self.with_comments else itertools.repeat(None)
            for i, (tokens, tags, com) in enumerate(zip(batch[c.tokens], batch[c.tags], comments)):
                yield self._convert(tokens, tags, com, start + i)
            start += len(batch[c.tokens])

    def __repr__(self) -> str:
        return f"DatasetSentences({len(self)} sentences, tokens={self.columns.tokens!r}, tags={self.columns.tags!r})"


def sentences(
    dataset: datasets.Dataset,
    tokens_column: str | None = None,
    tags_column: str | None = None,
    label_names: Sequence[str] | None = None,
) -> DatasetSentences:
    """The sentences of one split, as a lazy sequence that ``train``/``evaluate`` accept.

    Args:
        dataset: one split (``datasets.Dataset``); use :func:`load_split` for names and paths.
        tokens_column: default ``"tokens"``.
        tags_column: default the first of :data:`TAG_COLUMNS` present.
        label_names: tag names by id, for integer tags without ``ClassLabel`` names.

    Raises:
        SeqtagError: see :func:`resolve_columns`; reading a row with a token/tag count mismatch
            or an id outside ``label_names`` names the row.
    """
    return DatasetSentences(dataset, resolve_columns(dataset, tokens_column, tags_column, label_names))


# -- CoNLL <-> datasets ----------------------------------------------------------------------


def _conll_tag_name(format: str, tag_column: str | int | None) -> str:
    """The column name a CoNLL file's tags get: the CoNLL-U field name (``upos``...) or ``tags``."""
    if format != "conllu":
        return "tags"
    if tag_column is None:
        return "upos"
    return CONLLU_COLUMNS[conllu_column(tag_column)]


def _conll_rows(path: str, format: str, tag_column: str | int | None, column: str, digest: str,
                token_column: int = 0):  # fmt: skip
    # ``digest`` (the file's hash) is unused here: it is part of the cache key, so an edited
    # file is converted again.
    for s in read_corpus(path, format=format, tag_column=tag_column, token_column=token_column):
        row = {"tokens": s.tokens, column: s.tags}
        if format == "conllu":
            row[COMMENTS_COLUMN] = s.comments
        yield row


def _file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def from_conll(
    path: str | os.PathLike,
    format: str | None = None,
    tag_column: str | int | None = None,
    cache_dir: str | os.PathLike | None = None,
    token_column: int = 0,
) -> datasets.Dataset:
    """Convert a CoNLL or CoNLL-U file into a ``datasets.Dataset``, cached as Arrow.

    Columns: ``tokens`` (``Sequence(string)``), the tags as ``Sequence(ClassLabel)`` with the
    file's tags sorted as names, named after the CoNLL-U field (``upos``, ``xpos``, ...) or
    ``tags`` for a CoNLL file, and for CoNLL-U ``comments`` (the ``#`` lines). The cache key
    includes the file's content hash: an edited file is converted again.

    Args:
        path: the file.
        format: ``"conll"`` or ``"conllu"`` (default: :func:`~seqtag.data.corpus.file_format`).
        tag_column: as :func:`~seqtag.data.corpus.read_corpus` (default ``upos`` / last column).
        cache_dir: where the Arrow file goes (default: ``HF_DATASETS_CACHE``).
        token_column: a CoNLL file's token column, as :func:`~seqtag.data.corpus.read_corpus`
            (default: the first; CoNLL-U reads FORM).

    Raises:
        CorpusError: a malformed file, naming file and line.
    """
    fmt = file_format(path, format)
    sents = read_corpus(path, format=fmt, tag_column=tag_column, token_column=token_column)  # validates; gives the tag set
    column = _conll_tag_name(fmt, tag_column)
    names = sorted({t for s in sents for t in s.tags})
    del sents
    spec = {"tokens": datasets.List(datasets.Value("string")), column: datasets.List(datasets.ClassLabel(names=names))}
    if fmt == "conllu":
        spec[COMMENTS_COLUMN] = datasets.List(datasets.Value("string"))
    digest = _file_digest(path)
    key = json.dumps([__version__, digest, fmt, str(tag_column), token_column, column, names])
    return datasets.Dataset.from_generator(
        _conll_rows,
        features=datasets.Features(spec),
        cache_dir=None if cache_dir is None else str(cache_dir),
        gen_kwargs={"path": str(path), "format": fmt, "tag_column": tag_column, "column": column, "digest": digest,
                    "token_column": token_column},
        fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32],
    )


def to_conll(
    dataset: datasets.Dataset,
    path: str | os.PathLike,
    format: str | None = None,
    tokens_column: str | None = None,
    tags_column: str | None = None,
    label_names: Sequence[str] | None = None,
    column: str | None = None,
) -> None:
    """Write one split as CoNLL (``token<TAB>tag``) or CoNLL-U (ID, FORM and the tag field).

    Args:
        dataset: one split.
        path: the output file (written atomically).
        format: ``"conll"`` or ``"conllu"`` (default: from the suffix).
        tokens_column: as :func:`sentences`.
        tags_column: as :func:`sentences`.
        label_names: as :func:`sentences`.
        column: the CoNLL-U field for the tags (default: the tags column's name when it is a
            CoNLL-U field, else ``upos``).
    """
    fmt = file_format(path, format)
    view = sentences(dataset, tokens_column, tags_column, label_names)
    data = list(view)
    if fmt == "conllu":
        if column is None:
            column = view.columns.tags if view.columns.tags in CONLLU_COLUMNS[2:] else "upos"
        write_conllu(data, path, column=column)
    elif fmt == "conll":
        write_conll(data, path)
    else:
        raise SeqtagError(f"expected format 'conll' or 'conllu', got {format!r}")


# -- vocabularies in one streaming pass ------------------------------------------------------


def _count(dataset: datasets.Dataset, columns: Columns, batch_size: int) -> tuple[Counter, set[str]]:
    """Raw token counts in first-seen order and the set of tags, reading Arrow batches."""
    token_counts: Counter[str] = Counter()
    tag_ids: set[int] = set()
    tag_strings: set[str] = set()
    for start, table in _enumerate_batches(dataset, [columns.tokens, columns.tags], batch_size):
        tokens, tags = table.column(columns.tokens), table.column(columns.tags)
        if tokens.null_count or tags.null_count:
            raise SeqtagError(f"rows {start}-{start + len(table) - 1}: null tokens or tags")
        n_tok, n_tag = pc.list_value_length(tokens), pc.list_value_length(tags)
        if not pc.all(pc.equal(n_tok, n_tag)).as_py():
            bad = start + int(np.flatnonzero(n_tok.to_numpy() != n_tag.to_numpy())[0])
            raise SeqtagError(f"row {bad}: expected as many tags as tokens")
        # value_counts lists values in order of first appearance, so the counter keeps the
        # corpus's first-seen order, which Vocab.build uses to break frequency ties.
        counts = pc.value_counts(pc.list_flatten(tokens))
        token_counts.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))
        flat_tags = pc.unique(pc.list_flatten(tags)).to_pylist()
        if columns.names is None:
            tag_strings.update(flat_tags)
        else:
            tag_ids.update(flat_tags)
    if tag_ids:
        names = columns.names
        bad = sorted(i for i in tag_ids if not 0 <= i < len(names))
        if bad:
            raise SeqtagError(f"tag ids {bad[:10]} are outside the {len(names)} label names of column {columns.tags!r}")
        tag_strings.update(names[i] for i in tag_ids)
    return token_counts, tag_strings


def _enumerate_batches(
    dataset: datasets.Dataset, names: list[str], batch_size: int
) -> Iterator[tuple[int, pa.Table]]:
    """``(first row index, Arrow table)`` for each batch of ``names`` columns."""
    start = 0
    for table in dataset.select_columns(names).with_format("arrow").iter(batch_size=batch_size):
        yield start, table
        start += len(table)


def build_vocabs(
    dataset: datasets.Dataset,
    lowercase: bool = True,
    min_freq: int = 1,
    tokens_column: str | None = None,
    tags_column: str | None = None,
    label_names: Sequence[str] | None = None,
    extra_words: Sequence[str] = (),
    batch_size: int = 10_000,
) -> Vocabularies:
    """The vocabularies of a training split, in one streaming pass over its Arrow batches.

    Gives the same :class:`~seqtag.data.vocab.Vocabularies` as ``Vocabularies.build(sentences(dataset))``
    (same ids, same counts), with memory proportional to the number of distinct tokens rather
    than to the corpus. Tags are those that occur (sorted), not every ``ClassLabel`` name.

    Args:
        dataset: the training split.
        lowercase: as :meth:`Vocabularies.build` (``TaggerConfig.lowercase``).
        min_freq: as :meth:`Vocabularies.build` (``TrainConfig.min_freq``).
        tokens_column: as :func:`sentences`.
        tags_column: as :func:`sentences`.
        label_names: as :func:`sentences`.
        extra_words: as :meth:`Vocabularies.build` (the words of pretrained vectors).
        batch_size: rows per Arrow batch read.
    """
    columns = resolve_columns(dataset, tokens_column, tags_column, label_names)
    token_counts, tags = _count(dataset, columns, batch_size)
    return Vocabularies.from_counts(
        token_counts, tags, lowercase=lowercase, min_freq=min_freq, extra_words=extra_words
    )


# -- tag schemes in one streaming pass -----------------------------------------------------------


def scheme_problem(
    dataset: datasets.Dataset,
    scheme: str,
    tokens_column: str | None = None,
    tags_column: str | None = None,
    label_names: Sequence[str] | None = None,
    batch_size: int = 10_000,
) -> tuple[str, bool] | None:
    """What in a split's tags does not follow the span ``scheme``, as the start of a one-line
    message (``row R, token J: ...``, indices from 0) and whether a repair could fix it, or None:
    a tag the scheme lacks (with every such tag and the scheme the tags follow; not repairable),
    else the first row that breaks the scheme (the two tags, and how many more rows break it). The moves are checked against :func:`seqtag.schemes.allowed_moves`' tables,
    vectorized over Arrow batches, so memory stays bounded as in :func:`build_vocabs`.

    Args:
        dataset: one split.
        scheme: ``"none"`` (nothing to check) or one of :data:`seqtag.schemes.SCHEMES`.
        tokens_column: as :func:`sentences`.
        tags_column: as :func:`sentences`.
        label_names: as :func:`sentences`.
        batch_size: rows per Arrow batch read.
    """
    if scheme == "none":
        return None
    columns = resolve_columns(dataset, tokens_column, tags_column, label_names)
    names: list[str] = list(columns.names) if columns.names is not None else []
    broken, first = 0, None
    for start, table in _enumerate_batches(dataset, [columns.tags], batch_size):
        tags = table.column(columns.tags)
        if tags.null_count:
            raise SeqtagError(f"rows {start}-{start + len(table) - 1}: null tags")
        lengths = pc.list_value_length(tags).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = pc.list_flatten(tags)
        if flat.null_count:
            raise SeqtagError(f"rows {start}-{start + len(table) - 1}: null tags")
        if not len(flat):  # empty rows break nothing
            continue
        if columns.names is None:  # string tags: ids in order of first appearance
            seen = set(names)
            names += [t for t in pc.unique(flat).to_pylist() if t not in seen]
            ids = pc.index_in(flat, value_set=pa.array(names, pa.string())).to_numpy(zero_copy_only=False)
        else:
            ids = flat.to_numpy(zero_copy_only=False)
            if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
                raise SeqtagError(f"rows {start}-{start + len(table) - 1}: tag ids outside the {len(names)} label names")
        ids = ids.astype(np.int64)
        rows = np.repeat(np.arange(len(lengths)), lengths)  # shape: (tokens,) each token's row
        first_token = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # shape: (rows,)
        foreign = set(foreign_tags(names, scheme))
        is_foreign = np.array([n in foreign for n in names], dtype=bool)
        if is_foreign[ids].any():
            at = int(np.flatnonzero(is_foreign[ids])[0])
            used = sorted({names[i] for i in np.unique(ids[is_foreign[ids]]).tolist()})
            followed = detect_scheme(names)
            fix = f"these tags follow {followed.upper()}" if followed else "these are not span tags"
            return (
                f"row {start + rows[at]}, token {at - first_token[rows[at]]}: tag {names[ids[at]]!r} is not a "
                f"{scheme.upper()} tag ({', '.join(used[:20])}); {fix}: give --tag-scheme {followed or 'none'} (or auto)"
            ), False
        # the moves of every token at once: into it (from the row's start or the token before), and out of the last
        start_ok, trans_ok, end_ok = (np.array(m, dtype=bool) for m in allowed_moves(
            [n if n not in foreign else "O" for n in names], scheme))  # fmt: skip
        into_bad = ~trans_ok[np.roll(ids, 1), ids]
        opens = first_token[lengths > 0]
        into_bad[opens] = ~start_ok[ids[opens]]
        last = (first_token + lengths - 1)[lengths > 0]
        end_bad = np.zeros(len(lengths), dtype=bool)
        end_bad[lengths > 0] = ~end_ok[ids[last]]
        bad_rows = np.zeros(len(lengths), dtype=bool)
        bad_rows[rows[into_bad]] = True
        bad_rows |= end_bad
        if first is None and bad_rows.any():
            row = int(np.flatnonzero(bad_rows)[0])
            inside = np.flatnonzero(into_bad[first_token[row] : first_token[row] + lengths[row]])
            token = int(inside[0]) if len(inside) else int(lengths[row])
            row_tags = [names[i] for i in ids[first_token[row] : first_token[row] + lengths[row]].tolist()]
            first = f"row {start + row}, token {min(token, len(row_tags) - 1)}: {describe_break(row_tags, token)}"
        broken += int(bad_rows.sum())
    if first is None:
        return None
    more = f" (and {broken - 1} more {'row' if broken == 2 else 'rows'} that break it)" if broken > 1 else ""
    return f"{first} breaks the {scheme.upper()} scheme{more}", True
