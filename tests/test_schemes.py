"""Where a sentence breaks its tag scheme, and its repair, held to the two oracles that matter:
the moves the CRF allows (``allowed_moves``) and the chunks conlleval reads (``metrics.chunks``),
over every sentence of a small tag set."""

import itertools

import pytest
import torch

from seqtag.metrics import chunks
from seqtag.model.crf import CRF, NEG_SCORE, allowed_transitions
from seqtag.schemes import (
    PREFIXES,
    allowed_moves,
    describe_break,
    first_break,
    foreign_tags,
    repair,
)


def tag_set(scheme: str) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in ("X", "Y") for p in PREFIXES[scheme]]


def every_sentence(scheme: str, longest: int):
    tags = tag_set(scheme)
    for n in range(1, longest + 1):
        yield from (list(s) for s in itertools.product(tags, repeat=n))


LONGEST = {"bio": 5, "iob1": 5, "bioes": 4}  # 5^5 = 3,125 and 9^4 = 6,561 sentences


def moves_by_matrices(sentence, scheme) -> list[bool]:
    """Whether each move of ``sentence`` is allowed by ``allowed_moves``: its start, the moves
    into tokens 1..n-1, its end."""
    tags = tag_set(scheme)
    start, trans, end = allowed_moves(tags, scheme)
    ids = [tags.index(t) for t in sentence]
    return [start[ids[0]], *(trans[a][b] for a, b in itertools.pairwise(ids)), end[ids[-1]]]


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes"])
def test_first_break_and_repair_against_the_crf_moves_and_conlleval_chunks(scheme):
    tags = tag_set(scheme)
    broken = 0
    for sentence in every_sentence(scheme, LONGEST[scheme]):
        at = first_break(sentence, scheme)
        moves = moves_by_matrices(sentence, scheme)  # move i leads into token i (i = n: the end)
        assert at == (moves.index(False) if False in moves else None), sentence
        broken += at is not None
        fixed = repair(sentence, scheme)
        assert first_break(fixed, scheme) is None, (sentence, fixed)
        assert chunks(fixed) == chunks(sentence), (sentence, fixed)
        assert (fixed == sentence) == (at is None)
        assert repair(fixed, scheme) == fixed
        assert set(fixed) <= set(tags)
        types = [t.partition("-")[2] for t in sentence]
        assert [t.partition("-")[2] for t in fixed] == types
    assert broken > 0


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes"])
def test_the_constrained_crf_loss_is_a_probability_on_repaired_sentences_only(scheme):
    """Gold paths that break the scheme have a loss of ~10,000 (the forbidden moves' NEG_SCORE)
    under the constrained CRF; their repairs an ordinary one."""
    tags = tag_set(scheme)
    crf = CRF(len(tags)).double()
    crf.set_constraints(*allowed_transitions(tags, scheme))
    sentences = [s for s in every_sentence(scheme, 3) if first_break(s, scheme) is not None]
    torch.manual_seed(0)
    for sentence in sentences:
        emissions = torch.randn(1, len(sentence), len(tags), dtype=torch.float64)
        mask = torch.ones(1, len(sentence), dtype=torch.bool)
        broken, fixed = (
            torch.tensor([[tags.index(t) for t in s]]) for s in (sentence, repair(sentence, scheme))
        )
        assert crf(emissions, broken, mask).item() > -NEG_SCORE / 2
        assert 0 <= crf(emissions, fixed, mask).item() < 50


@pytest.mark.parametrize(
    ("tags", "scheme", "expected"),
    [
        (["O", "I-PER", "I-PER", "O"], "bio", ["O", "B-PER", "I-PER", "O"]),
        (["B-PER", "I-LOC"], "bio", ["B-PER", "B-LOC"]),
        (["I-PER", "B-PER", "O", "B-LOC"], "iob1", ["I-PER", "B-PER", "O", "I-LOC"]),
        (["B-PER", "I-PER", "O", "B-LOC", "O"], "bioes", ["B-PER", "E-PER", "O", "S-LOC", "O"]),
        (
            ["O", "E-PER", "I-LOC", "E-LOC", "B-PER"],
            "bioes",
            ["O", "S-PER", "B-LOC", "E-LOC", "S-PER"],
        ),
        (["B-PER", "B-PER", "I-LOC"], "bioes", ["S-PER", "S-PER", "S-LOC"]),
        (["NOUN", "I-PER"], "bio", ["NOUN", "B-PER"]),  # a foreign tag stays, read as O
    ],
)
def test_repair_by_hand(tags, scheme, expected):
    assert repair(tags, scheme) == expected


@pytest.mark.parametrize(
    ("tags", "scheme", "at", "words"),
    [
        (["O", "I-PER"], "bio", 1, "'I-PER' after 'O'"),
        (["I-PER", "O"], "bio", 0, "'I-PER' starting the sentence"),
        (["B-PER", "I-LOC"], "bio", 1, "'I-LOC' after 'B-PER'"),
        (["S-PER", "B-PER"], "bioes", 2, "'B-PER' ending the sentence"),
        (["B-PER", "O"], "bioes", 1, "'O' after 'B-PER'"),
        (["O", "B-PER"], "iob1", 1, "'B-PER' after 'O'"),
    ],
)
def test_first_break_names_the_move(tags, scheme, at, words):
    assert first_break(tags, scheme) == at
    assert describe_break(tags, at) == words


def test_foreign_tags_are_those_without_the_schemes_prefixes():
    tags = ["O", "B-A", "I-A", "E-A", "S-B", "NOUN", "B-"]
    assert foreign_tags(tags, "bio") == ["B-", "E-A", "NOUN", "S-B"]
    assert foreign_tags(["O", "B-A", "I-A", "E-A", "S-B"], "bioes") == []
