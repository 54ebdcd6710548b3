"""Oracles and invariants for seqtag.model.crf: brute-force enumeration, batched vs one at a time,
padded vs unpadded, constrained vs hand-written rules, scripted (and exported) vs eager."""

import itertools
import math

import pytest
import torch

from seqtag.model.crf import CRF, NEG_SCORE, _LogPartition, allowed_transitions

BIO_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BIOES_TAGS = BIO_TAGS + ["E-PER", "S-PER", "E-LOC", "S-LOC"]
TAGS = {"bio": BIO_TAGS, "iob1": BIO_TAGS, "bioes": BIOES_TAGS}

# (batch_size, seq_len, num_tags): small enough to enumerate all num_tags**seq_len paths
SHAPES = [(3, 1, 3), (4, 2, 1), (4, 3, 3), (5, 4, 4)]


def make_batch(batch_size, seq_len, num_tags, dtype=torch.float64):
    """Random emissions and tags with a prefix mask of random lengths (one full length)."""
    lengths = torch.randint(1, seq_len + 1, (batch_size,))
    lengths[0] = seq_len
    mask = torch.arange(seq_len) < lengths.unsqueeze(1)
    emissions = torch.randn(batch_size, seq_len, num_tags, dtype=dtype)
    tags = torch.randint(num_tags, (batch_size, seq_len))
    return emissions, tags, mask, lengths.tolist()


def make_crf(num_tags, constrained=False):
    """A float64 CRF with parameters larger than the default init, optionally random constraints."""
    crf = CRF(num_tags).double()
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    if constrained:
        crf.set_constraints(
            torch.rand(num_tags) < 0.7,
            torch.rand(num_tags, num_tags) < 0.7,
            torch.rand(num_tags) < 0.7,
        )
    return crf


def reference_score(crf, emissions, path):
    """Score of one path by the model's definition, in plain Python.

    emissions: (length, num_tags) tensor; path: sequence of length ints.
    """

    def masked(param, allowed):
        return [p if a else NEG_SCORE for p, a in zip(param, allowed, strict=True)]

    start = masked(crf.start_transitions.tolist(), crf.start_mask.tolist())
    end = masked(crf.end_transitions.tolist(), crf.end_mask.tolist())
    trans = [
        masked(row, allowed)
        for row, allowed in zip(crf.transitions.tolist(), crf.transition_mask.tolist(), strict=True)
    ]
    em = emissions.tolist()
    total = start[path[0]] + end[path[-1]]
    total += sum(em[t][tag] for t, tag in enumerate(path))
    total += sum(trans[a][b] for a, b in itertools.pairwise(path))
    return total


def all_scores(crf, emissions, length):
    """{path: score} for every tag path of the given length (emissions: (seq_len, num_tags))."""
    paths = itertools.product(range(crf.num_tags), repeat=length)
    return {path: reference_score(crf, emissions[:length], path) for path in paths}


def logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def is_allowed(crf, path):
    """Whether a path uses only allowed starts, moves and ends."""
    return (
        bool(crf.start_mask[path[0]])
        and bool(crf.end_mask[path[-1]])
        and all(bool(crf.transition_mask[a, b]) for a, b in itertools.pairwise(path))
    )


def allowed_scores(crf, emissions, length):
    """{path: score} for every path without a forbidden start, move or end."""
    return {p: s for p, s in all_scores(crf, emissions, length).items() if is_allowed(crf, p)}


def brute_force_marginals(crf, emissions, length):
    """(length, num_tags) p(y_t = k) over the allowed paths; all 0 if there are none."""
    scores = allowed_scores(crf, emissions, length)
    probs = torch.zeros(length, crf.num_tags, dtype=torch.float64)
    if scores:
        log_z = logsumexp(list(scores.values()))
        for path, score in scores.items():
            for t, tag in enumerate(path):
                probs[t, tag] += math.exp(score - log_z)
    return probs


def brute_force_nbest(crf, emissions, length, k):
    """The k best allowed paths with their scores, in the documented order: score descending,
    then the tags read from the last token backwards, lexicographically ascending."""
    scores = allowed_scores(crf, emissions, length)
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0][::-1]))
    return ranked[:k]


def make_case(constraints, shape):
    """A float64 CRF and a batch: no constraints, random ones, or a tagging scheme's.

    For a scheme, num_tags comes from its tag set and ``shape[2]`` is ignored."""
    if constraints in TAGS:
        tags = TAGS[constraints]
        crf = make_crf(len(tags))
        crf.set_constraints(*allowed_transitions(tags, constraints))
        shape = (*shape[:2], len(tags))
    else:
        crf = make_crf(shape[2], constrained=constraints == "random")
    return crf, *make_batch(*shape)


