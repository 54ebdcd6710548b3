"""The command line, end to end, in-process (``main(argv)``) and as a real subprocess."""

import json
import subprocess
import sys

import pytest

from seqtag import read_conllu, write_conllu
from seqtag.cli import main
from seqtag.tutorial import tutorial_corpus

TINY = ["--embedding-dim", "16", "--hidden-dim", "16", "--char-filters", "8", "--threads", "1"]


@pytest.fixture
def tutorial_file(tmp_path):
    from seqtag import write_conll

    path = tmp_path / "tutorial.conll"
    write_conll(tutorial_corpus(), path)
    return path


def test_train_evaluate_predict_on_the_tutorial(tmp_path, tutorial_file, capsys):
    model = tmp_path / "model"
    args = ["train", "--train", str(tutorial_file), "--dev", str(tutorial_file), "--output-dir", str(model),
            "--epochs", "40", "--lr", "0.05", "--word-dropout", "0", "--dropout", "0", "--quiet", *TINY]
    assert main(args) == 0
    assert {p.name for p in model.iterdir()} >= {"config.json", "vocab.json", "weights.pt", "metrics.jsonl"}
    config = json.loads((model / "config.json").read_text())["model"]
    assert config["embedding_dim"] == 16 and config["char_filters"] == 8

    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(tutorial_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"accuracy": 1.0, "tokens": 9, "sentences": 2}

    text = tmp_path / "in.txt"
    text.write_text("The dog ate the apple\n\nEverybody read that book\n")
    assert main(["predict", str(model), "--input", str(text)]) == 0
    out = capsys.readouterr().out
    assert out == "The\tDET\ndog\tNN\nate\tV\nthe\tDET\napple\tNN\n\nEverybody\tNN\nread\tV\nthat\tDET\nbook\tNN\n\n"


def test_refuses_to_overwrite_a_model(tmp_path, tutorial_file, capsys):
    model = tmp_path / "model"
    base = ["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "1", "--quiet", *TINY]
    assert main(base) == 0
    before = (model / "weights.pt").read_bytes()
    assert main(base) == 1
    assert "already holds a model" in capsys.readouterr().err
    assert (model / "weights.pt").read_bytes() == before


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\tB\nb\n", "bad.conll:2: expected 2 columns"),
        ("", "bad.conll: no sentences"),
        (b"ok\tX\n\xff\tY\n", "bad.conll:2: not valid UTF-8"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "bad.conll"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = main(["train", "--train", str(path), "--output-dir", str(tmp_path / "m"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_unknown_tags_at_evaluation_are_listed(tmp_path, tutorial_file, capsys):
    model = tmp_path / "model"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "1", "--quiet", *TINY]) == 0
    other = tmp_path / "other.conll"
    other.write_text("The\tDET\ncat\tNOUN\nsat\tVERB\n\n")
    assert main(["evaluate", str(model), "--data", str(other)]) == 1
    assert "NOUN, VERB" in capsys.readouterr().err


def test_cuda_without_cuda_is_an_error(tmp_path, tutorial_file, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["train", "--train", str(tutorial_file), "--output-dir", str(tmp_path / "m"), "--device", "cuda"])
    assert code == 1 and "CUDA is not available" in capsys.readouterr().err


def test_ewt_slice_end_to_end_in_a_subprocess(tmp_path, ewt_dir):
    train = tmp_path / "train.conllu"
    dev = tmp_path / "dev.conllu"
    write_conllu(read_conllu(ewt_dir / "en_ewt-ud-train.conllu")[:400], train)
    write_conllu(read_conllu(ewt_dir / "en_ewt-ud-dev.conllu")[:150], dev)
    model = tmp_path / "ewt"
    run = lambda *a: subprocess.run([sys.executable, "-m", "seqtag", *a], capture_output=True, text=True, check=True)  # noqa: E731
    run("train", "--train", str(train), "--dev", str(dev), "--output-dir", str(model), "--epochs", "3",
        "--batch-size", "16", "--embedding-dim", "32", "--hidden-dim", "32", "--threads", "1", "--quiet")
    result = json.loads(run("evaluate", str(model), "--data", str(dev), "--json").stdout)
    assert result["sentences"] == 150 and result["tokens"] == sum(len(s) for s in read_conllu(dev))
    assert result["accuracy"] > 0.5  # 17 UPOS tags: chance is far below; 3 short epochs reach ~0.7
    rows = (model / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3
    out = subprocess.run([sys.executable, "-m", "seqtag", "predict", str(model)], input="I like green tea .\n",
                         capture_output=True, text=True, check=True).stdout
    assert [line.split("\t")[0] for line in out.splitlines() if line] == ["I", "like", "green", "tea", "."]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch 2.13
def test_export_then_predict_from_the_exported_file(tmp_path, tutorial_file, capsys):
    model = tmp_path / "model"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "30",
                 "--lr", "0.05", "--word-dropout", "0", "--quiet", *TINY]) == 0
    assert main(["export", str(model), "--output", str(tmp_path / "tagger.pt")]) == 0
    text = tmp_path / "in.txt"
    text.write_text("The dog ate the apple\nEverybody read that unseen book\n")
    outputs = []
    for source in (model, tmp_path / "tagger.pt"):
        capsys.readouterr()
        assert main(["predict", str(source), "--input", str(text)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 12


def test_predict_from_a_torch_export_directory(tmp_path, tutorial_file, capsys):
    model = tmp_path / "model"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "30",
                 "--lr", "0.05", "--word-dropout", "0", "--quiet", *TINY]) == 0
    assert main(["export", str(model), "--output", str(tmp_path / "pt2"), "--format", "torch-export",
                 "--max-length", "4"]) == 0
    short = tmp_path / "short.txt"
    short.write_text("The dog ate\n\nEverybody read that book\n")  # the blank line is skipped
    outputs = []
    for source in (model, tmp_path / "pt2"):
        capsys.readouterr()
        assert main(["predict", str(source), "--input", str(short)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 3 + 1 + 4 + 1

    long = tmp_path / "long.txt"
    long.write_text("The dog ate\nThe dog ate the apple\n")
    assert main(["predict", str(tmp_path / "pt2"), "--input", str(long)]) == 1
    err = capsys.readouterr().err
    assert f"{long}:2: 5 tokens, more than the 4" in err and "Traceback" not in err


def test_evaluate_defaults_to_the_tag_column_the_model_was_trained_on(tmp_path, capsys):
    from seqtag import write_conllu

    from .helpers import random_sentences

    data = tmp_path / "xpos.conllu"
    write_conllu(random_sentences(20, seed=3), data, column="xpos")  # the upos column holds "_"
    model = tmp_path / "model"
    assert main(["train", "--train", str(data), "--tag-column", "xpos", "--output-dir", str(model),
                 "--epochs", "1", "--quiet", *TINY]) == 0
    reports = []
    for flags in ([], ["--tag-column", "xpos"]):
        capsys.readouterr()
        assert main(["evaluate", str(model), "--data", str(data), "--json", *flags]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0] == reports[1] and reports[0]["tokens"] > 0
    assert main(["evaluate", str(model), "--data", str(data), "--tag-column", "upos"]) == 1
    assert "not trained with: _" in capsys.readouterr().err
