"""The command line, end to end, in-process (``main(argv)``) and as a real subprocess."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqtag import read_conllu, write_conll, write_conllu
from seqtag.cli.app import main
from seqtag.data.tutorial import tutorial_corpus

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


BROKEN_BIO = "Ann\tB-PER\nSmith\tI-PER\nin\tO\nOslo\tB-LOC\n\nto\tO\nRome\tI-LOC\n\nBob\tI-PER\nLee\tI-PER\n"
GOOD_BIO = "Ann\tB-PER\nSmith\tI-PER\nin\tO\nOslo\tB-LOC\n\nto\tO\nRome\tB-LOC\n\n"
BIOES = "Ann\tB-PER\nSmith\tE-PER\nin\tO\nOslo\tS-LOC\n\n"


@pytest.mark.parametrize(
    "train, dev, flags, message",
    [
        (BIOES, None, ["--tag-scheme", "bio"], "train.conll:2: tag 'E-PER' is not a BIO tag (2 such tags: E-PER, S-LOC)"),
        (BIOES, None, ["--tag-scheme", "bio", "--no-crf"], "train.conll:2: tag 'E-PER' is not a BIO tag"),
        (BROKEN_BIO, None, [], "train.conll:7: 'I-LOC' after 'O' breaks the BIO scheme (and 1 more sentence that"),
        (BROKEN_BIO, None, ["--no-crf"], "train.conll:7: 'I-LOC' after 'O' breaks the BIO scheme"),
        (GOOD_BIO, BROKEN_BIO, [], "dev.conll:7: 'I-LOC' after 'O' breaks the BIO scheme"),
        (GOOD_BIO, BIOES, [], "dev.conll:2: tag 'E-PER' is not a BIO tag"),
        (GOOD_BIO + BIOES, None, [], "train.conll:3: 'O' after 'I-PER' breaks the BIOES scheme (and 1 more"),
    ],
)  # fmt: skip
def test_tags_that_break_the_scheme_are_one_line_naming_file_line_and_tags(tmp_path, capsys, train, dev, flags, message):
    (tmp_path / "train.conll").write_text(train, encoding="utf-8")
    argv = ["train", "--train", str(tmp_path / "train.conll"), "--output-dir", str(tmp_path / "m"), "--quiet", *TINY]
    if dev is not None:
        (tmp_path / "dev.conll").write_text(dev, encoding="utf-8")
        argv += ["--dev", str(tmp_path / "dev.conll")]
    assert main([*argv, *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_repair_tags_is_kept_with_the_run_for_resume_and_evaluate(tmp_path, capsys):
    data = tmp_path / "train.conll"
    data.write_text(BROKEN_BIO, encoding="utf-8")
    model = tmp_path / "m"
    base = ["--epochs", "1", "--quiet", *TINY]
    assert main(["train", "--train", str(data), "--dev", str(data), "--output-dir", str(model), "--repair-tags", *base]) == 0
    note = f"seqtag: {data}: repaired 2 tag(s) in 2 sentence(s) to follow BIO (--repair-tags)"
    assert capsys.readouterr().err.splitlines()[:2] == [note, note]
    assert json.loads((model / "config.json").read_text())["data"]["repair_tags"] is True
    before = (model / "weights.pt").read_bytes()
    assert main(["train", "--resume", str(model), "--no-repair-tags", "--epochs", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "not repair_tags (saved True, given False)" in err and len(err.strip().splitlines()) == 1
    assert (model / "weights.pt").read_bytes() == before
    assert main(["train", "--resume", str(model), "--epochs", "2", "--quiet"]) == 0  # read as the run read it
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(data), "--json"]) == 0  # the model's run repaired
    captured = capsys.readouterr()
    assert note in captured.err and json.loads(captured.out)["tokens"] == 8
    assert main(["evaluate", str(model), "--data", str(data), "--no-repair-tags"]) == 1
    err = capsys.readouterr().err
    assert "train.conll:7: 'I-LOC' after 'O' breaks the BIO scheme" in err and len(err.strip().splitlines()) == 1


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

    from ..helpers import random_sentences

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
    assert "the upos column holds only '_': choose another with --tag-column, e.g. xpos" in capsys.readouterr().err


def test_evaluate_precision(tmp_path, tutorial_file, capsys):
    """--precision fp32 scores as the default does; one the machine cannot run is one line."""
    model = tmp_path / "model"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "1", "--quiet",
                 *TINY]) == 0  # fmt: skip
    reports = []
    for flags in ([], ["--precision", "fp32"]):
        capsys.readouterr()
        assert main(["evaluate", str(model), "--data", str(tutorial_file), "--json", *flags]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0] == reports[1]
    assert main(["evaluate", str(model), "--data", str(tutorial_file), "--precision", "fp16"]) == 1
    assert capsys.readouterr() == ("", "seqtag: error: --precision fp16 needs CUDA; on cpu use bf16 or fp32\n")


# -- options, output directories, pipes ------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["train", "--threads", "-1"], 2, "argument --threads: expected threads >= 0, got -1"),
        (["bench", "--steps", "0"], 2, "argument --steps: expected steps >= 1, got 0"),
        (["evaluate", "m", "--data", "d", "--batch-size", "0"], 2, "argument --batch-size: expected batch_size >= 1, got 0"),
        (["train", "--train", "t", "--output-dir", "o", "--batch-size", "0"], 1, "expected batch_size >= 1, got 0"),
        (["train", "--train", "t", "--output-dir", "o", "--dropout", "1"], 1, "expected dropout < 1.0, got 1.0"),
        (["train", "--train", "t", "--output-dir", "o", "--lr", "-1"], 1, "expected lr > 0.0, got -1.0"),
        (["train", "--train", "t", "--output-dir", "o", "--num-proc", "0"], 1, "expected num_proc >= 1, got 0"),
    ],
)  # fmt: skip
def test_options_out_of_range_are_one_line_before_anything_runs(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    if code == 2:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    else:
        assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_the_former_dataset_column_spellings_are_hidden_aliases():
    from seqtag.cli.app import build_parser

    parser = build_parser()
    old = parser.parse_args(["train", "--tags-column", "ner", "--tokens-column", "words"])
    new = parser.parse_args(["train", "--tag-column", "ner", "--token-column", "words"])
    assert (old.tag_column, old.token_column) == (new.tag_column, new.token_column) == ("ner", "words")
    assert "--tags-column COLUMN" not in parser._subparsers._group_actions[0].choices["train"].format_usage()


def test_every_option_that_takes_a_value_names_it():
    """Usage shows ``--dropout X``, ``--steps N``, ``--vectors FILE``: a metavar or the choices,
    never argparse's upper-cased destination (``--dropout DROPOUT``)."""
    import argparse

    from seqtag.cli.app import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    unnamed = [(name, a.option_strings[0]) for name, p in commands.items() for a in p._actions
               if a.option_strings and a.nargs != 0 and a.metavar is None and a.choices is None
               and not isinstance(a, argparse._HelpAction)]  # fmt: skip
    assert unnamed == []
    assert "--steps N" in commands["bench"].format_usage() and "--dropout X" in commands["train"].format_usage()


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_output_dir_that_cannot_be_a_directory_is_one_line(tmp_path, tutorial_file, capsys, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker if where == "a file" else blocker / "run"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(out), "--epochs", "1", "--quiet", *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"seqtag: error: cannot write {out}: ") and len(err.splitlines()) == 1
    assert blocker.read_text() == "x"


