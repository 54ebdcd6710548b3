"""Tagging metrics: token accuracy and span (chunk) precision/recall/F1.

Spans follow conlleval.pl: a tag is ``O`` or ``<prefix>-<type>`` (:func:`seqtag.schemes.split_tag`:
the prefix is the text before the first hyphen, so types may contain hyphens, as in
``B-creative-work``). The
``startOfChunk``/``endOfChunk`` rules of conlleval.pl are used for B, I and O, which makes BIO
(IOB2) and IOB1 read alike: a stray ``I-X`` after ``O`` or after another type starts a chunk and a
type change ends one. For BIOES they are extended as in seqeval and the BIOES ports of conlleval:
a chunk always ends after ``E-X`` or ``S-X``, and ``B-X`` or ``S-X`` always starts one.

Note:
    The original conlleval.pl has no rule for ``S`` and none for ``E-X B-X``, so on BIOES input it
    merges ``S-X S-X`` and ``B-X E-X B-X E-X`` into single chunks. Here (and in seqeval) they are
    two chunks each; convert BIOES to BIO before comparing with numbers from the Perl script.

All scores are fractions in [0, 1]; like conlleval, a ratio with a zero denominator is 0.0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from seqtag.schemes import split_tag


def _ends(prev: str, cur: str, prev_type: str, cur_type: str) -> bool:
    """conlleval's endOfChunk: did a chunk end between the previous tag and this one?"""
    if prev == "O":
        return False
    return prev in ("E", "S") or cur in ("B", "S", "O") or prev_type != cur_type


def _starts(prev: str, cur: str, prev_type: str, cur_type: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this tag?"""
    if cur == "O":
        return False
    return cur in ("B", "S") or prev in ("O", "E", "S") or prev_type != cur_type


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Spans of one sentence, with conlleval semantics (see the module docstring).

    Args:
        tags: the sentence's tags, each ``O`` or ``B-``/``I-``/``E-``/``S-`` plus a type.

    Returns:
        ``(type, start, end)`` for each chunk in order, with ``end`` exclusive.

    Raises:
        ValueError: a tag is not a span tag.

    >>> chunks(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-creative-work"])
    [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5), ('creative-work', 5, 6)]
    >>> chunks(["S-PER", "B-LOC", "E-LOC", "E-LOC"])
    [('PER', 0, 1), ('LOC', 1, 3), ('LOC', 3, 4)]
    """
    spans: list[tuple[str, int, int]] = []
    prev, prev_type, start = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):  # the final "O" closes a chunk open at the end
        parsed = split_tag(tag)
        if parsed is None:
            raise ValueError(
                f"expected span tags like 'O', 'B-PER', 'I-PER', 'E-PER', 'S-PER', "
                f"got {tag!r} at position {i}"
            )
        cur, cur_type = parsed
        if _ends(prev, cur, prev_type, cur_type):
            spans.append((prev_type, start, i))
        if _starts(prev, cur, prev_type, cur_type):
            start = i
        prev, prev_type = cur, cur_type
    return spans


@dataclass
class SpanScore:
    """Span scores of one chunk type, or of all types pooled (micro)."""

    precision: float  # correct / predicted
    recall: float  # correct / support
    f1: float  # harmonic mean of precision and recall
    support: int  # gold chunks
    predicted: int  # predicted chunks
    correct: int  # predicted chunks that match a gold chunk in type, start and end

    @classmethod
    def from_counts(cls, support: int, predicted: int, correct: int) -> SpanScore:
        """Scores from chunk counts; a ratio with a zero denominator is 0.0, as in conlleval."""
        precision = correct / predicted if predicted else 0.0
        recall = correct / support if support else 0.0
        total = precision + recall
        f1 = 2 * precision * recall / total if total else 0.0
        return cls(precision, recall, f1, support, predicted, correct)


@dataclass
class SpanReport:
    """Micro-averaged and per-type span scores, as returned by :func:`span_f1`."""

    micro: SpanScore
    per_type: dict[str, SpanScore]  # every type in gold or predictions, sorted by name

    def as_dict(self) -> dict:
        """``{"micro": {...}, "per_type": {type: {...}}}`` of plain floats and ints (JSON-ready)."""
        return {
            "micro": asdict(self.micro),
            "per_type": {name: asdict(score) for name, score in self.per_type.items()},
        }


