"""``seqtag predict`` and seqtag.cli.predict: streaming equals in-memory for every model format, the
corpus formats written back byte for byte, input decoding, atomic output, workers, HF datasets."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import seqtag
from seqtag import read_conll, read_conllu, write_conll, write_conllu
from seqtag.cli.app import main
from seqtag.config import PredictConfig
from seqtag.data.formats import read_items
from seqtag.model.tagger import Tagger
from seqtag.serving.hf_tagging import tag_dataset
from seqtag.serving.predictor import KINDS, load_predictor

EXPORT_BUCKETS = [8, 16]  # small buckets export in seconds; the sentences tagged with them fit
MODEL_KINDS = ["directory", "torchscript", "torch-export", "onnx"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small UPOS model trained on 400 EWT sentences, and its exports: ``{kind: path}``."""
    from ..conftest import EWT

    if not (EWT / "en_ewt-ud-train.conllu").exists():
        pytest.skip(f"UD English-EWT not found at {EWT}")
    from seqtag.serving.torch_export import to_torch_export
    from seqtag.serving.torchscript import _torchscript_warnings, to_torchscript

    root = tmp_path_factory.mktemp("predict_models")
    train = read_conllu(EWT / "en_ewt-ud-train.conllu")[:400]
    config = seqtag.TaggerConfig(embedding_dim=16, hidden_dim=16, char_filters=8, dropout=0.0)
    tc = seqtag.TrainConfig(epochs=2, batch_size=16, device="cpu", patience=0)
    tagger = seqtag.train(train, config=config, train_config=tc, quiet=True)
    tagger.save(root / "model")
    with _torchscript_warnings():
        to_torchscript(root / "model", root / "tagger.pt")
    to_torch_export(root / "model", root / "pt2", buckets=EXPORT_BUCKETS)
    paths = {"directory": root / "model", "torchscript": root / "tagger.pt", "torch-export": root / "pt2"}
    if "onnx" in MODEL_KINDS:
        from seqtag.serving.onnx_export import to_onnx

        to_onnx(root / "model", root / "tagger.onnx")
        paths["onnx"] = root / "tagger.onnx"
    return paths


@pytest.fixture(scope="module")
def tagger(models):
    return Tagger.load(models["directory"])


@pytest.fixture(scope="module")
def dev():
    from ..conftest import EWT

    return read_conllu(EWT / "en_ewt-ud-dev.conllu")


def _predict(argv, capsys, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, str, str]:
    """``seqtag predict ARGV`` in this process (``--workers 1`` unless ARGV says otherwise)."""
    capsys.readouterr()
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    argv = [*map(str, argv), *([] if "--workers" in argv else ["--workers", "1"])]
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _text_output(sentences, tags) -> str:
    return "".join("".join(f"{t}\t{g}\n" for t, g in zip(s, tg)) + "\n" for s, tg in zip(sentences, tags) if s)


# -- streaming = in memory, for every model format ------------------------------------------


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
def test_streaming_equals_in_memory_for_every_format(models, tagger, dev, tmp_path, capsys, kind, chunk_size):
    limit = EXPORT_BUCKETS[-1] if kind == "torch-export" else None
    sentences = [s.tokens for s in dev if limit is None or len(s) <= limit]
    if chunk_size == 1:
        sentences = sentences[:300]  # one predict call per sentence: a slice says as much
    text = tmp_path / "dev.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    code, out, err = _predict([models[kind], "--input", text, "--chunk-size", chunk_size], capsys)
    assert code == 0, err
    assert out == _text_output(sentences, tagger.predict(sentences))  # eager, all in memory


def test_every_format_is_loaded_behind_one_interface(models, tagger, dev):
    sentences = [s.tokens for s in dev[:50] if len(s) <= EXPORT_BUCKETS[-1]]
    expected = tagger.predict(sentences)
    for kind, path in models.items():
        assert load_predictor(path, PredictConfig(batch_size=3)).predict(sentences) == expected, kind


