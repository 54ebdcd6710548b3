"""Production training: checkpoints and exact resume, interrupts, crashes mid-write, mixed
precision, schedules and model selection, metrics.jsonl and the plot, bad input."""

import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig, write_conll, write_conllu
from seqtag.cli.app import main
from seqtag.data.tutorial import TUTORIAL_MODEL, TUTORIAL_TRAINING, tutorial_corpus
from seqtag.device import cpu_bf16_problem
from seqtag.model.tagger import Tagger
from seqtag.schemes import repair
from seqtag.training.checkpoint import numbered_checkpoints, read_checkpoint
from seqtag.training.interrupts import TrainingInterrupted
from seqtag.training.loop import WALL_CLOCK_FIELDS, learning_rate

from ..helpers import random_sentences

train_module = importlib.import_module("seqtag.training.loop")

REPO = Path(__file__).resolve().parents[2]
TINY = TaggerConfig(embedding_dim=8, hidden_dim=8, char_embedding_dim=4, char_filters=4, dropout=0.2)
# Dropout and word dropout on, so that an exact resume needs the random generators restored.
FAST = TrainConfig(epochs=4, batch_size=8, device="cpu", word_dropout=0.3, patience=0)
TINY_FLAGS = ["--embedding-dim", "8", "--hidden-dim", "8", "--char-filters", "4", "--char-embedding-dim", "4",
              "--batch-size", "8", "--device", "cpu", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return random_sentences(48, seed=1), random_sentences(16, seed=2)


def rows(directory):
    return [json.loads(line) for line in (Path(directory) / "metrics.jsonl").read_text().splitlines()]


def without_wall_clock(history):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_FIELDS} for r in history]


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight_run(data, tmp_path_factory):
    """4 epochs without a stop, a checkpoint every 2 steps, all of them kept."""
    out = tmp_path_factory.mktemp("straight")
    tagger = seqtag.train(*data, TINY, FAST.replace(checkpoint_every=2, keep=100), output_dir=out, quiet=True)
    return out, tagger


# -- checkpoints and exact resume ---------------------------------------------------------


def test_stopping_after_2_epochs_and_resuming_to_4_is_bit_identical(data, straight_run, tmp_path):
    straight, straight_tagger = straight_run
    seqtag.train(*data, TINY, FAST.replace(epochs=2, checkpoint_every=2, keep=100), output_dir=tmp_path, quiet=True)
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2]
    resumed = seqtag.train(*data, train_config=FAST.replace(checkpoint_every=2, keep=100), output_dir=tmp_path,
                           quiet=True, resume=True)  # fmt: skip
    assert_same_weights(resumed.state_dict(), straight_tagger.state_dict())
    a, b = read_checkpoint(straight / "checkpoints/last.pt"), read_checkpoint(tmp_path / "checkpoints/last.pt")
    assert_same_weights(a["model"], b["model"])
    assert without_wall_clock(rows(tmp_path)) == without_wall_clock(rows(straight))
    assert without_wall_clock(b["progress"].history) == without_wall_clock(a["progress"].history)
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2, 3, 4]


def test_resuming_from_a_mid_epoch_checkpoint_is_bit_identical(data, straight_run, tmp_path):
    straight, straight_tagger = straight_run
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    mid = [p for p in numbered_checkpoints(run / "checkpoints") if "-step-" in p.name and p.name.startswith("epoch-0003")]
    state = read_checkpoint(mid[0])
    assert state["progress"].epoch == 2 and 0 < state["progress"].batch < 6  # 48 sentences: 6 batches an epoch
    resumed = seqtag.train(*data, output_dir=run, quiet=True, resume=mid[0])
    assert_same_weights(resumed.state_dict(), straight_tagger.state_dict())
    assert_same_weights(read_checkpoint(run / "checkpoints/last.pt")["model"],
                        read_checkpoint(straight / "checkpoints/last.pt")["model"])  # fmt: skip
    assert without_wall_clock(rows(run)) == without_wall_clock(rows(straight))


