"""seqtag.model.tagger: the Tagger's tensor methods (padding invariance, scripted = eager, the id-level
entry points) and string methods (batched = one at a time, confidence and n-best by brute force)."""

import numpy as np
import pytest
import torch

from seqtag import Tagger
from seqtag.data.dataset import collate, encode_tokens

from ..helpers import ARCHS, random_sentences, small_tagger
from ..helpers import emissions_of as _emissions


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
@pytest.mark.parametrize("mode", ["packed", "padded"])
def test_padding_invariance(arch, mode):
    sentences = random_sentences(9, max_len=15)
    tagger = small_tagger(sentences, rnn_mode=mode, **arch)
    batched, batch = _emissions(tagger, sentences)
    for i, s in enumerate(sentences):
        alone, _ = _emissions(tagger, [s])
        torch.testing.assert_close(batched[i, : len(s)], alone[0], atol=1e-5, rtol=1e-5)

    # garbage in padded positions changes nothing at real positions
    mask = torch.arange(batch.words.size(1))[None, :] >= batch.lengths[:, None]
    words = batch.words.masked_fill(mask, 5)
    cases = batch.cases.masked_fill(mask, 3)
    chars = batch.chars.masked_fill(mask[:, :, None], 7)
    with torch.no_grad():
        garbage = tagger(words, cases, chars, batch.lengths)
    for i, s in enumerate(sentences):
        torch.testing.assert_close(garbage[i, : len(s)], batched[i, : len(s)], atol=1e-5, rtol=1e-5)


def test_predict_handles_empty_input_and_keeps_order():
    sentences = random_sentences(20, max_len=10)
    tagger = small_tagger(sentences)
    tokens = [s.tokens for s in sentences]
    batched = tagger.predict([[]] + tokens + [[]], batch_size=3)
    assert batched[0] == [] and batched[-1] == []
    assert batched[1:-1] == [tagger.predict([t])[0] for t in tokens]
    assert tagger.predict([]) == []


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch 2.13
@pytest.mark.parametrize("arch", ARCHS, ids=str)
@pytest.mark.parametrize("mode", ["packed", "padded"])
def test_scripted_tagger_equals_eager(arch, mode):
    sentences = random_sentences(7, max_len=12)
    sentences[0].tokens[0] = "w" * 40  # longer than max_word_length: every char-CNN length group
    tagger = small_tagger(sentences, rnn_mode=mode, **arch)
    scripted = torch.jit.script(tagger)
    batch = collate([encode_tokens(s.tokens, tagger.vocabs, tagger.config) for s in sentences])
    args = (batch.words, batch.cases, batch.chars, batch.lengths)
    with torch.no_grad():
        torch.testing.assert_close(scripted(*args), tagger(*args))
        assert torch.equal(scripted.decode(tagger(*args), batch.lengths), tagger.decode(tagger(*args), batch.lengths))


def test_predicting_a_10000_token_sentence_among_short_ones_batches_it_alone():
    sentences = random_sentences(40, max_len=8)
    tagger = small_tagger(sentences)
    long = [sentences[0].tokens[0]] * 10_000
    tokens = [s.tokens for s in sentences] + [long]
    tags = tagger.predict(tokens, batch_size=64)
    assert len(tags[-1]) == 10_000
    assert tags[:-1] == tagger.predict(tokens[:-1], batch_size=64)


@pytest.mark.parametrize(
    "cls, field", [("TaggerConfig", "rnn_mode"), ("TaggerConfig", "tag_scheme"), ("TrainConfig", "optimizer"),
                   ("TrainConfig", "precision"), ("TrainConfig", "schedule"), ("TrainConfig", "select")]
)
def test_config_refuses_a_value_outside_the_field_choices(cls, field):
    import seqtag

    with pytest.raises(ValueError, match=f"expected {field} in"):
        getattr(seqtag, cls)(**{field: "nonsense"})


@pytest.mark.parametrize("crf", [True, False])
def test_disabled_parts_are_not_built_and_a_softmax_model_saves_no_crf(crf, tmp_path):
    from seqtag.model.heads import CRFHead, SoftmaxHead

    tagger = small_tagger(random_sentences(6), crf=crf, char_filters=0, case_embedding_dim=0)
    assert tagger.case_embedding is None and tagger.char_cnn is None
    assert isinstance(tagger.head, CRFHead if crf else SoftmaxHead)
    keys = set(tagger.state_dict())
    assert any(k.startswith("lstm.weight_ih_l0") for k in keys)
    assert not any(k.startswith(("case_embedding.", "char_cnn.")) for k in keys)
    assert {k for k in keys if "crf" in k} == (
        {f"head.crf.{n}" for n in ("start_transitions", "end_transitions", "transitions",
                                   "start_mask", "transition_mask", "end_mask")} if crf else set()
    )
    tagger.save(tmp_path)
    assert Tagger.load(tmp_path).state_dict().keys() == keys
    built = small_tagger(random_sentences(6))
    assert built.case_embedding is not None and built.char_cnn is not None


