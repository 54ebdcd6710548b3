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

- small data: :func:`sentences` gives a lazy sequence of :class:`~seqtag.corpus.Sentence`
  that :func:`seqtag.train` and :func:`seqtag.evaluate` take like any list of sentences;
- large data: :func:`build_vocabs` (one streaming pass) and :class:`ArrowTaggingDataset`,
  encoded by ``Dataset.map(batched=True)`` into a memory-mapped Arrow cache, so memory stays
  bounded whatever the corpus size.

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
import torch

from . import __version__
from .config import TaggerConfig
from .corpus import CONLLU_COLUMNS, Sentence, read_corpus, write_conll, write_conllu
from .data import Encoded, encode_tags, encode_tokens
from .errors import SeqtagError
from .vocab import Vocabularies

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
    conll = [p for paths in files.values() for p in paths if _suffix(p) in CONLL_SUFFIXES]
    if conll:
        if any(len(paths) != 1 for paths in files.values()) or len(conll) != sum(map(len, files.values())):
            raise SeqtagError("expected one CoNLL/CoNLL-U file per split, not mixed with other formats")
        return datasets.DatasetDict(
            {split: from_conll(paths[0], cache_dir=cache_dir) for split, paths in files.items()}
        )
    fmt = _file_format([p for paths in files.values() for p in paths])
    try:
        return datasets.load_dataset(fmt, data_files=dict(files), cache_dir=cache_dir)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise SeqtagError(f"cannot read {fmt} files {dict(files)}: {e}") from None


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
        split_tokens: the tokens column holds whitespace-separated strings (CSV).
        split_tags: likewise the tags column.
    """

    tokens: str
    tags: str | None
    names: tuple[str, ...] | None
    split_tokens: bool = False
    split_tags: bool = False


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
    token_kind = _kind(features[tokens])
    if token_kind not in ("str", "text"):
        raise SeqtagError(f"expected column {tokens!r} to hold lists of strings, got {features[tokens]}")
    if not with_tags:
        return Columns(tokens, None, None, token_kind == "text")
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
    elif kind == "other":
        raise SeqtagError(f"expected column {tags_column!r} to hold lists of tags (strings or ids), got {feature}")
    return Columns(tokens, tags_column, names, token_kind == "text", kind == "text")


def _row_tags(tags, columns: Columns, index: int) -> list[str]:
    if tags is None:
        raise SeqtagError(f"row {index}: column {columns.tags!r} is empty (null)")
    if columns.split_tags:
        return tags.split()
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


def _row_tokens(tokens, columns: Columns, index: int) -> list[str]:
    if tokens is None:
        raise SeqtagError(f"row {index}: column {columns.tokens!r} is empty (null)")
    return tokens.split() if columns.split_tokens else list(tokens)


def _sentence(tokens: list[str], tags: list[str], comments, index: int) -> Sentence:
    if len(tokens) != len(tags):
        raise SeqtagError(
            f"row {index}: expected as many tags as tokens, got {len(tokens)} tokens and {len(tags)} tags"
        )
    return Sentence(tokens, tags, list(comments or []))


# -- sentences -------------------------------------------------------------------------------


class DatasetSentences(Sequence):
    """A lazy, read-only sequence of :class:`~seqtag.corpus.Sentence` over an Arrow dataset.

    Rows are converted when read: indexing reads one row, iteration reads batches of 1,000.
    ``list(view)`` materializes everything, which :func:`seqtag.train` does today; that is fine
    for corpora that fit in memory (for larger ones, see :class:`ArrowTaggingDataset`).
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
        return _sentence(_row_tokens(row_tokens, c, index), _row_tags(row_tags, c, index), row_comments, index)

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


def _conll_format(path: str | os.PathLike, format: str | None) -> str:
    return format or ("conllu" if str(path).endswith(".conllu") else "conll")


def _conll_tag_name(format: str, tag_column: str | int | None) -> str:
    """The column name a CoNLL file's tags get: the CoNLL-U field name (``upos``...) or ``tags``."""
    if format != "conllu":
        return "tags"
    if tag_column is None:
        return "upos"
    text = str(tag_column)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(CONLLU_COLUMNS):
        return CONLLU_COLUMNS[int(text)]
    return text.lower()