# -- corpus formats ---------------------------------------------------------------------------


def test_conllu_output_changes_only_the_tag_column(models, tagger, tmp_path, capsys, ewt_dir):
    gold = ewt_dir / "en_ewt-ud-test.conllu"
    out = tmp_path / "tagged.conllu"
    code, _, err = _predict([models["directory"], "--input", gold, "--output", out, "--chunk-size", 100], capsys)
    assert code == 0, err
    before = gold.read_bytes().splitlines(keepends=True)
    after = out.read_bytes().splitlines(keepends=True)
    assert len(before) == len(after)
    kept = {"comment": 0, "multiword": 0, "empty node": 0}
    for a, b in zip(before, after):
        fa, fb = a.split(b"\t"), b.split(b"\t")
        if len(fa) == 10 and fa[0].isdigit():
            assert fa[:3] == fb[:3] and fa[4:] == fb[4:]  # only UPOS (column 4, index 3) may differ
        else:
            assert a == b
            kept["comment" if a.startswith(b"#") else "multiword" if b"-" in fa[0] else "empty node" if
                 b"." in fa[0] else "comment"] += 1  # fmt: skip
    assert all(kept.values()), kept  # EWT test has all three kinds of lines
    sentences = read_conllu(gold)
    predicted = read_conllu(out)
    assert [s.tags for s in predicted] == tagger.predict([s.tokens for s in sentences])
    # the written file scores as the model does: its UPOS against gold is the model's accuracy
    capsys.readouterr()
    assert main(["evaluate", str(models["directory"]), "--data", str(gold), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    pairs = [(p, g) for sp, sg in zip(predicted, sentences) for p, g in zip(sp.tags, sg.tags)]
    assert sum(p == g for p, g in pairs) / len(pairs) == pytest.approx(report["accuracy"], abs=1e-12)
    assert main(["evaluate", str(models["directory"]), "--data", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0


@pytest.mark.parametrize("tag_column", [None, "1"])
def test_conll_output_appends_or_replaces_a_column(models, tagger, tmp_path, capsys, ewt_dir, tag_column):
    gold = tmp_path / "test.conll"
    sentences = read_conllu(ewt_dir / "en_ewt-ud-test.conllu")
    write_conll(sentences, gold)
    out = tmp_path / "tagged.conll"
    flags = ["--tag-column", tag_column] if tag_column else []
    code, _, err = _predict([models["directory"], "--input", gold, "--output", out, *flags], capsys)
    assert code == 0, err
    expected = tagger.predict([s.tokens for s in sentences])
    before = gold.read_text(encoding="utf-8").splitlines(keepends=True)
    after = out.read_text(encoding="utf-8").splitlines(keepends=True)
    tags = iter(tag for s in expected for tag in s)
    for a, b in zip(before, after, strict=True):
        if a.strip():
            token, gold_tag = a.rstrip("\n").split("\t")
            assert b == (f"{token}\t{gold_tag}\t{next(tags)}\n" if tag_column is None else f"{token}\t{next(tags)}\n")
        else:
            assert a == b
    predicted = read_conll(out)  # the last column: the predicted tags
    assert [s.tags for s in predicted] == expected
    capsys.readouterr()
    assert main(["evaluate", str(models["directory"]), "--data", str(gold), "--json"]) == 0
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    pairs = [(p, g) for sp, sg in zip(predicted, sentences) for p, g in zip(sp.tags, sg.tags)]
    assert sum(p == g for p, g in pairs) / len(pairs) == pytest.approx(accuracy, abs=1e-12)


def test_jsonl_keeps_the_objects_and_adds_tags(models, tagger, dev, tmp_path, capsys):
    sentences = [s.tokens for s in dev[:200]] + [[]]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "tokens": s}) + "\n" for i, s in enumerate(sentences)))
    code, out, err = _predict([models["directory"], "--input", path, "--chunk-size", 7], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == list(range(len(sentences)))
    assert [r["tokens"] for r in rows] == sentences
    assert [r["tags"] for r in rows] == tagger.predict(sentences)


def test_any_input_to_any_output_format(models, tagger, dev, tmp_path, capsys):
    sentences = dev[:30]
    conllu = tmp_path / "in.conllu"
    write_conllu(sentences, conllu)
    expected = tagger.predict([s.tokens for s in sentences])
    code, out, _ = _predict([models["directory"], "--input", conllu, "--output-format", "jsonl"], capsys)
    assert code == 0 and [json.loads(line)["tags"] for line in out.splitlines()] == expected
    code, out, _ = _predict([models["directory"], "--input", conllu, "--output-format", "text"], capsys)
    assert code == 0 and out == _text_output([s.tokens for s in sentences], expected)
    text = tmp_path / "in.txt"
    text.write_text("".join(" ".join(s.tokens) + "\n" for s in sentences), encoding="utf-8")
    written = tmp_path / "out.conllu"
    code, _, _ = _predict([models["directory"], "--input", text, "--output-format", "conllu", "--output", written],
                          capsys)  # fmt: skip
    assert code == 0 and [s.tags for s in read_conllu(written)] == expected


# -- input decoding: the same for standard input and --input --------------------------------


@pytest.mark.parametrize(
    "data, sentences",
    [
        (b"\xef\xbb\xbfThe dog\n", [["The", "dog"]]),  # a byte-order mark is dropped
        (b"The dog\r\nA cat\r\n", [["The", "dog"], ["A", "cat"]]),  # CRLF
        ("A\u2028cat\nThe\x85dog\x0cran\n".encode(), [["A", "cat"], ["The", "dog", "ran"]]),  # not line breaks
        (b"one\n\n  \ntwo", [["one"], ["two"]]),  # blank lines skipped, no final newline
    ],
)
def test_lines_end_at_newlines_only_from_stdin_and_files(models, tagger, tmp_path, capsys, monkeypatch, data, sentences):
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    assert [item.tokens for item in read_items(io.BytesIO(data), "<stdin>", "text")] == sentences
    from_stdin = _predict([models["directory"]], capsys, stdin=data, monkeypatch=monkeypatch)
    from_file = _predict([models["directory"], "--input", path], capsys)
    assert from_stdin == from_file == (0, _text_output(sentences, tagger.predict(sentences)), "")


def test_invalid_utf8_names_the_line_and_byte(models, tmp_path, capsys, monkeypatch):
    data = b"good line\nbad \xff line\n"
    code, out, err = _predict([models["directory"]], capsys, stdin=data, monkeypatch=monkeypatch)
    assert code == 1 and err == "seqtag: error: <stdin>:2: not valid UTF-8 (byte 5 of the line is 0xff)\n"
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    code, _, err = _predict([models["directory"], "--input", path], capsys)
    assert code == 1 and err == f"seqtag: error: {path}:2: not valid UTF-8 (byte 5 of the line is 0xff)\n"


def test_conllu_reader_keeps_other_lines_aside():
    data = (b"# sent_id = 1\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n"
            b"2\tn't\tnot\tPART\t_\t_\t1\tadvmod\t_\t_\n2.1\tgo\tgo\tVERB\t_\t_\t_\t_\t1:x\t_\n\n")  # fmt: skip
    [item] = read_items(io.BytesIO(data), "x.conllu", "conllu")
    assert item.tokens == ["do", "n't"] and item.rows == [2, 3] and len(item.lines) == 6


# -- options: checked the same for every format, before anything is loaded -----------------


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--batch-size", "0", "expected batch_size >= 1, got 0"),
        ("--batch-size", "-1", "expected batch_size >= 1, got -1"),
        ("--threads", "-1", "expected threads >= 0, got -1"),
        ("--workers", "0", "expected workers >= 1, got 0"),
        ("--chunk-size", "0", "expected chunk_size >= 1, got 0"),
    ],
)
def test_bad_options_fail_the_same_for_every_format(models, tmp_path, capsys, kind, flag, value, message):
    text = tmp_path / "in.txt"
    text.write_text("The dog barked .\n")
    code, out, err = _predict([models[kind], "--input", text, flag, value], capsys)
    assert (code, out, err) == (1, "", f"seqtag: error: {message}\n")


