"""seqtag.serving.torch_export: a torch.export directory is checked when it loads (its manifest
and vocabularies against each other, each program against them when it is first used), and its
predict checks its arguments as eager Tagger.predict does. Tags equal to eager are held in
test_export.py."""

import json
import shutil

import pytest

from seqtag import SeqtagError
from seqtag.serving.torch_export import load_torch_export, to_torch_export

from ..helpers import bio_sentences, random_sentences, small_tagger


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two torch.export directories (one bucket each, for speed) of models with other tags."""
    out = tmp_path_factory.mktemp("torch_export")
    return {
        "a": to_torch_export(small_tagger(bio_sentences(20, seed=1), crf=True), out / "a", buckets=[6]),
        "b": to_torch_export(small_tagger(random_sentences(20, seed=2)), out / "b", buckets=[6]),
    }


def _copy(exported, tmp_path, name="a"):
    shutil.copytree(exported[name], tmp_path / "e")
    return tmp_path / "e"


def _edit(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m["tags"].pop()),
         "seqtag.json: its tags are not those of vocab.json: the two come from different models"),
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m.update(format_version=2)),
         r"seqtag.json: format_version 2 of seqtag.torch_export, newer than this seqtag reads \(1\)"),
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m.update(format="seqtag.torchscript")),
         "seqtag.json: seqtag.json says format 'seqtag.torchscript', expected 'seqtag.torch_export'"),
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m.update(buckets={"6": "../a/bucket_6.pt2"})),
         'seqtag.json: expected "buckets" as'),
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m.update(buckets=[6])), 'seqtag.json: expected "buckets" as'),
        (lambda d, e: (d / "bucket_6.pt2").unlink(), "no bucket_6.pt2, a program the manifest names"),
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m.update(max_length=60)),
         "seqtag.json: expected max_length 6 .*, got 60"),
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m.update(word_length="30")),
         "seqtag.json: expected word_length 30 .*, got '30'"),
        (lambda d, e: _edit(d / "seqtag.json", lambda m: m.pop("model")),
         "bad seqtag.json: expected TaggerConfig fields as a JSON object, got NoneType"),
        (lambda d, e: _edit(d / "vocab.json", lambda v: v["tags"]["itos"].__setitem__(0, 5)),
         r"vocab.json: not a seqtag vocabulary \(expected tags.itos\[0\] a string, got 5\)"),
    ],
    ids=["tags-shortened", "newer-format", "other-format", "bucket-outside", "buckets-a-list", "bucket-missing",
         "max-length", "word-length-a-string", "no-model", "tag-not-a-string"],
)
def test_the_manifest_is_checked_when_the_directory_loads(exported, tmp_path, corrupt, message):
    directory = _copy(exported, tmp_path)
    corrupt(directory, exported)
    with pytest.raises(SeqtagError, match=message) as e:
        load_torch_export(directory)
    assert "\n" not in str(e.value)


def test_programs_of_another_model_are_refused_when_first_used(exported, tmp_path):
    directory = _copy(exported, tmp_path, "b")
    for name in ("seqtag.json", "vocab.json"):  # another model's manifest and vocabularies, consistent together
        shutil.copy(exported["a"] / name, directory / name)
    tagger = load_torch_export(directory)
    with pytest.raises(SeqtagError, match=r"vocab.json: \d+ (words|chars|tags), but \S+bucket_6.pt2 has \d+ rows in "
                                          r"tagger\.\S+ \(one per (word|char|tag)\): the two come from different models"):
        tagger.predict([["The", "dog"]])


@pytest.mark.parametrize("keep", [0, 200, 0.5])
def test_a_damaged_program_is_one_line(exported, tmp_path, capfd, keep):
    directory = _copy(exported, tmp_path)
    program = directory / "bucket_6.pt2"
    data = program.read_bytes()
    program.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(SeqtagError, match="bucket_6.pt2: not a readable torch.export program") as e:
        load_torch_export(directory).predict([["The", "dog"]])
    assert "\n" not in str(e.value)
    assert capfd.readouterr().err == ""  # torch.export logs the torn archive's traceback unless silenced


def test_a_program_under_another_buckets_name_is_refused(exported, tmp_path):
    """A program traced for 6 tokens named as bucket 7 would fail its shape guard mid-batch."""
    directory = _copy(exported, tmp_path)
    (directory / "bucket_6.pt2").rename(directory / "bucket_7.pt2")
    _edit(directory / "seqtag.json", lambda m: m.update(buckets={"7": "bucket_7.pt2"}, max_length=7))
    with pytest.raises(SeqtagError, match="bucket_7.pt2: the program takes sentences of 6 tokens, not the 7 of its bucket"):
        load_torch_export(directory).predict([["The", "dog"]])


@pytest.mark.parametrize(
    "sentences, message",
    [("The dog", "got a str"), (["The", "dog"], "expected sentence 0 as a sequence of token strings, got a str"),
     ({"The": ["dog"]}, "got a dict"), (None, "got a NoneType"), ([[1]], "expected token 0 of sentence 0 as a str")],
)
def test_predict_refuses_what_is_not_sentences(exported, sentences, message):
    with pytest.raises(TypeError, match=message):
        load_torch_export(exported["a"]).predict(sentences)


def test_predict_refuses_a_batch_size_that_is_not_an_integer(exported):
    with pytest.raises(ValueError, match="expected batch_size an integer, got 2.5"):
        load_torch_export(exported["a"]).predict([["a"]], batch_size=2.5)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_length": 10**9}, ValueError, "expected max_length <= 1024, got 1000000000"),
    ({"max_length": 2.5}, ValueError, "expected max_length an integer, got 2.5"),
    ({"buckets": [8, 4096]}, SeqtagError, r"expected bucket lengths from 1 to 1024, got \[8, 4096\]"),
])  # fmt: skip
def test_lengths_no_export_can_trace_are_refused_at_once(tmp_path, kwargs, error, message):
    """Tracing billion-token programs ran until it was killed."""
    with pytest.raises(error, match=message):
        to_torch_export(small_tagger(random_sentences(3)), tmp_path / "e", **kwargs)
    assert not (tmp_path / "e").exists()
