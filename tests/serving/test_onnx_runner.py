"""OnnxTagger checks a file's seqtag.json metadata against the graph it sits on, once, at load.

Each case writes a valid export, damages its metadata with onnx's API (or puts valid metadata
on another graph) and expects one SeqtagError naming the file and what is wrong; the undamaged
files, an int8 graph and the 0.2.0 file load.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from seqtag import SeqtagError
from seqtag.serving.files import METADATA_NAME
from seqtag.serving.onnx_export import to_onnx, to_onnx_int8
from seqtag.serving.onnx_runner import OnnxTagger

from ..helpers import bio_sentences, odd_sentences, small_tagger

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory, crf_tagger, softmax_tagger):
    out = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(21)  # the same vocabularies and tags as crf_tagger, other weights
    other = small_tagger(bio_sentences(120, seed=1), crf=True, tag_scheme="auto")
    assert other.vocabs == crf_tagger.vocabs
    return {
        "crf": to_onnx(crf_tagger, out / "crf.onnx"),
        "softmax": to_onnx(softmax_tagger, out / "softmax.onnx"),
        "other_crf": to_onnx(other, out / "other.onnx"),
        "int8": to_onnx_int8(crf_tagger, out / "int8.onnx")[0],
    }


def _meta(path: Path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_NAME])


def _with_meta(graph: Path, meta: dict | str, target: Path) -> Path:
    """``graph`` saved as ``target`` with ``meta`` (a dict, or raw text) as its seqtag.json."""
    model = onnx.load(str(graph))
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_NAME] = meta if isinstance(meta, str) else json.dumps(meta)
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    onnx.save(model, str(target))
    return target


def _edited(edit):
    def apply(meta: dict) -> dict:
        edit(meta)
        return meta

    return apply


# (the export to damage, how, the message): each edit as someone might make it by hand
DAMAGED = {
    "tags shortened (CRF)": ("crf", _edited(lambda m: m.update(tags=m["tags"][:-1])),
                             r"expected crf\.start to be finite numbers of shape \(\d+,\) \(\d+ tags\)"),
    "tags shortened (softmax)": ("softmax", _edited(lambda m: m.update(tags=m["tags"][:-1])),
                                 r"names 2 tags, but the graph scores 3: the metadata is not this graph's"),
    "tags lengthened (softmax)": ("softmax", _edited(lambda m: m["tags"].append("EXTRA")),
                                  r"names 4 tags, but the graph scores 3"),
    "a tag twice": ("softmax", _edited(lambda m: m["tags"].__setitem__(1, m["tags"][0])),
                    r"expected tags to be a list of distinct non-empty strings, got \["),
    "a tag not a string": ("crf", _edited(lambda m: m["tags"].__setitem__(0, 7)),
                           r"expected tags to be a list of distinct non-empty strings, got \[7,"),
    "no tags": ("crf", _edited(lambda m: m.update(tags=[])), r"expected tags to be a list of distinct"),
    "tags removed": ("crf", _edited(lambda m: m.pop("tags")), r"expected tags to be .*, got nothing"),
    "encoding removed": ("crf", _edited(lambda m: m.pop("encoding")), r"expected encoding to be an object, got nothing"),
    "words removed": ("crf", _edited(lambda m: m["encoding"].pop("words")), r"expected encoding\.words to be a list"),
    "transitions removed": ("crf", _edited(lambda m: m["crf"].pop("transitions")),
                            r"expected crf\.transitions to be finite numbers of shape \(\d+, \d+\)"),
    "a CRF score not a number": ("crf", _edited(lambda m: m["crf"]["start"].__setitem__(0, "0.1")),
                                 r"expected crf\.start to be finite numbers"),
    "a CRF score NaN": ("crf", _edited(lambda m: m["crf"]["end"].__setitem__(0, float("nan"))),
                        r"expected crf\.end to be finite numbers"),
    "a mask of numbers": ("crf", _edited(lambda m: m["crf"].update(end_mask=[1] * len(m["tags"]))),
                          r"expected crf\.end_mask to be booleans"),
    "transitions ragged": ("crf", _edited(lambda m: m["crf"]["transitions"][0].pop()),
                           r"expected crf\.transitions to be finite numbers of shape"),
    "lowercase a string": ("crf", _edited(lambda m: m["encoding"].update(lowercase="yes")),
                           r"expected encoding\.lowercase to be true or false, got 'yes'"),
    "max_word_length a string": ("crf", _edited(lambda m: m["encoding"].update(max_word_length="20")),
                                 r"expected encoding\.max_word_length to be an integer >= 1, got '20'"),
    "lower_map to a number": ("crf", _edited(lambda m: m["encoding"].update(lower_map={"Ä": 1})),
                              r"expected encoding\.lower_map to be an object of one character to one character"),
    "another case rule": ("crf", _edited(lambda m: m["encoding"].update(case_rule="seqtag.vocab.case_id/2")),
                          r"expected encoding\.case_rule to be 'seqtag\.vocab\.case_id/1'"),
    "head unknown": ("crf", _edited(lambda m: m.update(head="crf2")), r'expected head to be "crf" or "softmax"'),
    "a softmax head with CRF scores": ("crf", _edited(lambda m: m.update(head="softmax")),
                                       r"expected crf to be null for a softmax head"),
    "words a dict": ("crf", _edited(lambda m: m["encoding"].update(words={"a": 2})),
                     r"expected encoding\.words to be a list of at least 2 distinct strings"),
    "more words than the graph embeds": (
        "crf", _edited(lambda m: m["encoding"]["words"].extend(f"w{i}" for i in range(500))),
        r"the graph does not run on its seqtag\.json's vocabularies \(indices element out of data bounds"),
    "inputs edited": ("crf", _edited(lambda m: m.update(inputs=["words", "lengths"])),
                      r"seqtag\.json names the inputs \['words', 'lengths'\], a tagger without an encoder takes"),
    "an encoder on a graph without one": (
        "crf", _edited(lambda m: m.update(encoder={"tokenizer": "{}", "unk_token": "[UNK]", "pad_token": "[PAD]",
                                                   "window_size": 8, "stride": 2})),
        r"names the inputs .*, a tagger with an encoder takes"),
    "an encoder of the wrong type": ("crf", _edited(lambda m: m.update(encoder=[1])),
                                     r"expected encoder to be null or an object, got \[1\]"),
    "format_version newer": ("crf", _edited(lambda m: m.update(format_version=3)),
                             r"format_version 3 of seqtag\.onnx, newer than this seqtag reads \(2\): export it again"),
    "format_version a string": ("crf", _edited(lambda m: m.update(format_version="2")),
                                r"expected a positive integer format_version, got '2'"),
    "format_version removed": ("crf", _edited(lambda m: m.pop("format_version")),
                               r"expected a positive integer format_version, got None"),
    "another format": ("crf", _edited(lambda m: m.update(format="seqtag.torchscript")),
                       r"not a seqtag tagger \(its seqtag.json metadata is not seqtag.onnx's\)"),
    "not JSON": ("crf", lambda m: "{not json", r"not a seqtag tagger \(its seqtag.json metadata is not JSON: Expecting"),
    "a JSON list": ("crf", lambda m: "[1, 2]", r"not a seqtag tagger \(its seqtag.json metadata is not seqtag.onnx's\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_metadata_is_refused_in_one_line(files, case, tmp_path):
    source, edit, message = DAMAGED[case]
    path = _with_meta(files[source], edit(_meta(files[source])), tmp_path / "damaged.onnx")
    with pytest.raises(SeqtagError, match=message) as caught:
        OnnxTagger(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize("graph, meta, message", [
    # another model's metadata: same vocabularies and tags, other CRF scores
    ("crf", "other_crf", r"the graph does not score as its seqtag\.json says \(a probe sentence's log-partition: "
                         r"-?\d+\.\d+ by the graph, -?\d+\.\d+ by the metadata's crf head\): the metadata is another model's"),
    ("other_crf", "crf", r"the graph does not score as its seqtag\.json says"),
    # a softmax graph under a CRF model's metadata, and the reverse
    ("softmax", "crf", r"the graph does not run on its seqtag\.json's vocabularies \(indices element out of data "
                       r"bounds, idx=\d+ must be within the inclusive range \[-\d+,\d+\]\)$"),
    ("crf", "softmax", r"names 3 tags, but the graph scores 5"),
    # an int8 graph under the fp32 graph's metadata of another model
    ("int8", "other_crf", r"the graph does not score as its seqtag\.json says"),
])  # fmt: skip
def test_another_models_metadata_is_refused(files, graph, meta, message, tmp_path):
    path = _with_meta(files[graph], _meta(files[meta]), tmp_path / "mixed.onnx")
    with pytest.raises(SeqtagError, match=message):
        OnnxTagger(path)


def _identity(tmp_path: Path, name: str, elem_type: int, rank: int) -> Path:
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", [name], ["tags"])], "g",
        [helper.make_tensor_value_info(name, elem_type, ["n"] * rank)],
        [helper.make_tensor_value_info("tags", elem_type, ["n"] * rank)],
    ), opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    return tmp_path / "foreign.onnx"


def test_valid_metadata_on_a_foreign_graph_is_refused(files, tmp_path):
    meta = _meta(files["crf"])
    foreign = _with_meta(_identity(tmp_path, "x", TensorProto.FLOAT, 1), meta, tmp_path / "a.onnx")
    with pytest.raises(SeqtagError, match=r"a\.onnx: the graph takes inputs that its seqtag\.json does not name: \['x'\]"):
        OnnxTagger(foreign)
    foreign = _with_meta(_identity(tmp_path, "words", TensorProto.INT64, 2), meta, tmp_path / "b.onnx")
    with pytest.raises(SeqtagError, match=r"b\.onnx: the graph has no input 'cases', which its seqtag\.json names"):
        OnnxTagger(foreign)


def test_an_input_of_another_rank_or_type_is_refused(files, tmp_path):
    model = onnx.load(str(files["crf"]))
    lengths = next(i for i in model.graph.input if i.name == "lengths")
    lengths.type.tensor_type.shape.dim.add().dim_param = "extra"
    onnx.save(model, str(tmp_path / "rank.onnx"))
    with pytest.raises(SeqtagError, match=r"the graph's input 'lengths' is a tensor\(int64\) of rank 2, "
                                          r"expected a tensor\(int64\) of rank 1"):  # fmt: skip
        OnnxTagger(tmp_path / "rank.onnx")


def test_sound_files_load_and_tag(files, crf_tagger):
    sentences = odd_sentences(crf_tagger, seed=2)
    assert OnnxTagger(files["crf"]).predict(sentences) == crf_tagger.predict(sentences)
    int8 = OnnxTagger(files["int8"])  # quantized weights: the checks read the graph's interface and outputs
    assert len(int8.predict(sentences)) == len(sentences)
    fixture = REPO / "tests" / "fixtures" / "v0.2.0" / "tagger.onnx"
    assert OnnxTagger(fixture).metadata["format_version"] == 1


def test_an_int8_graph_with_shortened_tags_is_refused(softmax_tagger, tmp_path):
    path = to_onnx_int8(softmax_tagger, tmp_path / "int8.onnx")[0]
    meta = _meta(path)
    damaged = _with_meta(path, {**meta, "tags": meta["tags"][:-1]}, tmp_path / "short.onnx")
    with pytest.raises(SeqtagError, match=r"names 2 tags, but the graph scores 3"):
        OnnxTagger(damaged)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(tags=m["tags"][:-1]), "bad seqtag.json metadata: expected crf.start"),
    (lambda m: m["encoding"]["words"].extend(f"w{i}" for i in range(500)),
     "the graph does not run on its seqtag.json's vocabularies (indices element out of data bounds"),
])  # fmt: skip
def test_seqtag_predict_on_a_damaged_file_is_one_line(files, edit, message, tmp_path):
    meta = _meta(files["crf"])
    edit(meta)
    path = _with_meta(files["crf"], meta, tmp_path / "damaged.onnx")
    (tmp_path / "in.txt").write_text("The dog ate\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "seqtag", "predict", str(path), "--input", str(tmp_path / "in.txt")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"seqtag: error: {path}: {message}"), done.stderr


def test_an_encoder_models_metadata_is_checked(encoder_dirs, tmp_path):
    from seqtag import Tagger, TaggerConfig, Vocabularies

    from ..helpers import random_sentences

    torch.manual_seed(5)
    config = TaggerConfig(encoder=str(encoder_dirs["bert"]), hidden_dim=5, embedding_dim=6, char_filters=0,
                          encoder_window=10, encoder_stride=3)  # fmt: skip
    path = to_onnx(Tagger(config, Vocabularies.build(random_sentences(20, seed=3))), tmp_path / "enc.onnx")
    meta = _meta(path)
    assert OnnxTagger(path).metadata["encoder"]["window_size"] == 10
    cases = [
        ({**meta, "encoder": {**meta["encoder"], "stride": 9}}, r"encoder: expected encoder_stride <= 8"),
        ({**meta, "encoder": {**meta["encoder"], "tokenizer": "{}"}}, r"encoder: not a tokenizers text"),
        ({**meta, "encoder": {**meta["encoder"], "window_size": "10"}},
         r"expected encoder\.window_size to be an integer >= 1, got '10'"),
        ({**meta, "encoder": None}, r"names the inputs \['window_ids', .*\], a tagger without an encoder takes"),
    ]  # fmt: skip
    for damaged, message in cases:
        with pytest.raises(SeqtagError, match=message):
            OnnxTagger(_with_meta(path, damaged, tmp_path / "damaged.onnx"))
