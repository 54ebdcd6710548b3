"""seqtag.model.directory: Tagger.save / Tagger.load round trips, and a model directory checked as a
whole, each problem reported in one line of our own."""

import json

import pytest
import torch

from seqtag import SeqtagError, Tagger, TrainConfig

from ..helpers import bio_sentences, random_sentences, small_tagger


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


@pytest.mark.parametrize("protocol", [2, 4])  # 4: torch warns of the protocol unless the loader quiets it
def test_load_refuses_a_pickle_that_runs_code_in_one_line_of_our_own(tmp_path, protocol):
    sentences = random_sentences(3)
    small_tagger(sentences).save(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, tmp_path / "weights.pt", pickle_protocol=protocol)
    with pytest.raises(SeqtagError, match="weights.pt: refused to load: it holds Python objects") as e:
        Tagger.load(tmp_path)
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert not marker.exists()


def test_load_refuses_weights_of_another_dtype(tmp_path):
    """load_state_dict would cast int64 weights into the float parameters, and the model would tag."""
    small_tagger(random_sentences(3)).save(tmp_path)
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].long()
    torch.save(state, tmp_path / "weights.pt")
    with pytest.raises(SeqtagError, match=rf"weights.pt does not match .*: {name} is int64, expected float32"):
        Tagger.load(tmp_path)


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
         r"vocab.json: 2 tags, but \S+weights.pt has 3 rows in output.weight \(one per tag\)"),
        (lambda d: _edit_json(d / "vocab.json", _remove_word),
         r"vocab.json: \d+ words, but \S+weights.pt has \d+ rows in word_embedding.weight"),
        (lambda d: _edit_json(d / "config.json", lambda c: c["model"].pop("hidden_dim")),
         'config.json: bad "model": TaggerConfig lacks hidden_dim'),
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
        (lambda d: _edit_json(d / "vocab.json", lambda v: v["tags"]["itos"].append("Z")),
         r"vocab.json: 4 tags, but \S+weights.pt has 3 rows in output.weight"),
        (lambda d: _edit_json(d / "vocab.json", lambda v: v["chars"]["itos"].append("§")),
         r"vocab.json: \d+ chars, but \S+weights.pt has \d+ rows in char_cnn.embedding.weight"),
        (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(crf="yes")),
         "config.json: bad \"model\": expected crf true or false, got 'yes'$"),
        (lambda d: _edit_json(d / "config.json", lambda c: c.update(training={"epochs": "x"})),
         "config.json: bad \"training\": "),
        (lambda d: _edit_json(d / "config.json", lambda c: c.update(data=5)), "config.json: expected \"data\" an object, got 5$"),
        (lambda d: _edit_json(d / "config.json", lambda c: c.update(seqtag_version=3)),
         "config.json: expected \"seqtag_version\" a string, got 3$"),
        (lambda d: _edit_json(d / "config.json", lambda c: c.update(notes="x")), r"config.json: unknown entries \['notes'\]"),
    ],
    ids=["tag-removed", "word-removed", "config-key-removed", "other-hidden-dim", "crf-turned-off",
         "bad-value", "config-not-json", "vocab-not-a-vocab", "truncated-weights", "weights-not-a-dict",
         "saved-before-0.2", "tag-added", "char-added", "config-wrong-type", "training-damaged", "data-not-an-object",
         "version-not-a-string", "config-unknown-entry"],
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


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_weights_that_are_not_finite_are_refused_naming_the_tensor(tmp_path, value, capsys):
    from seqtag.cli.app import main

    tagger = small_tagger(random_sentences(10))
    tagger.save(tmp_path / "m")
    state = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    state["head.linear.weight" if "head.linear.weight" in state else next(iter(state))][0, 0] = value
    torch.save(state, tmp_path / "m" / "weights.pt")
    with pytest.raises(SeqtagError, match=r"weights.pt: \S+ holds 1 NaN or infinite value$"):
        Tagger.load(tmp_path / "m")
    (tmp_path / "in.txt").write_text("a b\n", encoding="utf-8")
    assert main(["predict", str(tmp_path / "m"), "--input", str(tmp_path / "in.txt")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("seqtag: error: ") and "NaN or infinite" in err


def test_a_torchscript_file_with_weights_that_are_not_finite_is_refused(tmp_path):
    from seqtag.serving.torchscript import load_torchscript, to_torchscript

    tagger = small_tagger(random_sentences(10))
    with torch.no_grad():
        next(p for p in tagger.parameters() if p.is_floating_point()).view(-1)[0] = float("nan")
    to_torchscript(tagger, tmp_path / "t.pt")
    with pytest.raises(SeqtagError, match=r"t.pt: \S+ holds 1 NaN or infinite value$"):
        load_torchscript(tmp_path / "t.pt")


def _set(path, *keys_and_value):
    *keys, last, value = keys_and_value

    def edit(data):
        for k in keys:
            data = data[k]
        data[last] = value

    return lambda d: _edit_json(d / path, edit)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_set("vocab.json", "tags", "itos", 0, 5), r"expected tags.itos\[0\] a string, got 5"),
        (_set("vocab.json", "tags", "itos", 1, None), r"expected tags.itos\[1\] a string, got None"),
        (_set("vocab.json", "tags", "itos", 0, "B-PER"), "expected distinct strings in tags.itos, got 'B-PER' twice"),
        (_set("vocab.json", "tags", "itos", "OBI"), "expected tags.itos as a list of strings, got a str"),
        (_set("vocab.json", "tags", "itos", []), "expected tags.itos to hold at least one tag, got none"),
        (_set("vocab.json", "tags", "specials", ["B-LOC"]), r"expected tags.specials \[\], got \['B-LOC'\]"),
        (_set("vocab.json", "words", "itos", 3, 7), r"expected words.itos\[3\] a string, got 7"),
        (_set("vocab.json", "words", "specials", []), r"expected words.specials \['<pad>', '<unk>'\], got \[\]"),
        (_set("vocab.json", "chars", "itos", 3, "ab"), r"expected chars.itos\[3\] one character, got 'ab'"),
        (_set("vocab.json", "chars", "specials", "<pad>"), "expected chars.specials as a list of strings, got a str"),
        (_set("vocab.json", "lower_map", "Q", 1), "expected lower_map to map one character to one character, got 'Q': 1"),
        (_set("vocab.json", "lower_map", [1]), "expected lower_map as an object of characters, got a list"),
        (_set("vocab.json", "word_counts", 3, -4), r"expected word_counts\[3\] an integer >= 0, got -4"),
        (_set("vocab.json", "word_counts", 3, 1.5), r"expected word_counts\[3\] an integer >= 0, got 1.5"),
        (_set("vocab.json", "word_counts", [0]), r"expected word_counts as a list of \d+ counts \(one per word\), got 1 counts"),
        (_set("vocab.json", "words", None), "expected words as an object with itos and specials, got null"),
        (_set("vocab.json", "extra", 1), r"got unknown keys \['extra'\]"),
    ],
    ids=["tag-int", "tag-null", "tag-twice", "tags-a-string", "no-tags", "tag-specials", "word-int", "no-word-specials",
         "char-two-characters", "char-specials-a-string", "lower-map-int", "lower-map-list", "count-negative",
         "count-float", "counts-short", "words-null", "unknown-key"],
)
def test_load_names_the_vocabulary_entry_that_is_wrong(tmp_path, corrupt, message):
    small_tagger(bio_sentences(12, seed=1), crf=True, tag_scheme="auto").save(tmp_path)
    corrupt(tmp_path)
    with pytest.raises(SeqtagError, match=f"^{tmp_path / 'vocab.json'}: not a seqtag vocabulary \\(.*{message}") as e:
        Tagger.load(tmp_path)
    assert "\n" not in str(e.value)