def _seqtag(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "seqtag", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_second_run_into_a_directory_in_use_fails_at_once_and_the_first_stays_itself(tmp_path):
    from seqtag import Tagger, write_conll
    from seqtag.training.checkpoint import read_checkpoint

    from ..helpers import random_sentences

    corpora = {}
    for name, tags in (("abc", ("A", "B", "C")), ("xyz", ("X", "Y", "Z"))):
        corpora[name] = tmp_path / f"{name}.conll"
        write_conll(random_sentences(300, tags=tags, seed=len(corpora)), corpora[name])
    out = tmp_path / "run"
    run = lambda name: _seqtag("train", "--train", str(corpora[name]), "--dev", str(corpora[name]),  # noqa: E731
                               "--output-dir", str(out), "--epochs", "6", "--quiet", *TINY)  # fmt: skip
    first = run("abc")
    lock = out / ".seqtag.lock"
    while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        assert first.poll() is None, first.communicate()
        time.sleep(0.02)
    # The second run, and beside it the time that starting seqtag at all takes now (same load).
    started = time.perf_counter()
    second, startup = run("xyz"), _seqtag("train", "--help")
    startup.communicate()
    startup_seconds = time.perf_counter() - started
    _, second_err = second.communicate()
    second_seconds = time.perf_counter() - started
    assert first.poll() is None  # the first run was still training all along
    assert second.returncode == 1
    assert second_err.startswith(f"seqtag: error: {out} is in use by another seqtag run (pid {first.pid}, lock {lock})")
    assert len(second_err.strip().splitlines()) == 1
    assert second_seconds < startup_seconds + 1.0  # at once: before reading any data
    _, first_err = first.communicate()
    assert first.returncode == 0, first_err
    winner = "abc"
    # The survivor's directory is the survivor's run: its tags, data settings and checkpoint.
    assert set(Tagger.load(out).vocabs.tags.itos) >= set("ABC" if winner == "abc" else "XYZ")
    assert read_checkpoint(out / "checkpoints/last.pt")["data_config"]["train_file"] == str(corpora[winner].resolve())
    evaluate = _seqtag("evaluate", str(out), "--data", str(corpora[winner]), "--json")
    report, _ = evaluate.communicate()
    assert evaluate.returncode == 0 and json.loads(report)["tokens"] > 0
    resume = _seqtag("train", "--resume", str(out), "--epochs", "7", "--quiet")
    _, resume_err = resume.communicate()
    assert resume.returncode == 0, resume_err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]


