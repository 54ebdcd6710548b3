"""ONNX export: the graph run by ONNX Runtime agrees with the eager tagger.

Oracles: eager ``Tagger.predict`` for tags; float64 forward-backward (itself checked against
brute-force enumeration) over the eager emissions for confidences and marginals; brute-force
enumeration for n-best; seqtag's own encoder for the runner's ids; and a process in which
``import torch`` fails for the runner.
"""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig, read_conllu
from seqtag.cli.app import main
from seqtag.data.dataset import collate, encode_tokens
from seqtag.data.encoding import plan_batches
from seqtag.model.crf import NEG_SCORE
from seqtag.serving.files import FORMAT_VERSIONS, METADATA_NAME
from seqtag.serving.onnx_export import to_onnx
from seqtag.serving.onnx_runner import OnnxTagger, kbest_viterbi

from ..helpers import odd_sentences, random_sentences, small_tagger

SEQTAG_DIR = Path(seqtag.__file__).resolve().parent


def _crf(tagger):
    """The tagger's CRF, or None for a softmax head."""
    return getattr(tagger.head, "crf", None)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory, crf_tagger, softmax_tagger):
    out = tmp_path_factory.mktemp("onnx")
    crf_tagger.save(out / "crf-model")  # one export from a model directory, one from a Tagger
    return {
        "crf_tagger": to_onnx(out / "crf-model", out / "exported" / "crf.onnx"),
        "softmax_tagger": to_onnx(softmax_tagger, out / "softmax.onnx"),
    }


@pytest.fixture(params=["crf_tagger", "softmax_tagger"])
def pair(request, onnx_files):
    """(eager tagger, OnnxTagger of its export), for each of the two architectures."""
    return request.getfixturevalue(request.param), OnnxTagger(onnx_files[request.param], intra_op_num_threads=1)


def _emissions(tagger, sentences) -> list[torch.Tensor]:
    """Eager emissions ``(n, num_tags)`` float64 of each non-empty sentence, one at a time."""
    out = []
    with torch.inference_mode():
        for s in sentences:
            batch = collate([encode_tokens(s, tagger.vocabs, tagger.config)])
            out.append(tagger.eval()(batch.words, batch.cases, batch.chars, batch.lengths)[0].double())
    return out


