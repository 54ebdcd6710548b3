import json

import numpy as np
import pytest
import torch

from seqtag import SeqtagError, Tagger, TrainConfig, resolve_device
from seqtag.data import collate, encode_tokens
from seqtag.layers import PackedLSTM, PaddedLSTM, reverse_padded

from .helpers import random_sentences, small_tagger

ARCHS = [
    dict(bidirectional=False, num_layers=1, crf=False, char_filters=0, case_embedding_dim=0),
    dict(bidirectional=True, num_layers=1, crf=False, char_filters=0),
    dict(bidirectional=False, num_layers=2, crf=False, char_filters=0),
    dict(bidirectional=True, num_layers=2, crf=True, char_filters=6),
]


def _emissions(tagger, sentences):
    batch = collate([encode_tokens(s.tokens, tagger.vocabs, tagger.config) for s in sentences])
    with torch.no_grad():
        return tagger(batch.words, batch.cases, batch.chars, batch.lengths), batch


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


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_packed_and_padded_agree_in_scores_and_gradients(arch):
    sentences = random_sentences(8, max_len=14)
    tagger = small_tagger(sentences, **arch)
    batch = collate([encode_tokens(s.tokens, tagger.vocabs, tagger.config) for s in sentences])
    results = []
    for path in (PackedLSTM, PaddedLSTM):
        tagger.rnn = path(tagger.lstm)
        tagger.zero_grad()
        emissions = tagger(batch.words, batch.cases, batch.chars, batch.lengths)
        tags = torch.randint(0, tagger.num_tags, batch.words.shape, generator=torch.Generator().manual_seed(1))
        tagger.loss(emissions, tags, batch.lengths).backward()
        grads = [p.grad.clone() for p in tagger.lstm.parameters()]
        results.append((emissions.detach(), grads))
    mask = torch.arange(batch.words.size(1))[None, :] < batch.lengths[:, None]
    torch.testing.assert_close(results[0][0][mask], results[1][0][mask], atol=1e-6, rtol=1e-5)
    for g_packed, g_padded in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g_packed, g_padded, atol=1e-6, rtol=1e-4)


def test_reverse_padded_reverses_within_length_and_is_an_involution():
    x = torch.arange(12.0).reshape(2, 6, 1)
    lengths = torch.tensor([4, 6])
    r = reverse_padded(x, lengths)
    assert r[0, :, 0].tolist() == [3, 2, 1, 0, 4, 5]
    assert r[1, :, 0].tolist() == [11, 10, 9, 8, 7, 6]
    torch.testing.assert_close(reverse_padded(r, lengths), x)


def test_loss_ignores_padding():
    sentences = random_sentences(5, max_len=10)
    tagger = small_tagger(sentences, crf=False, char_filters=0)
    (emissions, batch) = _emissions(tagger, sentences)
    loss = tagger.loss(emissions, batch.tags, batch.lengths)
    manual = torch.cat(
        [torch.nn.functional.cross_entropy(emissions[i, :n], batch.tags[i, :n], reduction="none")
         for i, n in enumerate(batch.lengths.tolist())]
    ).mean()
    torch.testing.assert_close(loss, manual)


def test_char_cnn_gives_unknown_words_distinct_vectors():
    sentences = random_sentences(4)
    tagger = small_tagger(sentences, char_filters=6)
    enc = encode_tokens(["zzqx", "qqxz"], tagger.vocabs, tagger.config)
    assert enc.words.tolist() == [1, 1]  # both unknown words
    chars = torch.from_numpy(enc.chars)[None]
    vectors = tagger.char_cnn(chars)[0]
    assert not torch.allclose(vectors[0], vectors[1])


def test_predict_handles_empty_input_and_keeps_order():
    sentences = random_sentences(20, max_len=10)
    tagger = small_tagger(sentences)
    tokens = [s.tokens for s in sentences]
    batched = tagger.predict([[]] + tokens + [[]], batch_size=3)
    assert batched[0] == [] and batched[-1] == []
    assert batched[1:-1] == [tagger.predict([t])[0] for t in tokens]
    assert tagger.predict([]) == []


def test_save_load_round_trip(tmp_path):
    sentences = random_sentences(12)
    tagger = small_tagger(sentences, crf=True, tag_scheme="none")
    tagger.save(tmp_path / "m")
    loaded = Tagger.load(tmp_path / "m")
    assert loaded.config == tagger.config and loaded.vocabs == tagger.vocabs
    tokens = [s.tokens for s in random_sentences(30, seed=5)]
    assert loaded.predict(tokens) == tagger.predict(tokens)
    for key, value in tagger.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model"]["crf"] is True


def test_load_refuses_a_pickle_that_runs_code_in_one_line_of_our_own(tmp_path):
    sentences = random_sentences(3)
    small_tagger(sentences).save(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, tmp_path / "weights.pt")
    with pytest.raises(SeqtagError, match="weights.pt: refused to load: it holds Python objects") as e:
        Tagger.load(tmp_path)
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert not marker.exists()


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _remove_tag(vocab):
    vocab["tags"]["itos"].pop()