@pytest.mark.parametrize("value, message", [("0", "expected nbest >= 1, got 0"), ("-1", "expected nbest >= 1, got -1"),
                                            ("2.5", "expected nbest a number, got '2.5'")])  # fmt: skip
def test_nbest_takes_a_positive_integer(models, capsys, value, message):
    """--nbest 0 was taken for no --nbest and wrote plain tags."""
    with pytest.raises(SystemExit) as e:
        main(["predict", str(models["directory"]), "--nbest", value, "--output-format", "jsonl"])
    assert e.value.code == 2 and capsys.readouterr().err.splitlines()[-1].endswith(f"argument --nbest: {message}")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--nbest", "2"], "--nbest K writes JSON lines: add --output-format jsonl"),
        (["--format", "conllu", "--confidence"], "--confidence has no CoNLL-U column"),
        (["--format", "conllu", "--tag-column", "form"], "expected a CoNLL-U tag column other than id and form"),
        (["--format", "conll", "--token-column", "x"], "expected an integer --token-column for a CoNLL file"),
        (["--format", "conll", "--tag-column", "0"], "--tag-column 0 is the token column"),
        (["--output", "/nonexistent/dir/out.txt"], "cannot write /nonexistent/dir/out.txt:"),
    ],
)
def test_bad_combinations_are_one_line_errors(models, tmp_path, capsys, flags, message):
    text = tmp_path / "in.txt"
    text.write_text("The dog barked .\n")
    code, out, err = _predict([models["directory"], "--input", text, *flags], capsys)
    assert code == 1 and out == "" and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_precision_is_for_model_directories_and_what_the_machine_runs(models, tagger, dev, tmp_path, capsys, kind,
                                                                      monkeypatch):  # fmt: skip
    """--precision: fp32 tags as before in every format; an exported file refuses autocast in one
    line naming the format; a model directory refuses a precision the machine cannot run
    (fp16 without CUDA; bf16 where the CPU probe fails), writing nothing."""
    from seqtag import device

    text = tmp_path / "in.txt"
    text.write_text("The dog barked .\n")
    code, out, err = _predict([models[kind], "--input", text, "--precision", "fp32"], capsys)
    assert (code, err) == (0, "") and out == _text_output([["The", "dog", "barked", "."]],
                                                           tagger.predict([["The", "dog", "barked", "."]]))
    monkeypatch.setattr(device, "cpu_bf16_problem", lambda: "no bf16 here")
    for precision in ("bf16", "fp16"):
        code, out, err = _predict([models[kind], "--input", text, "--precision", precision], capsys)
        assert code == 1 and out == "" and len(err.splitlines()) == 1
        if kind != "directory":
            assert err == (f"seqtag: error: --precision {precision}: this {KINDS[kind]} runs in the float32 it was "
                           f"exported in; tag with the model directory for autocast\n")  # fmt: skip
        else:
            assert {"bf16": "no bf16 here", "fp16": "fp16 needs CUDA"}[precision] in err


