"""Token strings to ids, and the inference batch plan: plain Python without torch.

Every way of tagging strings runs this code: eager ``Tagger.predict`` and the ``torch.export``
loader (through :mod:`seqtag.data.dataset`, which turns the lists into tensors), the TorchScript file
(TorchScript compiles these functions into it) and the ONNX runner :mod:`seqtag.serving.onnx_runner`
(which turns them into NumPy arrays, in processes that cannot import torch). So this module
imports nothing, not even from seqtag.

- :func:`encode_table` encodes each distinct token of a call once (:func:`encode_token`; training
  encodes through it too, :func:`seqtag.data.dataset.encode_tokens`); :func:`normalize` is the
  lowercasing rule (the vocabularies are built with it) and :func:`lowercase_table` the table it
  takes; the case feature's ids are :class:`Case`.
- :func:`plan_batches` is the batch plan: sentences sorted by length, cut by a sentence count
  and a padded-token cap (:func:`cut_sorted`, which training's bucketing sampler cuts with too).

Everything here is written in the Python that TorchScript compiles: typed, no lambdas, no
comprehensions with conditions.
"""

from __future__ import annotations

from enum import Enum


class Case(Enum):
    """The case feature's ids: how a token differs from its lowercased form (:func:`normalize`).
    An enum because TorchScript, which compiles this module's functions, folds its values into
    constants and has no global ones."""

    PAD = 0  # padding
    LOWER = 1  # unchanged by lowercasing: "dog", "42"
    TITLE = 2  # only the first character changed: "Dog", "Über"
    OTHER = 3  # anything else: "DOG", "iPhone"


def printable_ascii(s: str) -> bool:
    """Whether every character of ``s`` is printable ASCII (space to ``~``): one byte each, and
    lowercased by ``str.lower`` (:func:`normalize`).

    >>> [printable_ascii(t) for t in ["Dog's, e.g. 5-7 (a b)~", "naïve", "tab\\tx", ""]]
    [True, False, False, True]
    """
    if len("é") == 1:  # Python: a str indexes by code point (TorchScript folds this to False)
        return s.lstrip(" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~") == ""
    # TorchScript: isprintable tests each byte, true only for printable ASCII in a C or UTF-8
    # locale (a locale that takes the bytes of "é" for printable characters, such as Latin-1,
    # gets False for every string, and so the general path of the callers)
    return s.isprintable() and not "é".isprintable()


def code_points(s: str) -> list[str]:
    """Split ``s`` into its characters (Unicode code points).

    TorchScript strings are UTF-8 bytes: indexing gives bytes, so a code point is a lead byte
    plus the continuation bytes (``10xxxxxx``) after it. In Python, ``list(s)``.

    >>> code_points("naïve")
    ['n', 'a', 'ï', 'v', 'e']
    """
    if len("é") == 1 or printable_ascii(s):  # Python, or one byte per character
        return list(s)
    out: list[str] = []
    start = 0
    n = len(s)
    for i in range(1, n + 1):
        if i == n or (ord(s[i]) & 0xC0) != 0x80:
            out.append(s[start:i])
            start = i
    return out


def lowercase_table(lower_map: dict[str, str]) -> dict[str, str]:
    """The per-character lowercasing table of :func:`normalize`: a vocabulary's ``lower_map``
    plus A-Z."""
    table = dict(lower_map)
    for c in range(65, 91):
        table[chr(c)] = chr(c + 32)
    return table


def normalize(token: str, table: dict[str, str]) -> str:
    """``token`` lowercased: ``str.lower`` for printable ASCII, else code point by code point
    through ``table`` (:func:`lowercase_table`), so that every format lowercases alike
    (TorchScript's ``str.lower`` is ASCII-only). Words are looked up in this form.

    >>> normalize("Über", lowercase_table({"Ü": "ü"})), normalize("DOG", {})
    ('über', 'dog')
    """
    if printable_ascii(token):
        return token.lower()
    out: list[str] = []
    for c in code_points(token):
        out.append(table.get(c, c))
    return "".join(out)


def encode_token(
    token: str,
    word_ids: dict[str, int],
    char_ids: dict[str, int],
    lower_map: dict[str, str],
    lowercase: bool,
    char_width: int,
    chars: list[int],
) -> tuple[int, int, int]:
    """Word id and case id of one token, as :func:`seqtag.data.dataset.encode_tokens` gives them, with
    its at most ``char_width`` character ids appended to ``chars`` (``lower_map`` from
    :func:`lowercase_table`; ``char_width`` 0 without character features).

    Returns:
        ``(word, case, n_chars)``, ``n_chars`` the count of ids appended.
    """
    ascii = printable_ascii(token)  # nearly every token: string slices for the case
    normalized = normalize(token, lower_map)
    all_cps: list[str] = []
    if ascii:
        cps = list(token[:char_width])
    else:
        all_cps = code_points(token)
        cps = all_cps[:char_width]
    if normalized == token:
        case = Case.LOWER.value
    elif (normalized[1:] == token[1:]) if ascii else (code_points(normalized)[1:] == all_cps[1:]):
        case = Case.TITLE.value  # (code-point lists when not ASCII: TorchScript slices a string by bytes)
    else:
        case = Case.OTHER.value
    for c in cps:  # appended here: one pass, and no list per token to copy into ``chars``
        chars.append(char_ids.get(c, 1))
    word = word_ids.get(normalized if lowercase else token, 1)
    if word == 0:  # the text "<pad>" (or "<PAD>") is a word like any other, not padding: unknown
        word = 1
    return word, case, len(cps)