@pytest.mark.parametrize("crf", [True, False])
def test_tag_ids_handles_empty_rows_and_equals_each_sentence_alone(crf):
    sentences = random_sentences(9, max_len=10)
    tagger = small_tagger(sentences, crf=crf)
    tokens = [s.tokens for s in sentences]
    tokens[3] = []
    batch = collate([encode_tokens(s, tagger.vocabs, tagger.config) for s in tokens])
    with torch.no_grad():
        ids = tagger.tag_ids(batch.words, batch.cases, batch.chars, batch.lengths)
    assert ids.shape == batch.words.shape and ids.dtype == torch.long
    for i, s in enumerate(tokens):
        assert ids[i, : len(s)].tolist() == tagger.predict_ids([s])[0]
        assert not ids[i, len(s):].any()
    empty = torch.zeros(0, 0, dtype=torch.long)
    assert tagger.tag_ids(empty, empty, torch.zeros(0, 0, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)).shape == (0, 0)
    zeros = torch.zeros(2, 0, dtype=torch.long)
    assert tagger.tag_ids(zeros, zeros, torch.zeros(2, 0, 0, dtype=torch.long), torch.zeros(2, dtype=torch.long)).shape == (2, 0)


@pytest.mark.parametrize(
    "change, message",
    [(dict(cases=torch.ones(2, 4, dtype=torch.long)), "expected cases of shape"),
     (dict(chars=torch.ones(2, 3, dtype=torch.long)), "expected chars of shape"),
     (dict(lengths=torch.tensor([3])), "expected lengths of shape"),
     (dict(lengths=torch.tensor([3, 4])), "expected 0 <= lengths <= seq_len = 3"),
     (dict(words=torch.ones(6, dtype=torch.long)), "expected words of shape")],
)
def test_tag_ids_rejects_bad_shapes(change, message):
    tagger = small_tagger(random_sentences(3))
    args = dict(words=torch.ones(2, 3, dtype=torch.long), cases=torch.ones(2, 3, dtype=torch.long),
                chars=torch.ones(2, 3, 1, dtype=torch.long), lengths=torch.tensor([3, 2]))
    with pytest.raises(ValueError, match=message):
        tagger.tag_ids(**{**args, **change})


def test_batch_size_below_one_is_an_error_before_any_work():
    tagger = small_tagger(random_sentences(3))
    items = [encode_tokens(["a"], tagger.vocabs, tagger.config)]
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"expected batch_size >= 1, got {bad}"):
            tagger.predict([["a"]], batch_size=bad)
        with pytest.raises(ValueError, match="expected batch_size >= 1"):
            tagger.decode_encoded(items, batch_size=bad)
    with pytest.raises(ValueError, match="expected max_tokens >= 1"):
        tagger.decode_encoded(items, batch_size=4, max_tokens=0)


def test_decode_encoded_equals_predict_whatever_the_plan():
    sentences = random_sentences(30, max_len=15)
    tagger = small_tagger(sentences)
    tokens = [s.tokens for s in sentences] + [[]]
    items = [encode_tokens(s, tagger.vocabs, tagger.config) for s in tokens]
    expected = tagger.predict_ids(tokens)
    assert expected[-1] == []
    for batch_size, max_tokens in [(1, None), (4, None), (256, 16), (256, 1)]:
        assert tagger.decode_encoded(items, batch_size, max_tokens) == expected


def _brute_force(tagger, tokens):
    """Every tag sequence of one sentence with its log-probability under the model (float64)."""
    import itertools

    batch = collate([encode_tokens(tokens, tagger.vocabs, tagger.config)])
    with torch.no_grad():
        emissions = tagger(batch.words, batch.cases, batch.chars, batch.lengths)[0].double()
    k, n = tagger.num_tags, len(tokens)
    out = []
    for seq in itertools.product(range(k), repeat=n):
        if hasattr(tagger.head, "crf"):
            crf = tagger.head.crf
            allowed = bool(crf.start_mask[seq[0]]) and bool(crf.end_mask[seq[-1]]) and all(
                bool(crf.transition_mask[a, b]) for a, b in zip(seq, seq[1:]))
            if not allowed:
                continue
            with torch.no_grad():
                score = float(crf.score(emissions[None], torch.tensor([seq]), torch.ones(1, n, dtype=torch.bool)))
        else:
            score = float(emissions.log_softmax(1)[torch.arange(n), list(seq)].sum())
        out.append((seq, score))
    log_z = torch.logsumexp(torch.tensor([s for _, s in out], dtype=torch.float64), 0).item()
    return [(seq, s - log_z) for seq, s in out], emissions


@pytest.mark.parametrize("crf, scheme", [(True, "bio"), (True, "none"), (False, "none")],
                         ids=["crf-bio", "crf", "softmax"])