def test_a_missing_model_or_input_is_one_line(models, tmp_path, capsys):
    assert _predict([tmp_path / "none"], capsys)[2] == f"seqtag: error: {tmp_path / 'none'}: no such model file or directory\n"
    code, _, err = _predict([models["directory"], "--input", tmp_path / "none.txt"], capsys)
    assert code == 1 and err == f"seqtag: error: {tmp_path / 'none.txt'}: no such file\n"


# -- output: atomic, and a closed pipe ends quietly -------------------------------------------


def test_a_bad_line_mid_stream_leaves_no_output_file(models, dev, tmp_path, capsys):
    lines = [json.dumps({"tokens": s.tokens}) for s in dev[:500]]
    lines[321] = '{"tokens": "not a list"}'
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "tagged.jsonl"
    out.parent.mkdir()
    code, _, err = _predict([models["directory"], "--input", path, "--output", out, "--chunk-size", 10], capsys)
    assert code == 1
    assert err == f'seqtag: error: {path}:322: expected an object with "tokens": a list of strings, got tokens str\n'
    assert list(out.parent.iterdir()) == []  # 32 chunks were written, then removed with the temporary file
    code, _, err = _predict([models["directory"], "--input", path, "--output", out], capsys)  # the same, one chunk
    assert code == 1 and list(out.parent.iterdir()) == []


