"""The corpus formats that ``seqtag predict`` reads and writes, as streams of sentences.

Formats in and out (:data:`FORMATS`):

- ``text``: one whitespace-tokenized sentence per line (blank lines skipped); written as
  ``token<TAB>tag`` lines with a blank line after each sentence.
- ``conll``: a column file, the tokens in one column; written back with a predicted column
  appended (or one column replaced), every other byte unchanged.
- ``conllu``: CoNLL-U, the tokens in FORM; written back with the model's tag column replaced on
  word lines; comments, multiword-token lines and empty nodes unchanged.
- ``jsonl``: one ``{"tokens": [...]}`` object per line; written back with ``tags`` (and
  ``confidence``, ``nbest`` when asked).

:func:`read_items` reads a byte stream lazily into :class:`Item` s (each keeps the lines it came
from, with their line endings), :class:`Writer` turns an item and its tags into output text, and
:class:`Output` writes that text to a file atomically or to standard output. (Gold-tagged
training corpora are read by :mod:`seqtag.data.corpus`; this module is for untagged input written
back with predictions.)

>>> import io
>>> items = read_items(io.BytesIO(b"\\xef\\xbb\\xbfThe dog\\r\\n\\nA\\xe2\\x80\\xa8cat\\n"), "<stdin>", "text")
>>> [(item.line, item.tokens) for item in items]
[(1, ['The', 'dog']), (3, ['A', 'cat'])]
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from seqtag.data.corpus import CorpusError, conllu_word, decoded_lines, line_blocks
from seqtag.errors import SeqtagError

FORMATS = ("text", "conll", "conllu", "jsonl")

# Tags of one sentence: (tags, probability of each tag or None, n-best [(tags, log_prob)] or None)
Tagged = tuple[list[str], "list[float] | None", "list[tuple[list[str], float]] | None"]


@dataclass(slots=True)
class Item:
    """One sentence of the input and what is needed to write it back.

    Attributes:
        tokens: the tokens (``[]`` for a block without words, written back unchanged).
        line: the number of its first line in the input.
        lines: ``(text, line ending)`` of its input lines (``conll``/``conllu``; else empty).
        rows: for each token, the index of its line in ``lines``.
        obj: the JSON object of a ``jsonl`` line.
    """

    tokens: list[str]
    line: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    obj: dict | None = None


def _split_columns(text: str) -> list[str]:
    """Columns of a CoNLL line: tab-separated, or (a line without a tab) space-separated."""
    return text.split("\t") if "\t" in text else text.split()


def _read_text(lines: Iterable[tuple[int, str, str]]) -> Iterator[Item]:
    for number, text, _ in lines:
        tokens = text.split()  # any whitespace separates tokens; only \n separates lines
        if tokens:
            yield Item(tokens, number)


def _read_blocks(lines: Iterable[tuple[int, str, str]], word: Callable[[int, str], str | None]) -> Iterator[Item]:
    """Blank-line separated blocks (:func:`~seqtag.data.corpus.line_blocks`); ``word(number, text)``
    gives a line's token or None (kept aside)."""
    for block in line_blocks(lines):
        item = Item([], block[0][0])
        for number, text, ending in block:
            item.lines.append((text, ending))
            if not text.strip():
                continue
            token = word(number, text)
            if token is not None:
                item.rows.append(len(item.lines) - 1)
                item.tokens.append(token)
        yield item


def _conll_word(name: str, token_column: int) -> Callable[[int, str], str | None]:
    def word(number: int, text: str) -> str | None:
        cols = _split_columns(text)
        if cols[0].strip() == "-DOCSTART-":
            return None
        try:
            token = cols[token_column].strip()
        except IndexError:
            raise CorpusError(f"{name}:{number}: needs token column {token_column}, the line has {len(cols)}") from None
        if not token:
            raise CorpusError(f"{name}:{number}: empty token in column {token_column}")
        return token

    return word


def _conllu_word(name: str) -> Callable[[int, str], str | None]:
    def word(number: int, text: str) -> str | None:
        if text.startswith("#"):
            return None
        cols = conllu_word(name, number, text)  # None: a multiword token or an empty node, written back as is
        return cols[1] if cols is not None else None

    return word


