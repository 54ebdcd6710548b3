"""Token strings to ids, and the inference batch plan.

Every way of tagging strings runs this code: eager ``Tagger.predict`` and the ``torch.export``
loader (through :mod:`seqtag.data`), and the TorchScript file (TorchScript compiles these
functions into it).

- :func:`encode_token` gives a token's ids (those that :func:`seqtag.data.encode_tokens` gives
  in training).
- :func:`plan_batches` is the batch plan: sentences sorted by length, cut by a sentence count
  and a padded-token cap.
"""

from __future__ import annotations

import torch


def code_points(s: str) -> list[str]:
    """Split ``s`` into its characters (Unicode code points).

    TorchScript strings are UTF-8 bytes: indexing gives bytes, so a code point is a lead byte
    plus the continuation bytes (``10xxxxxx``) after it. In Python, ``list(s)``.
    """
    if not torch.jit.is_scripting():
        return list(s)
    out: list[str] = []
    start = 0
    n = len(s)
    for i in range(1, n + 1):
        if i == n or (ord(s[i]) & 0xC0) != 0x80:
            out.append(s[start:i])
            start = i
    return out


def encode_token(
    token: str,
    word_ids: dict[str, int],
    char_ids: dict[str, int],
    lower_map: dict[str, str],
    lowercase: bool,
    char_width: int,
) -> tuple[int, int, list[int]]:
    """Word id, case id and character ids of one token, as :func:`encode_tokens` gives them."""
    cps = code_points(token)
    parts: list[str] = []
    for c in cps:
        parts.append(lower_map.get(c, c))
    normalized = "".join(parts)
    word = word_ids.get(normalized if lowercase else token, 1)
    if normalized == token:
        case = 1
    elif cps[1:] == code_points(normalized)[1:]:
        case = 2
    else:
        case = 3
    chars: list[int] = []
    for c in cps[:char_width]:
        chars.append(char_ids.get(c, 1))
    return word, case, chars


def plan_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """The inference batch plan: the indices of the non-empty sentences, sorted (stable) by
    length, cut into batches of at most ``batch_size`` sentences and ``max_tokens`` tokens
    counting padding (default ``batch_size * 128``); a sentence longer than ``max_tokens`` is a
    batch of its own. Every format (eager, TorchScript, torch.export) and ``seqtag bench`` plan
    with it; TorchScript compiles it.

    Raises:
        ValueError: ``batch_size < 1`` or ``max_tokens < 1``.

    >>> plan_batches([3, 0, 1, 3, 2], batch_size=2)
    [[2, 4], [0, 3]]
    >>> plan_batches([5, 1, 1, 9], batch_size=8, max_tokens=6)
    [[1, 2], [0], [3]]
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    cap = batch_size * 128 if max_tokens is None else max_tokens  # BucketBatchSampler's default too
    if cap < 1:
        raise ValueError(f"expected max_tokens >= 1, got {cap}")
    lens = torch.tensor(lengths, dtype=torch.long)
    nonempty = (lens > 0).nonzero().squeeze(1)
    order: list[int] = nonempty[torch.sort(lens[nonempty], stable=True)[1]].tolist()
    batches: list[list[int]] = []
    start = 0
    n = len(order)
    for end in range(1, n + 1):
        full = end - start == batch_size
        over = end < n and (end + 1 - start) * lengths[order[end]] > cap
        if end == n or full or over:
            batches.append(order[start:end])
            start = end
    return batches