def test_evaluate_into_a_closed_pipe_ends_quietly(tmp_path, tutorial_file):
    model = tmp_path / "model"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "1", "--quiet", *TINY]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = f"{sys.executable} -m seqtag evaluate {model} --data {tutorial_file} | head -n 0"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.stderr == "" and done.returncode == 141


def test_resume_of_a_run_started_in_python_says_how_to_continue_it(tmp_path, capsys):
    import seqtag

    out = tmp_path / "py"
    seqtag.train(tutorial_corpus(), train_config=seqtag.TrainConfig(epochs=1, device="cpu"), output_dir=out, quiet=True)
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 1
    assert "has no data settings (the run was started from Python): continue it with seqtag.train(" in capsys.readouterr().err


def test_two_runs_started_together_into_one_directory_exactly_one_runs(tmp_path):
    from seqtag import write_conll

    from ..helpers import random_sentences

    corpus = tmp_path / "c.conll"
    write_conll(random_sentences(200, seed=4), corpus)
    out = tmp_path / "run"
    # Enough epochs that the first to take the lock still trains when the other tries.
    runs = [_seqtag("train", "--train", str(corpus), "--output-dir", str(out), "--epochs", "10", "--quiet", *TINY)
            for _ in range(2)]  # fmt: skip
    results = [(p.pid, *p.communicate(), p.returncode) for p in runs]
    assert sorted(r[3] for r in results) == [0, 1], results
    ((winner, *_),) = [r for r in results if r[3] == 0]
    ((_, _, err, _),) = [r for r in results if r[3] == 1]
    assert err.startswith(f"seqtag: error: {out} is in use by another seqtag run (pid {winner}, ")
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 11))


