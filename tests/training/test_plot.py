"""The learning curve: the PNG written after training and by ``seqtag plot``; without matplotlib."""

import sys

import pytest

import seqtag
from seqtag import TaggerConfig, TrainConfig
from seqtag.cli.app import main

from ..helpers import random_sentences

TINY = TaggerConfig(embedding_dim=8, hidden_dim=8, char_embedding_dim=4, char_filters=4, dropout=0.2)
FAST = TrainConfig(epochs=2, batch_size=8, device="cpu", patience=0)


@pytest.fixture
def data():
    return random_sentences(24, seed=1), random_sentences(8, seed=2)


def test_learning_curve_png(data, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    run = tmp_path / "run"
    seqtag.train(*data, TINY, FAST, output_dir=run, quiet=True)
    png = run / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(run), "--out", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_without_matplotlib_says_so_and_finishes(data, tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    seqtag.train(*data, TINY, FAST.replace(epochs=1), output_dir=tmp_path)
    assert "no learning-curve plot: the plot needs matplotlib: pip install 'seqtag[plot]'" in capsys.readouterr().err
    assert (tmp_path / "weights.pt").exists() and not (tmp_path / "learning_curve.png").exists()
    assert main(["plot", str(tmp_path)]) == 1


@pytest.mark.parametrize("content, message", [
    (b'{"epoch": 1}\n\xfe\xff junk\n', r"metrics.jsonl:2: not valid UTF-8 \(byte 1 of the line is 0xfe\)"),
    (b"\xef\xbb\xbf" + b'{"epoch": 1, "train_loss": 1.0}\r\n' + b'[1]\n', r"metrics.jsonl:2: expected a JSON object"),
])  # fmt: skip
def test_a_damaged_metrics_file_is_one_line_naming_its_line(tmp_path, content, message):
    from seqtag.errors import SeqtagError
    from seqtag.training.plot import read_metrics

    (tmp_path / "metrics.jsonl").write_bytes(content)
    with pytest.raises(SeqtagError, match=message):
        read_metrics(tmp_path)
