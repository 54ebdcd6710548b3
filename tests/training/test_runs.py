"""seqtag.training.runs: a run directory names its run (run.json), every checkpoint carries the
same id, and --resume refuses a checkpoint of another run before anything is written."""

import json
import shutil

import pytest
import torch

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig, write_conllu
from seqtag.cli.app import main
from seqtag.training.checkpoint import read_checkpoint

from ..helpers import random_sentences

TINY_FLAGS = ["--embedding-dim", "8", "--hidden-dim", "8", "--char-filters", "0", "--batch-size", "8",
              "--device", "cpu", "--quiet"]  # fmt: skip


def _files(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _run_id(out):
    return json.loads((out / "run.json").read_text())["run_id"]


@pytest.fixture
def two_runs(tmp_path):
    """Two finished runs of 1 epoch, on other data, in ``a`` and ``b``."""
    runs = {}
    for name, seed in (("a", 11), ("b", 12)):
        corpus = tmp_path / f"{name}.conllu"
        write_conllu(random_sentences(16, seed=seed), corpus)
        out = tmp_path / name
        assert main(["train", "--train", str(corpus), "--output-dir", str(out), "--epochs", "1", *TINY_FLAGS]) == 0
        runs[name] = out
    return runs


def test_every_checkpoint_carries_the_id_of_its_directorys_run(two_runs):
    a, b = two_runs["a"], two_runs["b"]
    assert _run_id(a) != _run_id(b)
    for out in (a, b):
        for checkpoint in (out / "checkpoints").iterdir():
            assert read_checkpoint(checkpoint)["run_id"] == _run_id(out)
    assert main(["train", "--resume", str(a), "--epochs", "2", "--quiet"]) == 0  # the id stays
    assert read_checkpoint(a / "checkpoints/last.pt")["run_id"] == _run_id(a)


def test_resume_refuses_a_checkpoint_copied_from_another_run_naming_both(two_runs, capsys):
    a, b = two_runs["a"], two_runs["b"]
    shutil.copy(b / "checkpoints/last.pt", a / "checkpoints/last.pt")
    before = _files(a)
    capsys.readouterr()
    assert main(["train", "--resume", str(a), "--epochs", "2"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"belongs to run {_run_id(b)}, but {a} holds run {_run_id(a)} (run.json): resuming would mix" in err
    assert _files(a) == before  # nothing written


def test_python_resume_refuses_another_runs_checkpoint(two_runs):
    a, b = two_runs["a"], two_runs["b"]
    before = _files(a)
    data = random_sentences(16, seed=12)
    with pytest.raises(SeqtagError, match=f"belongs to run {_run_id(b)}, but {a} holds run {_run_id(a)}"):
        seqtag.train(data, output_dir=a, resume=b / "checkpoints/last.pt", quiet=True,
                     train_config=TrainConfig.from_dict(read_checkpoint(b / "checkpoints/last.pt")["train_config"]))
    assert _files(a) == before


def test_a_run_moved_to_another_directory_resumes(two_runs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(two_runs["a"], moved)
    assert main(["train", "--resume", str(moved), "--epochs", "2", "--quiet"]) == 0
    assert _run_id(moved) == _run_id(two_runs["a"])


def _as_0_2_0(out):
    """A run directory as seqtag 0.2.0 left it: no run.json, checkpoints without a run id."""
    (out / "run.json").unlink()
    for path in (out / "checkpoints").iterdir():
        state = torch.load(path, weights_only=True)
        del state["run_id"]
        torch.save(state, path)


def test_a_run_of_0_2_0_resumes_and_takes_an_id(two_runs):
    a = two_runs["a"]
    _as_0_2_0(a)
    assert main(["train", "--resume", str(a), "--epochs", "2", "--quiet"]) == 0
    assert read_checkpoint(a / "checkpoints/last.pt")["run_id"] == _run_id(a)


@pytest.mark.parametrize("old", ["checkpoint", "directory"])
def test_a_checkpoint_and_a_directory_of_which_one_has_no_id_are_refused(two_runs, capsys, old):
    a, b = two_runs["a"], two_runs["b"]
    _as_0_2_0(b if old == "checkpoint" else a)
    shutil.copy(b / "checkpoints/last.pt", a / "checkpoints/last.pt")
    before = _files(a)
    capsys.readouterr()
    assert main(["train", "--resume", str(a), "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    want = (f"has no run id (seqtag 0.2.0), but {a} holds run {_run_id(a)}" if old == "checkpoint"
            else f"belongs to run {_run_id(b)}, but {a} holds a run without an id (seqtag 0.2.0)")
    assert want in err and err.count("\n") == 1
    assert _files(a) == before


@pytest.mark.parametrize("content", ["{broken", '{"run_id": 5}', "[]"])
def test_a_damaged_run_file_is_one_line(two_runs, capsys, content):
    a = two_runs["a"]
    (a / "run.json").write_text(content)
    capsys.readouterr()
    assert main(["train", "--resume", str(a), "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{a / 'run.json'}: " in err and err.count("\n") == 1


def test_a_new_run_replaces_the_id_of_the_run_it_overwrites(two_runs):
    a = two_runs["a"]
    old = _run_id(a)
    seqtag.train(random_sentences(16, seed=11), config=TaggerConfig(embedding_dim=8, hidden_dim=8, char_filters=0),
                 train_config=TrainConfig(epochs=1, batch_size=8, device="cpu"), output_dir=a, overwrite=True, quiet=True)
    assert _run_id(a) != old and read_checkpoint(a / "checkpoints/last.pt")["run_id"] == _run_id(a)
