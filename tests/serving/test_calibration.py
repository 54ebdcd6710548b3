"""Calibration error: hand-computed oracles, a brute-force loop, invariants, bin edges, the plot."""

import json

import numpy as np
import pytest

from seqtag.serving.calibration import expected_calibration_error, plot_reliability


def brute_force(confidences, correct, bins):
    """ECE and MCE by scanning every bin's interval (the last one closed) over every prediction."""
    n, ece, mce = len(confidences), 0.0, 0.0
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences)
                   if lower <= c < upper or (b == bins - 1 and c == upper)]
        if members:
            acc = sum(bool(correct[i]) for i in members) / len(members)
            conf = sum(confidences[i] for i in members) / len(members)
            ece += len(members) / n * abs(acc - conf)
            mce = max(mce, abs(acc - conf))
    return ece, mce


def test_hand_computed_example():
    # bins of 0.25: [0.1, 0.2] -> bin 0 (acc 1/2, conf 0.15); 0.5 -> bin 2 (acc 0, conf 0.5);
    # [0.8, 1.0] -> bin 3 (acc 1, conf 0.9); bin 1 empty
    report = expected_calibration_error([0.1, 0.2, 0.5, 0.8, 1.0], [1, 0, 0, 1, 1], bins=4)
    assert report["ece"] == pytest.approx(2 / 5 * 0.35 + 1 / 5 * 0.5 + 2 / 5 * 0.1)
    assert report["mce"] == pytest.approx(0.5)
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["confidence"] == pytest.approx(2.6 / 5)
    assert [b["count"] for b in report["bins"]] == [2, 0, 1, 2]
    assert report["bins"][1] == {"lower": 0.25, "upper": 0.5, "count": 0,
                                 "accuracy": None, "confidence": None, "gap": None}
    assert report["bins"][0]["accuracy"] == pytest.approx(0.5)
    assert report["bins"][0]["confidence"] == pytest.approx(0.15)
    assert report["bins"][3]["gap"] == pytest.approx(0.1)


def test_all_confident_all_wrong_gives_the_mean_confidence():
    conf = np.random.default_rng(0).uniform(0.0, 1.0, size=1000)
    report = expected_calibration_error(conf, np.zeros(1000, dtype=bool))
    assert report["ece"] == pytest.approx(conf.mean())
    assert report["accuracy"] == 0.0


def test_all_sure_and_all_right_is_calibrated():
    report = expected_calibration_error([1.0] * 50, [True] * 50)
    assert report["ece"] == 0.0 and report["mce"] == 0.0
    assert report["bins"][-1]["count"] == 50


def test_perfectly_calibrated_data_has_ece_near_zero():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.0, 1.0, size=200_000)
    correct = rng.uniform(0.0, 1.0, size=conf.size) < conf  # right with probability conf
    report = expected_calibration_error(conf, correct)
    # ~20,000 per bin: the sampling error of a bin's accuracy is at most 0.5 / sqrt(20,000) = 0.0035
    assert report["ece"] < 0.01
    assert report["mce"] < 0.02
    # and the same data with confidences pushed up by 0.1 (clipped) is off by about 0.1
    shifted = expected_calibration_error(np.minimum(conf + 0.1, 1.0), correct)
    assert 0.08 < shifted["ece"] < 0.11


@pytest.mark.parametrize("bins", [1, 3, 10, 15])
def test_equals_brute_force(bins):
    rng = np.random.default_rng(bins)
    # include the bin edges themselves, 0 and 1
    conf = np.concatenate([rng.uniform(size=300), np.arange(bins + 1) / bins, [0.0, 1.0]])
    correct = rng.uniform(size=conf.size) < 0.7
    report = expected_calibration_error(conf, correct, bins=bins)
    ece, mce = brute_force(conf.tolist(), correct.tolist(), bins)
    assert report["ece"] == pytest.approx(ece, abs=1e-12)
    assert report["mce"] == pytest.approx(mce, abs=1e-12)
    assert sum(b["count"] for b in report["bins"]) == conf.size
    weighted = sum(b["count"] / conf.size * b["gap"] for b in report["bins"] if b["count"])
    assert report["ece"] == pytest.approx(weighted, abs=1e-12)
    assert report["mce"] >= report["ece"] - 1e-12


def test_one_bin_is_the_gap_of_the_means():
    conf, correct = [0.2, 0.9, 0.6], [True, True, False]
    report = expected_calibration_error(conf, correct, bins=1)
    assert report["ece"] == pytest.approx(abs(2 / 3 - 1.7 / 3))


@pytest.mark.parametrize(("value", "index"), [(0.0, 0), (1.0, 9), (0.1, 1), (0.3, 3), (0.7, 7), (0.0999999, 0)])
def test_bin_edges(value, index):
    report = expected_calibration_error([value], [True])
    assert [b["count"] for b in report["bins"]] == [int(i == index) for i in range(10)]


def test_float32_rounding_past_one_is_clipped():
    # a float32 marginal of a near-certain tag in a long sentence
    over = float(np.float32(1.0 + 4.3e-4))
    report = expected_calibration_error([over, -1e-6], [True, False])
    assert report["bins"][-1]["confidence"] == 1.0 and report["bins"][0]["confidence"] == 0.0
    assert report["ece"] == 0.0


def test_order_and_input_types_do_not_matter():
    rng = np.random.default_rng(2)
    conf = rng.uniform(size=500)
    correct = rng.uniform(size=500) < conf
    order = rng.permutation(500)
    a = expected_calibration_error(conf, correct)
    b = expected_calibration_error(conf[order].tolist(), correct[order].astype(int).tolist())
    assert a["ece"] == pytest.approx(b["ece"], abs=1e-12)
    assert [r["count"] for r in a["bins"]] == [r["count"] for r in b["bins"]]


def test_the_report_is_json():
    report = expected_calibration_error(np.array([0.5, 0.95], dtype=np.float32), np.array([True, False]))
    assert json.loads(json.dumps(report)) == report


@pytest.mark.parametrize(("conf", "correct", "bins", "message"), [
    ([], [], 10, "at least one"),
    ([0.5], [True, False], 10, "as many"),
    ([1.5], [True], 10, r"in \[0, 1\]"),
    ([1.01], [True], 10, r"in \[0, 1\]"),
    ([-0.1], [True], 10, r"in \[0, 1\]"),
    ([float("nan")], [True], 10, r"in \[0, 1\]"),
    ([0.5], [2], 10, "0/1"),
    ([[0.5]], [[True]], 10, "one-dimensional"),
    ([0.5], [True], 0, "bins"),
    ([0.5], [True], 2.5, "bins"),
])
def test_bad_input_is_a_value_error(conf, correct, bins, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(conf, correct, bins=bins)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(3)
    conf = rng.uniform(size=1000)
    report = expected_calibration_error(conf, rng.uniform(size=1000) < conf)
    path = plot_reliability(report, tmp_path / "reliability.png", title="synthetic")
    assert path == tmp_path / "reliability.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # empty bins (everything in one) draw too
    one = plot_reliability(expected_calibration_error([1.0, 1.0], [True, False]), tmp_path / "one.png")
    assert one.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_checks_the_report(tmp_path):
    with pytest.raises(ValueError, match="expected a report"):
        plot_reliability({"ece": 0.1}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