def test_keep_limits_the_numbered_checkpoints(data, tmp_path):
    seqtag.train(*data, TINY, FAST.replace(epochs=3, checkpoint_every=4, keep=2), output_dir=tmp_path, quiet=True)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch-0003-step-000000016.pt", "epoch-0003.pt", "last.pt"]


def test_resume_refuses_other_settings_and_other_data(data, tmp_path):
    train, dev = data
    seqtag.train(train, dev, TINY, FAST.replace(epochs=1), output_dir=tmp_path, quiet=True)
    with pytest.raises(SeqtagError, match=r"can change only .* not batch_size \(saved 8, given 4\)"):
        seqtag.train(train, dev, train_config=FAST.replace(epochs=2, batch_size=4), output_dir=tmp_path, resume=True)
    with pytest.raises(SeqtagError, match="training data is not what the saved run was trained with"):
        seqtag.train(train[:-1], dev, output_dir=tmp_path, resume=True)
    with pytest.raises(SeqtagError, match="no checkpoint to resume from"):
        seqtag.train(train, dev, output_dir=tmp_path / "nothing", resume=True)


def test_cli_resume_takes_the_saved_settings_and_appends_metrics(tmp_path, capsys):
    corpus = tmp_path / "train.conll"
    write_conll(random_sentences(24, seed=5), corpus)
    out = tmp_path / "run"
    assert main(["train", "--train", str(corpus), "--dev", str(corpus), "--output-dir", str(out), "--epochs", "2",
                 "--lr", "0.01", *TINY_FLAGS]) == 0  # fmt: skip
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert [r["epoch"] for r in rows(out)] == [1, 2, 3]
    assert read_checkpoint(out / "checkpoints/last.pt")["train_config"]["lr"] == 0.01
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--hidden-dim", "4"]) == 1
    assert "drop --hidden-dim" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "4", "--optimizer", "sgd"]) == 1
    assert "not optimizer" in capsys.readouterr().err
    assert [r["epoch"] for r in rows(out)] == [1, 2, 3]
    best = read_checkpoint(out / "checkpoints/best.pt")["progress"].epoch
    assert main(["train", "--resume", str(out / "checkpoints/best.pt"), "--epochs", "4", "--quiet"]) == 0
    assert [r["epoch"] for r in rows(out)] == [1, 2, 3, 4] and best <= 3


# -- interrupts and crashes -----------------------------------------------------------------


def test_sigint_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    corpus = tmp_path / "train.conll"
    write_conll(random_sentences(150, seed=6), corpus)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "seqtag", "train", "--train", str(corpus), "--output-dir", str(out),
           "--epochs", "1", "--checkpoint-every", "5", "--threads", "1", *TINY_FLAGS, "--batch-size", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoints/last.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"resume with: seqtag train --resume {out}" in err and "Traceback" not in err
    state = read_checkpoint(out / "checkpoints/last.pt")
    assert state["progress"].epoch == 0 and 0 < state["progress"].batch < 150
    assert main(["train", "--resume", str(out), "--checkpoint-every", "0", "--quiet"]) == 0
    assert [r["epoch"] for r in rows(out)] == [1]
    assert read_checkpoint(out / "checkpoints/last.pt")["progress"].step == 150


