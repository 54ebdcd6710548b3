"""Pretrained encoders under the tagger: subwords, windows, pooling, saving and loading offline.

The oracles: transformers' own fast tokenizer (``word_ids``), the Hugging Face model run on each
window alone and pooled by hand, one sentence at a time.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys

import pytest
import torch

import seqtag
from seqtag import Sentence, TaggerConfig, TrainConfig, Vocabularies
from seqtag.cli.app import main
from seqtag.config import for_encoder
from seqtag.data.dataset import SubwordBatch, TaggingDataset, collate, make_loader
from seqtag.data.subwords import (
    EncoderInputs,
    Subwords,
    SubwordTokenizer,
    encoder_inputs,
    plan_windows,
)
from seqtag.errors import SeqtagError
from seqtag.model.encoder import (
    ScalarMix,
    SubwordEncoder,
    gather_windows,
    load_encoder,
    max_window_size,
    pool_words,
    save_encoder,
)
from seqtag.model.tagger import Tagger
from seqtag.training.checkpoint import numbered_checkpoints, read_checkpoint
from seqtag.training.loop import encoder_learning_rate, learning_rate
from seqtag.training.step import ENCODER_GROUP

from ..conftest import ENCODER_TEXT

try:  # the tests that need it take the encoder_dirs fixture, which skips without it
    import transformers
except ImportError:
    transformers = None

KINDS = ["bert", "roberta"]
ODD = ["\x00", "\u200b", "", "\t", "\x7f", "🙂", "👍🏽", "e\u0301", "日本", "a\u200bb", " ", "\ufeff"]


@pytest.fixture(scope="module")
def encoders(encoder_dirs):
    """``{kind: (model, tokenizer)}`` loaded from the saved directories."""
    return {kind: load_encoder(encoder_dirs[kind]) for kind in KINDS}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails, and the environment asks for the network."""

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "0")


def words_of(rng: random.Random, n: int) -> list[str]:
    vocab = " ".join(ENCODER_TEXT).split() + ["unrelatedness", "Zyzzyva", "naïve", "3.14159"]
    return [rng.choice(vocab) for _ in range(n)]


def oracle(model, tokenizer: SubwordTokenizer, sub: Subwords, pooling: str, capacity: int, stride: int):
    """A sentence's word vectors the long way: each window through the model alone, each
    subword's window chosen by brute force over all windows containing it, pooled in a loop."""
    n = len(sub.ids)
    starts = [0]
    while starts[-1] + capacity < n:
        starts.append(min(starts[-1] + stride, n - capacity))
    vectors = []
    with torch.no_grad():
        for start in starts:
            ids = tokenizer.prefix + sub.ids[start : start + capacity] + tokenizer.suffix
            vectors.append(model(input_ids=torch.tensor([ids])).last_hidden_state[0])
    rows = []
    for p in range(n):
        scores = [(min(p - s, min(s + capacity, n) - 1 - p), -w) for w, s in enumerate(starts) if s <= p < s + capacity]
        _, neg_w = max(scores)
        rows.append(vectors[-neg_w][p - starts[-neg_w] + len(tokenizer.prefix)])
    words = []
    for a, b in zip(sub.offsets[:-1], sub.offsets[1:]):
        span = torch.stack(rows[a:b])
        words.append({"first": span[0], "last": span[-1], "mean": span.mean(0)}[pooling])
    return torch.stack(words)


# -- subwords and windows (no model) ------------------------------------------------------


def test_plan_windows_hand_computed():
    # capacity 4, stride 2 over 9 subwords: windows at 0, 2, 4 and 5 (the last ends at 9);
    # subword 6 is 2 from window 2's left edge and 1 from its right, 1 and 2 in window 3: a tie
    assert plan_windows(9, 4, 2) == ([0, 2, 4, 5], [0, 0, 0, 1, 1, 2, 2, 3, 3])
    assert plan_windows(4, 4, 1) == ([0], [0, 0, 0, 0])
    assert plan_windows(0, 4, 1) == ([0], [])
    assert plan_windows(5, 1, 1) == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="stride"):
        plan_windows(9, 4, 5)


@pytest.mark.parametrize("seed", range(3))
def test_plan_windows_cover_and_choose_the_most_central_window(seed):
    rng = random.Random(seed)
    for _ in range(200):
        n, capacity = rng.randint(0, 60), rng.randint(1, 12)
        stride = rng.randint(1, capacity)
        starts, chosen = plan_windows(n, capacity, stride)
        assert len(chosen) == n and starts[0] == 0 and starts == sorted(set(starts))
        if n > capacity:
            assert starts[-1] + capacity == n and all(b - a <= stride for a, b in zip(starts, starts[1:]))
        for p, w in enumerate(chosen):
            inside = [v for v, s in enumerate(starts) if s <= p < s + capacity]
            score = [min(p - starts[v], min(starts[v] + capacity, n) - 1 - p) for v in inside]
            assert w == inside[score.index(max(score))]


