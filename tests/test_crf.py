"""Oracles and invariants for seqtag.crf: brute-force enumeration, batched vs one at a time,
padded vs unpadded, constrained vs hand-written rules, scripted (and exported) vs eager."""

import itertools
import math

import pytest
import torch

from seqtag.crf import CRF, NEG_SCORE, allowed_transitions

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


def test_gradcheck_nll():
    crf = make_crf(3, constrained=True)
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