def test_sigterm_stops_at_the_next_step_with_a_checkpoint(data, tmp_path, monkeypatch):
    calls = 0
    loss = Tagger.loss

    def loss_then_sigterm(self, *args):
        nonlocal calls
        calls += 1
        if calls == 9:  # in epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return loss(self, *args)

    monkeypatch.setattr(Tagger, "loss", loss_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 9 .epoch 2, batch 3 of 6.") as info:
        seqtag.train(*data, TINY, FAST, output_dir=tmp_path, quiet=True)
    assert info.value.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    state = read_checkpoint(info.value.checkpoint)
    assert (state["progress"].epoch, state["progress"].batch, state["progress"].step) == (1, 3, 9)


def test_a_crash_between_write_and_rename_leaves_the_previous_checkpoint(tmp_path):
    """The process is killed (SIGKILL) right before the second checkpoint replaces last.pt."""
    script = f"""
import os, signal, seqtag
from tests.helpers import random_sentences
real_replace = os.replace
def replace(src, dst):
    if str(dst).endswith("last.pt") and os.path.exists(dst):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
config = seqtag.TaggerConfig(embedding_dim=8, hidden_dim=8, char_embedding_dim=4, char_filters=4)
seqtag.train(random_sentences(48, seed=1), config=config, output_dir={str(tmp_path)!r}, quiet=True,
             train_config=seqtag.TrainConfig(epochs=3, batch_size=8, device="cpu"))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".last.pt.tmp")]
    assert leftovers, "the kill should come after the temporary file was written"
    assert read_checkpoint(tmp_path / "checkpoints/last.pt")["progress"].epoch == 1
    seqtag.train(random_sentences(48, seed=1), output_dir=tmp_path, quiet=True, resume=True)
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2, 3]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("last.pt") and os.path.exists(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SeqtagError, match=r"cannot write \S+last.pt: No space left on device; stopping \(the checkpoints already there"):
        seqtag.train(*data, TINY, FAST, output_dir=tmp_path, quiet=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files
    assert read_checkpoint(tmp_path / "checkpoints/last.pt")["progress"].epoch == 1
    seqtag.train(*data, output_dir=tmp_path, quiet=True, resume=True)
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2, 3, 4]


@pytest.mark.parametrize("how", ["nan-loss", "huge-lr"])
def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch, how):
    if how == "nan-loss":
        calls = 0
        loss = Tagger.loss

        def nan_at_step_8(self, *args):
            nonlocal calls
            calls += 1
            value = loss(self, *args)
            return value * float("nan") if calls == 8 else value

        monkeypatch.setattr(Tagger, "loss", nan_at_step_8)
        tc, expected = FAST, "loss became nan in epoch 2 at step 8 .batch 2 of 6."
    else:  # a real divergence, after the first epoch's checkpoint
        tc, expected = FAST.replace(optimizer="sgd", lr=1e38, clip=0.0, epochs=3), "(loss became|weights are no longer finite)"
        monkeypatch.setattr(train_module, "learning_rate", lambda tc_, step, *a: 1e-3 if step < 6 else tc_.lr)
    with pytest.raises(SeqtagError, match=expected) as info:
        seqtag.train(*data, TINY, tc, output_dir=tmp_path, quiet=True)
    assert "checkpoint" in str(info.value)
    last = read_checkpoint(tmp_path / "checkpoints/last.pt")
    assert last["progress"].epoch == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in Tagger.load(tmp_path).parameters())
    if how == "huge-lr":  # resuming with a sane rate recovers
        seqtag.train(*data, train_config=tc.replace(lr=1e-3), output_dir=tmp_path, quiet=True, resume=True)
        assert [r["epoch"] for r in rows(tmp_path)] == [1, 2, 3]


# -- precision ------------------------------------------------------------------------------


@pytest.mark.skipif(bool(cpu_bf16_problem()) and not torch.cuda.is_available(),
                    reason="this CPU cannot run the LSTM in bf16 (tests/test_device.py checks the refusal)")
def test_bf16_training_learns_the_tutorial():
    corpus = tutorial_corpus()
    tagger = seqtag.train(corpus, config=TUTORIAL_MODEL, train_config=TUTORIAL_TRAINING.replace(precision="bf16"),
                          quiet=True)  # fmt: skip
    assert next(tagger.parameters()).dtype == torch.float32  # autocast: the weights stay float32
    assert tagger.predict([s.tokens for s in corpus]) == [["DET", "NN", "V", "DET", "NN"], ["NN", "V", "DET", "NN"]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_fp16_without_cuda_is_a_clear_error():
    with pytest.raises(SeqtagError, match="fp16 needs CUDA.*bf16"):
        seqtag.train(tutorial_corpus(), train_config=TrainConfig(precision="fp16", device="cpu"), quiet=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_gradient_scaling_on_cuda_resumes(data, tmp_path):
    tc = FAST.replace(precision="fp16", device="cuda", epochs=2)
    seqtag.train(*data, TINY, tc.replace(epochs=1), output_dir=tmp_path, quiet=True)
    assert read_checkpoint(tmp_path / "checkpoints/last.pt")["scaler"]["scale"] > 0
    seqtag.train(*data, train_config=tc, output_dir=tmp_path, quiet=True, resume=True)
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2]


# -- schedules, model selection, early stopping ---------------------------------------------------


def test_learning_rate_schedules():
    lrs = lambda tc, halvings=0: [learning_rate(tc, s, halvings, 10) for s in range(10)]  # noqa: E731
    assert lrs(TrainConfig(lr=1.0, schedule="constant")) == [1.0] * 10
    assert lrs(TrainConfig(lr=1.0, schedule="plateau"), halvings=2) == [0.25] * 10
    linear = lrs(TrainConfig(lr=1.0, schedule="linear"))
    assert linear[0] == 1.0 and linear[-1] == pytest.approx(0.1) and linear == sorted(linear, reverse=True)
    warm = lrs(TrainConfig(lr=1.0, schedule="linear", warmup_steps=4))
    assert warm[:5] == [0.25, 0.5, 0.75, 1.0, 1.0] and warm[-1] == pytest.approx(1 / 6)


def test_linear_schedule_in_metrics(data, tmp_path):
    seqtag.train(*data, TINY, FAST.replace(epochs=3, schedule="linear", warmup_steps=2), output_dir=tmp_path, quiet=True)
    lrs = [r["lr"] for r in rows(tmp_path)]
    assert lrs == pytest.approx([FAST.lr * (18 - s) / 16 for s in (5, 11, 17)])


def test_plateau_halving_early_stopping_and_a_finished_run(data, tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6, 0.9])
    scripted = lambda tagger, dataset, batch_size: {"accuracy": next(scores), "tokens": 1, "sentences": 1}
    tc = FAST.replace(epochs=6, patience=3, lr_halving=1, schedule="plateau")
    seqtag.train(*data, TINY, tc, output_dir=tmp_path, quiet=True, evaluator=scripted)
    history = rows(tmp_path)
    assert [r["dev_accuracy"] for r in history] == [0.5, 0.7, 0.6, 0.6, 0.6]  # stopped: 3 epochs without gain
    assert [r["lr"] / tc.lr for r in history] == [1, 1, 1, 0.5, 0.25]
    state = read_checkpoint(tmp_path / "checkpoints/last.pt")["progress"]
    assert (state.best_epoch, state.stale, state.halvings) == (2, 3, 3)
    assert read_checkpoint(tmp_path / "checkpoints/best.pt")["progress"].epoch == 2
    seqtag.train(*data, output_dir=tmp_path, quiet=True, resume=True)  # nothing left to do
    assert len(rows(tmp_path)) == 5


@pytest.mark.parametrize("select", ["accuracy", "f1"])
def test_best_epoch_is_chosen_by_the_selected_metric(tmp_path, select):
    train = [seqtag.Sentence(s.tokens, repair(s.tags, "bio")) for s in random_sentences(16, tags=("O", "B-X", "I-X"), seed=7)]
    scores = iter([(0.9, 0.1), (0.5, 0.8), (0.6, 0.3)])

    def scripted(tagger, dataset, batch_size):
        accuracy, f1 = next(scores)
        return {"accuracy": accuracy, "f1": f1, "precision": f1, "recall": f1, "tokens": 1, "sentences": 1}

    seqtag.train(train, train, TINY, FAST.replace(epochs=3, select=select), output_dir=tmp_path, quiet=True,
                 evaluator=scripted)
    best = read_checkpoint(tmp_path / "checkpoints/best.pt")["progress"]
    assert best.best_epoch == (1 if select == "accuracy" else 2)


def test_select_f1_needs_span_tags(data):
    with pytest.raises(SeqtagError, match="--select f1 needs span tags"):
        seqtag.train(*data, TINY, FAST.replace(select="f1"), quiet=True)


# -- what a user watches ----------------------------------------------------------------------


def test_metrics_jsonl_has_one_row_per_epoch_with_its_fields(data, straight_run):
    history = rows(straight_run[0])
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["step"] for r in history] == [6, 12, 18, 24]
    for r in history:
        assert {"train_loss", "tokens_per_s", "lr", "epoch_seconds", "wall_time", "dev_accuracy"} <= set(r)
    assert [r["wall_time"] for r in history] == sorted(r["wall_time"] for r in history)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "which, name, content, message",
    [
        ("train", "bad.conllu", "1\tThe\tthe\tDET\t_\t_\t0\troot\t_\t_\n2\tdog\n", "bad.conllu:2: expected 10 tab-separated CoNLL-U fields"),
        ("dev", "bad.conll", "a\tB\nb\tC\nc\n", "bad.conll:3: expected 2 columns as on earlier lines, got 1"),
        ("train", "bad.conll", "a\tB\n\nb\tC\n", "needs columns 0 and 3, the line has 2"),  # with --tag-column 3
        ("dev", "empty.conll", "", "empty.conll: no sentences found"),
        ("train", "latin1.conll", b"ok\tX\n\ncaf\xe9\tY\n", "latin1.conll:3: not valid UTF-8 (byte 4 of the line is 0xe9)"),
    ],
)  # fmt: skip
def test_bad_input_is_a_one_line_error_naming_the_place(tmp_path, capsys, which, name, content, message):
    good = tmp_path / "good.conll"
    write_conll(tutorial_corpus(), good)
    bad = tmp_path / name
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    files = {"train": good, "dev": good, which: bad}
    extra = ["--tag-column", "3"] if "needs columns" in message else []
    code = main(["train", "--train", str(files["train"]), "--dev", str(files["dev"]), "--output-dir",
                 str(tmp_path / "m"), *extra, *TINY_FLAGS])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_unknown_tags_at_evaluation_error_or_map_to_o(tmp_path, capsys):
    train = [seqtag.Sentence(s.tokens, repair(s.tags, "bio")) for s in random_sentences(12, tags=("O", "B-PER", "I-PER"), seed=8)]
    gold = tmp_path / "gold.conll"
    write_conll(train[:3] + [seqtag.Sentence(["Ann", "in", "Oslo"], ["B-PER", "O", "B-LOC"])], gold)
    out = tmp_path / "ner"
    seqtag.train(train, config=TINY, train_config=FAST.replace(epochs=1), output_dir=out, quiet=True)
    assert main(["evaluate", str(out), "--data", str(gold), "--unknown-tags", "error"]) == 1
    err = capsys.readouterr().err
    assert "1 tag(s) the model was not trained with: B-LOC" in err and "--unknown-tags map-to-O" in err
    # Span tags: mapped to O by default (conlleval: the gold chunk is missed), saying so on stderr.
    for flags in ([], ["--unknown-tags", "map-to-O"]):
        assert main(["evaluate", str(out), "--data", str(gold), "--json", *flags]) == 0
        captured = capsys.readouterr()
        result = json.loads(captured.out)
        assert result["unknown_tags"] == {"B-LOC": 1} and "scored as O: B-LOC (1)" in captured.err
        assert result["tokens"] == sum(len(s) for s in train[:3]) + 3

    pos = tmp_path / "pos"
    seqtag.train(tutorial_corpus(), config=TINY, train_config=FAST.replace(epochs=1), output_dir=pos, quiet=True)
    assert main(["evaluate", str(pos), "--data", str(gold), "--unknown-tags", "map-to-O"]) == 1
    assert "no 'O' tag" in capsys.readouterr().err
    assert main(["evaluate", str(pos), "--data", str(gold)]) == 1  # not span tags: an error by default
    assert "the model was not trained with" in capsys.readouterr().err


def test_a_10000_token_sentence_trains_and_predicts():
    long = random_sentences(1, min_len=10_000, max_len=10_000, seed=9)[0]
    start = time.perf_counter()
    tagger = seqtag.train([long, *random_sentences(3, seed=10)], config=TINY,
                          train_config=FAST.replace(epochs=1, batch_size=1), quiet=True)  # fmt: skip
    tags = tagger.predict([long.tokens])[0]
    assert len(tags) == 10_000 and set(tags) <= {"A", "B", "C"}
    assert time.perf_counter() - start < 30


def test_output_dir_with_a_model_needs_overwrite(tmp_path, capsys):
    corpus = tmp_path / "train.conllu"
    write_conllu(random_sentences(16, seed=11), corpus)
    out = tmp_path / "run"
    base = ["train", "--train", str(corpus), "--output-dir", str(out), *TINY_FLAGS]
    assert main([*base, "--epochs", "2", "--keep", "5"]) == 0
    assert main([*base, "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "already holds a model: replace it (--overwrite" in err and f"--resume {out}" in err
    assert len(rows(out)) == 2
    assert main([*base, "--epochs", "1", "--overwrite"]) == 0
    assert len(rows(out)) == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_python_train_refuses_an_output_dir_with_a_model(tmp_path):
    """As on the command line: an earlier run is replaced only when asked (overwrite=True)."""
    out = tmp_path / "run"
    data = random_sentences(16, seed=12)
    seqtag.train(data, config=TINY, train_config=FAST.replace(epochs=2), output_dir=out, quiet=True)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(seqtag.SeqtagError, match="already holds a model.*overwrite=True"):
        seqtag.train(data, config=TINY, train_config=FAST.replace(epochs=1), output_dir=out, quiet=True)
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched
    seqtag.train(data, config=TINY, train_config=FAST.replace(epochs=1), output_dir=out, quiet=True, overwrite=True)
    assert len(rows(out)) == 1


# -- a run owns its directory: every check before the first write ---------------------------------


@pytest.fixture
def finished_run(tmp_path):
    corpus = tmp_path / "train.conllu"
    write_conllu(random_sentences(16, seed=11), corpus)
    out = tmp_path / "run"
    assert main(["train", "--train", str(corpus), "--dev", str(corpus), "--output-dir", str(out), "--epochs", "2",
                 *TINY_FLAGS]) == 0  # fmt: skip
    return corpus, out


def _files(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--device", "cuda:7"], "cuda"),
        (["--vectors", "missing-vectors.txt"], "missing-vectors.txt: no such vectors file"),
        (["--precision", "fp16"], "--precision fp16 needs CUDA"),
        (["--select", "f1"], "--select f1 needs span tags"),
        (["--dev", "missing-dev.conllu"], "missing-dev.conllu: no such file"),
    ],
)  # fmt: skip
def test_a_failed_overwrite_leaves_the_old_run_as_it_was(finished_run, capsys, flags, message):
    corpus, out = finished_run
    before = _files(out)
    capsys.readouterr()
    argv = ["train", "--train", str(corpus), "--output-dir", str(out), "--overwrite", "--epochs", "1", *TINY_FLAGS]
    if flags[0] == "--device":
        argv = [a for a in argv if a != "cpu" and a != "--device"]
    assert main([*argv, *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert _files(out) == before  # the old run resumes as itself
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert [r["epoch"] for r in rows(out)] == [1, 2, 3]


def test_temp_files_of_a_killed_model_write_are_removed_at_the_next_start(finished_run):
    _, out = finished_run
    for name in (".weights.pt.tmp4242", ".config.json.tmp4242", "checkpoints/.last.pt.tmp4242"):
        (out / name).write_bytes(b"half")
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert not [p for p in out.rglob(".*.tmp*")]


def test_resume_reads_the_data_settings_from_the_checkpoint_and_allows_moved_files(finished_run, capsys):
    corpus, out = finished_run
    saved = read_checkpoint(out / "checkpoints/last.pt")["data_config"]
    assert saved["train_file"] == saved["validation_file"] == str(corpus.resolve())
    assert not (out / "data.json").exists()
    moved = corpus.with_name("moved.conllu")
    corpus.rename(moved)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 1
    assert f"{corpus.resolve()}: no such file" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "3", "--train", str(moved), "--dev", str(moved),
                 "--quiet"]) == 0  # fmt: skip
    assert read_checkpoint(out / "checkpoints/last.pt")["data_config"]["train_file"] == str(moved.resolve())
    assert main(["train", "--resume", str(out), "--epochs", "4", "--tag-column", "xpos"]) == 1
    err = capsys.readouterr().err
    assert "of its DataConfig it can change only train_file, validation_file" in err and "not tag_column" in err


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s["train_config"].update(lr="fast"), "expected lr a number, got 'fast'"),
        (lambda s: s["model_config"].pop("hidden_dim"), "TaggerConfig lacks hidden_dim"),
        (lambda s: s["data_config"].update(num_proc=0), "expected num_proc >= 1, got 0"),
        (lambda s: s.update(progress={"epoch": 1, "bogus": 2}), "bogus"),
    ],
)  # fmt: skip
def test_a_hand_edited_checkpoint_is_one_line(finished_run, capsys, edit, message):
    _, out = finished_run
    path = out / "checkpoints/last.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert f"{path}: damaged or hand-edited checkpoint" in err and message in err and len(err.strip().splitlines()) == 1


def test_a_full_disk_at_the_metrics_row_is_one_line_and_resume_rewrites_the_rows(data, tmp_path, monkeypatch):
    real_replace = os.replace
    writes = 0

    def replace(src, dst):
        nonlocal writes
        if str(dst).endswith("metrics.jsonl"):
            writes += 1
            if writes == 3:  # at the start (no rows), after epoch 1, after epoch 2: full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SeqtagError, match=f"^cannot write {tmp_path / 'metrics.jsonl'}: No space left on device$"):
        seqtag.train(*data, TINY, FAST.replace(epochs=3), output_dir=tmp_path, quiet=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert [r["epoch"] for r in rows(tmp_path)] == [1]  # the old file, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".metrics")]
    seqtag.train(*data, output_dir=tmp_path, quiet=True, resume=True)  # epoch 2 is in the checkpoint
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2, 3]


@pytest.mark.parametrize("clip", [1e-3, 1e6], ids=["clipped", "within"])
def test_train_step_clips_the_gradient_norm_to_clip_and_reports_it(clip):
    """With SGD at lr 1 the step is minus the gradient scaled by ``min(1, clip / norm)``; the
    result's ``norm`` is the norm before clipping."""
    from seqtag.data.dataset import TaggingDataset, collate
    from seqtag.training.step import train_step

    from ..helpers import small_tagger

    sentences = random_sentences(6, seed=4)
    tagger = small_tagger(sentences, crf=True).train()
    dataset = TaggingDataset(sentences, tagger.vocabs, tagger.config)
    batch = collate([dataset[i] for i in range(len(dataset))])
    before = {n: p.detach().clone() for n, p in tagger.named_parameters()}
    tagger.zero_grad()
    tagger.loss(tagger(batch.words, batch.cases, batch.chars, batch.lengths), batch.tags, batch.lengths).backward()
    grads = {n: p.grad.clone() for n, p in tagger.named_parameters() if p.grad is not None}
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])))
    optimizer = torch.optim.SGD(tagger.parameters(), lr=1.0)
    result = train_step(tagger, optimizer, batch, clip=clip)
    assert result.norm == pytest.approx(norm, rel=1e-5)
    scale = min(1.0, clip / norm)
    for n, p in tagger.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.detach(), before[n] - scale * grads[n], atol=1e-6, rtol=1e-5)