def test_encoder_inputs_layout(encoders):
    _, tok = encoders["bert"]
    subs = [Subwords([7, 8, 9, 10, 11], [0, 2, 5]), Subwords([12], [0, 1]), Subwords([], [0])]
    x = encoder_inputs(subs, tok, window_size=5, stride=2)  # 3 subwords a window
    cls, sep, pad = tok.prefix[0], tok.suffix[0], tok.pad_id
    assert x.window_ids == [[cls, 7, 8, 9, sep], [cls, 9, 10, 11, sep], [cls, 12, sep, pad, pad], [cls, sep, pad, pad, pad]]
    assert x.window_mask == [[1] * 5, [1] * 5, [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert x.source == [[1, 2, 3, 5 + 2, 5 + 3], [10 + 1, 0, 0, 0, 0], [0] * 5]
    assert (x.word_starts, x.word_ends) == ([[0, 2], [0, 0], [0, 0]], [[2, 5], [1, 0], [0, 0]])
    assert (x.lengths, x.subword_lengths) == ([2, 1, 0], [5, 1, 0])
    with pytest.raises(ValueError, match="window_size"):
        encoder_inputs(subs, tok, window_size=2, stride=1)


@pytest.mark.parametrize("kind", KINDS)
def test_subwords_equal_transformers_word_ids(kind, encoder_dirs, encoders):
    """The torch-free path gives the ids and word spans of transformers' fast tokenizer."""
    _, tok = encoders[kind]
    hf = transformers.AutoTokenizer.from_pretrained(encoder_dirs[kind], local_files_only=True)
    rng = random.Random(1)
    sentences = [s.split() for s in ENCODER_TEXT] + [words_of(rng, rng.randint(1, 30)) for _ in range(20)] + [["x"]]
    for words, sub in zip(sentences, tok.tokenize(sentences)):
        enc = hf(words, is_split_into_words=True)
        word_ids = enc.word_ids()
        assert enc.input_ids == tok.prefix + sub.ids + tok.suffix
        inner = word_ids[len(tok.prefix) : len(word_ids) - len(tok.suffix)]
        assert inner == [w for w in range(len(words)) for _ in range(sub.offsets[w], sub.offsets[w + 1])]


@pytest.mark.parametrize("kind", KINDS)
def test_words_mapped_to_nothing_get_unk_and_keep_their_place(kind, encoder_dirs, encoders):
    _, tok = encoders[kind]
    hf = transformers.AutoTokenizer.from_pretrained(encoder_dirs[kind], local_files_only=True)
    words = ["The", *ODD, "dog"]
    (sub,) = tok.tokenize([words])
    assert len(sub.offsets) == len(words) + 1 and all(b > a for a, b in zip(sub.offsets, sub.offsets[1:]))
    enc = hf(words, is_split_into_words=True)
    ids, word_ids = enc.input_ids, enc.word_ids()
    empty = 0
    for w in range(len(words)):
        expected = [i for i, v in zip(ids, word_ids) if v == w]
        empty += not expected
        assert sub.ids[sub.offsets[w] : sub.offsets[w + 1]] == (expected or [tok.unk_id]), repr(words[w])
    assert empty >= (4 if kind == "bert" else 1)  # "" (and for BERT "\x00", "\u200b", ...): the case happened


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_spelled_in_the_text_are_text(kind, encoder_dirs, encoders):
    _, tok = encoders[kind]
    hf = transformers.AutoTokenizer.from_pretrained(encoder_dirs[kind], local_files_only=True, split_special_tokens=True)
    words = ["the", "[SEP]", "<s>", "a[MASK]b", "<pad>", "[PAD]", "</s>", "[CLS]"]
    (sub,) = tok.tokenize([words])
    specials = set(tok.prefix + tok.suffix + [tok.pad_id])
    assert not specials & set(sub.ids)
    assert tok.prefix + sub.ids + tok.suffix == hf(words, is_split_into_words=True).input_ids


# -- pooling, windows, batches ------------------------------------------------------------


def test_pool_words_equals_a_loop():
    subwords = torch.randn(2, 6, 3)
    starts = torch.tensor([[0, 1, 4], [0, 3, 0]])
    ends = torch.tensor([[1, 4, 6], [3, 5, 0]])
    for pooling in ("first", "mean", "last"):
        out = pool_words(subwords, starts, ends, pooling)
        for b in range(2):
            for w in range(3):
                a, e = int(starts[b, w]), int(ends[b, w])
                if a == e:
                    expected = torch.zeros(3)
                else:
                    span = subwords[b, a:e]
                    expected = {"first": span[0], "last": span[-1], "mean": span.mean(0)}[pooling]
                torch.testing.assert_close(out[b, w], expected, rtol=0, atol=1e-6)


def test_gather_windows_reads_the_chosen_rows():
    hidden = torch.randn(3, 4, 2)
    source = torch.tensor([[1, 2, 9], [5, 0, 0]])
    out = gather_windows(hidden, source)
    assert torch.equal(out[0, 2], hidden[2, 1]) and torch.equal(out[1, 0], hidden[1, 1]) and out.shape == (2, 3, 2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_fitting_sentences_equal_the_unwindowed_model(kind, pooling, encoders):
    model, tok = encoders[kind]
    encoder = SubwordEncoder(model, pooling).eval()
    rng = random.Random(2)
    subs = tok.tokenize([words_of(rng, rng.randint(1, 12)) for _ in range(6)])
    longest = max(len(s.ids) for s in subs) + tok.n_special
    for window_size in (longest, max_window_size(model.config)):  # exactly fits, and the limit
        with torch.no_grad():
            out = encoder.encode(encoder_inputs(subs, tok, window_size, stride=1))
        for i, sub in enumerate(subs):
            expected = oracle(model, tok, sub, pooling, capacity=10**6, stride=1)
            torch.testing.assert_close(out[i, : len(expected)], expected, rtol=0, atol=1e-5)
            assert not out[i, len(expected) :].any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("window_size", "stride"), [(8, 3), (6, 4), (7, 1)])
def test_long_sentences_take_each_subword_from_its_most_central_window(kind, window_size, stride, encoders):
    model, tok = encoders[kind]
    encoder = SubwordEncoder(model, "mean").eval()
    rng = random.Random(window_size)
    subs = tok.tokenize([words_of(rng, n) for n in (25, 3, 40)])
    capacity = window_size - tok.n_special
    x = encoder_inputs(subs, tok, window_size, stride)
    assert len(x.window_ids) > 3  # windows were needed
    with torch.no_grad():
        out = encoder.encode(x)
    for i, sub in enumerate(subs):
        expected = oracle(model, tok, sub, "mean", capacity, stride)
        torch.testing.assert_close(out[i, : len(expected)], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_equals_one_at_a_time_and_padding_changes_nothing(kind, encoders):
    model, tok = encoders[kind]
    torch.manual_seed(5)
    encoder = SubwordEncoder(model, "first", layers=3).eval()
    with torch.no_grad():
        encoder.mix.weights.normal_()
    rng = random.Random(3)
    subs = tok.tokenize([words_of(rng, n) for n in (1, 30, 7, 2, 19)] + [["The", *ODD]])
    with torch.no_grad():
        batched = encoder.encode(encoder_inputs(subs, tok, 12, 5))
        for i, sub in enumerate(subs):
            alone = encoder.encode(encoder_inputs([sub], tok, 12, 5))[0]
            torch.testing.assert_close(batched[i, : alone.size(0)], alone, rtol=0, atol=1e-5)
        # more padding everywhere: window columns, subwords, words
        window_ids, window_mask, source, starts, ends = SubwordBatch.from_inputs(encoder_inputs(subs, tok, 12, 5))
        extra = 5
        width = window_ids.size(1)
        window_ids = torch.cat([window_ids, torch.full((window_ids.size(0), extra), tok.pad_id)], 1)
        window_mask = torch.cat([window_mask, torch.zeros(window_mask.size(0), extra, dtype=torch.int64)], 1)
        row, pos = source // width, source % width
        source = torch.cat([row * (width + extra) + pos, torch.zeros(source.size(0), extra, dtype=torch.int64)], 1)
        starts = torch.cat([starts, torch.zeros(starts.size(0), extra, dtype=torch.int64)], 1)
        ends = torch.cat([ends, torch.zeros(ends.size(0), extra, dtype=torch.int64)], 1)
        padded = encoder(window_ids, window_mask, source, starts, ends)
    torch.testing.assert_close(padded[:, : batched.size(1)], batched, rtol=0, atol=1e-5)
    assert not padded[:, batched.size(1) :].any()


def test_scalar_mix_weights_the_last_layers(encoders):
    model, tok = encoders["bert"]
    encoder = SubwordEncoder(model, "last", layers=2).eval()
    with torch.no_grad():
        encoder.mix.weights.copy_(torch.tensor([0.3, -0.2]))
        encoder.mix.gamma.fill_(1.5)
        (sub,) = tok.tokenize([ENCODER_TEXT[0].split()])
        out = encoder.encode(encoder_inputs([sub], tok, 64, 32))[0]
        hidden = model(input_ids=torch.tensor([tok.prefix + sub.ids + tok.suffix]), output_hidden_states=True).hidden_states
    w = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    mixed = 1.5 * (w[0] * hidden[-2][0] + w[1] * hidden[-1][0])
    last = [e - 1 + len(tok.prefix) for e in sub.offsets[1:]]
    torch.testing.assert_close(out, mixed[last], rtol=0, atol=1e-5)
    assert ScalarMix(3)(torch.ones(3, 2)).tolist() == [1.0, 1.0]


def test_frozen_encoder_trains_only_the_mix(encoders):
    model, tok = encoders["bert"]
    copy = transformers.AutoModel.from_config(model.config)
    copy.load_state_dict(model.state_dict())
    encoder = SubwordEncoder(copy, "mean", layers=2, frozen=True).train()
    assert not copy.training and not any(p.requires_grad for p in copy.parameters())
    out = encoder.encode(encoder_inputs(tok.tokenize([["The", "dog"]]), tok, 64, 32))
    out.sum().backward()
    assert encoder.mix.weights.grad is not None and all(p.grad is None for p in copy.parameters())


# -- saving and loading --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_offline_give_the_same_outputs(kind, encoder_dirs, tmp_path, no_network):
    model, tok = load_encoder(encoder_dirs[kind])  # a plain transformers directory, offline
    with torch.no_grad():  # as after fine-tuning: weights that differ from the original files
        model.get_input_embeddings().weight.mul_(1.5)
    target = tmp_path / "model" / "encoder"
    save_encoder(model, tok, target)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "subwords.json", "tokenizer.json"]
    loaded, loaded_tok = load_encoder(target)
    sentences = [ENCODER_TEXT[1].split(), ["The", *ODD], words_of(random.Random(4), 40)]
    subs = tok.tokenize(sentences)
    assert loaded_tok.tokenize(sentences) == subs
    assert (loaded_tok.prefix, loaded_tok.suffix, loaded_tok.unk_id, loaded_tok.pad_id) == (tok.prefix, tok.suffix, tok.unk_id, tok.pad_id)
    x = encoder_inputs(subs, tok, 16, 7)
    with torch.no_grad():
        assert torch.equal(SubwordEncoder(loaded, "mean").encode(x), SubwordEncoder(model, "mean").encode(x))
    assert loaded.config._attn_implementation == "sdpa"


def test_torch_free_tokenizer(encoder_dirs, encoders, tmp_path):
    """seqtag.data.subwords loads a saved tokenizer and tokenizes where torch and transformers cannot
    be imported, as the ONNX runner does."""
    model, tok = encoders["roberta"]
    save_encoder(model, tok, tmp_path)
    sentences = [ENCODER_TEXT[2].split(), ["The", *ODD]]
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "import seqtag.data.subwords as s\n"
        "tok = s.SubwordTokenizer.load(sys.argv[1])\n"
        "x = s.encoder_inputs(tok.tokenize(json.loads(sys.argv[2])), tok, 16, 5)\n"
        "print(json.dumps(x._asdict()))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path), json.dumps(sentences)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert EncoderInputs(**json.loads(run.stdout)) == encoder_inputs(tok.tokenize(sentences), tok, 16, 5)


def test_import_seqtag_does_not_import_transformers():
    code = "import sys, seqtag, seqtag.data.subwords, seqtag.model.encoder; print('transformers' in sys.modules, 'tokenizers' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.split() == ["False", "False"], run.stderr


def test_a_directory_under_home_is_found(encoder_dirs, monkeypatch, no_network):
    monkeypatch.setenv("HOME", str(encoder_dirs["bert"].parent))
    model, tok = load_encoder("~/bert")
    assert model.config.model_type == "bert" and tok.prefix


def test_errors_are_one_line(encoder_dirs, tmp_path, monkeypatch, no_network):
    def fails(arg, match):
        with pytest.raises(SeqtagError, match=match) as info:
            load_encoder(arg)
        assert "\n" not in str(info.value)

    fails(tmp_path, "not a transformers model directory")
    (tmp_path / "config.json").write_text("{}")
    fails(tmp_path, "not a transformers model directory")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    fails(tmp_path, "cannot load its weights")
    fails(str(tmp_path / "missing"), "no such encoder directory")
    fails("seqtag-tests/no-such-model", "neither a local directory nor in the local Hugging Face cache")

    (tmp_path / "subwords.json").write_text(json.dumps({"format": "seqtag.subwords", "version": 9}))
    with pytest.raises(SeqtagError, match="version 9"):
        SubwordTokenizer.load(tmp_path)

    class Slow:
        is_fast = False

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Slow())
    fails(encoder_dirs["bert"], "not a fast one")
    monkeypatch.setitem(sys.modules, "transformers", None)
    fails(encoder_dirs["bert"], r"needs transformers: pip install 'seqtag\[transformers\]'")


# -- ONNX ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "pooling", "layers"), [("bert", "mean", 1), ("roberta", "first", 2)])
def test_onnx_encoder_equals_eager(kind, pooling, layers, encoders, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from seqtag.serving.encoder_onnx import encoder_feeds, export_encoder

    model, tok = encoders[kind]
    torch.manual_seed(6)
    encoder = SubwordEncoder(model, pooling, layers).eval()
    if encoder.mix is not None:
        with torch.no_grad():
            encoder.mix.weights.normal_()
    path = export_encoder(encoder, tok, tmp_path / "encoder.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = random.Random(7)
    batches = [
        ([["x"]], 64, 32),  # one token
        ([ENCODER_TEXT[1].split(), ["a"], ["The", *ODD], ENCODER_TEXT[3].split()], 64, 32),
        ([words_of(rng, 40), ["the", "dog"], words_of(rng, 25)], 10, 4),  # windows
    ]
    for sentences, window_size, stride in batches:
        x = encoder_inputs(tok.tokenize(sentences), tok, window_size, stride)
        with torch.no_grad():
            expected = encoder.encode(x).numpy()
        (got,) = session.run(None, encoder_feeds(x))
        assert got.shape == expected.shape
        assert abs(got - expected).max() < 1e-4


# -- the tagger over an encoder ------------------------------------------------------------


def tagger_config(encoder_dirs, kind: str = "bert", **changes):
    """A small tagger over a tiny encoder; windows of 10 tokens 3 subwords apart, so that long
    sentences are read in several windows."""
    options = dict(encoder=str(encoder_dirs[kind]), embedding_dim=6, hidden_dim=5, char_filters=4,
                   char_embedding_dim=3, case_embedding_dim=3, dropout=0.0, encoder_window=10, encoder_stride=3)  # fmt: skip
    options.update(changes)
    return TaggerConfig(**options)


def sentences_of(n: int, seed: int) -> list[Sentence]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = words_of(rng, rng.randint(1, 14))
        out.append(Sentence(words, [rng.choice("ABC") for _ in words]))
    return out


SENTENCES = sentences_of(30, seed=8)
PROBES = [s.tokens for s in sentences_of(7, seed=9)] + [[], ["x"], ["The", *ODD], words_of(random.Random(3), 40)]


@pytest.fixture(scope="module")
def vocabs():
    return Vocabularies.build(SENTENCES)


def test_a_dataset_tokenizes_each_sentence_once_and_collate_lays_out_its_windows(encoder_dirs, vocabs):
    tagger = Tagger(tagger_config(encoder_dirs), vocabs)
    dataset = tagger.dataset(SENTENCES)
    tokenized = tagger.windows.tokenizer.tokenize([s.tokens for s in SENTENCES])
    assert [e.subwords for e in dataset.items] == tokenized
    assert dataset.subword_lengths.tolist() == [len(t.ids) for t in tokenized]
    batch = collate(dataset.items[:5], tagger.windows)
    expected = SubwordBatch.from_inputs(encoder_inputs(tokenized[:5], tagger.windows.tokenizer, 10, 3))
    assert all(torch.equal(a, b) for a, b in zip(batch.subwords, expected))
    loader = make_loader(dataset, batch_size=4, shuffle=True)
    assert loader.batch_sampler.lengths.tolist() == dataset.subword_lengths.tolist()  # bucketed by subwords
    assert all(b.subwords is not None for b in loader)
    # today's model: no subwords anywhere
    plain = Tagger(TaggerConfig(embedding_dim=6, hidden_dim=5, char_filters=0), vocabs).dataset(SENTENCES)
    assert plain.windows is None and plain.items[0].subwords is None and collate(plain.items).subwords is None
    with pytest.raises(SeqtagError, match="encodes its data with its windows"):
        TaggingDataset(SENTENCES, vocabs, tagger.config)


ARCHITECTURES = [
    dict(kind="bert", crf=True, num_layers=1, encoder_pooling="first"),
    dict(kind="roberta", crf=True, num_layers=0, embedding_dim=0, char_filters=0, encoder_pooling="mean"),
    dict(kind="bert", crf=False, num_layers=2, bidirectional=False, encoder_pooling="last", encoder_layers=2),
    dict(kind="roberta", crf=False, num_layers=0, case_embedding_dim=0, encoder_window=0, encoder_stride=0),
]


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
def test_batched_equals_one_at_a_time_from_strings(arch, encoder_dirs, vocabs):
    """predict, predict_with_confidence, marginals and nbest: the same batched (sentences padded
    to the longest, windows padded to the widest) as one at a time."""
    torch.manual_seed(4)
    tagger = Tagger(tagger_config(encoder_dirs, **arch), vocabs).eval()
    if tagger.encoder.mix is not None:
        with torch.no_grad():
            tagger.encoder.mix.weights.normal_()
    batched = tagger.predict_with_confidence(PROBES, batch_size=4)
    alone = [tagger.predict_with_confidence([s])[0] for s in PROBES]
    assert [t for t, _ in batched] == [t for t, _ in alone] == tagger.predict(PROBES, batch_size=3)
    for (_, a), (_, b) in zip(batched, alone):
        assert a == pytest.approx(b, abs=1e-5)
    for a, b in zip(tagger.marginals(PROBES, batch_size=5), [tagger.marginals([s])[0] for s in PROBES]):
        assert a == pytest.approx(b, abs=1e-5)
    nbest = tagger.nbest(PROBES, 3, batch_size=4)
    for s, best in zip(PROBES, nbest):
        (single,) = tagger.nbest([s], 3)
        assert [tags for tags, _ in best] == [tags for tags, _ in single]
        assert [p for _, p in best] == pytest.approx([p for _, p in single], abs=1e-4)
        assert best[0][0] == tagger.predict([s])[0]
    assert nbest[PROBES.index([])] == [([], 0.0)]


def test_inference_precision_is_autocast_around_every_entry_point(encoder_dirs, vocabs, monkeypatch):
    """``precision="bf16"`` runs the model under bf16 autocast in predict, predict_with_confidence,
    marginals, nbest and decode_encoded (the head's input arrives in bf16), close to fp32; fp32
    is untouched. An encoder straight to the head has no LSTM, so this CPU's bf16 matmuls run
    it whatever the LSTM probe says (patched here)."""
    from seqtag import device

    monkeypatch.setattr(device, "cpu_bf16_problem", lambda: "")
    torch.manual_seed(5)
    config = tagger_config(encoder_dirs, num_layers=0, embedding_dim=0, char_filters=0)
    tagger = Tagger(config, vocabs).eval()
    seen = []
    tagger.output.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    sentences = PROBES[:5]
    fp32 = tagger.predict_with_confidence(sentences)
    assert set(seen) == {torch.float32}
    seen.clear()
    bf16 = tagger.predict_with_confidence(sentences, precision="bf16")
    tagger.predict(sentences, precision="bf16")
    tagger.marginals(sentences, precision="bf16")
    tagger.nbest(sentences, 2, precision="bf16")
    tagger.decode_encoded(tagger.dataset([Sentence(s, ["A"] * len(s)) for s in sentences]), precision="bf16")
    assert len(seen) == 5 and set(seen) == {torch.bfloat16}
    for (_, p32), (_, p16) in zip(fp32, bf16):
        assert p16 == pytest.approx(p32, abs=0.05)  # bf16 keeps 8 bits of mantissa
    with pytest.raises(SeqtagError, match="fp16 needs CUDA"):
        tagger.predict(sentences, precision="fp16")
    with pytest.raises(SeqtagError, match="expected precision fp32, bf16 or fp16, got 'fp64'"):
        tagger.predict(sentences, precision="fp64")


def test_tag_ids_takes_the_vectors_and_empty_rows(encoder_dirs, vocabs):
    tagger = Tagger(tagger_config(encoder_dirs), vocabs).eval()
    sentences = [PROBES[0], [], PROBES[1]]
    dataset = tagger.dataset([Sentence(s, ["A"] * len(s)) for s in sentences])
    batch = collate(dataset.items, tagger.windows)
    with torch.no_grad():
        vectors = tagger.word_vectors(batch.subwords)
        assert vectors.shape == (3, batch.words.size(1), tagger.encoder.dim) and not vectors[1].any()
        ids = tagger.tag_ids(batch.words, batch.cases, batch.chars, batch.lengths, vectors)
        with pytest.raises(ValueError, match="expected the encoder's vectors"):
            tagger.tag_ids(batch.words, batch.cases, batch.chars, batch.lengths)
        with pytest.raises(ValueError, match=r"expected vectors of shape \[3, "):
            tagger.tag_ids(batch.words, batch.cases, batch.chars, batch.lengths, vectors[:, :, :3])
    expected = tagger.predict_ids(sentences)
    assert [row[: len(e)] for row, e in zip(ids.tolist(), expected)] == expected and not ids[1].any()
    assert tagger.decode_encoded(dataset.items, batch_size=2) == expected == tagger.decode_encoded(dataset, batch_size=2)


def test_windows_are_checked_against_the_encoder(encoder_dirs, vocabs):
    with pytest.raises(ValueError, match=r"expected encoder_window <= 128 \(the encoder's limit\), got 200"):
        Tagger(tagger_config(encoder_dirs, encoder_window=200), vocabs)
    with pytest.raises(ValueError, match=r"expected encoder_stride <= 8"):
        Tagger(tagger_config(encoder_dirs, encoder_window=10, encoder_stride=9), vocabs)
    layout = Tagger(tagger_config(encoder_dirs, encoder_window=0, encoder_stride=0), vocabs).windows
    assert (layout.size, layout.stride) == (128, 63)  # BERT's 128 positions; half of 126 subwords
    assert Tagger(tagger_config(encoder_dirs, "roberta", encoder_window=0), vocabs).windows.size == 128  # 130 - 2


# -- training --------------------------------------------------------------------------------

FAST = TrainConfig(epochs=2, batch_size=8, device="cpu", patience=0, lr=1e-2, encoder_lr=3e-3, warmup=0.3,
                   schedule="constant", checkpoint_every=2, keep=100, seed=5)  # fmt: skip


@pytest.fixture(scope="module")
def straight_run(encoder_dirs, tmp_path_factory):
    """2 epochs of 4 steps, a checkpoint every 2 steps; the encoder's own dropout is on."""
    out = tmp_path_factory.mktemp("straight")
    config = tagger_config(encoder_dirs, dropout=0.2)
    tagger = seqtag.train(SENTENCES, SENTENCES[:8], config, FAST, output_dir=out, quiet=True)
    return out, tagger


def test_the_encoder_has_its_own_learning_rate_warm_up_and_linear_decay(straight_run):
    out, _ = straight_run
    saved = read_checkpoint(out / "checkpoints/last.pt")
    groups = saved["optimizer"]["param_groups"]
    assert [g.get("name") for g in groups] == [None, ENCODER_GROUP]
    steps = saved["progress"].step
    assert steps == 8  # 30 sentences in batches of 8, 2 epochs
    assert groups[0]["lr"] == learning_rate(FAST, steps - 1, 0, 8) == FAST.lr  # constant after warm-up
    assert groups[1]["lr"] == encoder_learning_rate(FAST, steps - 1, 8) == pytest.approx(3e-3 / 6)
    assert FAST.warmup_for(8) == 2 and encoder_learning_rate(FAST, 0, 8) == 3e-3 / 2


def test_resuming_an_encoder_run_mid_epoch_is_bit_identical(straight_run, tmp_path):
    straight, straight_tagger = straight_run
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    mid = [p for p in numbered_checkpoints(run / "checkpoints") if "-step-" in p.name and p.name.startswith("epoch-0002")]
    assert read_checkpoint(mid[0])["progress"].batch == 2
    resumed = seqtag.train(SENTENCES, SENTENCES[:8], output_dir=run, quiet=True, resume=mid[0])
    a, b = resumed.state_dict(), straight_tagger.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("encoder.model.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_frozen_encoder_has_no_parameter_group_and_stays_in_eval_mode(encoder_dirs, tmp_path):
    config = tagger_config(encoder_dirs, encoder_frozen=True, encoder_layers=2)
    before = Tagger(config, Vocabularies.build(SENTENCES)).encoder.model.state_dict()
    tagger = seqtag.train(SENTENCES, None, config, FAST.replace(epochs=1), output_dir=tmp_path, quiet=True)
    groups = read_checkpoint(tmp_path / "checkpoints/last.pt")["optimizer"]["param_groups"]
    assert len(groups) == 1
    assert all(torch.equal(v, tagger.encoder.model.state_dict()[k]) for k, v in before.items())
    assert not tagger.train().encoder.model.training and tagger.encoder.mix.training
    assert tagger.encoder.mix.weights.abs().sum() > 0  # the mix learned


# -- the model directory ------------------------------------------------------------------


@pytest.fixture
def fine_tuned(encoder_dirs):
    """An encoder tagger whose encoder's weights differ from the files it was loaded from."""
    torch.manual_seed(7)
    tagger = Tagger(tagger_config(encoder_dirs, "roberta", encoder_layers=2), Vocabularies.build(SENTENCES)).eval()
    with torch.no_grad():
        tagger.encoder.model.get_input_embeddings().weight.mul_(1.5)
        tagger.encoder.mix.weights.normal_()
    return tagger


def test_a_model_directory_holds_its_encoder_and_loads_offline(fine_tuned, tmp_path, no_network, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    fine_tuned.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m" / "encoder").iterdir()) == [
        "config.json", "model.safetensors", "subwords.json", "tokenizer.json"
    ]  # fmt: skip
    weights = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert not any(k.startswith("encoder.model.") for k in weights) and "encoder.mix.weights" in weights
    loaded = Tagger.load(tmp_path / "m")
    a, b = loaded.state_dict(), fine_tuned.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config == fine_tuned.config and loaded.windows[1:] == fine_tuned.windows[1:]
    tok, expected = loaded.windows.tokenizer, fine_tuned.windows.tokenizer
    assert (tok.prefix, tok.suffix, tok.unk_id, tok.pad_id) == (expected.prefix, expected.suffix, expected.unk_id, expected.pad_id)
    assert loaded.predict_with_confidence(PROBES) == fine_tuned.predict_with_confidence(PROBES)


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: shutil.rmtree(d / "encoder"), "not a seqtag model directory .no encoder/, the model's encoder."),
        (lambda d: (d / "encoder/model.safetensors").write_bytes(b"\0" * 64), "encoder: cannot load its weights"),
        (lambda d: _edit_json(d / "encoder/config.json", lambda c: c.update(hidden_size=30)),
         "encoder: cannot load its weights"),
        (lambda d: (d / "encoder/subwords.json").write_text("{}"), r"subwords.json: not a seqtag.subwords file"),
        (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(encoder="")),
         r'config.json: bad "model": expected encoder_layers only with an encoder, got 2 without one'),
        (lambda d: torch.save({**torch.load(d / "weights.pt"), "encoder.model.pooler.x": torch.zeros(1)},
                              d / "weights.pt"), "weights.pt does not match .*unexpected encoder.model.pooler.x"),
    ],
    ids=["no-encoder-dir", "encoder-weights-torn", "encoder-config-edited", "subwords-edited", "encoder-dropped",
         "encoder-weights-in-weights-pt"],
)
def test_load_checks_an_encoder_model_directory_as_a_whole(fine_tuned, tmp_path, corrupt, message, no_network):
    fine_tuned.save(tmp_path)
    corrupt(tmp_path)
    with pytest.raises(SeqtagError, match=message) as e:
        Tagger.load(tmp_path)
    assert "\n" not in str(e.value)