def test_output_file_replaces_an_old_one_only_when_complete(models, tagger, dev, tmp_path, capsys):
    text = tmp_path / "in.txt"
    sentences = [s.tokens for s in dev[:40]]
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    assert _predict([models["directory"], "--input", text, "--output", out], capsys)[0] == 0
    assert out.read_text(encoding="utf-8") == _text_output(sentences, tagger.predict(sentences))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_a_closed_pipe_ends_quietly(models, ewt_dir):
    script = f"{sys.executable} -m seqtag predict {models['directory']} --input {ewt_dir / 'en_ewt-ud-dev.conllu'} " \
             f"--chunk-size 50 | head -1"  # fmt: skip
    run = subprocess.run(["bash", "-c", f"set -o pipefail; {script}"], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(Path(seqtag.__file__).parents[1])})  # fmt: skip
    assert run.stdout.startswith("# newdoc") and run.stdout.count("\n") == 1
    assert run.stderr == "" and run.returncode == 0


def test_progress_bar_goes_to_stderr_only(models, tagger, dev, tmp_path, capsys):
    text = tmp_path / "in.txt"
    sentences = [s.tokens for s in dev[:40]]
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    code, out, err = _predict([models["directory"], "--input", text, "--progress", "--chunk-size", 10], capsys)
    assert code == 0 and out == _text_output(sentences, tagger.predict(sentences))
    assert "40 sentences" in err and "tokens/s" in err


# -- workers ------------------------------------------------------------------------------------