def _remove_word(vocab):
    vocab["words"]["itos"].pop()
    vocab["word_counts"].pop()


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: _edit_json(d / "vocab.json", _remove_tag),
         r"weights.pt does not match config.json/vocab.json: output.weight has shape \[3, 14\], expected \[2, 14\]"),
        (lambda d: _edit_json(d / "vocab.json", _remove_word),
         "weights.pt does not match config.json/vocab.json: word_embedding.weight has shape"),
        (lambda d: _edit_json(d / "config.json", lambda c: c["model"].pop("hidden_dim")),
         'config.json: "model" lacks hidden_dim'),
        (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(hidden_dim=9)),
         "weights.pt does not match config.json/vocab.json: lstm.weight_ih_l0 has shape"),
        (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(crf=False)),
         "weights.pt does not match config.json/vocab.json: unexpected head.crf"),
        (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(hidden_dim="big")),
         "config.json: bad \"model\""),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json: unreadable"),
        (lambda d: (d / "vocab.json").write_text("[]"), "vocab.json: not a seqtag vocabulary"),
        (lambda d: (d / "weights.pt").write_bytes((d / "weights.pt").read_bytes()[:100]),
         "weights.pt: not a readable weights file"),
        (lambda d: torch.save([1, 2], d / "weights.pt"), "weights.pt: expected a dict of tensors, got list"),
        (lambda d: torch.save({k.replace("head.", ""): v for k, v in torch.load(d / "weights.pt").items()},
                              d / "weights.pt"), "weights.pt does not match .*seqtag before 0.2.0"),
    ],
    ids=["tag-removed", "word-removed", "config-key-removed", "other-hidden-dim", "crf-turned-off",
         "bad-value", "config-not-json", "vocab-not-a-vocab", "truncated-weights", "weights-not-a-dict",
         "saved-before-0.2"],
)
def test_load_checks_the_model_directory_as_a_whole(tmp_path, corrupt, message):
    sentences = random_sentences(12)
    small_tagger(sentences, crf=True, tag_scheme="none").save(tmp_path)
    corrupt(tmp_path)
    with pytest.raises(SeqtagError, match=message) as e:
        Tagger.load(tmp_path)
    assert "\n" not in str(e.value)


def test_load_refuses_a_training_checkpoint_copied_over_the_weights(tmp_path):
    import shutil

    import seqtag

    out = tmp_path / "run"
    seqtag.train(random_sentences(16), config=seqtag.TaggerConfig(embedding_dim=4, hidden_dim=4, char_filters=0),
                 train_config=seqtag.TrainConfig(epochs=1, batch_size=8, device="cpu"), output_dir=out, quiet=True)
    Tagger.load(out)
    shutil.copy(out / "checkpoints" / "best.pt", out / "weights.pt")
    with pytest.raises(SeqtagError, match="weights.pt does not match config.json/vocab.json: it is a training "
                                          "checkpoint") as e:
        Tagger.load(out)
    assert "\n" not in str(e.value)


def test_save_writes_the_data_configuration(tmp_path):
    tagger = small_tagger(random_sentences(4))
    data = {"train": "train.conllu", "tag_column": "upos"}
    tagger.save(tmp_path, training=TrainConfig(epochs=2), data=data)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert set(meta) == {"seqtag_version", "model", "training", "data"} and meta["data"] == data
    assert Tagger.load(tmp_path).config == tagger.config


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(SeqtagError, match="not a seqtag model directory"):
        Tagger.load(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_requested_without_cuda_is_an_error(spec):
    with pytest.raises(SeqtagError, match="CUDA is not available"):
        resolve_device(spec)


def test_device_auto_and_bad_names():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(SeqtagError, match="unknown device"):
        resolve_device("gpu")


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


def test_cpu_dropout_keeps_the_expected_fraction_and_scale():
    from seqtag.layers import dropout

    x = torch.ones(200_000)
    y = dropout(x, 0.33, True)
    assert abs((y == 0).float().mean().item() - 84 / 256) < 0.01  # p rounded to 84/256
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.equal(dropout(x, 0.33, False), x)


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
    from seqtag.heads import CRFHead, SoftmaxHead

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


def test_rnn_mode_resolves_in_one_place():
    from seqtag.layers import resolve_rnn_mode

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [resolve_rnn_mode(m, cpu) for m in ("auto", "packed", "padded")] == ["padded", "packed", "padded"]
    assert [resolve_rnn_mode(m, cuda) for m in ("auto", "packed", "padded")] == ["packed", "packed", "padded"]
    assert resolve_rnn_mode("packed", cpu, exporting=True) == "padded"
    tagger = small_tagger(random_sentences(3), rnn_mode="auto")
    assert isinstance(tagger.rnn, PaddedLSTM)
    tagger.set_rnn_mode(cuda)  # only chooses the path; nothing moves
    assert isinstance(tagger.rnn, PackedLSTM)
    assert not list(tagger.rnn.parameters())  # the weights stay in tagger.lstm


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