def encode_table(
    tokens: list[list[str]],
    word_ids: dict[str, int],
    char_ids: dict[str, int],
    lower_map: dict[str, str],
    lowercase: bool,
    char_width: int,
) -> tuple[list[int], list[int], list[int], list[int], list[int], list[int]]:
    """Encode each distinct token of ``tokens`` (sentences of token strings) once.

    Returns:
        ``(entry, starts, words, cases, chars, widths)``: the table row of each of the ``N``
        tokens in sentence order (``N`` ints), where each sentence starts in it (one int per
        sentence), and per row of the ``E``-row table its word id, its case id, its at most
        ``char_width`` character ids (unpadded, row after row: ``sum(widths)`` ints) and its
        count of character ids (``E`` ints each). The callers pad ``chars`` into an
        ``(E, char_width)`` array in one vectorized step rather than element by element here.
    """
    rows: dict[str, int] = {}
    entry: list[int] = []
    starts: list[int] = []
    words: list[int] = []
    cases: list[int] = []
    chars: list[int] = []
    widths: list[int] = []
    for sentence in tokens:
        starts.append(len(entry))
        for token in sentence:
            row = rows.get(token, -1)
            if row < 0:
                row = len(words)
                rows[token] = row
                word, case, width = encode_token(token, word_ids, char_ids, lower_map, lowercase, char_width, chars)
                words.append(word)
                cases.append(case)
                widths.append(width)
            entry.append(row)
    return entry, starts, words, cases, chars, widths


def default_max_tokens(batch_size: int) -> int:
    """The most tokens, counting padding, in a batch of ``batch_size`` sentences unless told
    otherwise (training's bucketing and every inference plan): 128 per sentence, so that one
    very long sentence gets a batch of its own instead of padding the others to its length. (A
    function, not a constant: TorchScript compiles it; it has no global constants.)"""
    return batch_size * 128


def plan_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """The inference batch plan: the indices of the non-empty sentences, sorted (stable) by
    length, cut into batches of at most ``batch_size`` sentences and ``max_tokens`` tokens
    counting padding (default :func:`default_max_tokens`); a sentence longer
    than ``max_tokens`` is a
    batch of its own. Every format (eager, TorchScript, torch.export, ONNX) and ``seqtag bench``
    plan with it; TorchScript compiles it.

    Raises:
        ValueError: ``batch_size < 1`` or ``max_tokens < 1``.

    >>> plan_batches([3, 0, 1, 3, 2], batch_size=2)
    [[2, 4], [0, 3]]
    >>> plan_batches([5, 1, 1, 9], batch_size=8, max_tokens=6)
    [[1, 2], [0], [3]]
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    cap = default_max_tokens(batch_size) if max_tokens is None else max_tokens
    if cap < 1:
        raise ValueError(f"expected max_tokens >= 1, got {cap}")
    n_all = len(lengths)
    # a stable sort by length without a key function (TorchScript has none): each key is
    # length * n + index, so equal lengths keep their input order
    keys: list[int] = []
    for i in range(n_all):
        if lengths[i] > 0:
            keys.append(lengths[i] * n_all + i)
    keys.sort()
    order: list[int] = []
    for key in keys:
        order.append(key % n_all)
    return cut_sorted(order, lengths, batch_size, cap)


def cut_sorted(order: list[int], lengths: list[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Cut ``order`` (sentence indices sorted by ``lengths[i]``, ascending) into consecutive
    batches of at most ``batch_size`` sentences and ``max_tokens`` tokens counting padding; a
    sentence longer than ``max_tokens`` is a batch of its own.

    >>> cut_sorted([1, 2, 0, 3], [5, 1, 1, 9], batch_size=8, max_tokens=6)
    [[1, 2], [0], [3]]
    """
    batches: list[list[int]] = []
    start = 0
    n = len(order)
    for end in range(1, n + 1):
        full = end - start == batch_size
        over = end < n and (end + 1 - start) * lengths[order[end]] > max_tokens
        if end == n or full or over:
            batches.append(order[start:end])
            start = end
    return batches


