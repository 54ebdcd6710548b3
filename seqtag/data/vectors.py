"""Pretrained word vectors in word2vec/GloVe text format (optionally gzipped).

Each line is a word followed by its numbers, separated by spaces; an optional first line holds
two integers (word count and dimension), as word2vec writes it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from seqtag.data.vocab import Vocab
from seqtag.errors import SeqtagError


def read_vectors(path: str | os.PathLike, max_words: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read up to ``max_words`` vectors (file order, which is by frequency for GloVe and word2vec).

    Returns:
        The words and a ``(num_words, dim)`` float32 array.

    Raises:
        SeqtagError: naming file and line, for a line whose dimension differs from the first
            vector's, a number that does not parse, non-UTF-8 bytes, or a file with no vectors.
    """
    path = Path(path)
    if not path.is_file():
        raise SeqtagError(f"{path}: no such vectors file" if not path.exists() else f"{path}: not a vectors file")
    try:
        return _read(path, max_words)
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        kind = "a truncated or damaged .gz file" if path.suffix == ".gz" else "unreadable"
        reason = str(e) or type(e).__name__
        raise SeqtagError(f"{path}: cannot read the vectors: {kind} ({reason})") from None


def _read(path: Path, max_words: int | None) -> tuple[list[str], np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    seen: set[str] = set()
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if max_words is not None and len(words) >= max_words:
                break
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise SeqtagError(f"{path}:{number}: not valid UTF-8 (byte {e.start + 1})") from None
            parts = line.rstrip(" ").split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if not line.strip():
                continue
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise SeqtagError(f"{path}:{number}: expected a word and its vector, got {line[:40]!r}")
            if len(parts) - 1 != dim:
                raise SeqtagError(f"{path}:{number}: expected {dim} numbers as on earlier lines, got {len(parts) - 1}")
            try:
                vector = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise SeqtagError(f"{path}:{number}: a vector value is not a number") from None
            if parts[0] in seen:
                continue
            seen.add(parts[0])
            words.append(parts[0])
            rows.append(vector)
    if not words:
        raise SeqtagError(f"{path}: no vectors found")
    return words, np.stack(rows)


@torch.no_grad()
def init_embedding(weight: torch.Tensor, vocab: Vocab, words: list[str], matrix: np.ndarray) -> int:
    """Copy vectors into the rows of ``weight`` (shape ``(len(vocab), dim)``) for the vocabulary's words:
    an exact match first, else the vector of the word's lowercase form. Returns how many rows
    were set; other rows keep their random initialisation."""
    if weight.shape[1] != matrix.shape[1]:
        raise SeqtagError(
            f"the vectors have {matrix.shape[1]} dimensions but the word embedding has {weight.shape[1]}: "
            f"set --embedding-dim {matrix.shape[1]}"
        )
    exact = {w: i for i, w in enumerate(words)}
    lower: dict[str, int] = {}
    for i, w in enumerate(words):
        lower.setdefault(w.lower(), i)
    ids, rows = [], []
    for i, w in enumerate(vocab.itos):
        if i < len(vocab.specials):
            continue
        row = exact.get(w, lower.get(w.lower()))
        if row is not None:
            ids.append(i)
            rows.append(row)
    if ids:
        weight[torch.tensor(ids)] = torch.from_numpy(matrix[rows]).to(weight.dtype).to(weight.device)
    return len(ids)
