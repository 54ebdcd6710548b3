"""Checkpoints: what they hold, loading without running pickled code, damaged files."""

import pytest
import torch

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig
from seqtag.model.tagger import Tagger
from seqtag.training.checkpoint import Progress, read_checkpoint

from ..helpers import random_sentences

TINY = TaggerConfig(embedding_dim=8, hidden_dim=8, char_embedding_dim=4, char_filters=4, dropout=0.2)
FAST = TrainConfig(epochs=4, batch_size=8, device="cpu", word_dropout=0.3, patience=0)


@pytest.fixture(scope="module")
def data():
    return random_sentences(48, seed=1), random_sentences(16, seed=2)


@pytest.fixture(scope="module")
def straight_run(data, tmp_path_factory):
    """4 epochs (6 batches each), a checkpoint every 2 steps, all of them kept."""
    out = tmp_path_factory.mktemp("straight")
    tagger = seqtag.train(*data, TINY, FAST.replace(checkpoint_every=2, keep=100), output_dir=out, quiet=True)
    return out, tagger


def test_checkpoint_holds_everything_needed_and_loads_without_pickle(straight_run):
    out, _ = straight_run
    raw = torch.load(out / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert {"model", "best_model", "optimizer", "rng", "progress", "vocab", "train_config", "model_config"} <= set(raw)
    assert set(raw["rng"]) == {"python", "numpy", "torch", "cuda"}
    progress = Progress.from_dict(raw["progress"])
    assert (progress.epoch, progress.batch, progress.step) == (4, 0, 24)
    assert len(progress.history) == 4
    assert (out / "checkpoints/best.pt").is_file()
    assert Tagger.load(out).predict([["a", "b"]])[0].__len__() == 2


@pytest.mark.parametrize("protocol", [2, 4])  # 4: torch warns of the protocol unless the loader quiets it
def test_a_checkpoint_with_a_pickle_payload_is_refused_without_running_it(data, tmp_path, protocol):
    seqtag.train(*data, TINY, FAST.replace(epochs=1), output_dir=tmp_path, quiet=True)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "seqtag-checkpoint", "version": 1, "model": Payload()}, tmp_path / "checkpoints/last.pt",
               pickle_protocol=protocol)
    with pytest.raises(SeqtagError, match="refused to load checkpoint: it holds Python objects") as info:
        seqtag.train(*data, output_dir=tmp_path, resume=True)
    assert not marker.exists()
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)  # no advice to run it


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint"])
def test_a_damaged_checkpoint_is_a_clear_error(data, tmp_path, damage):
    seqtag.train(*data, TINY, FAST.replace(epochs=1), output_dir=tmp_path, quiet=True)
    path = tmp_path / "checkpoints/last.pt"
    raw = path.read_bytes()
    if damage == "not a checkpoint":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"")
    with pytest.raises(SeqtagError, match=f"{path}: (refused to load|not a seqtag training checkpoint)"):
        read_checkpoint(path)


@pytest.mark.parametrize("run_id", [5, "not-hex", "A" * 32, None])
def test_a_checkpoint_whose_run_id_is_not_one_is_refused(data, tmp_path, run_id):
    seqtag.train(*data, TINY, FAST.replace(epochs=1), output_dir=tmp_path, quiet=True)
    path = tmp_path / "checkpoints/last.pt"
    state = torch.load(path, weights_only=True)
    assert len(state["run_id"]) == 32
    state["run_id"] = run_id
    torch.save(state, path)
    with pytest.raises(SeqtagError, match=f"{path}: damaged or hand-edited checkpoint \\(expected run_id 32 hex digits"):
        read_checkpoint(path)