def test_two_workers_give_the_output_of_one(models, dev, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("".join(" ".join(s.tokens) + "\n" for s in dev[:700]), encoding="utf-8")
    one = _predict([models["directory"], "--input", text, "--chunk-size", 50], capsys)
    two = _predict([models["directory"], "--input", text, "--chunk-size", 50, "--workers", "2", "--threads", "1"],
                   capsys)  # fmt: skip
    assert one == two and one[0] == 0 and one[1].count("\n\n") == 700


def test_a_worker_error_is_one_line(models, dev, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("".join(" ".join(s.tokens) + "\n" for s in dev[:50]), encoding="utf-8")
    long_line = " ".join(["word"] * (EXPORT_BUCKETS[-1] + 1))
    text.write_text("a b\n" * 30 + long_line + "\n", encoding="utf-8")
    code, out, err = _predict([models["torch-export"], "--input", text, "--workers", "2", "--chunk-size", 8], capsys)
    assert code == 1 and f"{text}:31: 17 tokens, more than the 16" in err and len(err.splitlines()) == 1


# -- Hugging Face datasets ---------------------------------------------------------------------


def test_tag_dataset_with_one_and_two_processes(models, tagger, dev, tmp_path):
    import datasets

    sentences = [s.tokens for s in dev[:300]] + [[]]
    ds = datasets.Dataset.from_dict({"tokens": sentences, "id": list(range(len(sentences)))})
    expected = tagger.predict(sentences)
    one = tag_dataset(models["directory"], ds, num_proc=1, batch_size=64)
    two = tag_dataset(models["directory"], ds, num_proc=2, batch_size=64)
    assert one["pred_tags"] == two["pred_tags"] == expected
    assert one["id"] == ds["id"]
    both = tag_dataset(tagger, datasets.DatasetDict({"a": ds, "b": ds.select(range(5))}), output_column="upos_pred")
    assert both["a"]["upos_pred"] == expected and both["b"]["upos_pred"] == expected[:5]
    with pytest.raises(seqtag.SeqtagError, match="already has a column 'id'"):
        tag_dataset(tagger, ds, output_column="id")


def test_shards_tagged_apart_equal_the_whole(models, dev):
    """The many-machines recipe of docs/tagging.md: tag shards apart, concatenate."""
    import datasets

    ds = datasets.Dataset.from_dict({"tokens": [s.tokens for s in dev[:120]]})
    shards = [tag_dataset(models["torchscript"], ds.shard(num_shards=3, index=i, contiguous=True)) for i in range(3)]
    whole = tag_dataset(models["directory"], ds)
    assert datasets.concatenate_datasets(shards)["pred_tags"] == whole["pred_tags"]


def test_predict_hf_dataset_saves_to_disk(models, tagger, dev, tmp_path, capsys):
    import datasets

    sentences = [s.tokens for s in dev[:100]]
    source = tmp_path / "source"
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"words": sentences})}).save_to_disk(source)
    out = tmp_path / "tagged"
    code, _, err = _predict([models["directory"], "--hf-dataset", source, "--split", "validation",
                             "--token-column", "words", "--output", out], capsys)  # fmt: skip
    assert code == 0, err
    assert datasets.load_from_disk(str(out))["pred_tags"] == tagger.predict(sentences)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source", "tagged"]  # no temporary directory left
    code, _, err = _predict([models["directory"], "--hf-dataset", source, "--output", out], capsys)
    assert code == 1 and "already exists" in err


# -- confidence and n-best: the contract of Tagger.predict_with_confidence / Tagger.nbest -------


def test_confidence_column_and_jsonl(models, tagger, dev, tmp_path, capsys):
    sentences = [s.tokens for s in dev[:60]]
    text = tmp_path / "in.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    expected = tagger.predict_with_confidence(sentences)
    code, out, err = _predict([models["directory"], "--input", text, "--confidence", "--chunk-size", 7], capsys)
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines() if line]
    assert rows == [[t, g, f"{p:.4f}"] for s, (tags, probs) in zip(sentences, expected)
                    for t, g, p in zip(s, tags, probs)]  # fmt: skip
    code, out, _ = _predict([models["directory"], "--input", text, "--confidence", "--output-format", "jsonl"], capsys)
    objects = [json.loads(line) for line in out.splitlines()]
    assert [(o["tags"], o["confidence"]) for o in objects] == [(t, p) for t, p in expected]


def test_nbest_jsonl(models, tagger, dev, tmp_path, capsys):
    sentences = [s.tokens for s in dev[:40]]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"tokens": s}) + "\n" for s in sentences))
    code, out, err = _predict([models["directory"], "--input", path, "--nbest", "3", "--chunk-size", 9], capsys)
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["tags"] for o in objects] == tagger.predict(sentences)
    expected = tagger.nbest(sentences, 3)
    assert [[(p["tags"], p["log_prob"]) for p in o["nbest"]] for o in objects] == [
        [(tags, pytest.approx(lp)) for tags, lp in paths] for paths in expected
    ]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_confidence_and_nbest_from_every_format(models, tagger, dev, tmp_path, capsys, kind):
    sentences = [s.tokens for s in dev[:30] if len(s) <= EXPORT_BUCKETS[-1]]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"tokens": s}) + "\n" for s in sentences))
    code, out, err = _predict([models[kind], "--input", path, "--confidence", "--nbest", "2"], capsys)
    if kind == "torch-export":  # the programs give tag ids only
        assert code == 1 and "torch.export directory" in err and len(err.splitlines()) == 1
        return
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    confident = tagger.predict_with_confidence(sentences)
    assert [o["tags"] for o in objects] == [tags for tags, _ in confident]
    assert [o["confidence"] for o in objects] == [pytest.approx(p, abs=1e-5) for _, p in confident]
    assert [[p["tags"] for p in o["nbest"]] for o in objects] == [[t for t, _ in n] for n in tagger.nbest(sentences, 2)]


