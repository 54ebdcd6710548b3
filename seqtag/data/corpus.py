"""Readers and writers for tagged corpora: column files (CoNLL-2000/2003) and CoNLL-U.

Every reader returns a list of :class:`Sentence`. Errors raise :class:`CorpusError`,
whose message starts with ``path:line:`` so a user can jump to the culprit.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "tiny.conll")
>>> write_conll([Sentence(["The", "dog"], ["DET", "NN"])], path)
>>> read_conll(path)
[Sentence(tokens=['The', 'dog'], tags=['DET', 'NN'], comments=[])]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from seqtag.errors import SeqtagError
from seqtag.fileio import atomic_write_text

SUFFIX_FORMATS = {".conllu": "conllu", ".conll": "conll", ".jsonl": "jsonl"}
"""File formats by suffix (lower-cased), for every command that reads a file: see :func:`file_format`."""

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


class CorpusError(SeqtagError):
    """Malformed corpus input; the message names the file and line."""


@dataclass
class Sentence:
    """One sentence: tokens and their tags (same length); comments are CoNLL-U ``#`` lines;
    ``lines``, where it was read from a file, the line of each token (so that a problem with a
    tag names its line; not part of the sentence's value: equality and repr ignore it)."""

    tokens: list[str]
    tags: list[str]
    comments: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise ValueError(
                f"expected as many tags as tokens, got {len(self.tokens)} tokens and {len(self.tags)} tags"
            )
        if self.lines and len(self.lines) != len(self.tokens):
            raise ValueError(f"expected a line per token, got {len(self.tokens)} tokens and {len(self.lines)} lines")

    def __len__(self) -> int:
        return len(self.tokens)


def _check_file(path: Path) -> None:
    """A precise error for a path that is not a regular file."""
    if path.is_file():
        return
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory; give a corpus file in it")
    kind = "a pipe" if path.is_fifo() else "a device" if path.is_char_device() or path.is_block_device() else "not a regular file"
    raise CorpusError(f"{path}: is {kind}, not a corpus file (corpus files are read more than once: save the data to a file)")


def decoded_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, text, line_ending)`` for each line of a byte stream.

    Lines end at ``\\n`` (``\\r\\n`` counts as one ending) and nowhere else: U+2028, U+0085 and
    form feeds stay inside their line. A leading byte-order mark is dropped. Bytes that are not
    UTF-8 raise :class:`CorpusError` ``NAME:LINE: not valid UTF-8 (byte B of the
    line is 0xXX)``, as corpus files do.
    """
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{name}:{number}: not valid UTF-8 (byte {e.start + 1} of the line is 0x{raw[e.start]:02x})"
            ) from None
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark, as Windows editors write
        if text.endswith("\r\n"):
            yield number, text[:-2], "\r\n"
        elif text.endswith("\n"):
            yield number, text[:-1], "\n"
        else:
            yield number, text, ""


def _file_lines(path: str | os.PathLike) -> Iterator[tuple[int, str, str]]:
    """:func:`decoded_lines` of a corpus file."""
    path = Path(path)
    _check_file(path)
    with open(path, "rb") as f:
        yield from decoded_lines(f, str(path))


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a corpus file, the line ending stripped (:func:`decoded_lines`)."""
    for number, text, _ in _file_lines(path):
        yield number, text


def line_blocks(lines: Iterable[tuple[int, str, str]]) -> Iterator[list[tuple[int, str, str]]]:
    """The blank-line separated blocks of ``(number, text, ending)`` lines, each with the blank
    line that ends it (the last block may have none): a sentence of a CoNLL-U file, as both
    :func:`read_conllu` and ``seqtag predict``'s reader (:mod:`seqtag.data.formats`) split them.

    >>> [[n for n, _, _ in b] for b in line_blocks([(1, "a", ""), (2, "", ""), (3, " ", ""), (4, "b", "")])]
    [[1, 2], [3], [4]]
    """
    block: list[tuple[int, str, str]] = []
    for line in lines:
        block.append(line)
        if not line[1].strip():
            yield block
            block = []
    if block:
        yield block


def _check_nonempty(sentences: list[Sentence], path: str | os.PathLike) -> list[Sentence]:
    if not sentences:
        raise CorpusError(f"{path}: no sentences found (empty file?)")
    return sentences


