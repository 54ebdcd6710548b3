"""Distributed training: DDP under torchrun on the CPU (gloo), two ranks of one thread each.

Each torchrun launch costs seconds of start-up, so there are three: one runs a driver script
(written below) that calls ``seqtag.train`` in a process group of its own for several jobs
(a longer run for accuracy, a short one, the same interrupted by a signal on one rank and
resumed, one whose loss turns NaN on one rank); two run ``python -m seqtag train`` and its
``--resume``. The sampler and the set-up are tested in this process. The tests that launch
torchrun are marked ``slow`` (about a minute in all on 2 cores).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig
from seqtag.cli.app import main
from seqtag.data.dataset import BucketBatchSampler
from seqtag.training.checkpoint import read_checkpoint
from seqtag.training.distributed import setup
from seqtag.training.loop import WALL_CLOCK_FIELDS

from ..conftest import EWT

REPO = Path(__file__).resolve().parents[2]
TINY = TaggerConfig(embedding_dim=16, hidden_dim=16, char_embedding_dim=8, char_filters=8)
# Long enough (600 sentences, 12 epochs at a high rate) that accuracy has levelled off: seeds
# then differ by about 0.3 points on 1000 test sentences, so 1 point is a real difference.
ACCURACY_RUN = TrainConfig(epochs=12, batch_size=8, lr=0.03, device="cpu", patience=0)
# Dropout and word dropout on, so that an exact resume needs each rank's generators back.
SHORT_RUN = TrainConfig(epochs=2, batch_size=8, device="cpu", word_dropout=0.3, patience=0)
SHORT_MODEL = TINY.replace(dropout=0.2)
TINY_FLAGS = ["--embedding-dim", "16", "--hidden-dim", "16", "--char-filters", "8", "--char-embedding-dim", "8",
              "--batch-size", "8", "--device", "cpu", "--threads", "1", "--quiet"]  # fmt: skip

DRIVER = r'''
"""Runs under torchrun: the jobs of settings.json, in a process group started here."""
import builtins, io, json, os, shutil, signal, sys, time
from pathlib import Path

import torch
import torch.distributed as dist

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig
from seqtag.model.tagger import Tagger
from seqtag.training.loop import TrainingInterrupted

torch.set_num_threads(1)
work = Path(sys.argv[1])
settings = json.loads((work / "settings.json").read_text())
data = {name: (seqtag.read_conllu(work / f"{name}-train.conllu"), seqtag.read_conllu(work / f"{name}-dev.conllu"))
        for name in ("long", "short")}
dist.init_process_group("gloo")  # the caller's own group: train() must use it and leave it open
rank = dist.get_rank()
real_loss = Tagger.loss

# Record what rank 1 writes, renames or removes inside the jobs' output directories.
written = []
job_dirs = [str(work / job["name"]) for job in settings["jobs"]]
def audit(fn, path_arg=0, mode_check=None):
    def wrapper(*args, **kwargs):
        path = str(args[path_arg]) if len(args) > path_arg else ""
        if rank == 1 and any(path == d or path.startswith(d + os.sep) for d in job_dirs) and (mode_check is None or mode_check(args, kwargs)):
            written.append(f"{fn.__name__} {path}")
        return fn(*args, **kwargs)
    return wrapper
writes = lambda args, kwargs: any(c in (args[1] if len(args) > 1 else kwargs.get("mode", "r")) for c in "wax+")
builtins.open = io.open = audit(builtins.open, 0, writes)
for name in ("replace", "rename", "unlink", "remove", "mkdir"):
    setattr(os, name, audit(getattr(os, name), 1 if name in ("replace", "rename") else 0))

def fault(kind, call):
    """Tagger.loss that sends SIGTERM to this process, or turns NaN, at its call-th call on rank 1."""
    calls = 0
    def loss(self, *args):
        nonlocal calls
        calls += 1
        value = real_loss(self, *args)
        if rank == 1 and calls == call:
            if kind == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                value = value * float("nan")
        return value
    return loss

report = {}
for job in settings["jobs"]:
    key = job["name"] + ("-resumed" if job.get("resume") else "")
    result = report[key] = {}
    Tagger.loss = fault(*job["fault"]) if "fault" in job else real_loss
    start = time.perf_counter()
    try:
        tagger = seqtag.train(*data[job["data"]], config=None if job.get("resume") else TaggerConfig.from_dict(job["model"]),
                              train_config=TrainConfig.from_dict(job["train"]), output_dir=work / job["name"],
                              quiet=True, resume=job.get("resume", False))
        torch.save(tagger.state_dict(), work / f"{key}-rank{rank}.pt")
    except TrainingInterrupted as e:
        result["interrupted"] = [int(e.signal_number), e.where]
        if rank == 0:
            shutil.copy(e.checkpoint, work / f"{key}-interrupted.pt")
    except SeqtagError as e:
        result["error"] = str(e)
    finally:
        Tagger.loss = real_loss
    result["group_kept"] = dist.is_initialized()
    result["seconds"] = time.perf_counter() - start
report["rank_1_wrote"] = written
(work / f"report-rank{rank}.json").write_text(json.dumps(report))
dist.destroy_process_group()
# Every result is on disk. Skip the interpreter's finalization: gloo's threads torn down there can
# abort a process that has finished (SIGABRT, "terminate called without an active exception").
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
'''


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` with one thread per rank."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def rows(directory):
    return [json.loads(line) for line in (Path(directory) / "metrics.jsonl").read_text().splitlines()]


def without_wall_clock(history):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_FIELDS} for r in history]


def steps_per_epoch(sentences, batch_size, replicas, epoch=1):
    sampler = BucketBatchSampler([len(s) for s in sentences], batch_size, seed=SHORT_RUN.seed, num_replicas=replicas)
    sampler.set_epoch(epoch)
    return len(sampler)


@pytest.fixture(scope="module")
def ewt():
    if not (EWT / "en_ewt-ud-train.conllu").exists():
        pytest.skip(f"UD English-EWT not found at {EWT} (set SEQTAG_CORPORA to the corpora folder)")
    train = seqtag.read_conllu(EWT / "en_ewt-ud-train.conllu")
    return {
        "long": (train[:600], seqtag.read_conllu(EWT / "en_ewt-ud-dev.conllu")[:200]),
        "short": (train[600:800], train[800:850]),
        "test": seqtag.read_conllu(EWT / "en_ewt-ud-test.conllu")[:1000],
    }


@pytest.fixture(scope="module")
def ddp(ewt, tmp_path_factory):
    """One torchrun launch of the driver; returns the work directory and each rank's report."""
    work = tmp_path_factory.mktemp("ddp")
    for name in ("long", "short"):
        seqtag.write_conllu(ewt[name][0], work / f"{name}-train.conllu")
        seqtag.write_conllu(ewt[name][1], work / f"{name}-dev.conllu")
    per_rank = steps_per_epoch(ewt["short"][0], SHORT_RUN.batch_size, 2, epoch=2)
    short = {"data": "short", "model": SHORT_MODEL.to_dict(), "train": SHORT_RUN.to_dict()}
    jobs = [
        {"name": "long", "data": "long", "model": TINY.to_dict(), "train": ACCURACY_RUN.to_dict()},
        {"name": "short", **short},
        # rank 1 alone gets SIGTERM during step 5 of epoch 2; then the run resumes
        {"name": "interrupted", **short, "fault": ["sigterm", per_rank + 5]},
        {"name": "interrupted", **short, "resume": True},
        # rank 1 alone has a NaN loss at step 3 of epoch 2
        {"name": "nan", **short, "fault": ["nan", per_rank + 3]},
    ]
    (work / "settings.json").write_text(json.dumps({"jobs": jobs}))
    (work / "driver.py").write_text(DRIVER)
    proc = torchrun(str(work / "driver.py"), str(work))
    assert proc.returncode == 0, proc.stderr[-5000:]
    reports = [json.loads((work / f"report-rank{r}.json").read_text()) for r in range(2)]
    print({job: round(result["seconds"], 1) for job, result in reports[0].items() if job != "rank_1_wrote"})
    return work, reports, per_rank