def _masked_params(tagger, forbidden: float = NEG_SCORE):
    """``(start, transitions, end)`` float64 with forbidden moves at ``forbidden``; zeros for softmax."""
    crf = _crf(tagger)
    k = tagger.num_tags
    if crf is None:
        return torch.zeros(k, dtype=torch.float64), torch.zeros(k, k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    return (
        crf.start_transitions.detach().double().masked_fill(~crf.start_mask, forbidden),
        crf.transitions.detach().double().masked_fill(~crf.transition_mask, forbidden),
        crf.end_transitions.detach().double().masked_fill(~crf.end_mask, forbidden),
    )


def _reference_marginals(tagger, emissions: torch.Tensor) -> torch.Tensor:
    """``(n, K)`` float64 p(y_t = k | x) by forward-backward over one sentence's emissions (softmax
    for a softmax head)."""
    if _crf(tagger) is None:
        return emissions.softmax(dim=1)
    start, trans, end = _masked_params(tagger)
    n = emissions.size(0)
    alpha = [start + emissions[0]]
    for t in range(1, n):
        alpha.append(torch.logsumexp(alpha[-1].unsqueeze(1) + trans, dim=0) + emissions[t])
    beta = [end]
    for t in range(n - 2, -1, -1):
        beta.append(torch.logsumexp(trans + (emissions[t + 1] + beta[-1]).unsqueeze(0), dim=1))
    beta.reverse()
    log_z = torch.logsumexp(alpha[-1] + end, dim=0)
    return (torch.stack(alpha) + torch.stack(beta) - log_z).exp()


def _all_sequences(tagger, emissions: torch.Tensor):
    """Every tag sequence of one sentence with its float64 score and whether it is allowed."""
    start, trans, end = _masked_params(tagger)
    allowed_start, allowed_trans, allowed_end = _masked_params(tagger, forbidden=float("-inf"))
    n, k = emissions.shape
    for path in itertools.product(range(k), repeat=n):
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        score = score + sum(trans[a, b] for a, b in zip(path, path[1:]))
        ok = bool(torch.isfinite(allowed_start[path[0]] + allowed_end[path[-1]]
                                 + sum((allowed_trans[a, b] for a, b in zip(path, path[1:])), torch.tensor(0.0))))
        yield list(path), float(score), ok


def _long_sentences(tagger) -> list[list[str]]:
    """One 10,000-token sentence and a 600-token one of known and odd words."""
    words = odd_sentences(tagger, seed=11)
    tokens = [t for s in words for t in s]
    return [(tokens * (10_000 // len(tokens) + 1))[:10_000], tokens[:600]]


# -- tags ------------------------------------------------------------------------------------


def test_onnx_tags_equal_eager(pair):
    tagger, runner = pair
    sentences = [*odd_sentences(tagger), *_long_sentences(tagger)]
    expected = tagger.predict(sentences)
    assert runner.predict(sentences) == expected
    assert any(len(set(tags)) > 1 for tags in expected), "degenerate predictions make a weak oracle"


def test_without_marginals_the_graph_gives_the_same_tags_and_zeros(pair):
    """``with_marginals=False`` skips the marginals, for every head: the tags and emissions are
    those of the full graph, the outputs that need the marginals are 0. It is a required input
    (no default a binding could take for a constant)."""
    tagger, runner = pair
    words, cases, chars, lengths = runner.encode(odd_sentences(tagger, seed=5))
    feed = {"words": words, "cases": cases, "chars": chars, "lengths": lengths}
    with pytest.raises(ValueError, match=r"Required inputs \(\['with_marginals'\]\) are missing"):
        runner.session.run(None, feed)
    full = runner.session.run(None, {**feed, "with_marginals": np.array(True)})
    fast = runner.session.run(None, {**feed, "with_marginals": np.array(False)})
    names = [o.name for o in runner.session.get_outputs()]
    for name, a, c in zip(names, full, fast):
        if name in ("tags", "emissions"):
            np.testing.assert_array_equal(c, a)
        else:
            assert c.shape == a.shape and not c.any() and a.any(), name
    assert any(len(set(row)) > 1 for row in fast[0].tolist()), "degenerate predictions make a weak oracle"


class _RecordingSession:
    """An InferenceSession stand-in that records what each run was fed."""

    def __init__(self, session):
        self.session, self.feeds = session, []

    def run(self, outputs, feed):
        self.feeds.append(dict(feed))
        return self.session.run(outputs, feed)


def test_the_runner_switches_the_marginals_off_only_for_tags(crf_tagger, onnx_files):
    runner = OnnxTagger(onnx_files["crf_tagger"])
    runner.session = recorder = _RecordingSession(runner.session)
    sentences = odd_sentences(crf_tagger, seed=7)
    runner.predict(sentences, batch_size=4)
    # one run per batch: the checks of the file ran once, when it was loaded
    assert len(recorder.feeds) == len(plan_batches([len(s) for s in sentences], 4))
    assert all(not bool(f["with_marginals"]) for f in recorder.feeds)
    recorder.feeds.clear()
    runner.predict_with_confidence(sentences)
    runner.nbest(sentences, 2)
    assert recorder.feeds and all(bool(f["with_marginals"]) for f in recorder.feeds)


FIXTURE_0_2_0 = Path(__file__).resolve().parents[1] / "fixtures" / "v0.2.0" / "tagger.onnx"


def test_a_file_of_format_version_1_gets_the_switch_as_before(tmp_path):
    """Files of seqtag 0.2.0 (format version 1) take ``with_marginals`` as an input with a
    default: the runner feeds it as it did; a graph of that version without the input is fed
    none (here the input is removed, its value stays a constant true)."""
    model = onnx.load(str(FIXTURE_0_2_0))
    assert json.loads({p.key: p.value for p in model.metadata_props}[METADATA_NAME])["format_version"] == 1
    assert "with_marginals" in {t.name for t in model.graph.initializer}
    sentences = json.loads((FIXTURE_0_2_0.parent / "expected.json").read_text(encoding="utf-8"))["sentences"]
    runner = OnnxTagger(FIXTURE_0_2_0)
    runner.session = recorder = _RecordingSession(runner.session)
    expected = runner.predict(sentences)
    assert recorder.feeds and all(not bool(f["with_marginals"]) for f in recorder.feeds)
    kept = [i for i in model.graph.input if i.name != "with_marginals"]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    onnx.save(model, str(tmp_path / "old.onnx"))
    runner = OnnxTagger(tmp_path / "old.onnx")
    runner.session = recorder = _RecordingSession(runner.session)
    assert runner.predict(sentences) == expected
    assert recorder.feeds and all("with_marginals" not in f for f in recorder.feeds)
    confident = runner.predict_with_confidence(sentences)
    assert all(0 < p <= 1 for _, probs in confident for p in probs)


def test_batch_size_and_order_do_not_change_tags(pair):
    tagger, runner = pair
    sentences = odd_sentences(tagger, seed=3)
    expected = tagger.predict(sentences)
    assert runner.predict(sentences, batch_size=3) == expected
    assert runner.predict(sentences, batch_size=1) == expected
    assert runner.predict(sentences[::-1]) == expected[::-1]
    assert runner.predict(s for s in sentences) == expected  # any iterable of sentences


def test_onnx_equals_eager_on_ewt_dev(ewt_dir, tmp_path):
    train = read_conllu(ewt_dir / "en_ewt-ud-train.conllu")[:300]
    dev = [s.tokens for s in read_conllu(ewt_dir / "en_ewt-ud-dev.conllu")[:500]]
    small = dict(embedding_dim=16, hidden_dim=16, char_embedding_dim=8, char_filters=12, dropout=0.0)
    archs = {
        "crf-chars": dict(crf=True),
        "softmax-words-only": dict(crf=False, char_filters=0, case_embedding_dim=0, lowercase=False),
    }
    for name, arch in archs.items():
        tagger = seqtag.train(
            train, config=TaggerConfig(**{**small, **arch}),
            train_config=TrainConfig(epochs=1, batch_size=16, device="cpu"), quiet=True,
        )
        runner = OnnxTagger(to_onnx(tagger, tmp_path / f"{name}.onnx"), intra_op_num_threads=1)
        expected = tagger.predict(dev)
        assert runner.predict(dev) == expected, name
        worst = 0.0
        for (tags, confidence), emissions in zip(runner.predict_with_confidence(dev), _emissions(tagger, dev)):
            reference = _reference_marginals(tagger, emissions)
            ids = [tagger.vocabs.tags.stoi[t] for t in tags]
            chosen = reference[torch.arange(len(ids)), torch.tensor(ids)]
            worst = max(worst, float((torch.tensor(confidence, dtype=torch.float64) - chosen).abs().max()))
        assert worst < 1e-4, (name, worst)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_character_groups_give_the_eager_emissions(kernel, tmp_path):
    """The graph encodes words in length groups (<= 8, <= 16, longer), each cut to its own width,
    and convolves by MatMul: every mix of groups, an empty group and every kernel width must give
    the eager CharCNN's emissions."""
    torch.manual_seed(kernel)
    config = TaggerConfig(hidden_dim=8, char_filters=6, char_kernel_size=kernel, max_word_length=40)
    tagger = seqtag.Tagger(config, seqtag.Vocabularies.build(seqtag.tutorial_corpus())).eval()
    runner = OnnxTagger(to_onnx(tagger, tmp_path / "chars.onnx"), intra_op_num_threads=1)
    batches = [
        [["a"], ["The", "dog"]],  # only short words: the two longer groups are empty
        [["x" * 8, "y" * 9, "z" * 16, "w" * 17]],  # each side of each group limit
        [["é" * 50], ["ab", "c" * 12]],  # a word cut at max_word_length, padding words in the batch
    ]
    for batch in batches:
        words, cases, chars, lengths = runner.encode(batch)
        (emissions,) = runner.run(words, cases, chars, lengths, outputs=["emissions"])
        for row, reference in zip(emissions, _emissions(tagger, batch)):
            np.testing.assert_allclose(row[: len(reference)], reference.numpy(), atol=1e-5)


def test_graph_rows_equal_each_sentence_alone_whatever_the_padding(pair):
    tagger, runner = pair
    sentences = odd_sentences(tagger, seed=2)[2:30]
    sentences = [s for s in sentences if s]
    words, cases, chars, lengths = runner.encode(sentences)
    rng = np.random.default_rng(0)
    padding = np.arange(words.shape[1])[None, :] >= lengths[:, None]
    # garbage at the padded positions must change nothing
    words[padding] = rng.integers(0, len(tagger.vocabs.words), int(padding.sum()))
    cases[padding] = rng.integers(0, 4, int(padding.sum()))
    tags, marginals = runner.run(words, cases, chars, lengths, outputs=["tags", "marginals"])
    assert tags.shape == words.shape and tags.dtype == np.int64
    assert marginals.shape == (*words.shape, tagger.num_tags) and marginals.dtype == np.float32
    for i, s in enumerate(sentences):
        n = len(s)
        assert tags[i, :n].tolist() == tagger.predict_ids([s])[0]
        assert not tags[i, n:].any() and not marginals[i, n:].any()
        alone_tags, alone_marginals = runner.run(*runner.encode([s]), outputs=["tags", "marginals"])
        assert alone_tags[0].tolist() == tags[i, :n].tolist()
        np.testing.assert_allclose(alone_marginals[0], marginals[i, :n], atol=1e-5)


@pytest.mark.parametrize(
    "arch",
    [dict(rnn_mode="packed", num_layers=2), dict(bidirectional=False, crf=True, tag_scheme="none"),
     dict(crf=False, num_layers=2, lowercase=False)],
    ids=["packed-2-layers", "forward-only-crf", "softmax-2-layers-chars"],
)
def test_other_architectures_agree(arch, tmp_path):
    tagger = small_tagger(random_sentences(30, seed=5), **arch)  # untrained: random weights are an oracle too
    sentences = odd_sentences(tagger, seed=5)[:24]
    runner = OnnxTagger(to_onnx(tagger, tmp_path / "t.onnx"), intra_op_num_threads=1)
    assert runner.predict(sentences) == tagger.predict(sentences)


# -- confidence, marginals, n-best -----------------------------------------------------------


def test_reference_marginals_equal_brute_force(crf_tagger):
    for emissions in _emissions(crf_tagger, [["Ab", "cd", "Ef"], ["x"], ["Über", "naïve", "Q", "r"]]):
        sequences = list(_all_sequences(crf_tagger, emissions))
        scores = torch.tensor([score for _, score, _ in sequences], dtype=torch.float64)
        probs = (scores - torch.logsumexp(scores, dim=0)).exp()
        expected = torch.zeros_like(emissions)
        for (path, _, _), p in zip(sequences, probs):
            expected[torch.arange(len(path)), torch.tensor(path)] += p
        torch.testing.assert_close(_reference_marginals(crf_tagger, emissions), expected, atol=1e-9, rtol=0)


def test_confidence_and_marginals_equal_eager(pair):
    tagger, runner = pair
    sentences = [s for s in odd_sentences(tagger, seed=6) if s] + _long_sentences(tagger)
    marginals = runner.marginals(sentences)
    confident = runner.predict_with_confidence(sentences)
    assert [tags for tags, _ in confident] == tagger.predict(sentences)
    for s, m, (tags, confidence), emissions in zip(sentences, marginals, confident, _emissions(tagger, sentences)):
        reference = _reference_marginals(tagger, emissions).numpy()
        assert m.shape == (len(s), tagger.num_tags) and m.dtype == np.float32
        np.testing.assert_allclose(m, reference, atol=1e-4, rtol=0)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)
        ids = [tagger.vocabs.tags.stoi[t] for t in tags]
        np.testing.assert_allclose(confidence, reference[np.arange(len(ids)), ids], atol=1e-4, rtol=0)


def test_forbidden_tags_have_probability_zero(crf_tagger, onnx_files):
    runner = OnnxTagger(onnx_files["crf_tagger"], intra_op_num_threads=1)
    crf = _crf(crf_tagger)
    sentences = [s for s in odd_sentences(crf_tagger, seed=7) if s]
    never_first = (~crf.start_mask).numpy()  # I-X under BIO
    assert never_first.any()
    for m in runner.marginals(sentences):
        assert not m[0, never_first].any()
    assert runner.metadata["crf"]["start_mask"] == crf.start_mask.tolist()


@pytest.mark.parametrize("k", [1, 4, 200])
def test_nbest_equals_brute_force(pair, k):
    tagger, runner = pair
    sentences = [["Ab", "cd", "Ef"], ["x"], ["Über", "naïve", "Q", "r"], ["A", "B"]]
    results = runner.nbest(sentences, k)
    assert [r[0][0] for r in results] == tagger.predict(sentences)
    for result, emissions in zip(results, _emissions(tagger, sentences)):
        sequences = list(_all_sequences(tagger, emissions))
        log_z = float(torch.logsumexp(torch.tensor([score for _, score, _ in sequences]), dim=0))
        allowed = sorted(((score, path) for path, score, ok in sequences if ok), key=lambda e: -e[0])[:k]
        assert len(result) == len(allowed)
        assert [tags for tags, _ in result] == [tagger.vocabs.tags.decode(path) for _, path in allowed]
        np.testing.assert_allclose([p for _, p in result], [score - log_z for score, _ in allowed], atol=1e-4)
    if k == 200 and _crf(tagger) is not None:  # constraints leave fewer sequences than 5 ** 3
        assert len(results[0]) < 5 ** 3


def test_nbest_first_path_is_the_best_path(pair):
    tagger, runner = pair
    sentences = odd_sentences(tagger, seed=8)
    results = runner.nbest(sentences, 3)
    assert [r[0][0] for r in results] == tagger.predict(sentences)
    for r in results:
        assert all(a[1] >= b[1] for a, b in zip(r, r[1:])) and all(p <= 1e-6 for _, p in r)


def test_kbest_viterbi_breaks_ties_by_the_reversed_sequence():
    # every sequence scores 0: the order is the reversed sequences' lexicographic order
    paths, scores = kbest_viterbi(np.zeros((1, 2, 2)), np.array([2]), np.zeros(2), np.zeros((2, 2)), np.zeros(2), 5)
    assert paths[0].tolist() == [[0, 0], [1, 0], [0, 1], [1, 1], [0, 0]]
    assert scores[0, :4].tolist() == [0.0] * 4 and scores[0, 4] == -np.inf


# -- encoding, batching, edge cases ---------------------------------------------------------


def test_encoding_equals_seqtag_encoder(pair):
    tagger, runner = pair
    sentences = [*odd_sentences(tagger, seed=1), ["", "ÜBER", "İstanbul", "x" * 100]]
    expected = collate([encode_tokens(s, tagger.vocabs, tagger.config) for s in sentences])
    words, cases, chars, lengths = runner.encode(sentences)
    assert np.array_equal(words, expected.words.numpy())
    assert np.array_equal(cases, expected.cases.numpy())
    assert np.array_equal(chars, expected.chars.numpy())
    assert np.array_equal(lengths, expected.lengths.numpy())


def test_plan_batches_equals_a_greedy_oracle():
    rng = np.random.default_rng(1)
    for _ in range(50):
        lengths = rng.integers(0, 40, int(rng.integers(0, 300))).tolist()
        batch_size, max_tokens = int(rng.integers(1, 40)), int(rng.integers(1, 600))
        batches: list[list[int]] = []
        for i in sorted((i for i, n in enumerate(lengths) if n), key=lengths.__getitem__):
            last = batches[-1] if batches else None  # a sentence joins the last batch while it fits
            if last is not None and len(last) < batch_size and (len(last) + 1) * lengths[i] <= max_tokens:
                last.append(i)
            else:
                batches.append([i])
        assert plan_batches(lengths, batch_size, max_tokens) == batches


def test_empty_input(pair):
    tagger, runner = pair
    k = tagger.num_tags
    for sentences in ([], [[]], [[], []]):
        assert runner.predict(sentences) == [[] for _ in sentences]
        assert runner.predict_with_confidence(sentences) == [([], []) for _ in sentences]
        assert [m.shape for m in runner.marginals(sentences)] == [(0, k) for _ in sentences]
        assert runner.nbest(sentences, 2) == [[([], 0.0)] for _ in sentences]
    mixed = [[], ["a", "B"], []]
    assert runner.predict(mixed) == [[], *tagger.predict([["a", "B"]]), []]
    tags, confidence = runner.predict_with_confidence(mixed)[1]
    assert tags == tagger.predict([["a", "B"]])[0] and len(confidence) == 2
    assert runner.predict([[""]]) == tagger.predict([[""]])  # a token without characters


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batch_size_must_be_a_positive_integer(pair, batch_size):
    _, runner = pair
    for method in (runner.predict, runner.predict_with_confidence, runner.marginals):
        with pytest.raises(ValueError, match=r"expected batch_size (an integer|>= 1), got"):
            method([["a"]], batch_size=batch_size)
    with pytest.raises(ValueError, match=r"expected batch_size (an integer|>= 1), got"):
        runner.nbest([["a"]], 2, batch_size=batch_size)


def test_nbest_k_must_be_positive(pair):
    _, runner = pair
    with pytest.raises(ValueError, match="expected k >= 1"):
        runner.nbest([["a"]], 0)
    for k in (True, 2.5):
        with pytest.raises(ValueError, match=f"expected k an integer, got {k!r}"):
            runner.nbest([["a"]], k)


def test_metadata(crf_tagger, softmax_tagger, onnx_files):
    model = onnx.load(str(onnx_files["crf_tagger"]))
    meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_NAME])
    assert meta["format"] == "seqtag.onnx" and meta["seqtag_version"] == seqtag.__version__
    assert meta["tags"] == crf_tagger.vocabs.tags.itos and meta["head"] == "crf"
    assert meta["model"] == crf_tagger.config.to_dict()
    encoding = meta["encoding"]
    assert encoding["words"] == crf_tagger.vocabs.words.itos and encoding["chars"] == crf_tagger.vocabs.chars.itos
    assert encoding["lower_map"] == crf_tagger.vocabs.lower_map and encoding["use_chars"] and encoding["use_case"]
    assert meta["format_version"] == FORMAT_VERSIONS["seqtag.onnx"] == 2
    assert [i.name for i in model.graph.input] == meta["inputs"] == ["words", "cases", "chars", "lengths", "with_marginals"]
    assert [o.name for o in model.graph.output] == meta["outputs"]
    assert meta["outputs"] == ["tags", "confidence", "marginals", "emissions", "log_partition"]
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims == [["batch", "seq_len"], ["batch", "seq_len"], ["batch", "seq_len", "word_len"], ["batch"], []]
    assert model.graph.input[-1].type.tensor_type.elem_type == TensorProto.BOOL
    # required: no initializer of its name, which Node.js's binding would take for a constant
    assert "with_marginals" not in {t.name for t in model.graph.initializer}
    softmax = OnnxTagger(onnx_files["softmax_tagger"]).metadata
    assert softmax["head"] == "softmax" and softmax["crf"] is None
    assert not softmax["encoding"]["use_chars"] and not softmax["encoding"]["use_case"]
    assert not softmax["encoding"]["lowercase"]


def test_onnx_tagger_refuses_other_files(tmp_path):
    with pytest.raises(SeqtagError, match="no such file"):
        OnnxTagger(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not protobuf")
    with pytest.raises(SeqtagError, match="not an ONNX model"):
        OnnxTagger(tmp_path / "junk.onnx")
    identity = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    ), opset_imports=[helper.make_opsetid("", 17)])
    identity.ir_version = 8
    onnx.save(identity, str(tmp_path / "other.onnx"))
    with pytest.raises(SeqtagError, match="not a seqtag tagger"):
        OnnxTagger(tmp_path / "other.onnx")