def test_confidence_marginals_and_nbest_equal_brute_force(crf, scheme):
    import numpy as np

    tags = ("O", "B-X", "I-X") if scheme == "bio" else ("A", "B", "C")
    sentences = random_sentences(8, max_len=4, tags=tags, seed=3)
    tagger = small_tagger(sentences, crf=crf, tag_scheme=scheme)
    torch.nn.init.normal_(tagger.output.weight, std=2.0)  # peaked, so that the ranks are distinct
    tokens = [s.tokens for s in sentences] + [[]]
    predicted = tagger.predict(tokens, batch_size=3)
    confident = tagger.predict_with_confidence(tokens, batch_size=3)
    marginals = tagger.marginals(tokens, batch_size=3)
    nbest = tagger.nbest(tokens, 5, batch_size=3)
    itos = tagger.vocabs.tags.itos
    for i, s in enumerate(tokens[:-1]):
        seqs, emissions = _brute_force(tagger, s)
        expected = np.zeros((len(s), tagger.num_tags))
        for seq, log_p in seqs:
            expected[np.arange(len(s)), list(seq)] += np.exp(log_p)
        assert marginals[i].dtype == np.float32 and marginals[i].shape == (len(s), tagger.num_tags)
        np.testing.assert_allclose(marginals[i], expected, atol=1e-5)
        if not crf:
            np.testing.assert_allclose(marginals[i], emissions.softmax(1).numpy(), atol=1e-6)
        chosen = [itos.index(t) for t in predicted[i]]
        assert confident[i][0] == predicted[i]
        np.testing.assert_allclose(confident[i][1], expected[np.arange(len(s)), chosen], atol=1e-5)
        best = sorted(seqs, key=lambda x: -x[1])[:5]
        assert [t for t, _ in nbest[i]] == [[itos[j] for j in seq] for seq, _ in best]
        np.testing.assert_allclose([p for _, p in nbest[i]], [p for _, p in best], atol=1e-4)
        assert nbest[i][0][0] == predicted[i]
    assert confident[-1] == ([], []) and nbest[-1] == [([], 0.0)] and marginals[-1].shape == (0, tagger.num_tags)


def test_nbest_with_fewer_sequences_than_k_and_bad_k():
    tagger = small_tagger(random_sentences(6, tags=("A", "B")), crf=True, tag_scheme="none")
    result = tagger.nbest([["x"], ["x", "y"]], k=10)
    assert [len(r) for r in result] == [2, 4]  # 2 tags: 2 sequences of one token, 4 of two
    assert abs(sum(np.exp(p) for _, p in result[1]) - 1) < 1e-5
    with pytest.raises(ValueError, match="expected k >= 1, got 0"):
        tagger.nbest([["x"]], k=0)
    for k in (True, 2.5, "3"):  # True < 1 is False: k must be an int, as the CLI's --nbest is
        with pytest.raises(ValueError, match=f"expected k an integer, got {k!r}"):
            tagger.nbest([["x"]], k=k)
    with pytest.raises(ValueError, match="expected batch_size >= 1"):
        tagger.predict_with_confidence([["x"]], batch_size=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch 2.13
@pytest.mark.parametrize("crf", [True, False])
def test_scripted_tagger_id_methods_equal_eager(crf):
    sentences = random_sentences(7, max_len=9)
    tagger = small_tagger(sentences, crf=crf)
    scripted = torch.jit.script(tagger)
    tokens = [s.tokens for s in sentences] + [[]]
    batch = collate([encode_tokens(s, tagger.vocabs, tagger.config) for s in tokens])
    args = (batch.words, batch.cases, batch.chars, batch.lengths)
    with torch.no_grad():
        for name in ("tag_ids", "tag_confidence", "tag_marginals"):
            torch.testing.assert_close(getattr(scripted, name)(*args), getattr(tagger, name)(*args))
        torch.testing.assert_close(scripted.tag_nbest(*args, 3), tagger.tag_nbest(*args, 3))
        paths, log_probs = tagger.tag_nbest(*args, 3)
    assert torch.equal(paths[:, 0], tagger.tag_ids(*args))
    assert log_probs[-1].tolist() == [0.0, float("-inf"), float("-inf")]  # the empty sentence


@pytest.mark.parametrize("method", ["predict", "predict_with_confidence", "marginals", "nbest"])
@pytest.mark.parametrize("bad", ["The dog ate", ["The", "dog"], {"The": 1}, None, [[1, 2]]])
def test_the_string_methods_refuse_what_is_not_token_lists(method, bad):
    tagger = small_tagger(random_sentences(5))
    args = (bad, 2) if method == "nbest" else (bad,)
    with pytest.raises(TypeError, match="expected"):
        getattr(tagger, method)(*args)


@pytest.mark.parametrize("batch_size", [2.5, 0, True])
def test_the_string_methods_refuse_a_batch_size_that_is_not_a_positive_int(batch_size):
    tagger = small_tagger(random_sentences(5))
    with pytest.raises(ValueError, match=r"expected batch_size (an integer|>= 1), got"):
        tagger.predict([["a"]], batch_size=batch_size)