def _check_pairs(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(
            f"expected as many predicted sentences as gold ones ({len(gold)}), got {len(pred)}"
        )
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if isinstance(g, str) or isinstance(p, str):
            raise ValueError(f"expected a list of tags for sentence {i}, got a str")
        if len(g) != len(p):
            raise ValueError(
                f"expected {len(g)} predicted tags for sentence {i} (its gold length), got {len(p)}"
            )


def span_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> SpanReport:
    """Micro and per-type span precision, recall and F1 over a corpus, as conlleval computes them.

    A predicted chunk is correct when a gold chunk of the same sentence has the same type, start
    and end. Chunks never cross sentences.

    Args:
        gold: gold tags, one list per sentence.
        pred: predicted tags, one list per sentence, each as long as its gold sentence.

    Returns:
        A :class:`SpanReport`.

    Raises:
        ValueError: the sentence counts or lengths differ (the message names the sentence), or a
            tag is not a span tag.

    >>> report = span_f1([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    >>> report.micro.precision, report.micro.recall, round(report.micro.f1, 4)
    (1.0, 0.5, 0.6667)
    >>> report.per_type["LOC"]
    SpanScore(precision=0.0, recall=0.0, f1=0.0, support=1, predicted=0, correct=0)
    """
    _check_pairs(gold, pred)
    gold_spans: set[tuple[int, str, int, int]] = set()
    pred_spans: set[tuple[int, str, int, int]] = set()
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        try:
            gold_spans.update((i, *span) for span in chunks(g))
            pred_spans.update((i, *span) for span in chunks(p))
        except ValueError as error:
            raise ValueError(f"sentence {i}: {error}") from None
    correct = gold_spans & pred_spans
    n_gold, n_pred, n_correct = (
        Counter(s[1] for s in spans) for spans in (gold_spans, pred_spans, correct)
    )
    per_type = {
        name: SpanScore.from_counts(n_gold[name], n_pred[name], n_correct[name])
        for name in sorted(n_gold.keys() | n_pred.keys())
    }
    micro = SpanScore.from_counts(len(gold_spans), len(pred_spans), len(correct))
    return SpanReport(micro, per_type)


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Fraction of tokens whose predicted tag equals the gold tag.

    Args:
        gold: gold tags, one list per sentence.
        pred: predicted tags, one list per sentence, each as long as its gold sentence.

    Returns:
        The accuracy, in [0, 1].

    Raises:
        ValueError: the sentence counts or lengths differ (the message names the sentence), or
            there are no tokens at all.

    >>> token_accuracy([["DET", "NOUN"], ["VERB"]], [["DET", "VERB"], ["VERB"]])
    0.6666666666666666
    """
    _check_pairs(gold, pred)
    total = sum(len(g) for g in gold)
    if total == 0:
        raise ValueError("expected at least one token to score, got 0")
    hits = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
    return hits / total


def format_report(report: SpanReport) -> str:
    """A conlleval-like table of a :class:`SpanReport`, one row per type then the micro average.

    Args:
        report: the scores to show.

    Returns:
        The table as text, without a trailing newline.

    >>> print(format_report(span_f1([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]])))
    type       precision  recall      f1  support  predicted  correct
    LOC           0.0000  0.0000  0.0000        1          0        0
    PER           1.0000  1.0000  1.0000        1          1        1
    micro avg     1.0000  0.5000  0.6667        2          1        1
    """
    width = max([len("micro avg"), *map(len, report.per_type)])
    header = "type".ljust(width) + "  precision  recall      f1  support  predicted  correct"
    rows = [*report.per_type.items(), ("micro avg", report.micro)]
    lines = [header] + [
        f"{name:<{width}}  {s.precision:9.4f}  {s.recall:6.4f}  {s.f1:6.4f}  "
        f"{s.support:7d}  {s.predicted:9d}  {s.correct:7d}"
        for name, s in rows
    ]
    return "\n".join(lines)