def test_cli_export_onnx(crf_tagger, tmp_path, capsys):
    crf_tagger.save(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--format", "onnx", "--output", str(tmp_path / "t.onnx")]) == 0
    assert "(onnx)" in capsys.readouterr().err
    sentences = odd_sentences(crf_tagger, seed=9)
    assert OnnxTagger(tmp_path / "t.onnx").predict(sentences) == crf_tagger.predict(sentences)


# -- a process where torch cannot be imported -----------------------------------------------

# Loads seqtag/serving/onnx_runner.py (and the torch-free seqtag/data/encoding.py and
# seqtag/errors.py it imports) as members of a bare "seqtag" package, so that seqtag/__init__.py (which imports
# torch) does not run.
_BARE_PACKAGE = (
    "import types\n"
    "package = types.ModuleType('seqtag')\n"
    f"package.__path__ = [{str(SEQTAG_DIR)!r}]\n"
    "sys.modules['seqtag'] = package\n"
)


def _tag_without_torch(path: Path, sentences, tmp_path: Path, prelude: str) -> subprocess.CompletedProcess:
    (tmp_path / "in.json").write_text(json.dumps(sentences), encoding="utf-8")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    sys.exit('torch importable')\n"
        f"{prelude}"
        "import json\n"
        "from seqtag.serving.onnx_runner import OnnxTagger\n"
        f"tagger = OnnxTagger({str(path)!r}, intra_op_num_threads=1)\n"
        "sentences = json.load(open('in.json', encoding='utf-8'))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('seqtag.'))\n"
        "print(json.dumps({'tags': tagger.predict(sentences), 'confident': tagger.predict_with_confidence(sentences),\n"
        "                  'nbest': tagger.nbest(sentences, 2), 'modules': loaded}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SEQTAG_DIR.parent)},
    )