@pytest.mark.parametrize("redirect, message", [
    (">&-", "seqtag: error: standard output is closed"),
    ("> /dev/full", "seqtag: error: cannot write standard output: No space left on device"),
])
def test_an_unwritable_standard_output_is_one_line(tmp_path, tutorial_file, redirect, message):
    if redirect.endswith("/dev/full") and not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    model = tmp_path / "model"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "1", "--quiet", *TINY]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in (f"evaluate {model} --data {tutorial_file}", f"predict {model} --input {tutorial_file}"):
        done = subprocess.run(["bash", "-c", f"{sys.executable} -m seqtag {command} {redirect}"],
                              cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines()[-1].startswith(message) or "cannot write" in done.stderr, done.stderr


def test_export_into_a_place_that_cannot_be_a_directory_is_one_line(tmp_path, tutorial_file, capsys):
    model = tmp_path / "model"
    assert main(["train", "--train", str(tutorial_file), "--output-dir", str(model), "--epochs", "1", "--quiet", *TINY]) == 0
    (tmp_path / "a_file").write_text("x")
    capsys.readouterr()
    assert main(["export", str(model), "--format", "torch-export", "--max-length", "8",
                 "--output", str(tmp_path / "a_file" / "programs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"seqtag: error: cannot write {tmp_path / 'a_file'}") and err.count("\n") == 1


@pytest.mark.parametrize("command", [
    ["train", "--train", "x.conll", "--output-dir", "out"], ["evaluate", "m", "--data", "x.conll"],
    ["export", "m", "--output", "m.pt"], ["bench"], ["predict", "m"], ["serve", "m"],
], ids=lambda c: c[0])  # fmt: skip
def test_every_command_that_computes_takes_threads_bounded_by_the_machine(command, capsys, tmp_path, monkeypatch):
    """One spelling of --threads wherever torch or ONNX Runtime computes, and a count far beyond the
    machine (which crashed torch's thread pool) is one line naming the option, not a crash."""
    from seqtag.config import MAX_PARALLEL

    monkeypatch.chdir(tmp_path)
    try:
        code = main([*command, "--threads", str(MAX_PARALLEL + 1)])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err
    assert f"expected threads <= {MAX_PARALLEL}, got {MAX_PARALLEL + 1}" in err
    assert len(err.strip().splitlines()[-1:]) == 1 and not (tmp_path / "out").exists()


def test_a_dataset_error_is_the_only_line_on_a_redirected_stderr(tmp_path):
    """datasets draws progress bars on any stderr; under a pipe or in a log only the error is left."""
    from ..helpers import random_sentences, small_tagger

    model = tmp_path / "m"
    small_tagger(random_sentences(5, tags=("O", "B-X", "I-X"))).save(model)
    data = tmp_path / "d.jsonl"
    data.write_text('{"tokens": ["a", "b"], "tags": ["O"]}\n')
    done = _seqtag("evaluate", str(model), "--hf-dataset", str(data))
    _, err = done.communicate(timeout=120)
    assert done.returncode == 1
    assert err.splitlines() == ["seqtag: error: row 0: expected as many tags as tokens, got 2 tokens and 1 tags"]


@pytest.mark.parametrize("flag", ["--hidden-dim", "--embedding-dim"])
def test_a_model_too_large_to_allocate_is_one_line_and_nothing_written(tmp_path, capsys, flag):
    from ..helpers import random_sentences

    data = tmp_path / "t.conll"
    write_conll(random_sentences(5), data)
    out = tmp_path / "run"
    assert main(["train", "--train", str(data), "--output-dir", str(out), "--epochs", "1", "--quiet",
                 flag, "1000000000000"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert re.fullmatch(r"seqtag: error: out of memory \(you tried to allocate \d+ bytes\): choose smaller sizes or batches\n", err)
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--max-length", "16"], "--max-length is for --format torch-export (torchscript takes sentences of any length)"),
    (["--format", "onnx", "--max-length", "16"], "--max-length is for --format torch-export (onnx takes sentences of any length)"),
])  # fmt: skip
def test_export_refuses_an_option_its_format_would_ignore(tmp_path, capsys, flags, message):
    from ..helpers import random_sentences, small_tagger

    small_tagger(random_sentences(3)).save(tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "--output", str(tmp_path / "out"), *flags]) == 1
    assert capsys.readouterr().err == f"seqtag: error: {message}\n"
    assert not (tmp_path / "out").exists()
