"""seqtag.serving.torchscript: a TorchScript file is checked as a whole when it loads (its
seqtag.json against the module it sits on), and the loaded tagger checks its arguments as eager
Tagger.predict does. Tags equal to eager are held in test_export.py."""

import json

import pytest
import torch

from seqtag import SeqtagError
from seqtag.serving.torchscript import ScriptedTagger, load_torchscript, to_torchscript

from ..helpers import bio_sentences, random_sentences, small_tagger

# these tests rewrite TorchScript files with torch.jit itself, as someone editing one would
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(load|save|script)` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two TorchScript files of different models (other tags, other sizes), and a third of the
    first model's data with another hidden size."""
    out = tmp_path_factory.mktemp("torchscript")
    bio = bio_sentences(20, seed=1)
    return {
        "a": to_torchscript(small_tagger(bio, crf=True), out / "a.pt"),
        "b": to_torchscript(small_tagger(random_sentences(20, seed=2)), out / "b.pt"),
        "a9": to_torchscript(small_tagger(bio, crf=True, hidden_dim=9), out / "a9.pt"),
    }


def metadata(path) -> dict:
    extra = {"seqtag.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra["seqtag.json"])


def resave(module, path, meta) -> None:
    """``module`` saved at ``path`` with ``meta`` as its seqtag.json (a str is written as is)."""
    text = meta if isinstance(meta, str) else json.dumps(meta)
    torch.jit.save(module, str(path), _extra_files={"seqtag.json": text} if meta is not None else None)


def edited(meta: dict, **changes) -> dict:
    return {k: v for k, v in {**meta, **changes}.items() if v is not KeyError}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: (torch.jit.load(str(f["b"])), metadata(f["a"])),
         "seqtag.json's tags is not the module's: the metadata comes from another model"),
        (lambda f: (torch.jit.load(str(f["a9"])), metadata(f["a"])),
         "seqtag.json's model is not the module's: the metadata comes from another model"),
        (lambda f: (torch.jit.script(torch.nn.Linear(2, 2)), metadata(f["a"])),
         "seqtag.json says seqtag tagger, but the module is not one"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), format_version=2)),
         r"format_version 2 of seqtag.torchscript, newer than this seqtag reads \(1\): export it again"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), format_version="1")),
         "seqtag.json: expected a positive integer format_version, got '1'"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), format="seqtag.onnx")),
         "seqtag.json says format 'seqtag.onnx', expected 'seqtag.torchscript'"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), tags=metadata(f["a"])["tags"][:-1])),
         "seqtag.json's tags is not the module's"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), tags=["O", 5])),
         r"bad seqtag.json: expected tags\[1\] a string, got 5"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), tags=KeyError)),
         "bad seqtag.json: expected tags as a list of strings, got null"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), model={"hidden_dim": 7})),
         "bad seqtag.json: TaggerConfig lacks"),
        (lambda f: (torch.jit.load(str(f["a"])), edited(metadata(f["a"]), seqtag_version=None)),
         "expected seqtag_version a string in seqtag.json, got None"),
        (lambda f: (torch.jit.load(str(f["a"])), "{not json"), "seqtag.json is not JSON"),
        (lambda f: (torch.jit.load(str(f["a"])), []), r"not a seqtag export \(no format in seqtag.json\)"),
        (lambda f: (torch.jit.load(str(f["a"])), None), r"a TorchScript file, but not a seqtag tagger \(no seqtag.json\)"),
    ],
    ids=["another-models-metadata", "another-configs-metadata", "foreign-module", "newer-format", "version-a-string",
         "other-format", "tags-shortened", "tag-not-a-string", "no-tags", "model-incomplete", "no-seqtag-version",
         "not-json", "not-an-object", "no-metadata"],
)
def test_metadata_is_checked_against_the_module_it_sits_on(files, tmp_path, make, message):
    module, meta = make(files)
    resave(module, tmp_path / "edited.pt", meta)
    with pytest.raises(SeqtagError, match=message) as e:
        load_torchscript(tmp_path / "edited.pt")
    assert str(e.value).startswith(str(tmp_path / "edited.pt")) and "\n" not in str(e.value)


def test_a_module_whose_tags_are_not_its_weights_is_refused(tmp_path):
    tagger = small_tagger(random_sentences(20, seed=2))
    module = torch.jit.script(ScriptedTagger(tagger))
    module.tags = module.tags[:-1]  # a tag list that no longer matches the output layer
    to_torchscript(tagger, tmp_path / "t.pt")
    meta = {**metadata(tmp_path / "t.pt"), "tags": list(module.tags)}
    resave(module, tmp_path / "t.pt", meta)
    with pytest.raises(SeqtagError, match=r"t.pt: 2 tags, but its module has 3 rows in tagger.output.weight"):
        load_torchscript(tmp_path / "t.pt")


def test_the_files_it_writes_load(files):
    for path in files.values():
        assert load_torchscript(path).tags == metadata(path)["tags"]


NOT_SENTENCES = [
    ("The dog ate", r"expected sentences as a sequence of token lists \(e.g. \[\[\"The\", \"dog\"\]\]\), got a str"),
    (["The", "dog"], "expected sentence 0 as a sequence of token strings, got a str"),
    ({"The": ["dog"]}, "expected sentences as a sequence of token lists .*, got a dict"),
    (None, "expected sentences as a sequence of token lists .*, got a NoneType"),
    (b"The dog", "expected sentences as a sequence of token lists .*, got a bytes"),
    ([["The", 5]], "expected token 1 of sentence 0 as a str, got a int"),
    ([[b"The"]], "expected token 0 of sentence 0 as a str, got a bytes"),
    ([None], "expected sentence 0 as a sequence of token strings, got a NoneType"),
]


@pytest.mark.parametrize("method", ["__call__", "forward", "predict_ids", "predict_with_confidence", "marginals",
                                    "encode", "nbest"])
@pytest.mark.parametrize("sentences, message", NOT_SENTENCES, ids=[m for m, _ in enumerate(NOT_SENTENCES)])
def test_what_is_not_sentences_is_a_type_error_not_tagged_by_character(files, method, sentences, message):
    module = load_torchscript(files["a"])
    call = getattr(module, method)
    with pytest.raises(TypeError, match=message):
        call(sentences, 2) if method == "nbest" else call(sentences)


def test_sequences_of_sequences_are_tagged_as_lists(files):
    module = load_torchscript(files["a"])
    want = module([["The", "Dog"], [], ["ate"]])
    assert module((("The", "Dog"), (), ("ate",))) == want
    assert module(iter([iter(["The", "Dog"]), [], ["ate"]])) == want
    assert module.predict_ids([]) == [] and module([[]]) == [[]]


@pytest.mark.parametrize("value, message", [(2.5, "expected batch_size an integer, got 2.5"),
                                            (0, "expected batch_size >= 1, got 0"),
                                            (True, "expected batch_size an integer, got True"),
                                            ("8", "expected batch_size an integer, got '8'")])
def test_batch_size_is_an_integer_of_at_least_one(files, value, message):
    module = load_torchscript(files["a"])
    with pytest.raises(ValueError, match=message):
        module.batch_size = value
    assert module.batch_size == 256
    module.batch_size = 1
    assert module.module.batch_size == 1 and module([["a"], ["b", "c"]]) == module.module([["a"], ["b", "c"]])


@pytest.mark.parametrize("k, message", [(0, "expected k >= 1, got 0"), (2.5, "expected k an integer, got 2.5")])
def test_nbest_k_is_an_integer_of_at_least_one(files, k, message):
    with pytest.raises(ValueError, match=message):
        load_torchscript(files["a"]).nbest([["a"]], k)


def test_predict_on_a_file_with_another_models_metadata_is_one_line(files, tmp_path, capsys):
    from seqtag.cli.app import main

    resave(torch.jit.load(str(files["b"])), tmp_path / "mixed.pt", metadata(files["a"]))
    (tmp_path / "in.txt").write_text("The dog\n", encoding="utf-8")
    rc = main(["predict", str(tmp_path / "mixed.pt"), "--input", str(tmp_path / "in.txt"),
               "--output", str(tmp_path / "out.txt")])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "seqtag.json's tags is not the module's" in err
    assert not (tmp_path / "out.txt").exists()


def test_an_output_under_a_file_is_one_line_and_the_file_kept(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SeqtagError, match=r"cannot write \S+/f: it exists and is not a directory"):
        to_torchscript(small_tagger(random_sentences(3)), tmp_path / "f" / "m.pt")
    assert (tmp_path / "f").read_text() == "x"