def _conll_rows(path: str, format: str, tag_column: str | int | None, column: str, digest: str):
    # ``digest`` (the file's hash) is unused here: it is part of the cache key, so an edited
    # file is converted again.
    for s in read_corpus(path, format=format, tag_column=tag_column):
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
) -> datasets.Dataset:
    """Convert a CoNLL or CoNLL-U file into a ``datasets.Dataset``, cached as Arrow.

    Columns: ``tokens`` (``Sequence(string)``), the tags as ``Sequence(ClassLabel)`` with the
    file's tags sorted as names, named after the CoNLL-U field (``upos``, ``xpos``, ...) or
    ``tags`` for a CoNLL file, and for CoNLL-U ``comments`` (the ``#`` lines). The cache key
    includes the file's content hash: an edited file is converted again.

    Args:
        path: the file.
        format: ``"conll"`` or ``"conllu"`` (default: from the suffix, as :func:`~seqtag.corpus.read_corpus`).
        tag_column: as :func:`~seqtag.corpus.read_corpus` (default ``upos`` / last column).
        cache_dir: where the Arrow file goes (default: ``HF_DATASETS_CACHE``).

    Raises:
        CorpusError: a malformed file, naming file and line.
    """
    fmt = _conll_format(path, format)
    sents = read_corpus(path, format=fmt, tag_column=tag_column)  # validates; gives the tag set
    column = _conll_tag_name(fmt, tag_column)
    names = sorted({t for s in sents for t in s.tags})
    del sents
    spec = {"tokens": datasets.List(datasets.Value("string")), column: datasets.List(datasets.ClassLabel(names=names))}
    if fmt == "conllu":
        spec[COMMENTS_COLUMN] = datasets.List(datasets.Value("string"))
    digest = _file_digest(path)
    key = json.dumps([__version__, digest, fmt, str(tag_column), column, names])
    return datasets.Dataset.from_generator(
        _conll_rows,
        features=datasets.Features(spec),
        cache_dir=None if cache_dir is None else str(cache_dir),
        gen_kwargs={"path": str(path), "format": fmt, "tag_column": tag_column, "column": column, "digest": digest},
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
    fmt = _conll_format(path, format)
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
        if columns.split_tokens or columns.split_tags:
            for i, (tok, tag) in enumerate(zip(tokens.to_pylist(), tags.to_pylist())):
                row_tokens, row_tags = _row_tokens(tok, columns, start + i), _row_tags(tag, columns, start + i)
                _sentence(row_tokens, row_tags, None, start + i)
                token_counts.update(row_tokens)
                tag_strings.update(row_tags)
            continue
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

    Gives the same :class:`~seqtag.vocab.Vocabularies` as ``Vocabularies.build(sentences(dataset))``
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
    """``Dataset.map`` function: encode a batch with :func:`~seqtag.data.encode_tokens` and
    :func:`~seqtag.data.encode_tags` into the columns of :func:`encoded_features`."""
    encoded: list[Encoded] = []
    tag_rows = batch[columns.tags] if with_tags else itertools.repeat(None)
    for index, tokens, tags in zip(indices, batch[columns.tokens], tag_rows):
        tokens = _row_tokens(tokens, columns, index)
        enc = encode_tokens(tokens, vocabs, config)
        if with_tags:
            names = _sentence(tokens, _row_tags(tags, columns, index), None, index).tags
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
                assert np.array_equal(chunks[name].offsets.to_numpy(), tokens), "expected one length for token columns"
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
    """Rows of :func:`encoded_features` ► :class:`~seqtag.data.Encoded` (int64 arrays, characters
    padded to the sentence's longest word, as :func:`~seqtag.data.encode_tokens` gives them).

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
    """Sentences encoded into a memory-mapped Arrow table: :class:`~seqtag.data.TaggingDataset`'s
    interface, for corpora larger than memory.

    Encoding runs once through ``Dataset.map(batched=True)`` with
    :func:`~seqtag.data.encode_tokens` / :func:`~seqtag.data.encode_tags`; the result (word,
    case, tag and character ids, and each sentence's ``length``) is cached on disk and reused
    by later runs with the same data, vocabularies and configuration. Items are read on demand:
    ``__getitem__`` gives an :class:`~seqtag.data.Encoded` equal to ``TaggingDataset``'s, and
    ``__getitems__`` (which ``DataLoader`` calls with a whole batch of indices) reads a batch
    in one Arrow gather. It works with :func:`~seqtag.data.collate` and
    :func:`~seqtag.data.make_loader` unchanged, with any number of workers.

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
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
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