# -- the sampler ------------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 5, 97])
def test_ranks_share_each_epoch_exactly_once_but_for_the_repeated_batches(replicas, n):
    lengths = np.random.default_rng(n).integers(1, 40, size=n)
    for epoch in (1, 2):
        per_rank = []
        for rank in range(replicas):
            s = BucketBatchSampler(lengths, 4, seed=5, pool_size=3, num_replicas=replicas, rank=rank)
            s.set_epoch(epoch)
            per_rank.append(list(s))
            assert len(per_rank[-1]) == len(s)
        assert len({len(b) for b in per_rank}) == 1  # the same number of steps on every rank
        single = BucketBatchSampler(lengths, 4, seed=5, pool_size=3)
        single.set_epoch(epoch)
        batches = list(single)
        # rank r takes batches r, r + R, ...; the missing tail is the first batches again
        interleaved = [per_rank[i % replicas][i // replicas] for i in range(replicas * len(per_rank[0]))]
        assert interleaved[: len(batches)] == batches
        assert all(b == batches[i % len(batches)] for i, b in enumerate(interleaved))
        assert sorted(i for b in batches for i in b) == list(range(n))


def test_every_rank_shuffles_alike_and_set_epoch_reshuffles():
    lengths = np.arange(1, 301)
    a, b = (BucketBatchSampler(lengths, 8, seed=3, num_replicas=2, rank=r) for r in (0, 1))
    epochs = []
    for epoch in (1, 2):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        first, second = list(a), list(b)
        assert not {i for x in first for i in x} & {i for x in second for i in x}  # disjoint shares
        epochs.append(first)
    assert epochs[0] != epochs[1]


def test_a_mid_epoch_resume_skips_what_each_rank_trained():
    """A fresh sampler per rank (the resumed process), the same epoch, the first k batches skipped:
    the ranks then train exactly what they had not trained yet."""
    lengths = np.random.default_rng(0).integers(1, 30, size=90)
    k = 4
    before, after = [], []
    for rank in range(2):
        original = BucketBatchSampler(lengths, 5, seed=1, num_replicas=2, rank=rank)
        original.set_epoch(3)
        resumed = BucketBatchSampler(lengths, 5, seed=1, num_replicas=2, rank=rank)
        resumed.set_epoch(3)
        batches = list(original)
        assert list(resumed)[k:] == batches[k:]
        before += [i for b in batches[:k] for i in b]
        after += [i for b in batches[k:] for i in b]
    assert not set(before) & set(after) and sorted(before + after) == list(range(90))  # 18 batches: no repeats


# -- set-up -----------------------------------------------------------------------------------


def test_setup_without_torchrun_is_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = setup("cpu")
    assert (info.enabled, info.is_main, info.world_size, info.device.type) == (False, True, 1, "cpu")
    assert info.sum([1.5, 2]) == [1.5, 2.0] and info.broadcast("x") == "x" and info.gather(3) == [3]


@pytest.mark.parametrize("backend, message", [("nccl", "nccl backend needs CUDA"), ("mpi", "unknown distributed backend")])
def test_setup_refuses_a_backend_that_cannot_work(monkeypatch, backend, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SeqtagError, match=message):
        setup("cpu", backend)
    assert not torch.distributed.is_initialized()


# -- DDP through the Python API (one torchrun launch) ----------------------------------------


@pytest.mark.slow
def test_ranks_end_with_identical_weights_and_only_rank_0_writes(ddp):
    work, reports, _ = ddp
    for job in ("long", "short", "interrupted-resumed"):
        a = torch.load(work / f"{job}-rank0.pt", weights_only=True)
        b = torch.load(work / f"{job}-rank1.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), job
    assert reports[1]["rank_1_wrote"] == []
    history = rows(work / "long")
    assert [r["epoch"] for r in history] == list(range(1, 13))
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert sorted(p.name for p in (work / "long/checkpoints").iterdir()) == ["best.pt", "last.pt"]
    saved = read_checkpoint(work / "long/checkpoints/last.pt")
    assert saved["distributed"]["world_size"] == 2 and len(saved["distributed"]["rng"]) == 1
    assert all(r[job]["group_kept"] for r in reports for job in r if job != "rank_1_wrote")  # the caller's group


@pytest.mark.slow
def test_two_ranks_of_8_match_one_process_of_16(ddp, ewt, tmp_path):
    work, _, _ = ddp
    single = seqtag.train(*ewt["long"], TINY, ACCURACY_RUN.replace(batch_size=16), output_dir=tmp_path, quiet=True)
    assert len(rows(tmp_path)) == len(rows(work / "long"))  # the same number of steps, too
    assert rows(tmp_path)[-1]["step"] == rows(work / "long")[-1]["step"]
    distributed = seqtag.load(work / "long")
    a, b = (seqtag.evaluate(t, ewt["test"])["accuracy"] for t in (distributed, single))
    assert a > 0.8 and abs(a - b) < 0.01, (a, b)


@pytest.mark.slow
def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step_and_resume_is_exact(ddp):
    work, reports, per_rank = ddp
    where = f"at step {per_rank + 5} (epoch 2, batch 5 of {per_rank})"
    assert [r["interrupted"]["interrupted"] for r in reports] == [[15, where]] * 2  # SIGTERM
    saved = read_checkpoint(work / "interrupted-interrupted.pt")
    assert (saved["progress"].epoch, saved["progress"].batch) == (1, 5)
    for rank in range(2):
        straight = torch.load(work / f"short-rank{rank}.pt", weights_only=True)
        resumed = torch.load(work / f"interrupted-resumed-rank{rank}.pt", weights_only=True)
        assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert without_wall_clock(rows(work / "interrupted")) == without_wall_clock(rows(work / "short"))


@pytest.mark.slow
def test_a_nan_loss_on_one_rank_stops_every_rank(ddp):
    work, reports, per_rank = ddp
    step = f"in epoch 2 at step {per_rank + 3} .batch 3 of {per_rank}."
    assert re.search(f"loss became nan on another rank {step}", reports[0]["nan"]["error"])
    assert re.search(f"loss became nan on rank 1 {step}", reports[1]["nan"]["error"])
    assert read_checkpoint(work / "nan/checkpoints/last.pt")["progress"].epoch == 1


@pytest.mark.slow
def test_a_mid_epoch_checkpoint_of_two_ranks_needs_two_ranks(ddp, ewt, tmp_path):
    work, _, _ = ddp
    with pytest.raises(SeqtagError, match="middle of epoch 2 by 2 process.es.; resume it with 2"):
        seqtag.train(*ewt["short"], output_dir=tmp_path, resume=work / "interrupted-interrupted.pt", quiet=True)


# -- the command line under torchrun -----------------------------------------------------------


@pytest.mark.slow
def test_torchrun_seqtag_train_then_resume(ewt, tmp_path):
    train, dev = ewt["short"]
    seqtag.write_conllu(train, tmp_path / "train.conllu")
    seqtag.write_conllu(dev, tmp_path / "dev.conllu")
    out = tmp_path / "run"
    first = torchrun("-m", "seqtag", "train", "--train", str(tmp_path / "train.conllu"), "--dev",
                     str(tmp_path / "dev.conllu"), "--output-dir", str(out), "--epochs", "1", *TINY_FLAGS)  # fmt: skip
    assert first.returncode == 0, first.stderr[-5000:]
    assert first.stderr.count("model saved in") == 1  # rank 0 alone speaks
    assert [r["epoch"] for r in rows(out)] == [1]
    again = torchrun("-m", "seqtag", "train", "--resume", str(out), "--epochs", "2", "--threads", "1", "--quiet",
                     "--dist-backend", "gloo")  # fmt: skip
    assert again.returncode == 0, again.stderr[-5000:]
    history = rows(out)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["step"] == 2 * history[0]["step"] == 2 * steps_per_epoch(train, 8, 2)
    assert read_checkpoint(out / "checkpoints/last.pt")["distributed"]["world_size"] == 2
    # an epoch-end checkpoint of two ranks resumes in one process (another effective batch size)
    assert main(["train", "--resume", str(out), "--epochs", "3", "--threads", "1", "--quiet"]) == 0
    history = rows(out)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[2]["step"] == history[1]["step"] + steps_per_epoch(train, 8, 1, epoch=3)