def _check_tagged_without_torch(done: subprocess.CompletedProcess, tagger, runner, sentences, modules=None) -> None:
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if modules is not None:
        assert result["modules"] == modules
    assert result["tags"] == tagger.predict(sentences)
    expected = runner.predict_with_confidence(sentences)
    assert [tuple(c) for c in result["confident"]] == [(t, c) for t, c in expected]
    assert [[(t, p) for t, p in r] for r in result["nbest"]] == runner.nbest(sentences, 2)


def test_runner_works_in_a_process_that_cannot_import_torch(crf_tagger, onnx_files, tmp_path):
    sentences = odd_sentences(crf_tagger, seed=4)
    runner = OnnxTagger(onnx_files["crf_tagger"], intra_op_num_threads=1)
    done = _tag_without_torch(onnx_files["crf_tagger"], sentences, tmp_path, _BARE_PACKAGE)
    _check_tagged_without_torch(done, crf_tagger, runner, sentences, ["seqtag.config", "seqtag.data", "seqtag.data.encoding", "seqtag.errors", "seqtag.lazy", "seqtag.serving", "seqtag.serving.files", "seqtag.serving.onnx_runner"])


def test_the_package_imports_and_tags_in_a_process_that_cannot_import_torch(crf_tagger, onnx_files, tmp_path):
    sentences = odd_sentences(crf_tagger, seed=4)
    runner = OnnxTagger(onnx_files["crf_tagger"], intra_op_num_threads=1)
    done = _tag_without_torch(onnx_files["crf_tagger"], sentences, tmp_path, "")
    _check_tagged_without_torch(done, crf_tagger, runner, sentences)