def read_conll(
    path: str | os.PathLike,
    token_column: int = 0,
    tag_column: int = -1,
) -> list[Sentence]:
    """Read a column file: one token per line, blank lines between sentences.

    Columns are separated by tabs or, when a line has no tab, by runs of spaces.
    ``-DOCSTART-`` lines are skipped. Every line of a file must have the same
    number of columns.

    Args:
        path: the file.
        token_column: index of the token column (default: first).
        tag_column: index of the tag column (default: last; negative counts from the end).

    Returns:
        The sentences, in file order.

    Raises:
        CorpusError: naming file and line, for a missing column, a column count that
            changes within the file, non-UTF-8 bytes, or a file with no sentences.
    """
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    width = None
    filled: set[int] = set()  # columns with a value other than "_"
    for number, line in _lines(path):
        if not line.strip():
            if tokens:
                sentences.append(Sentence(tokens, tags, lines=lines))
                tokens, tags, lines = [], [], []
            continue
        # Trailing whitespace (and a stray \r) is no part of a field: "O " is the tag "O".
        line = line.rstrip()
        cols = [c.rstrip() for c in line.split("\t")] if "\t" in line else line.split()
        if cols[0] == "-DOCSTART-":
            continue
        if width is None:
            width = len(cols)
        elif len(cols) != width:
            raise CorpusError(f"{path}:{number}: expected {width} columns as on earlier lines, got {len(cols)}")
        try:
            token, tag = cols[token_column], cols[tag_column]
        except IndexError:
            raise CorpusError(
                f"{path}:{number}: needs columns {token_column} and {tag_column}, the line has {len(cols)}"
            ) from None
        if not token or not tag:
            raise CorpusError(f"{path}:{number}: empty token or tag")
        tokens.append(token)
        tags.append(tag)
        lines.append(number)
        filled.update(i for i, c in enumerate(cols) if c != "_")
    if tokens:
        sentences.append(Sentence(tokens, tags, lines=lines))
    _check_nonempty(sentences, path)
    if width is not None:
        tag_index = tag_column % width
        if tag_index not in filled:
            others = [str(i) for i in sorted(filled) if i not in (tag_index, token_column % width)]
            hint = f": choose another with --tag-column (columns with values: {', '.join(others)})" if others else ""
            raise CorpusError(f"{path}: tag column {tag_column} holds only '_'{hint}")
    return sentences


def conllu_column(column: str | int) -> int:
    """The index (2-9) of a CoNLL-U tag column given by name (``"upos"``, any case) or index.

    The one parser of CoNLL-U column names: reading (``--tag-column``), writing a corpus and
    writing predictions back all use it.
    """
    text = str(column)
    if isinstance(column, int) or text.lstrip("-").isdigit():
        index = int(column)
        if not 0 <= index < len(CONLLU_COLUMNS):
            raise CorpusError(f"expected a CoNLL-U column index 0-9, got {column}")
    elif text.lower() in CONLLU_COLUMNS:
        index = CONLLU_COLUMNS.index(text.lower())
    else:
        raise CorpusError(f"expected a CoNLL-U column name ({', '.join(CONLLU_COLUMNS)}), got {column!r}")
    if index < 2:
        raise CorpusError(f"expected a CoNLL-U tag column other than id and form (2-9), got {column!r}")
    return index


def conllu_word(name: str | os.PathLike, number: int, line: str) -> list[str] | None:
    """The ten fields of a CoNLL-U word line (each stripped), or None for a multiword-token line
    (ID ``1-2``) or an empty node (ID ``1.1``). Comment and blank lines are the caller's.

    The one parser of CoNLL-U lines: :func:`read_conllu` (training corpora) and
    :func:`seqtag.data.formats.read_items` (input to tag) both read lines with it.

    Raises:
        CorpusError: ``name:number: ...`` for a line without ten tab-separated fields, an ID
            that is not a number, or an empty FORM.
    """
    cols = [c.strip() for c in line.split("\t")]  # surrounding whitespace is no part of a field
    if len(cols) != 10:
        raise CorpusError(f"{name}:{number}: expected 10 tab-separated CoNLL-U fields, got {len(cols)}")
    if "-" in cols[0] or "." in cols[0]:
        return None
    if not cols[0].isdigit():
        raise CorpusError(f"{name}:{number}: expected a word ID, got {cols[0]!r}")
    if not cols[1]:
        raise CorpusError(f"{name}:{number}: empty FORM")
    return cols