# -- the Python API checks its arguments as the command line checks its options ---------------------


def _mutated_batch_size():
    tc = TrainConfig(epochs=1, device="cpu")
    tc.batch_size = 2.5  # set after construction: checked again at the call
    return tc


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(train_data="The dog ate"), TypeError,
         r"expected train_data as a sequence of tagged sentences \(seqtag.Sentence\), got a str"),
        (dict(train_data=[["The", "dog"]]), TypeError,
         r"expected train_data\[0\] a tagged sentence \(seqtag.Sentence\(tokens, tags\)\), got a list"),
        (dict(train_data=None), TypeError, "expected train_data as a sequence of tagged sentences .*, got a NoneType"),
        (dict(train_data={"The": "DET"}), TypeError, "got a dict"),
        (dict(train_data=[seqtag.Sentence(["a", 5], ["A", "B"])]), TypeError,
         r"expected tokens\[1\] of train_data\[0\] a str, got a int"),
        (dict(dev="dev.conll"), TypeError, "expected dev as a sequence of tagged sentences .*, got a str"),
        (dict(config={"hidden_dim": 8}), TypeError,
         r"expected config a seqtag.TaggerConfig or None, got a dict \(seqtag.TaggerConfig.from_dict reads a dict\)"),
        (dict(train_config=TaggerConfig()), TypeError, "expected train_config a seqtag.TrainConfig or None, got a TaggerConfig"),
        (dict(train_config=_mutated_batch_size()), ValueError, "expected batch_size an integer, got 2.5"),
        (dict(data_config={"format": "conll"}), TypeError, "expected data_config a seqtag.DataConfig or None, got a dict"),
        (dict(output_dir=5), TypeError, "expected output_dir a directory path or None, got 5"),
        (dict(quiet="no"), TypeError, "expected quiet True or False, got 'no'"),
        (dict(overwrite=1), TypeError, "expected overwrite True or False, got 1"),
        (dict(resume=3), TypeError, "expected resume True, False or a checkpoint path, got 3"),
        (dict(dist_backend=0), TypeError, 'expected dist_backend "nccl", "gloo" or None, got 0'),
        (dict(evaluator="f1"), TypeError, r"expected evaluator a function \(tagger, dataset, batch_size\) or None, got 'f1'"),
    ],
    ids=["a-string", "token-lists", "none", "a-dict", "token-not-a-string", "dev-a-path", "config-a-dict",
         "configs-swapped", "batch-size-set-to-a-float", "data-config-a-dict", "output-dir-an-int", "quiet-a-string",
         "overwrite-an-int", "resume-an-int", "backend-an-int", "evaluator-a-string"],
)
def test_train_checks_its_arguments_before_anything_else(data, tmp_path, arguments, error, message):
    out = tmp_path / "out"
    given = dict(train_data=data[0], train_config=TrainConfig(epochs=1, device="cpu"), quiet=True)
    if "output_dir" not in arguments:
        given["output_dir"] = out
    with pytest.raises(error, match=message):
        seqtag.train(**{**given, **arguments})
    assert not out.exists()  # nothing written