# -- exports ------------------------------------------------------------------------------


@pytest.mark.parametrize(("form", "name"), [("torchscript", "TorchScript"), ("torch-export", "torch.export")])
def test_export_refuses_an_encoder_model_in_one_line(form, name, fine_tuned, tmp_path, capsys):
    fine_tuned.save(tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "--format", form, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{name} cannot hold a model with a pretrained encoder: export it as ONNX (seqtag export --format onnx)" in err
    assert "Traceback" not in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


# -- without transformers ----------------------------------------------------------------------


def test_a_model_without_an_encoder_never_imports_transformers_or_tokenizers(tmp_path):
    """Training, saving, loading and predicting today's model: neither library is imported."""
    code = (
        "import sys, seqtag\n"
        "data = seqtag.tutorial_corpus()\n"
        "config = seqtag.TaggerConfig(embedding_dim=8, hidden_dim=8, char_filters=4)\n"
        "tagger = seqtag.train(data, config=config, train_config=seqtag.TrainConfig(epochs=1, device='cpu'),\n"
        "                      output_dir=sys.argv[1], quiet=True)\n"
        "loaded = seqtag.Tagger.load(sys.argv[1])\n"
        "assert loaded.predict([['The', 'dog']]) == tagger.predict([['The', 'dog']])\n"
        "print('transformers' in sys.modules, 'tokenizers' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.split() == ["False", "False"], run.stderr


def test_an_encoder_without_transformers_is_a_one_line_error(encoder_dirs, tmp_path):
    train = tmp_path / "train.conll"
    train.write_text("The\tA\ndog\tB\n\n")
    code = (
        "import sys\n"
        "sys.modules['transformers'] = None\n"
        "from seqtag.cli.app import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["train", "--train", str(train), "--output-dir", str(tmp_path / "m"), "--encoder", str(encoder_dirs["bert"])]
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "seqtag: error: a pretrained encoder needs transformers: pip install 'seqtag[transformers]'"


def test_an_encoder_model_trains_on_a_dataset_as_on_the_same_files(encoder_dirs, tmp_path, capsys):
    """--hf-dataset with --encoder: the rows are read as sentences and tokenized in memory, so the
    run equals the one on the same sentences as CoNLL files, weights and all; evaluate reads the
    dataset's test split."""
    datasets = pytest.importorskip("datasets")
    from seqtag import write_conll

    train, dev = SENTENCES[:12], SENTENCES[12:18]
    rows = lambda sentences: {"tokens": [s.tokens for s in sentences], "tags": [s.tags for s in sentences]}  # noqa: E731
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(train)),
                          "validation": datasets.Dataset.from_dict(rows(dev)),
                          "test": datasets.Dataset.from_dict(rows(dev))}).save_to_disk(tmp_path / "saved")  # fmt: skip
    write_conll(train, tmp_path / "train.conll")
    write_conll(dev, tmp_path / "dev.conll")
    common = ["--encoder", str(encoder_dirs["bert"]), "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--quiet"]
    assert main(["train", "--hf-dataset", str(tmp_path / "saved"), "--hf-cache-dir", str(tmp_path / "cache"),
                 "--output-dir", str(tmp_path / "a"), *common]) == 0  # fmt: skip
    assert main(["train", "--train", str(tmp_path / "train.conll"), "--dev", str(tmp_path / "dev.conll"),
                 "--output-dir", str(tmp_path / "b"), *common]) == 0  # fmt: skip
    a, b = Tagger.load(tmp_path / "a"), Tagger.load(tmp_path / "b")
    assert a.vocabs == b.vocabs
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "--hf-dataset", str(tmp_path / "saved"), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == seqtag.evaluate(a, dev)["accuracy"]