def read_conllu(path: str | os.PathLike, column: str | int = "upos") -> list[Sentence]:
    """Read a CoNLL-U file, tagging syntactic words with one of its ten columns.

    Multiword-token lines (ID ``1-2``) and empty nodes (ID ``1.1``) are skipped;
    ``#`` comment lines are kept in :attr:`Sentence.comments`.

    Args:
        path: the file.
        column: the tag column, by name (``"upos"``, ``"xpos"``, ...) or index 0-9.

    Raises:
        CorpusError: naming file and line, for a line without ten tab-separated fields,
            non-UTF-8 bytes, or a file with no sentences.
    """
    index = conllu_column(column)
    sentences: list[Sentence] = []
    filled: set[int] = set()  # columns with a value other than "_"
    for block in line_blocks(_file_lines(path)):
        tokens: list[str] = []
        tags: list[str] = []
        comments: list[str] = []
        lines: list[int] = []
        for number, line, _ in block:
            if not line.strip():
                continue
            if line.startswith("#"):
                comments.append(line)
                continue
            cols = conllu_word(path, number, line)
            if cols is None:
                continue
            tokens.append(cols[1])
            tags.append(cols[index])
            lines.append(number)
            filled.update(i for i, c in enumerate(cols) if c != "_")
        if tokens:
            sentences.append(Sentence(tokens, tags, comments, lines))
        elif comments:
            raise CorpusError(f"{path}:{block[-1][0]}: comment lines without a sentence")
    _check_nonempty(sentences, path)
    if index not in filled:
        others = [CONLLU_COLUMNS[i] for i in (3, 4, 7, 5, 2, 9) if i in filled and i != index]
        hint = f": choose another with --tag-column, e.g. {others[0]}" if others else ""
        raise CorpusError(f"{path}: the {CONLLU_COLUMNS[index]} column holds only '_'{hint}")
    return sentences


def write_conll(sentences: Sequence[Sentence], path: str | os.PathLike) -> None:
    """Write ``token<TAB>tag`` lines with a blank line after each sentence."""
    parts = []
    for s in sentences:
        parts.extend(f"{tok}\t{tag}\n" for tok, tag in zip(s.tokens, s.tags, strict=True))
        parts.append("\n")
    atomic_write_text(path, "".join(parts))


def write_conllu(sentences: Sequence[Sentence], path: str | os.PathLike, column: str | int = "upos") -> None:
    """Write CoNLL-U with ID, FORM and the tag in ``column``; other fields are ``_``.

    Reading the result with the same ``column`` gives back the same sentences.
    """
    index = conllu_column(column)
    parts = []
    for s in sentences:
        parts.extend(f"{c}\n" for c in s.comments)
        for i, (tok, tag) in enumerate(zip(s.tokens, s.tags, strict=True), start=1):
            cols = [str(i), tok] + ["_"] * 8
            cols[index] = tag
            parts.append("\t".join(cols) + "\n")
        parts.append("\n")
    atomic_write_text(path, "".join(parts))


def file_format(path: str | os.PathLike | None, format: str | None = None, tagged: bool = True) -> str:
    """The format to read ``path`` in: ``format`` when given, else the one its suffix names
    (:data:`SUFFIX_FORMATS`). A file whose suffix names none (CoNLL-2003's ``eng.train``,
    CoNLL-2000's ``train.txt``) is read as ``conll`` where tags must be read (training,
    evaluation: text carries none) and as ``text`` where they are not (``seqtag predict``, as
    standard input is).

    >>> file_format("a.conllu"), file_format("eng.train"), file_format("eng.train", tagged=False)
    ('conllu', 'conll', 'text')
    """
    if format:
        return format
    known = SUFFIX_FORMATS.get(Path(path).suffix.lower()) if path is not None else None
    return known or ("conll" if tagged else "text")


def read_corpus(
    path: str | os.PathLike,
    format: str | None = None,
    tag_column: str | int | None = None,
    token_column: int = 0,
) -> list[Sentence]:
    """Read ``path`` as ``"conllu"`` or ``"conll"``; the format defaults to :func:`file_format`'s.

    ``tag_column`` defaults to ``"upos"`` for CoNLL-U and to the last column for CoNLL.
    """
    format = file_format(path, format)
    if format == "conllu":
        return read_conllu(path, "upos" if tag_column is None else tag_column)
    if format == "conll":
        if tag_column is None:
            tag_column = -1
        try:
            tag_index = int(tag_column)
        except ValueError:
            raise CorpusError(f"expected an integer tag column for a CoNLL file, got {tag_column!r}") from None
        return read_conll(path, token_column=token_column, tag_column=tag_index)
    if format == "jsonl":
        raise CorpusError(f"{path}: JSON lines are an input of seqtag predict; to train or evaluate on JSON lines, use --hf-dataset {path}")
    raise CorpusError(f"expected format 'conll' or 'conllu', got {format!r}")