def test_confidence_and_nbest_plumbing_against_the_contract(models, tmp_path, capsys, monkeypatch):
    """The writers, with the two methods stubbed to the contract's return types."""
    monkeypatch.setattr(Tagger, "predict_with_confidence", lambda self, s, batch_size=256:
                        [(tags, [0.5] * len(tags)) for tags in self.predict(s)], raising=False)  # fmt: skip
    monkeypatch.setattr(Tagger, "nbest", lambda self, s, k, batch_size=256:
                        [[(tags, -0.25)] + [([], float("-inf"))] * (k - 1) for tags in self.predict(s)],
                        raising=False)  # fmt: skip
    text = tmp_path / "in.txt"
    text.write_text("The dog\n\nbarked\n")
    code, out, _ = _predict([models["directory"], "--input", text, "--confidence"], capsys)
    assert code == 0 and [line.split("\t")[2] for line in out.splitlines() if line] == ["0.5000"] * 3
    code, out, _ = _predict([models["directory"], "--input", text, "--confidence", "--nbest", "2",
                             "--output-format", "jsonl"], capsys)  # fmt: skip
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["confidence"] for o in objects] == [[0.5, 0.5], [0.5]]
    assert [[p["log_prob"] for p in o["nbest"]] for o in objects] == [[-0.25], [-0.25]]  # -inf entries dropped
    assert [o["nbest"][0]["tags"] for o in objects] == [o["tags"] for o in objects]


def test_conllu_output_replaces_the_column_the_model_was_trained_on(tmp_path, capsys):
    from ..helpers import random_sentences

    data = tmp_path / "xpos.conllu"
    write_conllu(random_sentences(20, seed=3), data, column="xpos")  # the upos column holds "_"
    model = tmp_path / "model"
    assert main(["train", "--train", str(data), "--tag-column", "xpos", "--output-dir", str(model), "--epochs", "1",
                 "--embedding-dim", "8", "--hidden-dim", "8", "--char-filters", "4", "--quiet"]) == 0  # fmt: skip
    out = tmp_path / "tagged.conllu"
    assert _predict([model, "--input", data, "--output", out], capsys)[0] == 0
    expected = Tagger.load(model).predict([s.tokens for s in read_conllu(data, "xpos")])
    assert [s.tags for s in read_conllu(out, "xpos")] == expected
    drop_xpos = lambda path: [line.split("\t")[:4] + line.split("\t")[5:] for line in path.read_text().splitlines()]
    assert drop_xpos(out) == drop_xpos(data)  # the upos column ("_") and the rest are unchanged


def test_a_pipe_is_read_a_directory_refused_and_a_device_output_stays_a_device(models, tmp_path, capsys):
    """Input is read once, so a FIFO is read like standard input; --output onto a device or a
    FIFO writes into it instead of renaming a file over the node."""
    model = models["directory"]
    code, _, err = _predict([model, "--input", tmp_path], capsys)
    assert code == 1 and err == f"seqtag: error: {tmp_path}: is a directory; give a file in it\n"
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["bash", "-c", f"echo 'The dog ate' > {fifo}"])
    code, out, _ = _predict([model, "--input", fifo], capsys)
    writer.wait()
    assert code == 0 and [line.split("\t")[0] for line in out.split("\n\n")[0].splitlines()] == ["The", "dog", "ate"]
    text = tmp_path / "in.txt"
    text.write_text("The dog ate\n")
    sink = tmp_path / "out.fifo"
    os.mkfifo(sink)
    reader = subprocess.Popen(["cat", str(sink)], stdout=subprocess.PIPE)
    code, _, _ = _predict([model, "--input", text, "--output", sink], capsys)
    tagged = reader.communicate()[0].decode()
    assert code == 0 and sink.is_fifo() and tagged.count("\n") == 4