def test_seqtag_train_with_an_encoder_then_predict_and_evaluate(encoder_dirs, tmp_path, capsys, monkeypatch):
    from seqtag import write_conll

    data = tmp_path / "train.conll"
    write_conll(SENTENCES, data)
    out = tmp_path / "run"
    monkeypatch.chdir(encoder_dirs["roberta"].parent)  # a relative directory is saved absolute
    argv = ["train", "--train", str(data), "--dev", str(data), "--output-dir", str(out), "--encoder", "roberta",
            "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    recipe = for_encoder(TaggerConfig(encoder=str(encoder_dirs["roberta"])))
    assert saved["model"] == recipe.to_dict() and saved["training"]["encoder_lr"] == 1e-4
    assert saved["training"]["optimizer"] == "adamw" and saved["training"]["warmup"] == 0.1
    text = tmp_path / "in.txt"
    text.write_text("The dog runs .\nUnbelievable !\n")
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(text)]) == 0
    tagged = capsys.readouterr().out
    assert Tagger.load(out).predict([["The", "dog", "runs", "."]])[0] == [line.split()[-1] for line in tagged.splitlines()[:4]]
    assert main(["evaluate", str(out), "--data", str(data)]) == 0


ONNX_PROBES = [["x"], ["The", *ODD], *PROBES[:4], [], words_of(random.Random(11), 45), ["Zyzzyva"]]