# (constraints, (batch_size, seq_len, num_tags)) small enough to enumerate every path
CASES = [
    *((constraints, shape) for constraints in [None, "random"] for shape in SHAPES),
    ("bio", (4, 4, 0)),
    ("iob1", (3, 3, 0)),
    ("bioes", (3, 3, 0)),
]


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_log_partition_matches_brute_force(shape, constrained):
    crf = make_crf(shape[2], constrained)
    emissions, _, mask, lengths = make_batch(*shape)
    log_z = crf.log_partition(emissions, mask)
    assert log_z.dtype == torch.float64
    expected = [
        logsumexp(list(all_scores(crf, emissions[b], n).values())) for b, n in enumerate(lengths)
    ]
    torch.testing.assert_close(
        log_z, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_score_matches_reference(shape, constrained):
    crf = make_crf(shape[2], constrained)
    emissions, tags, mask, lengths = make_batch(*shape)
    expected = [
        reference_score(crf, emissions[b, :n], tags[b, :n].tolist()) for b, n in enumerate(lengths)
    ]
    torch.testing.assert_close(
        crf.score(emissions, tags, mask),
        torch.tensor(expected, dtype=torch.float64),
        rtol=1e-10,
        atol=1e-10,
    )


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_decode_matches_brute_force(shape, constrained):
    crf = make_crf(shape[2], constrained)
    emissions, _, mask, lengths = make_batch(*shape)
    paths, scores = crf.viterbi(emissions, mask)
    assert paths.dtype == torch.long and paths.shape == mask.shape
    assert torch.equal(crf.decode(emissions, mask), paths)
    for b, n in enumerate(lengths):
        candidates = all_scores(crf, emissions[b], n)
        best = max(candidates, key=candidates.get)
        assert paths[b].tolist() == list(best) + [0] * (shape[1] - n)
        assert scores[b].item() == pytest.approx(candidates[best], rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("constrained", [False, True])
def test_gradcheck_nll(constrained):
    crf = make_crf(3, constrained=constrained)
    emissions, tags, mask, _ = make_batch(2, 3, 3)
    emissions.requires_grad_(True)
    transitions = crf.transitions.detach().clone().requires_grad_(True)
    end = crf.end_transitions.detach().clone().requires_grad_(True)

    def nll(emissions, transitions, end):
        params = {"transitions": transitions, "end_transitions": end}
        return torch.func.functional_call(crf, params, (emissions, tags, mask))

    assert torch.autograd.gradcheck(nll, (emissions, transitions, end))


@pytest.mark.parametrize("garbage", [1e6, math.inf, math.nan])
def test_padding_is_ignored(garbage):
    crf = make_crf(4, constrained=True)
    emissions, tags, mask, _ = make_batch(4, 5, 4)
    padded = ~mask
    noisy = torch.where(padded.unsqueeze(2), garbage * (1 + torch.rand_like(emissions)), emissions)
    noisy_tags = tags.masked_fill(padded, -100)  # e.g. an ignore index, out of range
    emissions.requires_grad_(True)
    noisy.requires_grad_(True)
    clean_nll, noisy_nll = crf(emissions, tags, mask), crf(noisy, noisy_tags, mask)
    torch.testing.assert_close(noisy_nll, clean_nll)
    torch.testing.assert_close(crf.log_partition(noisy, mask), crf.log_partition(emissions, mask))
    for method in ["viterbi", "nbest"]:
        args = (3,) if method == "nbest" else ()
        got = getattr(crf, method)(noisy, mask, *args)
        expected = getattr(crf, method)(emissions, mask, *args)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b)
    assert torch.equal(crf.decode(noisy, mask), crf.decode(emissions, mask))
    torch.testing.assert_close(crf.marginals(noisy, mask), crf.marginals(emissions, mask))
    clean_nll.sum().backward()
    noisy_nll.sum().backward()
    torch.testing.assert_close(noisy.grad, emissions.grad)
    assert not emissions.grad[padded].any()


@pytest.mark.parametrize("constrained", [False, True])
def test_batched_equals_one_at_a_time(constrained):
    crf = make_crf(4, constrained)
    emissions, tags, mask, lengths = make_batch(6, 7, 4)
    nll = crf(emissions, tags, mask)
    paths, scores = crf.viterbi(emissions, mask)
    probs = crf.marginals(emissions, mask)
    best, best_scores = crf.nbest(emissions, mask, 5)
    for b, n in enumerate(lengths):
        one = (emissions[b : b + 1, :n], tags[b : b + 1, :n], mask[b : b + 1, :n])
        torch.testing.assert_close(crf(*one), nll[b : b + 1])
        one_path, one_score = crf.viterbi(one[0], one[2])
        assert one_path[0].tolist() == paths[b, :n].tolist()
        torch.testing.assert_close(one_score, scores[b : b + 1])
        torch.testing.assert_close(crf.marginals(one[0], one[2]), probs[b : b + 1, :n])
        one_best, one_best_scores = crf.nbest(one[0], one[2], 5)
        assert one_best[0].tolist() == best[b, :, :n].tolist()
        torch.testing.assert_close(one_best_scores, best_scores[b : b + 1])


@pytest.mark.parametrize(
    ("scheme", "src", "dst", "expected"),
    [
        # src None: may dst start a sentence; dst None: may src end it
        ("bio", "O", "I-PER", False),
        ("bio", "B-PER", "I-PER", True),
        ("bio", "I-PER", "I-PER", True),
        ("bio", "B-LOC", "I-PER", False),
        ("bio", "O", "B-PER", True),
        ("bio", None, "I-PER", False),
        ("bio", None, "B-PER", True),
        ("bio", "B-PER", None, True),
        ("iob1", "O", "I-PER", True),
        ("iob1", "B-LOC", "I-PER", True),
        ("iob1", "I-PER", "B-PER", True),
        ("iob1", "I-LOC", "B-PER", False),
        ("iob1", "O", "B-PER", False),
        ("iob1", None, "B-PER", False),
        ("iob1", None, "I-PER", True),
        ("bioes", "B-PER", "I-PER", True),
        ("bioes", "B-PER", "E-PER", True),
        ("bioes", "B-LOC", "I-PER", False),
        ("bioes", "B-PER", "O", False),
        ("bioes", "I-PER", "S-PER", False),
        ("bioes", "E-PER", "B-LOC", True),
        ("bioes", "S-PER", "I-PER", False),
        ("bioes", "O", "E-PER", False),
        ("bioes", None, "S-LOC", True),
        ("bioes", None, "I-LOC", False),
        ("bioes", "B-PER", None, False),
        ("bioes", "I-PER", None, False),
        ("bioes", "E-PER", None, True),
        ("bioes", "O", None, True),
    ],
)
def test_allowed_transitions_rules(scheme, src, dst, expected):
    tags = TAGS[scheme]
    start, trans, end = allowed_transitions(tags, scheme)
    assert start.dtype == trans.dtype == end.dtype == torch.bool
    assert trans.shape == (len(tags), len(tags)) and start.shape == end.shape == (len(tags),)
    if src is None:
        assert start[tags.index(dst)].item() is expected
    elif dst is None:
        assert end[tags.index(src)].item() is expected
    else:
        assert trans[tags.index(src), tags.index(dst)].item() is expected


def test_types_with_hyphens():
    tags = ["O", "B-creative-work", "I-creative-work", "I-creative"]
    _, trans, _ = allowed_transitions(tags, "bio")
    assert trans[1, 2] and not trans[1, 3]


@pytest.mark.parametrize(
    ("tags", "scheme"),
    [
        (BIO_TAGS, "bilou"),
        (["O", "E-PER"], "bio"),
        (["O", "S-PER"], "iob1"),
        (["O", "L-PER"], "bioes"),
        (["O", "PER"], "bio"),
        (["O", "B-"], "bio"),
        (["O", "BI-PER"], "bio"),
        (["O", "<pad>"], "bio"),
    ],
)
def test_allowed_transitions_rejects(tags, scheme):
    with pytest.raises(ValueError, match="expected"):
        allowed_transitions(tags, scheme)


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes"])
def test_constrained_decode(scheme):
    tags = TAGS[scheme]
    start, trans, end = allowed_transitions(tags, scheme)
    crf = make_crf(len(tags))
    crf.set_constraints(start, trans, end)
    emissions, _, mask, lengths = make_batch(3, 4, len(tags))
    emissions *= 5  # strong emissions that often prefer forbidden moves
    paths, scores = crf.viterbi(emissions, mask)
    for b, n in enumerate(lengths):
        path = paths[b, :n].tolist()
        assert start[path[0]] and end[path[-1]]
        assert all(trans[i, j] for i, j in itertools.pairwise(path)), [tags[i] for i in path]
        allowed = {
            p: s
            for p, s in all_scores(crf, emissions[b], n).items()
            if start[p[0]] and end[p[-1]] and all(trans[i, j] for i, j in itertools.pairwise(p))
        }
        assert path == list(max(allowed, key=allowed.get))
        assert scores[b].item() == pytest.approx(max(allowed.values()), rel=1e-10)


def test_constraints_are_saved_in_state_dict():
    crf = CRF(len(BIOES_TAGS))
    crf.set_constraints(*allowed_transitions(BIOES_TAGS, "bioes"))
    state = crf.state_dict()
    assert {"start_mask", "transition_mask", "end_mask"} <= set(state)
    loaded = CRF(len(BIOES_TAGS))
    loaded.load_state_dict(state)
    assert torch.equal(loaded.transition_mask, crf.transition_mask)
    assert torch.equal(loaded.end_mask, crf.end_mask)


class Tagger(torch.nn.Module):
    """A minimal model holding the CRF as a submodule, as the real tagger does."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, num_tags)
        self.crf = CRF(num_tags)

    def forward(self, x: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.crf(self.proj(x), tags, mask).mean()

    @torch.jit.export
    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.crf.decode(self.proj(x), mask)


# TorchScript is deprecated in recent torch but is still the export path seqtag supports.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_scripted_matches_eager():
    tags = TAGS["bioes"]
    crf = CRF(len(tags))
    crf.set_constraints(*allowed_transitions(tags, "bioes"))
    scripted = torch.jit.script(crf)
    emissions, gold, mask, _ = make_batch(4, 6, len(tags), dtype=torch.float32)
    torch.testing.assert_close(scripted(emissions, gold, mask), crf(emissions, gold, mask))
    torch.testing.assert_close(
        scripted.log_partition(emissions, mask), crf.log_partition(emissions, mask)
    )
    torch.testing.assert_close(
        scripted.score(emissions, gold, mask), crf.score(emissions, gold, mask)
    )
    assert torch.equal(scripted.decode(emissions, mask), crf.decode(emissions, mask))
    for got, expected in zip(
        scripted.viterbi(emissions, mask), crf.viterbi(emissions, mask), strict=True
    ):
        torch.testing.assert_close(got, expected)
    for got, expected in zip(
        scripted.nbest(emissions, mask, 4), crf.nbest(emissions, mask, 4), strict=True
    ):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(scripted.marginals(emissions, mask), crf.marginals(emissions, mask))

    model = Tagger(len(tags))
    model.crf.set_constraints(*allowed_transitions(tags, "bioes"))
    scripted_model = torch.jit.script(model)
    x = torch.randn(4, 6, 8)
    torch.testing.assert_close(scripted_model(x, gold, mask), model(x, gold, mask))
    assert torch.equal(scripted_model.predict(x, mask), model.predict(x, mask))


def test_probabilities_sum_to_one():
    crf = make_crf(3, constrained=True)
    emissions = torch.randn(1, 4, 3, dtype=torch.float64)
    # Every one of the 3**4 paths as one batch over the same sentence.
    tags = torch.tensor(list(itertools.product(range(3), repeat=4)))
    mask = torch.ones_like(tags, dtype=torch.bool)
    nll = crf(emissions.expand(len(tags), -1, -1), tags, mask)
    assert (nll >= 0).all()
    assert torch.exp(-nll).sum().item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_computes_in_float32(dtype):
    crf = CRF(3)
    emissions, tags, mask, _ = make_batch(2, 3, 3, dtype=dtype)
    nll = crf(emissions, tags, mask)
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, crf(emissions.float(), tags, mask))
    assert crf.viterbi(emissions, mask)[1].dtype == torch.float32
    assert crf.nbest(emissions, mask, 2)[1].dtype == torch.float32
    assert crf.marginals(emissions, mask).dtype == torch.float32
    torch.testing.assert_close(crf.marginals(emissions, mask), crf.marginals(emissions.float(), mask))


GOOD = {
    "emissions": torch.randn(2, 3, 4),
    "tags": torch.zeros(2, 3, dtype=torch.long),
    "mask": torch.ones(2, 3, dtype=torch.bool),
}
BAD = [
    {"emissions": torch.randn(3, 4)},
    {"emissions": torch.randn(2, 3, 4, 1)},
    {"emissions": torch.randn(2, 3, 5)},
    {"emissions": torch.zeros(2, 3, 4, dtype=torch.long)},
    {"emissions": torch.randn(2, 0, 4), "mask": torch.ones(2, 0, dtype=torch.bool)},
    {"mask": torch.ones(3, 3, dtype=torch.bool)},
    {"mask": torch.ones(2, 3, dtype=torch.uint8)},
    {"tags": torch.zeros(2, 4, dtype=torch.long)},
    {"tags": torch.zeros(2, 3, dtype=torch.int32)},
    {"mask": torch.tensor([[True, True, True], [False, False, False]])},  # an empty sentence
    {"mask": torch.tensor([[True, True, True], [True, False, True]])},  # not a prefix mask
]
WITHOUT_TAGS = {"log_partition", "decode", "viterbi", "marginals", "nbest"}


@pytest.mark.parametrize(
    ("method", "bad"),
    [
        (method, bad)
        for method in ["forward", "score", "log_partition", "decode", "viterbi", "marginals", "nbest"]
        for bad in BAD
        if not (method in WITHOUT_TAGS and "tags" in bad)
    ],
)
def test_validation(method, bad):
    """ValueError, not assert: ``python -O`` would strip an assert."""
    args = {**GOOD, **bad}
    if method in WITHOUT_TAGS:
        del args["tags"]
    if method == "nbest":
        args["k"] = 2
    with pytest.raises(ValueError, match="expected"):
        getattr(CRF(4), method)(**args)


@pytest.mark.parametrize("k", [0, -1])
def test_nbest_needs_k_of_at_least_one(k):
    with pytest.raises(ValueError, match="expected k >= 1"):
        CRF(4).nbest(GOOD["emissions"], GOOD["mask"], k)


def test_validation_of_constructor_and_constraints():
    with pytest.raises(ValueError, match="expected"):
        CRF(0)
    crf = CRF(3)
    yes = torch.ones(3, dtype=torch.bool)
    with pytest.raises(ValueError, match="expected"):
        crf.set_constraints(yes, torch.ones(3, 2, dtype=torch.bool), yes)
    with pytest.raises(ValueError, match="expected"):
        crf.set_constraints(torch.ones(3), torch.ones(3, 3), torch.ones(3))


# -- marginals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("constraints", "shape"), CASES)
def test_marginals_match_brute_force(constraints, shape):
    crf, emissions, _, mask, lengths = make_case(constraints, shape)
    probs = crf.marginals(emissions, mask)
    assert probs.dtype == torch.float64 and probs.shape == emissions.shape
    for b, n in enumerate(lengths):
        expected = brute_force_marginals(crf, emissions[b], n)
        torch.testing.assert_close(probs[b, :n], expected, rtol=1e-10, atol=1e-12)
        # impossible tags are exactly 0, not exp(NEG_SCORE)-small
        assert torch.equal(probs[b, :n] == 0, expected == 0)
        assert not probs[b, n:].any()


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes"])
def test_marginals_are_distributions_over_allowed_tags(scheme):
    """Longer sentences than enumeration allows: rows sum to 1, and a tag the scheme forbids
    at a position (a first tag that may not start, a last that may not end, or one no
    allowed move reaches from any tag with probability) has probability exactly 0."""
    tags = TAGS[scheme]
    start, trans, end = allowed_transitions(tags, scheme)
    crf, emissions, _, mask, lengths = make_case(scheme, (6, 12, 0))
    emissions *= 5  # strong emissions that often prefer forbidden tags
    probs = crf.marginals(emissions, mask)
    torch.testing.assert_close(probs.sum(2), mask.double(), rtol=0, atol=1e-12)
    for b, n in enumerate(lengths):
        assert not probs[b, 0, ~start].any()
        assert not probs[b, n - 1, ~end].any()
        for t in range(1, n):
            # a tag is reachable at t only from a tag with probability > 0 at t - 1
            reachable = (trans & (probs[b, t - 1] > 0).unsqueeze(1)).any(0)
            assert not probs[b, t, ~reachable].any()


def test_marginals_of_a_sentence_without_allowed_paths_are_zero():
    crf = make_crf(3)
    crf.set_constraints(
        torch.tensor([True, False, False]),
        torch.zeros(3, 3, dtype=torch.bool),  # no move allowed: only 1-token sentences
        torch.ones(3, dtype=torch.bool),
    )
    emissions, _, mask, _ = make_batch(2, 3, 3)
    mask[1, 1:] = False
    probs = crf.marginals(emissions, mask)
    assert not probs[0].any() and not probs.isnan().any()
    assert probs[1, 0].tolist() == [1.0, 0.0, 0.0]


def test_marginals_and_nbest_carry_no_gradient():
    """-inf scores of forbidden moves would give NaN gradients; they are inference outputs."""
    crf, emissions, _, mask, _ = make_case("bio", (2, 3, 0))
    emissions.requires_grad_(True)
    assert not crf.marginals(emissions, mask).requires_grad
    assert not any(t.requires_grad for t in crf.nbest(emissions, mask, 2))


# -- n-best ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 100])
@pytest.mark.parametrize(("constraints", "shape"), CASES)
def test_nbest_matches_brute_force(constraints, shape, k):
    crf, emissions, _, mask, lengths = make_case(constraints, shape)
    paths, scores = crf.nbest(emissions, mask, k)
    assert paths.dtype == torch.long and paths.shape == (shape[0], k, shape[1])
    assert scores.dtype == torch.float64 and scores.shape == (shape[0], k)
    for b, n in enumerate(lengths):
        expected = brute_force_nbest(crf, emissions[b], n, k)
        for rank, (path, score) in enumerate(expected):
            assert paths[b, rank].tolist() == list(path) + [0] * (shape[1] - n)
            assert scores[b, rank].item() == pytest.approx(score, rel=1e-10, abs=1e-10)
        # fewer than k allowed paths: the rest is -inf with zero paths
        assert (scores[b, len(expected) :] == -math.inf).all()
        assert not paths[b, len(expected) :].any()


def tied_case(constraints):
    """Integer emissions in {0, 1} and zero parameters: float64 sums are exact, so many paths
    tie exactly and only the tie-breaking rule orders them."""
    crf, emissions, _, mask, lengths = make_case(constraints, (4, 4, 3))
    with torch.no_grad():
        for param in crf.parameters():
            param.zero_()
    return crf, torch.randint(0, 2, emissions.shape).double(), mask, lengths


@pytest.mark.parametrize("constraints", [None, "random", "bio"])
def test_nbest_ties_are_deterministic(constraints):
    crf, emissions, mask, lengths = tied_case(constraints)
    k = 20
    paths, scores = crf.nbest(emissions, mask, k)
    tied = 0
    for b, n in enumerate(lengths):
        expected = brute_force_nbest(crf, emissions[b], n, k)
        tied += len(expected) - len({score for _, score in expected})
        assert [paths[b, r, :n].tolist() for r in range(len(expected))] == [
            list(p) for p, _ in expected
        ]
        assert scores[b, : len(expected)].tolist() == [s for _, s in expected]
    assert tied > 0, "expected the case to hold ties"
    # the same order again, and the Viterbi path is the first of the tied best paths
    again = crf.nbest(emissions, mask, k)
    assert torch.equal(again[0], paths) and torch.equal(again[1], scores)
    allowed = scores[:, 0] > -math.inf
    assert torch.equal(crf.decode(emissions, mask)[allowed], paths[allowed, 0])


def test_all_zero_scores_rank_by_reversed_tags():
    """Every path ties: the order is lexicographic on the tags read backwards."""
    crf = CRF(2).double()
    with torch.no_grad():
        for param in crf.parameters():
            param.zero_()
    emissions = torch.zeros(1, 3, 2, dtype=torch.float64)
    paths, scores = crf.nbest(emissions, torch.ones(1, 3, dtype=torch.bool), 8)
    expected = sorted(itertools.product(range(2), repeat=3), key=lambda p: p[::-1])
    assert [tuple(p) for p in paths[0].tolist()] == expected
    assert scores.tolist() == [[0.0] * 8]
    assert crf.decode(emissions, torch.ones(1, 3, dtype=torch.bool)).tolist() == [[0, 0, 0]]


@pytest.mark.parametrize("constraints", [None, "random", "bio", "bioes"])
def test_nbest_first_path_is_viterbi(constraints):
    crf, emissions, _, mask, _ = make_case(constraints, (8, 12, 5))
    paths, scores = crf.nbest(emissions, mask, 4)
    viterbi_paths, viterbi_scores = crf.viterbi(emissions, mask)
    allowed = scores[:, 0] > -math.inf  # random constraints may leave a sentence no path
    assert allowed.any()
    assert torch.equal(paths[allowed, 0], viterbi_paths[allowed])
    assert torch.equal(scores[allowed, 0], viterbi_scores[allowed])
    assert (scores[:, :-1] >= scores[:, 1:]).all()


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes"])
def test_nbest_paths_are_allowed_and_scored(scheme):
    crf, emissions, _, mask, _ = make_case(scheme, (6, 10, 0))
    mask[:, :4] = True  # 4 tokens or more: many more than k allowed paths
    lengths = mask.sum(1).tolist()
    emissions *= 5  # strong emissions that often prefer forbidden moves
    k = 6
    paths, scores = crf.nbest(emissions, mask, k)
    assert (scores > -math.inf).all()
    for b, n in enumerate(lengths):
        listed = [tuple(paths[b, r, :n].tolist()) for r in range(k)]
        assert all(is_allowed(crf, path) for path in listed)
        assert len(set(listed)) == k, "expected k distinct paths"
    # each score is the path's score by the model's definition
    flat = paths.reshape(-1, paths.size(2))
    repeated_mask = mask.repeat_interleave(k, 0)
    repeated = emissions.repeat_interleave(k, 0)
    torch.testing.assert_close(crf.score(repeated, flat, repeated_mask).view(-1, k), scores)


@pytest.mark.parametrize("constraints", [None, "random", "bio"])
def test_nbest_log_probs_of_all_paths_sum_to_one(constraints):
    crf, emissions, _, mask, lengths = make_case(constraints, (4, 3, 3))
    k = crf.num_tags**3  # every path of the longest sentence
    paths, scores = crf.nbest(emissions, mask, k)
    log_probs = scores - crf.log_partition(emissions, mask).unsqueeze(1)
    assert (log_probs <= 1e-12).all()
    for b in range(len(lengths)):
        if (scores[b] > -math.inf).any():
            assert log_probs[b].exp().sum().item() == pytest.approx(1.0, abs=1e-10)


# -- scripted and exported ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("constraints", [None, "random", "bioes"])
def test_scripted_marginals_and_nbest_match_eager(constraints):
    crf, emissions, _, mask, _ = make_case(constraints, (5, 7, 4))
    scripted = torch.jit.script(crf)
    torch.testing.assert_close(scripted.marginals(emissions, mask), crf.marginals(emissions, mask))
    for k in [1, 3]:
        for got, expected in zip(
            scripted.nbest(emissions, mask, k), crf.nbest(emissions, mask, k), strict=True
        ):
            torch.testing.assert_close(got, expected)
    crf, emissions, mask, _ = tied_case("bio")
    scripted = torch.jit.script(crf)
    for got, expected in zip(
        scripted.nbest(emissions, mask, 10), crf.nbest(emissions, mask, 10), strict=True
    ):
        assert torch.equal(got, expected)
    with pytest.raises(torch.jit.Error, match="expected k >= 1"):
        scripted.nbest(emissions, mask, 0)


class Decoder(torch.nn.Module):
    """Emissions in, best tags out: the shape of a serving graph ending in the CRF."""

    def __init__(self, crf: CRF) -> None:
        super().__init__()
        self.crf = crf

    def forward(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.crf.decode(emissions, mask)


@pytest.mark.parametrize("constraints", [None, "bioes"])
def test_decode_exports(constraints):
    """``torch.export`` traces the one Viterbi (the value checks are skipped while exporting);
    the program gives eager's paths for other inputs of the same shape, any mask included."""
    crf, emissions, _, mask, _ = make_case(constraints, (4, 6, 5))
    program = torch.export.export(Decoder(crf).eval(), (emissions, mask))
    exported = program.module()
    for _ in range(3):
        emissions, _, mask, _ = make_batch(*emissions.shape, dtype=emissions.dtype)
        assert torch.equal(exported(emissions, mask), crf.decode(emissions, mask))


# -- the eager training path: scaled forward algorithm, gradient by forward-backward --------


def fast_and_log_space(crf, emissions, mask):
    """log Z and its gradients (emissions, start, transitions, end) by _LogPartition and by
    the log-space recursion (the scripted path), with _LogPartition's precision flag."""
    results = []
    for fast in [True, False]:
        e = emissions.detach().clone().requires_grad_(True)
        crf.zero_grad(set_to_none=True)
        prepared = crf._prepare(e, mask)
        params = crf._masked_params(prepared.dtype)
        if fast:
            log_z, ok = _LogPartition.apply(prepared, mask, *params)
        else:
            log_z = crf._log_partition_log_space(prepared, mask, *params)
        weights = torch.linspace(0.5, 1.5, len(log_z), dtype=log_z.dtype)  # not all equal
        (log_z * weights).sum().backward()
        params = [e, crf.start_transitions, crf.transitions, crf.end_transitions]
        # a parameter that log Z does not use (transitions, seq_len 1) has gradient 0
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        results.append((log_z.detach(), *grads))
    return bool(ok), results[0], results[1]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("constraints", [None, "bio", "iob1", "bioes", "random"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (6, 1, 4), (7, 9, 5), (32, 40, 17)])
def test_fast_log_partition_matches_log_space(shape, constraints, dtype):
    """Eager training (the fast path) = scripted training (log space): log Z and gradients."""
    crf, emissions, _, mask, _ = make_case(constraints, shape)
    crf.to(dtype)
    emissions = (3 * emissions).to(dtype)
    ok, fast, reference = fast_and_log_space(crf, emissions, mask)
    # random constraints may leave a sentence no allowed sequence: the fast path declines
    assert ok or constraints == "random"
    tolerance = {"rtol": 1e-5, "atol": 2e-4}  # float32 sums over up to 32 * 40 tokens
    if dtype == torch.float64:
        tolerance = {"rtol": 1e-10, "atol": 1e-10}
    if ok:
        for got, expected in zip(fast, reference, strict=True):
            torch.testing.assert_close(got, expected, **tolerance)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_path_with_strong_emissions_under_constraints(dtype):
    """Emissions of std 10 leave some tags (I-X after O) with forward masses below float32's
    range, which the check accepts when no later token could make them count: the fast path
    still runs, and agrees with log space."""
    tags = ["O"] + [f"{p}-{kind}" for kind in "ABCDEF" for p in "BI"]
    crf = CRF(len(tags)).to(dtype)
    crf.set_constraints(*allowed_transitions(tags, "bio"))
    emissions, _, mask, _ = make_batch(32, 40, len(tags), dtype=dtype)
    ok, fast, reference = fast_and_log_space(crf, 10 * emissions, mask)
    assert ok
    tolerance = {"rtol": 1e-5, "atol": 5e-4} if dtype == torch.float32 else {}
    for got, expected in zip(fast, reference, strict=True):
        torch.testing.assert_close(got, expected, **tolerance)


@pytest.mark.parametrize("constraints", [None, "bio", "bioes"])
def test_gradcheck_fast_log_partition(constraints):
    crf, emissions, _, mask, _ = make_case(constraints, (3, 4, 3))
    start, trans, end = (p.detach().requires_grad_(True) for p in crf._masked_params(torch.float64))
    emissions.requires_grad_(True)

    def log_z(emissions, start, trans, end):
        value, ok = _LogPartition.apply(crf._prepare(emissions, mask), mask, start, trans, end)
        assert bool(ok)
        return value

    assert torch.autograd.gradcheck(log_z, (emissions, start, trans, end))


def test_fast_path_declines_what_it_cannot_compute():
    """Extreme emissions underflow exp() and a sentence with no allowed sequence has Z ~ 0 in
    probability space: the flag says so and CRF.forward gives the log-space result."""
    crf, emissions, tags, mask, lengths = make_case("bio", (4, 4, 0))
    extreme = 500 * emissions
    nothing_allowed = make_crf(3)
    nothing_allowed.set_constraints(
        torch.tensor([True, False, False]),
        torch.zeros(3, 3, dtype=torch.bool),
        torch.ones(3, dtype=torch.bool),
    )
    cases = [(crf, extreme, tags, mask, lengths), (nothing_allowed, *make_batch(4, 3, 3))]
    for model, e, t, m, n in cases:
        assert not fast_and_log_space(model, e, m)[0]
        nll = model(e, t, m)
        assert torch.isfinite(nll).all()
        expected = [
            logsumexp(list(all_scores(model, e[b], length).values()))
            - reference_score(model, e[b, :length], t[b, :length].tolist())
            for b, length in enumerate(n)
        ]
        expected = torch.tensor(expected, dtype=torch.float64)
        torch.testing.assert_close(nll, expected, rtol=1e-10, atol=1e-8)


def test_fast_path_ignores_autocast():
    """Under bf16 autocast the CRF still computes in float32 (the matmuls are not cast)."""
    crf = CRF(len(BIO_TAGS))
    crf.set_constraints(*allowed_transitions(BIO_TAGS, "bio"))
    emissions, tags, mask, _ = make_batch(8, 12, len(BIO_TAGS), dtype=torch.float32)
    emissions = (3 * emissions).requires_grad_(True)
    expected = crf(emissions, tags, mask)
    (expected_grad,) = torch.autograd.grad(expected.sum(), emissions)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll = crf(emissions, tags, mask)
        (grad,) = torch.autograd.grad(nll.sum(), emissions)
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_scripted_training_matches_eager():
    """The scripted CRF trains by the log-space recursion, eager by the fast path: same loss,
    same gradients."""
    tags = TAGS["bio"]
    crf = CRF(len(tags))
    crf.set_constraints(*allowed_transitions(tags, "bio"))
    scripted = torch.jit.script(crf)
    emissions, gold, mask, _ = make_batch(6, 9, len(tags), dtype=torch.float32)
    results = []
    for model in [crf, scripted]:
        e = (3 * emissions).requires_grad_(True)
        model.zero_grad(set_to_none=True)
        nll = model(e, gold, mask)
        nll.sum().backward()
        results.append((nll, e.grad, model.transitions.grad, model.end_transitions.grad))
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_float32_marginals_of_a_long_sentence_are_float64_accurate():
    """float32 emissions of a 500-token sentence: the marginals equal the float64 ones to 1e-6
    and every row sums to 1 (in float32 forward-backward they drifted by ~1e-4)."""
    torch.manual_seed(0)
    crf = CRF(13)
    crf.set_constraints(*allowed_transitions(["O"] + [f"{p}-T{i}" for i in range(6) for p in "BI"], "bio"))
    emissions = torch.randn(2, 500, 13) * 5
    mask = torch.ones(2, 500, dtype=torch.bool)
    mask[1, 300:] = False
    probs = crf.marginals(emissions, mask)
    assert probs.dtype == torch.float32
    reference = crf.double().marginals(emissions.double(), mask)
    assert float((probs.double() - reference).abs().max()) < 1e-6
    assert float((probs.sum(2) - mask.float()).abs().max()) < 1e-5