def lone_surrogate(tokens: list[str]) -> int | None:
    """The index of the first token holding a lone surrogate (``"\\ud800"``: a JSON escape or a
    ``surrogateescape``-decoded name can make one), which UTF-8 cannot carry, so that no output
    file, TorchScript or ONNX Runtime can take it; None when every token is text.

    >>> lone_surrogate(["The", "dog"]), lone_surrogate(["a", "b\\ud800"])
    (None, 1)
    """
    try:
        "".join(tokens).encode("utf-8")
    except UnicodeEncodeError:
        for j, token in enumerate(tokens):
            try:
                token.encode("utf-8")
            except UnicodeEncodeError:
                return j
    return None


def check_sentences(sentences: object) -> list[list[str]]:
    """``sentences`` as a list of token lists, checked at the boundary of every tagger's Python API
    (eager, ``OnnxTagger``; plain Python, not compiled): a sequence of sequences of ``str``. A bare
    string, a list of strings, a dict, bytes or ``None`` would otherwise be tagged character by
    character or fail deep inside.

    Raises:
        TypeError: what was expected, and what came (and where).
        ValueError: a token with a lone surrogate (:func:`lone_surrogate`).

    >>> check_sentences([["The", "dog"], ()])
    [['The', 'dog'], []]
    >>> check_sentences("The dog")
    Traceback (most recent call last):
    ...
    TypeError: expected sentences as a sequence of token lists (e.g. [["The", "dog"]]), got a str
    """
    if sentences is None or isinstance(sentences, (str, bytes, bytearray, dict)) or not hasattr(sentences, "__iter__"):
        raise TypeError(f'expected sentences as a sequence of token lists (e.g. [["The", "dog"]]), got a {type(sentences).__name__}')
    out: list[list[str]] = []
    for i, sentence in enumerate(sentences):  # type: ignore[attr-defined]
        if sentence is None or isinstance(sentence, (str, bytes, bytearray, dict)) or not hasattr(sentence, "__iter__"):
            raise TypeError(f"expected sentence {i} as a sequence of token strings, got a {type(sentence).__name__}")
        tokens = list(sentence)
        for j, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"expected token {j} of sentence {i} as a str, got a {type(token).__name__}")
        j = lone_surrogate(tokens)
        if j is not None:
            raise ValueError(f"expected token {j} of sentence {i} as text UTF-8 can carry, got {tokens[j]!r} (a lone surrogate)")
        out.append(tokens)
    return out


def check_tagged(sentences: object, name: str = "sentences") -> list:
    """``sentences`` as a list, checked at the boundary of ``seqtag.train`` and ``seqtag.evaluate``
    (plain Python, not compiled): a sequence of gold-tagged sentences, objects with ``tokens``
    and ``tags`` (:class:`seqtag.data.corpus.Sentence`), each a sequence of ``str``, as many tags
    as tokens. Anything else would fail deep inside, or train on what it is not.

    Raises:
        TypeError: what was expected, and what came (and where); ValueError: tokens and tags of
            different lengths.

    >>> check_tagged([["The", "dog"]], "train_data")
    Traceback (most recent call last):
    ...
    TypeError: expected train_data[0] a tagged sentence (seqtag.Sentence(tokens, tags)), got a list
    """
    if sentences is None or isinstance(sentences, (str, bytes, bytearray, dict)) or not hasattr(sentences, "__iter__"):
        raise TypeError(f"expected {name} as a sequence of tagged sentences (seqtag.Sentence), got a {type(sentences).__name__}")
    out = list(sentences)  # type: ignore[call-overload]
    for i, sentence in enumerate(out):
        tokens, tags = getattr(sentence, "tokens", None), getattr(sentence, "tags", None)
        if tokens is None or tags is None:
            raise TypeError(f"expected {name}[{i}] a tagged sentence (seqtag.Sentence(tokens, tags)), got a {type(sentence).__name__}")
        for field, values in (("tokens", tokens), ("tags", tags)):
            if not isinstance(values, (list, tuple)):
                raise TypeError(f"expected the {field} of {name}[{i}] as a list of str, got a {type(values).__name__}")
            for j, value in enumerate(values):
                if not isinstance(value, str):
                    raise TypeError(f"expected {field}[{j}] of {name}[{i}] a str, got a {type(value).__name__}")
        if len(tokens) != len(tags):
            raise ValueError(f"expected as many tags as tokens in {name}[{i}], got {len(tokens)} tokens and {len(tags)} tags")
    return out


def check_batch_size(batch_size: object) -> None:
    """Raise ``ValueError`` unless ``batch_size`` is an int >= 1 (not a bool, not 2.5): the check
    of ``PredictConfig.batch_size``'s field metadata, as the command line applies it."""
    import dataclasses

    from seqtag.config import PredictConfig, check_value  # here: this module imports nothing

    field = next(f for f in dataclasses.fields(PredictConfig) if f.name == "batch_size")
    check_value("batch_size", batch_size, field.metadata, int)