@pytest.mark.parametrize("arch", [ARCHITECTURES[0], ARCHITECTURES[1], ARCHITECTURES[2]],
                         ids=["bert-bilstm-crf", "roberta-head-crf", "bert-mix-softmax"])  # fmt: skip
def test_onnx_export_is_one_graph_that_equals_eager_where_torch_cannot_be_imported(arch, encoder_dirs, vocabs,
                                                                                    tmp_path, capsys):
    """seqtag export --format onnx: the encoder, pooling, own features, BiLSTM and head in one
    file; OnnxTagger tokenizes with tokenizers alone, in a process without torch or transformers."""
    pytest.importorskip("onnxruntime")
    import onnx

    torch.manual_seed(6)
    tagger = Tagger(tagger_config(encoder_dirs, **arch), vocabs).eval()
    if tagger.encoder.mix is not None:
        with torch.no_grad():
            tagger.encoder.mix.weights.normal_()
    tagger.save(tmp_path / "m")
    path = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "m"), "--format", "onnx", "--output", str(path)]) == 0
    graph = onnx.load(str(path)).graph
    assert {i.name for i in graph.input} >= {"window_ids", "window_mask", "source", "word_starts", "word_ends",
                                              "words", "lengths", "with_marginals"}  # fmt: skip
    assert [o.name for o in graph.output] == ["tags", "confidence", "marginals", "emissions", "log_partition"]
    code = (
        "import sys, json\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from seqtag.serving.onnx_runner import OnnxTagger\n"
        "tagger = OnnxTagger(sys.argv[1])\n"
        "sentences = json.loads(sys.argv[2])\n"
        "print(json.dumps([tagger.predict(sentences, batch_size=3), tagger.predict_with_confidence(sentences),\n"
        "                  tagger.nbest(sentences, 3, batch_size=2)]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(ONNX_PROBES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    tags, with_confidence, nbest = json.loads(run.stdout)
    expected = tagger.predict_with_confidence(ONNX_PROBES)
    assert tags == [t for t, _ in with_confidence] == [t for t, _ in expected]
    for (_, got), (_, want) in zip(with_confidence, expected):
        assert got == pytest.approx(want, abs=1e-4)
    for got, want in zip(nbest, tagger.nbest(ONNX_PROBES, 3)):
        assert [list(t) for t, _ in got] == [t for t, _ in want]
        assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-4)
    # the command line tags with the file as with the model directory
    text = tmp_path / "in.txt"
    text.write_text("The dog runs .\n" + " ".join(ONNX_PROBES[-2]) + "\n")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m"), "--input", str(text)]) == 0
    from_directory = capsys.readouterr().out
    assert main(["predict", str(path), "--input", str(text)]) == 0
    assert capsys.readouterr().out == from_directory


@pytest.mark.slow
def test_two_ranks_train_an_encoder_model(encoder_dirs, tmp_path):
    """Under DDP the encoder's weights that the tagger never reads (BERT's pooler) do not stall
    the gradient reduction."""
    import os

    from seqtag import write_conll

    data = tmp_path / "train.conll"
    write_conll(SENTENCES, data)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "seqtag",
           "train", "--train", str(data), "--output-dir", str(out), "--encoder", str(encoder_dirs["bert"]),
           "--encoder-window", "10", "--encoder-stride", "3", "--epochs", "2", "--batch-size", "4", "--device", "cpu",
           "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_checkpoint(out / "checkpoints/last.pt")["distributed"]["world_size"] == 2
    assert len(Tagger.load(out).predict([["The", "dog"]])[0]) == 2