def test_a_head_the_graph_cannot_translate_is_refused(softmax_tagger, tmp_path):
    import copy

    from seqtag.errors import SeqtagError
    from seqtag.model.heads import SoftmaxHead
    from seqtag.serving.onnx_export import to_onnx

    class OtherHead(SoftmaxHead):  # could decode differently: the graph must not guess
        pass

    tagger = copy.deepcopy(softmax_tagger)
    tagger.head = OtherHead(tagger.head.num_tags) if hasattr(tagger.head, "num_tags") else OtherHead()
    with pytest.raises(SeqtagError, match="no ONNX translation for the head OtherHead"):
        to_onnx(tagger, tmp_path / "t.onnx")
    assert not (tmp_path / "t.onnx").exists()


def test_the_client_written_from_the_stated_rules_tags_as_the_runner(crf_tagger, onnx_files, capsys):
    """docs/serving.md's tagger without seqtag (numpy and onnxruntime, the encoding rules as
    the page states them) gives the runner's tags and confidences."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    section = page.split("## Without seqtag: onnxruntime and numpy only", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code.replace('"ewt_tagger.onnx"', repr(str(onnx_files["crf_tagger"]))), namespace)  # noqa: S102
    capsys.readouterr()
    runner = OnnxTagger(onnx_files["crf_tagger"])
    sentences = [s for s in odd_sentences(crf_tagger, seed=5) if s][:40] + [["<pad>", "<PAD>", "x"]]
    for sentence, (tags, confidence) in zip(sentences, runner.predict_with_confidence(sentences)):
        got_tags, got_confidence = namespace["tag"](sentence)
        assert got_tags == tags
        assert np.allclose(got_confidence, confidence, atol=1e-5)


@pytest.mark.parametrize("bad", ["The dog ate", ["The", "dog"], {"The": 1}, None, [[1, 2]]])
def test_the_runner_refuses_what_is_not_token_lists(onnx_files, bad):
    runner = OnnxTagger(onnx_files["crf_tagger"])
    for call in (runner.predict, runner.predict_with_confidence, runner.marginals, lambda s: runner.nbest(s, 2)):
        with pytest.raises(TypeError, match="expected"):
            call(bad)
    with pytest.raises(ValueError, match=r"expected batch_size (an integer|>= 1), got"):
        runner.predict([["a"]], batch_size=2.5)