def _docs_recipe(marker):
    """The Python block of docs/tagging.md that contains ``marker`` (blocks indented in a list
    included), dedented: the recipe exactly as a user copies it."""
    import re
    import textwrap

    text = (Path(__file__).resolve().parents[2] / "docs" / "tagging.md").read_text(encoding="utf-8")
    fences = re.findall(r"^( *)```python\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL)
    [recipe] = [textwrap.dedent(body) for _, body in fences if marker in body]
    return recipe


def _recipe_corpus(tmp_path, models, tagger, sentences):
    """What the many-machines recipes read: ``corpus/`` with two JSON-lines parts of
    ``{"id", "tokens"}`` rows and ``ewt_tagger.onnx``, in ``tmp_path``. Returns the expected tags
    by id (``Tagger.predict``)."""
    import shutil

    (tmp_path / "corpus").mkdir()
    for part in range(2):
        rows = sentences[part::2]
        (tmp_path / "corpus" / f"part{part}.jsonl").write_text(
            "".join(json.dumps({"id": f"{part}-{i}", "tokens": t}) + "\n" for i, t in enumerate(rows)), encoding="utf-8"
        )
    shutil.copy(models["onnx"], tmp_path / "ewt_tagger.onnx")
    return {f"{part}-{i}": tags for part in range(2) for i, tags in enumerate(tagger.predict(sentences[part::2]))}


def _tagged_rows(directory, tags_key):
    """Tags by id from every JSON-lines file an engine wrote into ``directory``."""
    tagged = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith((".", "_"))):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            tagged[row["id"]] = row[tags_key]
    return tagged


def test_spark_recipe_of_the_docs_tags_as_predict(models, tagger, dev, tmp_path, monkeypatch):
    """The Spark recipe of docs/tagging.md, run as written on a local two-partition Spark: the
    tagged JSON lines equal ``Tagger.predict``. Needs ``pyspark`` and Java (not installed by the
    project's extras: Spark is the user's engine)."""
    import shutil

    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install pyspark; needs Java)")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java on the PATH")
    from pyspark.sql import SparkSession

    recipe = _docs_recipe("mapPartitions")
    expected = _recipe_corpus(tmp_path, models, tagger, [s.tokens for s in dev[:200]])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.master("local[2]").appName("seqtag-recipe").getOrCreate()
    try:
        exec(compile(recipe, "docs/tagging.md", "exec"), {"__name__": "docs_tagging_recipe", "spark": spark})
    finally:
        spark.stop()
    assert _tagged_rows(tmp_path / "tagged", "tags") == expected


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")  # Ray's own deprecations, not ours
def test_ray_data_recipe_of_the_docs_tags_as_predict(models, tagger, dev, tmp_path, monkeypatch):
    """The Ray Data recipe of docs/tagging.md, run as written on a local two-CPU Ray: every row
    comes back once, with the tags of ``Tagger.predict``. Needs ``ray[data]`` (not among the
    project's extras: Ray is the user's engine)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[data]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")

    recipe = _docs_recipe("map_batches")
    expected = _recipe_corpus(tmp_path, models, tagger, [s.tokens for s in dev[:200]])
    monkeypatch.chdir(tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        exec(compile(recipe, "docs/tagging.md", "exec"), {"__name__": "docs_tagging_recipe"})
    finally:
        ray.shutdown()
    assert _tagged_rows(tmp_path / "tagged", "pred_tags") == expected