def test_reordered_tags_keep_every_size_but_not_the_crf_constraints(tmp_path):
    tagger = small_tagger(bio_sentences(12, seed=1), crf=True, tag_scheme="auto")
    tagger.save(tmp_path)
    Tagger.load(tmp_path)
    _edit_json(tmp_path / "vocab.json", lambda v: v["tags"]["itos"].reverse())
    with pytest.raises(SeqtagError, match=r"weights.pt: head.crf.\w+_mask is not what the tags of vocab.json under "
                                          "the tag_scheme of config.json give"):
        Tagger.load(tmp_path)


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_a_tag_that_is_not_a_string_is_one_line_in_every_command(tmp_path, capsys, command):
    from seqtag.cli.app import main

    small_tagger(bio_sentences(12, seed=1)).save(tmp_path / "m")
    _set("vocab.json", "tags", "itos", 0, 5)(tmp_path / "m")
    (tmp_path / "in.txt").write_text("a b\n", encoding="utf-8")
    (tmp_path / "gold.conll").write_text("a O\nb O\n\n", encoding="utf-8")
    args = {
        "predict": ["predict", str(tmp_path / "m"), "--input", str(tmp_path / "in.txt")],
        "evaluate": ["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "gold.conll")],
        "export": ["export", str(tmp_path / "m"), "--output", str(tmp_path / "m.pt")],
    }[command]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "expected tags.itos[0] a string, got 5" in err
    assert not (tmp_path / "m.pt").exists()