def _read_jsonl(lines: Iterable[tuple[int, str, str]], name: str) -> Iterator[Item]:
    for number, text, _ in lines:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise CorpusError(f"{name}:{number}: not JSON ({e})") from None
        tokens = obj.get("tokens") if isinstance(obj, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            got = type(obj).__name__ if not isinstance(obj, dict) else f"tokens {type(tokens).__name__}"
            raise CorpusError(f'{name}:{number}: expected an object with "tokens": a list of strings, got {got}')
        if "\\u" in text:  # only an escape makes a lone surrogate, which the output could not encode
            try:
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as e:
                raise CorpusError(f"{name}:{number}: a lone surrogate ({e.object[e.start:e.end]!r}, an escape without "
                                  f"its pair), which UTF-8 cannot carry") from None  # fmt: skip
        yield Item(tokens, number, obj=obj)


def read_items(stream: BinaryIO, name: str, format: str, token_column: int = 0) -> Iterator[Item]:
    """The sentences of a byte stream in ``format`` (one of :data:`FORMATS`), lazily, in order.

    Args:
        stream: a binary file or ``sys.stdin.buffer``.
        name: the name in error messages (the path, or ``<stdin>``).
        format: ``text``, ``conll``, ``conllu`` or ``jsonl``.
        token_column: the token column of a ``conll`` input.

    Raises:
        SeqtagError: ``NAME:LINE: ...`` for bytes that are not UTF-8 or a malformed line, when
            the iteration reaches it.
    """
    lines = decoded_lines(stream, name)
    if format == "text":
        return _read_text(lines)
    if format == "conll":
        return _read_blocks(lines, _conll_word(name, token_column))
    if format == "conllu":
        return _read_blocks(lines, _conllu_word(name))
    if format == "jsonl":
        return _read_jsonl(lines, name)
    raise ValueError(f"expected a format in {FORMATS}, got {format!r}")


# -- writing ---------------------------------------------------------------------------------


def _set_field(text: str, index: int, value: str) -> str:
    """``text`` with its column ``index`` replaced, every other byte unchanged."""
    if "\t" in text:
        cols = text.split("\t")
        cols[index] = value
        return "\t".join(cols)
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    start, end = spans[index]
    return text[:start] + value + text[end:]


@dataclass
class Writer:
    """Turns an :class:`Item` and its :data:`Tagged` result into output text.

    Args:
        format: the output format.
        input_format: the input format (the ``conll``/``conllu`` lines are written back only
            when the input had them).
        tag_index: ``conllu``: the column replaced (3 = UPOS); ``conll``: the column replaced,
            or None to append a column.
    """

    format: str
    input_format: str
    tag_index: int | None = None

    def __call__(self, item: Item, tagged: Tagged, name: str = "<input>") -> str:
        tags, probs, nbest = tagged
        if self.format == "jsonl":
            if not item.tokens and item.obj is None:
                return ""
            obj = dict(item.obj) if item.obj is not None else {"tokens": item.tokens}
            obj["tags"] = tags
            if probs is not None:
                obj["confidence"] = probs
            if nbest is not None:
                obj["nbest"] = [{"tags": t, "log_prob": p} for t, p in nbest]
            return json.dumps(obj, ensure_ascii=False) + "\n"
        if self.format == "conllu" and self.input_format == "conllu":
            return self._rewrite(item, tags, probs, name, lambda text, tag: _set_field(text, self.tag_index, tag))
        if self.format == "conll" and self.input_format == "conll":
            return self._rewrite(item, tags, probs, name, self._conll_line)
        if not item.tokens:
            return ""
        for j, token in enumerate(item.tokens):  # tokens of another format, written as column fields
            if not token or "\t" in token or "\n" in token:
                raise CorpusError(
                    f"{name}:{item.line}: token {j} ({token[:40]!r}) cannot be a {self.format} field (it is empty, or "
                    f"holds a tab or line break): write JSON lines (--output-format jsonl)"
                )
        if self.format == "conllu":
            rows = []
            for i, (token, tag) in enumerate(zip(item.tokens, tags), start=1):
                cols = [str(i), token] + ["_"] * 8
                cols[self.tag_index] = tag
                rows.append("\t".join(cols) + "\n")
            return "".join(rows) + "\n"
        # text, and conll from another format: token<TAB>tag[<TAB>probability]
        if probs is None:
            return "".join(f"{token}\t{tag}\n" for token, tag in zip(item.tokens, tags)) + "\n"
        return "".join(f"{t}\t{tag}\t{p:.4f}\n" for t, tag, p in zip(item.tokens, tags, probs)) + "\n"

    def _conll_line(self, text: str, tag: str) -> str:
        if self.tag_index is not None:
            return _set_field(text, self.tag_index, tag)
        return text + ("\t" if "\t" in text else " ") + tag

    def _rewrite(self, item: Item, tags, probs, name: str, edit: Callable[[str, str], str]) -> str:
        lines = [text + ending for text, ending in item.lines]
        for k, row in enumerate(item.rows):
            text, ending = item.lines[row]
            try:
                text = edit(text, tags[k])
            except IndexError:
                raise CorpusError(f"{name}:{item.line + row}: no column {self.tag_index} to replace") from None
            if probs is not None:
                text += ("\t" if "\t" in text else " ") + f"{probs[k]:.4f}"
            lines[row] = text + ending
        return "".join(lines)


class Output:
    """Where the text goes: a file written atomically (a temporary sibling renamed at the end;
    removed on error, so nothing partial is left) or standard output."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self.tmp: Path | None = None
        if self.path is None:
            sys.stdout.flush()
            self._file = getattr(sys.stdout, "buffer", None)
            return
        if self.path.is_dir():
            raise SeqtagError(f"cannot write {self.path}: it is a directory")
        # A device or a pipe (/dev/null, a FIFO) is written as it is: renaming a file over it
        # would replace the device node with a regular file.
        special = self.path.exists() and not self.path.is_file()
        target = self.path if special else self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            self._file = open(target, "wb")  # noqa: SIM115 (closed by commit or discard)
        except OSError as e:
            raise SeqtagError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.tmp = None if special else target

    def write(self, text: str) -> None:
        if self._file is None:  # a text-only stdout (no .buffer)
            sys.stdout.write(text)
            return
        try:
            self._file.write(text.encode("utf-8"))
        except BrokenPipeError:
            raise
        except OSError as e:
            raise SeqtagError(f"cannot write {self.path or '<stdout>'}: {e.strerror or e}") from None

    def commit(self) -> None:
        """Finish: flush standard output, or fsync and rename the file into place."""
        if self.tmp is None:
            try:
                (self._file or sys.stdout).flush()
                if self.path is not None:  # a device or a pipe
                    self._file.close()
            except OSError as e:
                raise SeqtagError(f"cannot write {self.path or '<stdout>'}: {e.strerror or e}") from None
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise SeqtagError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.tmp = None

    def discard(self) -> None:
        """Remove the temporary file (after an error); standard output is left as it is."""
        if self.tmp is not None:
            self._file.close()
            self.tmp.unlink(missing_ok=True)
            self.tmp = None
        elif self.path is not None and not self._file.closed:
            self._file.close()
