"""Span tagging schemes (BIO, IOB1, BIOES): what a tag is, which scheme a tag set follows, and
which moves between tags a scheme allows, and where a sentence breaks them (and its repair).

A span tag is ``O`` or a one-letter prefix, a hyphen and a type, split on the first hyphen only
(``B-creative-work`` has type ``creative-work``). The CRF's constraints
(:func:`seqtag.model.crf.allowed_transitions`), the metrics (:func:`seqtag.metrics.chunks`) and
the tagger's scheme (``TaggerConfig.tag_scheme``) all read tags through this module. Plain
Python: no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SCHEMES = ("bio", "iob1", "bioes")
PREFIXES = {"bio": "BI", "iob1": "BI", "bioes": "BIES"}  # the prefixes each scheme uses besides O
SPAN_PREFIXES = frozenset("BIES")  # a tag of any scheme


def split_tag(tag: str) -> tuple[str, str] | None:
    """``"B-creative-work"`` -> ``("B", "creative-work")``, ``"O"`` -> ``("O", "")``; None for a
    tag that is not a span tag of any scheme (``"NOUN"``, ``"-LRB-"``, ``"B-"``).

    >>> split_tag("B-creative-work"), split_tag("O"), split_tag("PRP$")
    (('B', 'creative-work'), ('O', ''), None)
    """
    if tag == "O":
        return "O", ""
    prefix, hyphen, type_ = tag.partition("-")
    return (prefix, type_) if hyphen and prefix in SPAN_PREFIXES and type_ else None


def parse_tag(tag: str, scheme: str) -> tuple[str, str]:
    """:func:`split_tag` for a tag that must belong to ``scheme``.

    Raises:
        ValueError: naming the tag and the prefixes the scheme allows.
    """
    parsed = split_tag(tag)
    if parsed is None or (parsed[0] != "O" and parsed[0] not in PREFIXES[scheme]):
        raise ValueError(
            f"expected a tag like 'O' or one of {list(PREFIXES[scheme])} + '-TYPE' "
            f"under scheme {scheme!r}, got {tag!r}"
        )
    return parsed


def detect_scheme(tags: Iterable[str]) -> str | None:
    """Guess the tagging scheme of a tag set.

    Rules, in order: None unless every tag is ``O`` or ``B-``/``I-``/``E-``/``S-`` followed by a
    non-empty type, and at least one is not ``O`` (so POS tag sets such as UPOS, or Penn tags
    like ``-LRB-``, ``PRP$`` and ``HYPH``, give None); ``"bioes"`` if any tag has an ``E-`` or
    ``S-`` prefix; ``"bio"`` if every type that has an ``I-`` tag also has a ``B-`` tag; else
    ``"iob1"`` (in IOB1, ``B-`` only separates two adjacent chunks of one type, so most types never
    get one). A tag set cannot tell an IOB1 corpus whose every type happens to have ``B-`` from
    BIO; that is harmless for the metrics, which read both alike.

    Args:
        tags: tag names, e.g. a label list or every tag of a corpus (duplicates are fine).

    Returns:
        One of :data:`SCHEMES`, or None when the tags are not span tags.

    >>> detect_scheme(["O", "B-PER", "I-PER", "B-creative-work", "I-creative-work"])
    'bio'
    >>> detect_scheme(["O", "I-PER", "I-LOC", "B-LOC"])
    'iob1'
    >>> detect_scheme(["O", "B-PER", "I-PER", "E-PER", "S-PER"])
    'bioes'
    >>> detect_scheme(["NOUN", "DET", "PRON"]) is None
    True
    """
    parsed = [split_tag(tag) for tag in tags]
    if None in parsed or all(prefix == "O" for prefix, _ in parsed):
        return None
    prefixes = {prefix for prefix, _ in parsed}
    if prefixes & {"E", "S"}:
        return "bioes"
    begun = {type_ for prefix, type_ in parsed if prefix == "B"}
    inside = {type_ for prefix, type_ in parsed if prefix == "I"}
    return "bio" if inside <= begun else "iob1"


def resolve_scheme(scheme: str, tags: Sequence[str]) -> str:
    """``"auto"`` -> the scheme the tag set follows (``bio``, ``iob1``, ``bioes``) or ``"none"``;
    any other value is returned as it is."""
    if scheme != "auto":
        return scheme
    return detect_scheme(tags) or "none"


def allowed(scheme: str, src: tuple[str, str] | None, dst: tuple[str, str] | None) -> bool:
    """Whether the parsed tag ``dst`` may follow ``src`` under ``scheme``; ``src=None`` is the
    start of a sentence, ``dst=None`` its end.

    >>> allowed("bio", ("O", ""), ("I", "PER")), allowed("bio", ("B", "PER"), ("I", "PER"))
    (False, True)
    """
    if scheme == "bioes":
        if src is not None and src[0] in "BI":  # inside a chunk: continue or close it
            return dst is not None and dst[0] in "IE" and dst[1] == src[1]
        return dst is None or dst[0] in "BSO"
    if dst is None:  # bio and iob1: any tag may end
        return True
    # bio: I-X continues B-X / I-X; iob1: B-X separates two adjacent chunks of type X
    continuing = "I" if scheme == "bio" else "B"
    if dst[0] != continuing:
        return True
    return src is not None and src[0] in "BI" and src[1] == dst[1]


def allowed_moves(tags: Sequence[str], scheme: str) -> tuple[list[bool], list[list[bool]], list[bool]]:
    """``(start, transitions, end)``: which tags may start a sentence, follow each tag
    (``transitions[from][to]``) and end one under ``scheme``.

    Raises:
        ValueError: for another scheme, or a tag whose prefix the scheme lacks.
    """
    if scheme not in PREFIXES:
        raise ValueError(f"expected scheme in {sorted(PREFIXES)}, got {scheme!r}")
    parsed = [parse_tag(tag, scheme) for tag in tags]
    start = [allowed(scheme, None, dst) for dst in parsed]
    transitions = [[allowed(scheme, src, dst) for dst in parsed] for src in parsed]
    end = [allowed(scheme, src, None) for src in parsed]
    return start, transitions, end


def foreign_tags(tags: Iterable[str], scheme: str) -> list[str]:
    """The distinct tags of ``tags`` that are not tags of ``scheme`` (sorted): what a forced
    ``tag_scheme`` refuses in a tag set.

    >>> foreign_tags(["O", "B-PER", "E-PER", "S-LOC", "E-PER"], "bio")
    ['E-PER', 'S-LOC']
    """
    return sorted({tag for tag in tags if _parsed(tag, scheme) is None})


def _parsed(tag: str, scheme: str) -> tuple[str, str] | None:
    parsed = split_tag(tag)
    ok = parsed is not None and (parsed[0] == "O" or parsed[0] in PREFIXES[scheme])
    return parsed if ok else None


def _as_span(tag: str, scheme: str) -> tuple[str, str]:
    return _parsed(tag, scheme) or ("O", "")  # a tag foreign to the scheme reads as O (first_break)


def first_break(tags: Sequence[str], scheme: str) -> int | None:
    """Where a sentence first makes a move that ``scheme`` forbids (:func:`allowed`, the rule
    the CRF's constraints are built from): ``i`` when ``tags[i]`` may not follow ``tags[i - 1]``
    (or start the sentence, ``i == 0``), ``len(tags)`` when the last tag may not end it; None for
    a sentence that breaks nothing. A tag foreign to the scheme reads as ``O`` here
    (:func:`foreign_tags` finds those).

    >>> first_break(["B-PER", "O", "I-PER"], "bio"), first_break(["B-PER", "I-PER"], "bio")
    (2, None)
    >>> first_break(["B-PER", "I-PER"], "bioes")
    2
    """
    src = None
    for i, tag in enumerate(tags):
        dst = _as_span(tag, scheme)
        if not allowed(scheme, src, dst):
            return i
        src = dst
    return None if allowed(scheme, src, None) else len(tags)


def describe_break(tags: Sequence[str], i: int) -> str:
    """The move at ``i`` (:func:`first_break`) in words, naming the tags.

    >>> describe_break(["O", "I-PER"], 1), describe_break(["I-PER"], 0), describe_break(["B-PER"], 1)
    ("'I-PER' after 'O'", "'I-PER' starting the sentence", "'B-PER' ending the sentence")
    """
    if i == len(tags):
        return f"{tags[-1]!r} ending the sentence"
    return f"{tags[i]!r} after {tags[i - 1]!r}" if i else f"{tags[i]!r} starting the sentence"


# The prefix changes of a repair: a chunk opened where a tag continues one that is not open, a
# chunk closed where the next tag does not continue it (BIO and IOB1 need no closing).
_OPEN = {"bio": {"I": "B"}, "iob1": {"B": "I"}, "bioes": {"I": "B", "E": "S"}}
_CLOSE = {"bio": {}, "iob1": {}, "bioes": {"B": "S", "I": "E"}}


def repair(tags: Sequence[str], scheme: str) -> list[str]:
    """The nearest sentence that ``scheme`` allows, with the chunks conlleval reads in ``tags``
    (:func:`seqtag.metrics.chunks`): only prefixes change, never a type or an ``O``.

    Where ``tags[i]`` may not follow ``tags[i - 1]``, a chunk left open is closed (BIOES:
    ``B-X`` -> ``S-X``, ``I-X`` -> ``E-X`` on the tag before), then a tag that continues a
    chunk not open opens one (BIO: ``I-X`` -> ``B-X``; IOB1: ``B-X`` -> ``I-X``; BIOES:
    ``I-X`` -> ``B-X``, ``E-X`` -> ``S-X``). So under BIO an ``I-X`` after ``O`` or after
    another type is read as ``B-X``, as conlleval does; a BIO sentence under BIOES becomes its
    BIOES form. A sentence that breaks nothing comes back unchanged; a tag foreign to the
    scheme is left as it is (and reads as ``O``).

    >>> repair(["O", "I-PER", "I-LOC"], "bio")
    ['O', 'B-PER', 'B-LOC']
    >>> repair(["B-PER", "I-PER", "O", "B-LOC"], "bioes")
    ['B-PER', 'E-PER', 'O', 'S-LOC']
    """
    out = list(tags)
    src: tuple[str, str] | None = None
    for i in range(len(out) + 1):
        dst = _as_span(out[i], scheme) if i < len(out) else None
        if not allowed(scheme, src, dst):
            if src is not None and src[0] in _CLOSE[scheme]:
                src = _CLOSE[scheme][src[0]], src[1]
                out[i - 1] = f"{src[0]}-{src[1]}"
            if dst is not None and not allowed(scheme, src, dst) and dst[0] in _OPEN[scheme]:
                dst = _OPEN[scheme][dst[0]], dst[1]
                out[i] = f"{dst[0]}-{dst[1]}"
            assert allowed(scheme, src, dst), (out, i)
        src = dst
    return out
