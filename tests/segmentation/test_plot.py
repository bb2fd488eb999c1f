"""Figures 3 and 4 of the segmentation task from synthetic results tables (with a failed trial)."""
import sys
import types

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from sweeplab.tasks.segmentation import plot as plot_mod
from sweeplab.tasks.segmentation.plot import plot_segmentation, select_curves

IMAGES = ["img_a", "img_b", "img_c", "img_d"]
# trial id: (status, method, M, lr, alpha, k, threshold, mean F of its images)
TRIALS = {
    "cnn_m1": ("completed", "cnn", 1, 0.1, 1, 10, 500.0, 0.30),
    "cnn_m3_lr01": ("completed", "cnn", 3, 0.1, 1, 10, 500.0, 0.50),
    "cnn_m3_lr005": ("completed", "cnn", 3, 0.05, 1, 10, 500.0, 0.40),
    "cnn_m5_failed": ("failed", "cnn", 5, 0.1, 1, 10, 500.0, 0.90),  # has rows, but failed: left out
    "cnn_m2_no_rows": ("completed", "cnn", 2, 0.1, 1, 10, 500.0, None),
    "km_a1_k2": ("completed", "kmeans", 3, 0.1, 1, 2, 500.0, 0.20),
    "km_a1_k5": ("completed", "kmeans", 3, 0.1, 1, 5, 500.0, 0.25),
    "km_a3_k4": ("completed", "kmeans", 3, 0.1, 3, 4, 500.0, 0.22),
    "gs_100": ("completed", "felzenszwalb", 3, 0.1, 1, 10, 100.0, 0.30),
    "gs_500": ("completed", "felzenszwalb", 3, 0.1, 1, 10, 500.0, 0.35),
}
EXPECTED = [("proposed (M=1)", "cnn_m1", "cnn"), ("proposed (M=3)", "cnn_m3_lr01", "cnn"),
            ("k-means (1, 5)", "km_a1_k5", "kmeans"), ("k-means (3, 4)", "km_a3_k4", "kmeans"),
            ("GS (500)", "gs_500", "felzenszwalb")]


def _frames():
    cols = ("status", "method", "M", "lr", "alpha", "k", "threshold")
    trials = pd.DataFrame([{"trial_id": tid, **dict(zip(cols, v[:7])),
                            "error": "boom" if v[0] == "failed" else None} for tid, v in TRIALS.items()])
    rng = np.random.default_rng(0)
    rows = []
    for tid, v in TRIALS.items():
        if v[7] is None:
            continue
        spread = np.array([0.15, 0.05, -0.05, -0.15])  # mean zero: the trial's mean F is v[7]
        for image, f in zip(IMAGES, v[7] + spread):
            n_seg = int(rng.integers(3, 9))
            rows.append({"trial_id": tid, "image": image, "method": v[1], "f_measure": float(f),
                         "n_gt_segments": 4.0, "n_segments": n_seg,
                         "pr_50_correct": (rng.random(n_seg) < f).astype(float).tolist(),
                         "pr_70_correct": (rng.random(n_seg) < f / 2).astype(float).tolist()})
    return trials, pd.DataFrame(rows)


def test_best_configuration_per_family():
    trials, evaluations = _frames()
    assert select_curves(trials, evaluations) == EXPECTED


def test_missing_config_columns_take_the_config_defaults():
    trials, evaluations = _frames()
    trials = trials[trials["method"] == "cnn"].drop(columns=["M"])
    labels = [label for label, _, _ in select_curves(trials, evaluations)]
    assert labels == ["proposed (M=3)"]  # SegmentationConfig.M = 3; best of the cnn trials that did not fail


def _capture_figures(monkeypatch):
    figures = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def test_plot_writes_png_with_the_selected_curves(tmp_path, monkeypatch):
    figures = _capture_figures(monkeypatch)
    trials, evaluations = _frames()
    out = tmp_path / "figures" / "segmentation.png"
    plot_segmentation(trials, evaluations, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    with Image.open(out) as im:
        assert im.width > 2 * im.height  # three panels side by side
    ax_f, ax_50, ax_70 = figures[0].axes
    assert [line.get_label().rsplit(", mean", 1)[0] for line in ax_f.lines] == [label for label, _, _ in EXPECTED]
    for line, (_, tid, _) in zip(ax_f.lines, EXPECTED):
        expected = np.sort(evaluations.loc[evaluations["trial_id"] == tid, "f_measure"].to_numpy())[::-1]
        np.testing.assert_allclose(line.get_ydata(), expected)  # Fig. 3: per image, decreasing
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(IMAGES) + 1))
    for ax in (ax_50, ax_70):
        assert len(ax.lines) == len(EXPECTED)
        assert all("AP " in line.get_label() for line in ax.lines)
    # the same colour marks a configuration in every panel
    assert [l.get_color() for l in ax_f.lines] == [l.get_color() for l in ax_70.lines]


def test_pr_curves_are_pooled_per_selected_trial_at_both_thresholds(tmp_path, monkeypatch):
    calls = []

    def pool_pr(rows, t):
        assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
        calls.append((rows[0]["trial_id"], t, len(rows)))
        return np.array([1.0, 0.5]), np.array([0.25, 0.5])

    stub = types.ModuleType("sweeplab.tasks.segmentation.metrics")
    stub.pool_pr = pool_pr
    stub.average_precision = lambda p, r: float(np.sum(np.diff(r, prepend=0.0) * p))
    monkeypatch.setitem(sys.modules, "sweeplab.tasks.segmentation.metrics", stub)
    figures = _capture_figures(monkeypatch)
    trials, evaluations = _frames()
    plot_segmentation(trials, evaluations, tmp_path / "fig.png")
    assert sorted(calls) == sorted((tid, t, len(IMAGES)) for _, tid, _ in EXPECTED for t in (0.5, 0.7))
    line = figures[0].axes[1].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [0.25, 0.5])  # recall on x, precision on y
    np.testing.assert_array_equal(line.get_ydata(), [1.0, 0.5])
    assert line.get_label().endswith("AP 0.3750")  # 0.25 * 1 + 0.25 * 0.5


@pytest.mark.parametrize("case", ["one_family", "no_pr_columns", "only_failed", "empty"])
def test_degenerate_tables_still_write_a_png(tmp_path, case):
    trials, evaluations = _frames()
    if case == "one_family":
        evaluations = evaluations[evaluations["method"] == "felzenszwalb"]
    elif case == "no_pr_columns":
        evaluations = evaluations.drop(columns=["pr_50_correct", "pr_70_correct"])
    elif case == "only_failed":
        evaluations = evaluations[evaluations["trial_id"] == "cnn_m5_failed"]
    else:
        trials, evaluations = pd.DataFrame(), pd.DataFrame()
    out = tmp_path / f"{case}.png"
    plot_segmentation(trials, evaluations, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    expected = {"one_family": 1, "no_pr_columns": 5, "only_failed": 0, "empty": 0}[case]
    assert len(select_curves(trials, evaluations)) == expected