def test_train_from_python_refuses_sentences_that_break_the_scheme_before_any_write(tmp_path):
    bioes = [seqtag.Sentence(["Ann", "Smith", "in", "Oslo"], ["B-PER", "E-PER", "O", "S-LOC"])]
    bio = [seqtag.Sentence(["Ann", "Lee"], ["B-PER", "I-PER"]), seqtag.Sentence(["in", "Oslo"], ["O", "I-PER"])]
    out = tmp_path / "m"
    cases = [
        (bioes, None, TINY.replace(tag_scheme="bio"), r"^the training data, sentence 0, token 1: tag 'E-PER' is not a BIO tag"),
        (bio, None, TINY, r"^the training data, sentence 1, token 1: 'I-PER' after 'O' breaks the BIO scheme"),
        (bio[:1], bio, TINY.replace(crf=False), r"^the dev data, sentence 1, token 1: 'I-PER' after 'O'"),
    ]  # fmt: skip
    for train, dev, config, message in cases:
        with pytest.raises(SeqtagError, match=message):
            seqtag.train(train, dev, config, FAST.replace(epochs=1), output_dir=out, quiet=True)
        assert not out.exists()
    seqtag.train(bio, None, TINY.replace(tag_scheme="none"), FAST.replace(epochs=1), quiet=True)  # no scheme to follow
