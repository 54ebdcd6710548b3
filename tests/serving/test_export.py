"""Export: the TorchScript tagger and the torch.export programs agree with eager prediction.

The oracle is always the eager tagger (``Tagger.predict`` / ``Tagger.decode``): strings, ids,
padding, unknown and non-ASCII input, empty input, and a process that cannot import seqtag.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig, read_conllu
from seqtag.data.dataset import collate, encode_tokens
from seqtag.serving.torch_export import load_torch_export, to_torch_export
from seqtag.serving.torchscript import ScriptedTagger, load_torchscript, script, to_torchscript

from ..helpers import (
    TINY,
    odd_sentences,
    random_sentences,
    small_tagger,
)


@pytest.fixture(params=["crf_tagger", "softmax_tagger"])
def tagger(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def scripted_files(tmp_path_factory, crf_tagger, softmax_tagger):
    out = tmp_path_factory.mktemp("torchscript")
    crf_tagger.save(out / "crf-model")  # one export from a model directory, one from a Tagger
    return {
        "crf_tagger": to_torchscript(out / "crf-model", out / "exported" / "crf.pt"),
        "softmax_tagger": to_torchscript(softmax_tagger, out / "softmax.pt"),
    }


@pytest.fixture
def scripted(request, tagger, scripted_files):
    return load_torchscript(scripted_files[request.node.callspec.params["tagger"]])


# -- TorchScript --------------------------------------------------------------------------


def test_torchscript_tags_equal_eager(tagger, scripted):
    sentences = odd_sentences(tagger)
    expected = tagger.predict(sentences)
    assert scripted(sentences) == expected
    assert scripted.predict_ids(sentences) == tagger.predict_ids(sentences)
    assert any(len(set(tags)) > 1 for tags in expected), "degenerate predictions make a weak oracle"


def test_torchscript_encoding_equals_eager_collate(tagger, scripted):
    sentences = odd_sentences(tagger, seed=1)
    expected = collate([encode_tokens(s, tagger.vocabs, tagger.config) for s in sentences])
    words, cases, chars, lengths = scripted.encode(sentences)
    assert torch.equal(words, expected.words)
    assert torch.equal(cases, expected.cases)
    assert torch.equal(chars, expected.chars)
    assert torch.equal(lengths, expected.lengths)


def test_tag_ids_on_a_padded_batch_equal_each_sentence_alone(tagger, scripted):
    sentences = odd_sentences(tagger, seed=2)[:40]
    words, cases, chars, lengths = scripted.encode(sentences)
    ids = scripted.tag_ids(words, cases, chars, lengths)
    assert ids.shape == words.shape and ids.dtype == torch.long
    for i, s in enumerate(sentences):
        assert ids[i, : len(s)].tolist() == tagger.predict_ids([s])[0]
        assert not ids[i, len(s) :].any()
        alone = scripted.tag_ids(*scripted.encode([s]))
        assert alone[0].tolist() == ids[i, : len(s)].tolist()


def test_batch_size_and_order_do_not_change_tags(crf_tagger, scripted_files):
    module = load_torchscript(scripted_files["crf_tagger"])
    sentences = odd_sentences(crf_tagger, seed=3)
    expected = crf_tagger.predict(sentences)
    module.batch_size = 3
    assert module(sentences) == expected
    assert module(sentences[::-1]) == expected[::-1]


def test_empty_input(scripted, tagger):
    assert scripted([]) == []
    assert scripted([[]]) == [[]]
    assert scripted([[], ["a", "B"], []]) == [[], *tagger.predict([["a", "B"]]), []]
    words, cases, chars, lengths = scripted.encode([])
    assert words.shape == (0, 0) and lengths.shape == (0,)
    assert scripted.tag_ids(words, cases, chars, lengths).shape == (0, 0)
    words, cases, chars, lengths = scripted.encode([[], []])
    assert scripted.tag_ids(words, cases, chars, lengths).shape == (2, 0)


def test_tag_ids_rejects_bad_shapes(scripted):
    words = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(torch.jit.Error, match="expected cases of shape"):
        scripted.tag_ids(words, torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, 1, dtype=torch.long), torch.tensor([3, 3]))
    with pytest.raises(torch.jit.Error, match="expected 0 <= lengths <= seq_len"):
        scripted.tag_ids(words, words, torch.ones(2, 3, 1, dtype=torch.long), torch.tensor([3, 4]))


# torch 2.13 deprecates TorchScript; this test calls torch.jit.load itself, as a user would
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_metadata(crf_tagger, scripted_files):
    module = load_torchscript(scripted_files["crf_tagger"])
    assert module.tags == crf_tagger.vocabs.tags.itos
    assert json.loads(module.config_json) == crf_tagger.config.to_dict()
    assert module.seqtag_version == seqtag.__version__
    extra = {"seqtag.json": ""}
    torch.jit.load(str(scripted_files["crf_tagger"]), _extra_files=extra)
    meta = json.loads(extra["seqtag.json"])
    assert meta["format"] == "seqtag.torchscript" and meta["seqtag_version"] == seqtag.__version__
    assert meta["tags"] == crf_tagger.vocabs.tags.itos and meta["model"] == crf_tagger.config.to_dict()


def test_loads_and_tags_in_a_process_that_cannot_import_seqtag(crf_tagger, scripted_files, tmp_path):
    sentences = odd_sentences(crf_tagger, seed=4)
    (tmp_path / "in.json").write_text(json.dumps(sentences), encoding="utf-8")
    code = (
        "import sys; sys.modules['seqtag'] = None\n"
        "import json, torch\n"
        "try:\n    import seqtag\nexcept ImportError:\n    pass\nelse:\n    sys.exit('seqtag importable')\n"
        f"m = torch.jit.load({str(scripted_files['crf_tagger'])!r}, map_location='cpu')\n"
        "sentences = json.load(open('in.json', encoding='utf-8'))\n"
        "print(json.dumps(m(sentences)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # no oversubscription on a shared machine
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == crf_tagger.predict(sentences)


@pytest.mark.parametrize(
    "arch",
    [dict(rnn_mode="packed", num_layers=2), dict(bidirectional=False, crf=True, tag_scheme="none")],
    ids=["packed-2-layers", "forward-only-crf"],
)
def test_other_architectures_script_and_agree(arch):
    tagger = small_tagger(random_sentences(30, seed=5), **arch)  # untrained: random weights are an oracle too
    sentences = odd_sentences(tagger, seed=5)[:24]
    expected = tagger.predict(sentences)
    assert script(tagger)(sentences) == expected
    assert ScriptedTagger(tagger)(sentences) == expected  # the same code, unscripted


def test_load_torchscript_refuses_other_files(tmp_path):
    with pytest.raises(SeqtagError, match="no such file"):
        load_torchscript(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(SeqtagError, match="not a TorchScript file"):
        load_torchscript(tmp_path / "junk.pt")


# -- torch.export ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_crf(tmp_path_factory, crf_tagger):
    # two small buckets keep the export fast (export time grows with the bucket lengths)
    return load_torch_export(to_torch_export(crf_tagger, tmp_path_factory.mktemp("pt2") / "crf", buckets=[3, 6]))


def test_torch_export_tags_equal_eager(crf_tagger, exported_crf):
    assert exported_crf.buckets == [3, 6] and exported_crf.tags == crf_tagger.vocabs.tags.itos
    sentences = [s[:6] for s in odd_sentences(crf_tagger, seed=7)]
    assert exported_crf.predict(sentences) == crf_tagger.predict(sentences)
    assert exported_crf.predict(sentences[:12], batch_size=1) == crf_tagger.predict(sentences[:12])
    assert exported_crf.predict([]) == []
    narrow = [["a", "B", "c"], ["I"], [""]]  # character width 1 (or 0), padded to the programs' minimum
    assert exported_crf.predict(narrow) == crf_tagger.predict(narrow)


def test_torch_export_ids_equal_eager_whatever_the_bucket_padding(crf_tagger, exported_crf):
    sentences = [s[:n] for n, s in zip(range(0, 7), odd_sentences(crf_tagger, seed=8)[2:])]
    batch = collate([encode_tokens(s, crf_tagger.vocabs, crf_tagger.config) for s in sentences])
    ids = exported_crf(batch.words, batch.cases, batch.chars, batch.lengths)
    assert ids.shape == batch.words.shape
    for i, s in enumerate(sentences):
        assert ids[i, : len(s)].tolist() == crf_tagger.predict_ids([s])[0]
        assert not ids[i, len(s) :].any()
    # rows 1-3 (lengths 1-3) alone run in bucket 3, above in bucket 6: the same ids
    small = exported_crf(batch.words[1:4, :3], batch.cases[1:4, :3], batch.chars[1:4, :3], batch.lengths[1:4])
    assert small.tolist() == ids[1:4, :3].tolist()


def test_torch_export_refuses_longer_sentences(crf_tagger, exported_crf):
    with pytest.raises(ValueError, match="more than the 6"):
        exported_crf.predict([["a"] * 7])


def test_torch_export_without_crf_or_chars(softmax_tagger, tmp_path):
    exported = load_torch_export(to_torch_export(softmax_tagger, tmp_path / "softmax", max_length=4))
    sentences = [s[:4] for s in odd_sentences(softmax_tagger, seed=9)]
    assert exported.word_length == 0
    assert exported.predict(sentences) == softmax_tagger.predict(sentences)
    manifest = json.loads((tmp_path / "softmax" / "seqtag.json").read_text())
    assert manifest["format"] == "seqtag.torch_export" and manifest["buckets"] == {"4": "bucket_4.pt2"}
    with pytest.raises(SeqtagError, match="already exists"):
        to_torch_export(softmax_tagger, tmp_path / "softmax", max_length=4)


def test_torch_export_onto_a_full_disk_is_one_line_and_leaves_nothing(softmax_tagger, tmp_path, monkeypatch):
    """torch.export.save onto a full disk aborts the process from C++; the programs are saved
    into memory and written by Python, so a full disk is a WriteError naming the directory."""
    import errno
    import os

    from seqtag.fileio import WriteError

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(WriteError) as info:
        to_torch_export(softmax_tagger, out / "pt2", max_length=4)
    assert str(info.value) == f"cannot write {out / 'pt2'}: No space left on device"
    assert list(out.iterdir()) == []


# -- a real corpus --------------------------------------------------------------------------


def test_torchscript_on_ewt(ewt_dir, tmp_path):
    train = read_conllu(ewt_dir / "en_ewt-ud-train.conllu")[:300]
    dev = read_conllu(ewt_dir / "en_ewt-ud-dev.conllu")[:300]
    tagger = seqtag.train(
        train, config=TaggerConfig(**{**TINY, "embedding_dim": 16, "hidden_dim": 16}),
        train_config=TrainConfig(epochs=1, batch_size=16, device="cpu"), quiet=True,
    )
    module = load_torchscript(to_torchscript(tagger, tmp_path / "ewt.pt"))
    sentences = [s.tokens for s in dev]
    expected = tagger.predict(sentences)
    assert module(sentences) == expected
    exported = load_torch_export(to_torch_export(tagger, tmp_path / "ewt_pt2", buckets=[8, 16]))
    short = [i for i, s in enumerate(sentences) if len(s) <= 16]
    assert len(short) > 100
    assert exported.predict([sentences[i] for i in short]) == [expected[i] for i in short]


# -- every format: the same planner and its checks ---------------------------------------


def test_every_format_refuses_a_batch_size_below_one(crf_tagger, scripted_files, exported_crf):
    for bad in (0, -1):
        message = f"expected batch_size >= 1, got {bad}"
        with pytest.raises(ValueError, match=message):
            crf_tagger.predict([["a"]], batch_size=bad)
        with pytest.raises(ValueError, match=message):
            ScriptedTagger(crf_tagger, batch_size=bad)
        module = load_torchscript(scripted_files["crf_tagger"])
        with pytest.raises(ValueError, match=message):
            module.batch_size = bad  # as `seqtag predict --batch-size` sets it, after loading
        module.module.batch_size = bad  # the scripted module itself checks at the call
        with pytest.raises(torch.jit.Error, match=message):
            module([["a"]])
        with pytest.raises(torch.jit.Error, match=message):
            module.predict_ids([])
        with pytest.raises(ValueError, match=message):
            exported_crf.predict([["a"]], batch_size=bad)


def test_every_format_gives_the_same_tags_whatever_the_batch_plan(crf_tagger, scripted_files, exported_crf):
    sentences = [s[:6] for s in odd_sentences(crf_tagger, seed=10)]
    expected = crf_tagger.predict(sentences)
    module = load_torchscript(scripted_files["crf_tagger"])
    for batch_size, max_tokens in [(1, 0), (5, 0), (256, 7)]:
        module.batch_size, module.max_tokens = batch_size, max_tokens
        assert module(sentences) == expected
        assert exported_crf.predict(sentences, batch_size=batch_size) == expected
        assert crf_tagger.predict(sentences, batch_size=batch_size) == expected


def test_torchscript_tags_a_10000_token_sentence_like_eager(tagger, scripted):
    known = tagger.vocabs.words.itos[2:]
    long = [known[i % len(known)].title() if i % 7 == 0 else known[i % len(known)] for i in range(10_000)]
    sentences = [["a", "B"], long, ["Über"]]
    expected = tagger.predict(sentences)
    assert len(expected[1]) == 10_000
    assert scripted(sentences) == expected


# -- confidence, marginals and n-best ------------------------------------------------------


def test_torchscript_confidence_marginals_and_nbest_equal_eager(tagger, scripted):
    sentences = odd_sentences(tagger, seed=11)
    for (tags, probs), (want_tags, want_probs) in zip(scripted.predict_with_confidence(sentences),
                                                      tagger.predict_with_confidence(sentences)):
        assert tags == want_tags
        assert probs == pytest.approx(want_probs, abs=1e-6)
    assert [t for t, _ in scripted.predict_with_confidence(sentences)] == tagger.predict(sentences)
    for got, want in zip(scripted.marginals(sentences), tagger.marginals(sentences)):
        torch.testing.assert_close(got, torch.from_numpy(want), atol=1e-6, rtol=1e-5)
    short = [s[:12] for s in sentences]
    for got, want in zip(scripted.nbest(short, 4), tagger.nbest(short, 4)):
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-5)
    assert [r[0][0] for r in scripted.nbest(short, 4)] == tagger.predict(short)
    with pytest.raises((ValueError, torch.jit.Error), match="expected k >= 1, got 0"):
        scripted.nbest(short, 0)  # the loader's module (ValueError), or the scripted one itself


def test_torch_export_gives_tags_only(exported_crf):
    for call in (lambda: exported_crf.predict_with_confidence([["a"]]), lambda: exported_crf.nbest([["a"]], 2),
                 lambda: exported_crf.marginals([["a"]])):
        with pytest.raises(SeqtagError, match="a torch.export directory gives tags only"):
            call()
