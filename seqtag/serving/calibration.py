"""Calibration of per-token confidences: expected and maximum calibration error over
equal-width bins, and the reliability diagram.

A tagger is calibrated when, of the tokens it tags with confidence ``p``, a fraction ``p`` is
right. With the confidences cut into ``bins`` equal-width bins ``B_b``, the expected
calibration error is ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` (the gap between the
accuracy and the mean confidence of each bin, weighted by its share of the tokens) and the
maximum calibration error ``MCE = max_b |acc(B_b) - conf(B_b)|`` over the non-empty bins
(Naeini et al., 2015; Guo et al., 2017).

>>> report = expected_calibration_error([0.9, 0.9, 0.6, 0.2], [True, False, True, False], bins=10)
>>> round(report["ece"], 4), round(report["mce"], 4), report["accuracy"]
(0.35, 0.4, 0.5)
>>> [(b["lower"], b["count"]) for b in report["bins"] if b["count"]]
[(0.2, 1), (0.6, 1), (0.9, 2)]

:func:`plot_reliability` draws the report; it needs matplotlib, an optional dependency
(``pip install 'seqtag[plot]'``), and raises :class:`~seqtag.errors.SeqtagError` without it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqtag.errors import SeqtagError
from seqtag.fileio import atomic_write_bytes

# float32 probabilities overshoot [0, 1] by rounding: the CRF's float32 forward-backward marginal
# of a near-certain tag reached 1 + 4.3e-4 on EWT test (a 76-token sentence; 154 of 25,094 tokens
# were above 1); such values are clipped.
ROUNDING = 1e-3


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = 10
) -> dict:
    """The calibration of ``confidences`` against ``correct``, over ``bins`` equal-width bins.

    Bin ``b`` (0-based) holds the confidences in ``[b / bins, (b + 1) / bins)``; the last bin
    also holds 1.0, so a confidence of exactly 0 falls in the first bin and exactly 1 in the last.

    Args:
        confidences: ``(n,)`` probabilities in ``[0, 1]``, one per prediction (e.g. per token);
            values at most ``ROUNDING`` (1e-3) outside it, float32 rounding, are clipped.
        correct: ``(n,)`` whether each prediction is right (bools, or 0/1).
        bins: the number of bins, at least 1.

    Returns:
        A dict: ``ece`` and ``mce`` (as defined in the module docstring), ``accuracy`` and
        ``confidence`` (the means over all ``n``), ``count`` (``n``), ``num_bins`` and ``bins``:
        per bin ``lower``, ``upper``, ``count``, ``accuracy``, ``confidence`` and ``gap``
        (``|accuracy - confidence|``), the last three ``None`` for an empty bin. Plain Python
        numbers throughout, so it serializes as JSON.

    Raises:
        ValueError: if the inputs are empty, differ in length, are not one-dimensional, a
            confidence is more than ``ROUNDING`` outside ``[0, 1]`` (or NaN), ``correct`` is
            not 0/1, or ``bins < 1``.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"expected bins an int >= 1, got {bins!r}")
    conf = np.asarray(confidences, dtype=np.float64)
    hits = np.asarray(correct)
    if conf.ndim != 1 or hits.ndim != 1:
        raise ValueError(f"expected one-dimensional inputs, got shapes {conf.shape} and {hits.shape}")
    if conf.shape != hits.shape:
        raise ValueError(f"expected as many correct flags as confidences, got {hits.size} and {conf.size}")
    if conf.size == 0:
        raise ValueError("expected at least one confidence, got none")
    inside = (conf >= -ROUNDING) & (conf <= 1.0 + ROUNDING)  # False for NaN too
    if not np.all(inside):
        raise ValueError(f"expected confidences in [0, 1], got {conf[~inside][0]}")
    conf = np.clip(conf, 0.0, 1.0)
    if hits.dtype != np.bool_:
        if not np.all((hits == 0) | (hits == 1)):
            raise ValueError(f"expected correct as bools or 0/1, got values {np.unique(hits)[:5].tolist()}")
        hits = hits.astype(np.bool_)
    # bin index floor(c * bins): the nominal edges b / bins exactly (no rounded np.linspace edges)
    index = np.minimum(np.floor(conf * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sums = np.bincount(index, weights=conf, minlength=bins)
    hit_sums = np.bincount(index, weights=hits.astype(np.float64), minlength=bins)
    n = conf.size
    table, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        count = int(counts[b])
        row = {"lower": b / bins, "upper": (b + 1) / bins, "count": count,
               "accuracy": None, "confidence": None, "gap": None}
        if count:
            acc, mean_conf = float(hit_sums[b] / count), float(conf_sums[b] / count)
            gap = abs(acc - mean_conf)
            row.update(accuracy=acc, confidence=mean_conf, gap=gap)
            ece += count / n * gap
            mce = max(mce, gap)
        table.append(row)
    return {
        "ece": ece,
        "mce": mce,
        "accuracy": float(hits.mean()),
        "confidence": float(conf.mean()),
        "count": int(n),
        "num_bins": bins,
        "bins": table,
    }


def plot_reliability(report: dict, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the reliability diagram of a :func:`expected_calibration_error` report as a PNG.

    Top: each non-empty bin's accuracy as a bar over the bin, against the diagonal of perfect
    calibration, with the gap to the bin's mean confidence shaded. Bottom: the share of
    predictions in each bin (log scale). The legend gives ECE, MCE and accuracy.

    Args:
        report: what :func:`expected_calibration_error` returned.
        path: the PNG file to write, atomically.
        title: a title above the diagram (optional).

    Returns:
        The path written.

    Raises:
        SeqtagError: if matplotlib is not installed.
        ValueError: if ``report`` lacks the keys of :func:`expected_calibration_error`'s result.
    """
    missing = [k for k in ("ece", "mce", "accuracy", "count", "bins") if k not in report]
    if missing:
        raise ValueError(f"expected a report of expected_calibration_error, got one without {missing}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        raise SeqtagError("the plot needs matplotlib: pip install 'seqtag[plot]' (or matplotlib)") from None
    rows = report["bins"]
    full = [r for r in rows if r["count"]]
    width = rows[0]["upper"] - rows[0]["lower"]
    fig = Figure(figsize=(5, 5.6), layout="constrained")
    FigureCanvasAgg(fig)  # a canvas of its own: no pyplot, no global state, no display needed
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="perfect calibration")
    top.bar([r["lower"] for r in full], [r["accuracy"] for r in full], width=width, align="edge",
            color="tab:blue", edgecolor="white", label="accuracy in the bin")
    top.bar([r["lower"] for r in full], [r["confidence"] - r["accuracy"] for r in full],
            bottom=[r["accuracy"] for r in full], width=width, align="edge", color="tab:red",
            alpha=0.3, edgecolor="tab:red", label="gap to mean confidence")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", title=(f"ECE {report['ece']:.4f}   MCE {report['mce']:.4f}\n"
                                        f"accuracy {report['accuracy']:.4f}   n = {report['count']:,}"))
    shares = [r["count"] / report["count"] for r in full]
    bottom.bar([r["lower"] for r in full], shares, width=width, align="edge", color="0.4", edgecolor="white")
    bottom.set_yscale("log")
    bottom.set_ylim(min(shares) / 2, 1.5)
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:g}%"))
    bottom.yaxis.set_minor_formatter(NullFormatter())
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("share")
    bottom.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
