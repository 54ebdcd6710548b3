"""The learning curve of a run: training loss and dev scores per epoch, from ``metrics.jsonl``.

Needs matplotlib, an optional dependency (``pip install 'seqtag[plot]'``); without it,
:func:`plot_learning_curve` raises :class:`~seqtag.errors.SeqtagError` saying so, and training
carries on without the plot. ``seqtag plot DIR`` redraws it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from seqtag.data.corpus import decoded_lines
from seqtag.errors import SeqtagError
from seqtag.fileio import atomic_write_bytes
from seqtag.training.checkpoint import METRICS_FILE, PLOT_FILE

DEV_SCORES = ("dev_accuracy", "dev_f1")


def read_metrics(directory: str | os.PathLike) -> list[dict]:
    """The rows of ``directory/metrics.jsonl``, one per finished epoch.

    Raises:
        SeqtagError: if the file is missing, empty or has a line that is not a JSON object.
    """
    path = Path(directory) / METRICS_FILE
    try:
        with open(path, "rb") as f:  # bytes that are not UTF-8: one line naming the line (CorpusError)
            lines = [text for _, text, _ in decoded_lines(f, str(path))]
    except OSError as e:
        raise SeqtagError(f"{path}: cannot read ({e.strerror or e})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SeqtagError(f"{path}:{number}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or "epoch" not in row:
            raise SeqtagError(f"{path}:{number}: expected a JSON object with an 'epoch' field")
        rows.append(row)
    if not rows:
        raise SeqtagError(f"{path}: no epochs recorded yet")
    return rows


def plot_learning_curve(directory: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Draw the training loss and the dev scores of the run in ``directory`` against the epoch.

    Args:
        directory: a run's output directory (with ``metrics.jsonl``).
        output: the PNG file to write (default ``directory/learning_curve.png``), atomically.

    Returns:
        The path written.

    Raises:
        SeqtagError: if matplotlib is not installed or ``metrics.jsonl`` is missing or empty.
    """
    rows = read_metrics(directory)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise SeqtagError("the plot needs matplotlib: pip install 'seqtag[plot]' (or matplotlib)") from None
    output = Path(output) if output is not None else Path(directory) / PLOT_FILE
    epochs = [r["epoch"] for r in rows]
    scores = [k for k in DEV_SCORES if any(k in r for r in rows)]
    fig = Figure(figsize=(9 if scores else 5, 3.6), layout="constrained")
    FigureCanvasAgg(fig)  # a canvas of its own: no pyplot, no global state, no display needed
    axes = fig.subplots(1, 2 if scores else 1, squeeze=False)[0]
    loss = axes[0]
    loss.plot(epochs, [r["train_loss"] for r in rows], marker="o", markersize=3)
    loss.set_xlabel("epoch")
    loss.set_ylabel("training loss per token")
    if all(r["train_loss"] > 0 for r in rows):
        loss.set_yscale("log")
    loss.grid(alpha=0.3)
    if scores:
        dev = axes[1]
        for key in scores:
            points = [(r["epoch"], r[key]) for r in rows if key in r]
            dev.plot(*zip(*points), marker="o", markersize=3, label=key.removeprefix("dev_"))
        dev.set_xlabel("epoch")
        dev.set_ylabel("dev score")
        dev.legend(loc="lower right")
        dev.grid(alpha=0.3)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(Path(directory).resolve().name)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(output, buf.getvalue())
    return output
