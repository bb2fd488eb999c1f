"""Figures 3 and 4 and the Figure 2-like panel of the segmentation task from synthetic results tables (with a
failed trial) and kept label maps."""
import logging
import sys
import types

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from sweeplab import artifacts
from sweeplab.storage import location
from sweeplab.tasks.segmentation import label_maps
from sweeplab.tasks.segmentation.data import mosaic_sample
from sweeplab.tasks.segmentation.figure2 import colours, figure2_path
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
# the mean-F rule (plot_selection=f_measure)
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
    assert [c[:3] for c in select_curves(trials, evaluations, "f_measure")] == EXPECTED
    with pytest.raises(ValueError, match="plot_selection 'best'"):
        select_curves(trials, evaluations, "best")


def test_missing_config_columns_take_the_config_defaults():
    trials, evaluations = _frames()
    trials = trials[trials["method"] == "cnn"].drop(columns=["M"])
    labels = [c.label for c in select_curves(trials, evaluations, "f_measure")]
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
    trials["plot_selection"] = "f_measure"  # the config field, read from the trials table
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
    plot_segmentation(trials, evaluations, tmp_path / "fig.png", selection="f_measure")  # ranks without pool_pr
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
    # (curves by AP, by mean F): rows without PR columns have no AP
    expected = {"one_family": (1, 1), "no_pr_columns": (0, 5), "only_failed": (0, 0), "empty": (0, 0)}[case]
    assert (len(select_curves(trials, evaluations)), len(select_curves(trials, evaluations, "f_measure"))) == expected
    assert not figure2_path(out).exists()  # no sweep location, no label maps


# Mean F and AP disagree. Two images per trial with the same flags and 4 GT segments each, so a trial's pooled AP is
# that of one image: with flags f_1..f_4 (1 = correct), AP = sum_n f_n P(n) / 4, e.g. [1, 1, 1, 0] -> 0.75.
# trial id: (method, M, lr, alpha, k, threshold, mean F, pr_50 flags, pr_70 flags)
RANKED = {
    "cnn_m1": ("cnn", 1, 0.1, 1, 10, 500.0, 0.10, [1, 0, 0, 0], [0, 0, 0, 0]),  # AP50 0.25, AP70 0
    "cnn_lr01_a": ("cnn", 3, 0.1, 1, 10, 500.0, 0.40, [1, 1, 1, 0], [1, 0, 0, 0]),  # AP50 0.75, AP70 0.25
    "cnn_lr01_b": ("cnn", 3, 0.1, 1, 10, 500.0, 0.45, [1, 0, 0, 0], [1, 1, 1, 1]),  # AP50 0.25, AP70 1
    "cnn_lr02": ("cnn", 3, 0.2, 1, 10, 500.0, 0.60, [1, 1, 1, 1], [0, 0, 0, 0]),  # best F and AP50, not lr 0.1
    "km_k4": ("kmeans", 3, 0.1, 3, 4, 500.0, 0.30, [1, 0, 0, 0], [0, 0, 0, 0]),  # AP50 0.25
    "km_k8": ("kmeans", 3, 0.1, 3, 8, 500.0, 0.20, [1, 1, 0, 0], [0, 0, 0, 0]),  # AP50 0.5
    "gs_100": ("felzenszwalb", 3, 0.1, 1, 10, 100.0, 0.35, [0, 0, 0, 0], [0, 0, 0, 0]),  # AP50 0
    "gs_500": ("felzenszwalb", 3, 0.1, 1, 10, 500.0, 0.25, [1, 0, 0, 0], [0, 0, 0, 0]),  # AP50 0.25
}


def _ranked_frames(ids=tuple(RANKED)):
    cols = ("method", "M", "lr", "alpha", "k", "threshold")
    trials = pd.DataFrame([{"trial_id": tid, "status": "completed", **dict(zip(cols, RANKED[tid][:6]))}
                           for tid in ids])
    rows = [{"trial_id": tid, "image": image, "method": RANKED[tid][0], "f_measure": RANKED[tid][6] + d,
             "n_gt_segments": 4.0, "n_segments": 4, "pr_50_correct": [float(x) for x in RANKED[tid][7]],
             "pr_70_correct": [float(x) for x in RANKED[tid][8]]} for tid in ids for image, d in
            (("mosaic_00", 0.05), ("mosaic_01", -0.05))]
    return trials, pd.DataFrame(rows)


@pytest.mark.parametrize("selection, at_50, at_70", [
    # the paper: lr 0.1 only, best AP at each IoU (ties, here at AP70 = 0, to the first trial id)
    ("paper", ["cnn_m1", "cnn_lr01_a", "km_k8", "gs_500"], ["cnn_m1", "cnn_lr01_b", "km_k4", "gs_100"]),
    ("ap", ["cnn_m1", "cnn_lr02", "km_k8", "gs_500"], ["cnn_m1", "cnn_lr01_b", "km_k4", "gs_100"]),  # every lr
    ("f_measure", ["cnn_m1", "cnn_lr02", "km_k4", "gs_100"], ["cnn_m1", "cnn_lr02", "km_k4", "gs_100"]),
])
def test_selections_rank_by_ap_or_mean_f(selection, at_50, at_70):
    trials, evaluations = _ranked_frames()
    fig3, pr50, pr70 = (select_curves(trials, evaluations, selection, t) for t in (0.5, 0.5, 0.7))
    assert fig3 == pr50  # Fig. 3 is ranked as the IoU 0.5 panel
    assert [c.trial_id for c in pr50] == at_50 and [c.trial_id for c in pr70] == at_70
    if selection == "paper":
        assert [c.score for c in pr50] == pytest.approx([0.25, 0.75, 0.5, 0.25])
        assert [c.label for c in pr50] == ["proposed (M=1)", "proposed (M=3)", "k-means (3, 8)", "GS (500)"]
    if selection == "ap":
        assert pr50[1].label == "proposed (M=3, lr=0.2)"
    assert [c.group for c in pr50] == [c.group for c in pr70] == ["cnn M=1", "cnn M=3", "kmeans alpha=3",
                                                                  "felzenszwalb"]


def test_paper_selection_without_a_trial_at_lr_01_draws_no_proposed_curve(tmp_path, caplog, monkeypatch):
    figures = _capture_figures(monkeypatch)
    trials, evaluations = _ranked_frames(("cnn_lr02", "km_k4", "km_k8"))
    assert [c.trial_id for c in select_curves(trials, evaluations)] == ["km_k8"]
    with caplog.at_level(logging.WARNING):
        plot_segmentation(trials, evaluations, tmp_path / "fig.png")
    assert "plot_selection=paper draws the proposed method at lr = 0.1" in caplog.text
    assert [line.get_label() for line in figures[0].axes[1].lines] == ["k-means (3, 8), AP 0.5000"]


def _keep(sweep, trial_id, maps, config=None):
    """Save a trial's label maps as train.train does (the core's artifact store, the task's PNG encoding)."""
    artifacts.save(sweep, task="segmentation", sweep_name="s", trial_id=trial_id, name=label_maps.ARTIFACT,
                   config=config or {"n_mosaics": 2, "mosaic_size": 32},
                   payload={"maps": {name: label_maps.encode(m) for name, m in maps.items()}})


def test_figure2_panel_from_kept_label_maps(tmp_path, monkeypatch):
    figures = _capture_figures(monkeypatch)
    trials, evaluations = _ranked_frames()
    samples = [mosaic_sample(i, 32) for i in range(2)]
    sweep = location(tmp_path / "sweep")
    _keep(sweep, "cnn_lr01_a", {s.name: s.gts[1] for s in samples})  # the paper's choice for the method
    _keep(sweep, "cnn_m1", {s.name: s.gts[0] for s in samples})  # a lower AP than M = 3: not drawn
    _keep(sweep, "cnn_lr02", {s.name: s.gts[0] for s in samples})  # best by mean F: not drawn
    _keep(sweep, "km_k8", {samples[0].name: np.arange(32 * 32).reshape(32, 32)})  # kept one image only
    out = tmp_path / "plots" / "segmentation.png"
    plot_segmentation(trials, evaluations, out, sweep)  # gs_500 kept nothing
    assert figure2_path(out) == tmp_path / "plots" / "segmentation-figure2.png"
    with Image.open(figure2_path(out)) as im:
        assert im.format == "PNG" and im.height > 400
    axes = np.array(figures[1].axes).reshape(2, 5)  # images x (image, proposed, k-means, GS, ground truth)
    assert [ax.get_title() for ax in axes[0]] == ["image", "proposed (M=3)", "k-means (3, 8)", "GS (500)",
                                                 "ground truth (annotator 1)"]
    for row, sample in zip(axes, samples):
        assert row[0].get_ylabel() == sample.name
        np.testing.assert_array_equal(row[0].images[0].get_array(), sample.image)
        np.testing.assert_array_equal(row[1].images[0].get_array(), colours(sample.gts[1]))  # cnn_lr01_a's map
        np.testing.assert_array_equal(row[4].images[0].get_array(), colours(sample.gts[0]))
        assert not row[3].images and row[3].texts[0].get_text() == "no label maps kept"
    np.testing.assert_array_equal(axes[0, 2].images[0].get_array(), colours(np.arange(32 * 32).reshape(32, 32)))
    assert not axes[1, 2].images and axes[1, 2].texts[0].get_text() == "not kept"


def test_figure2_colours_tell_segments_apart():
    rgb = colours(np.arange(70_000).reshape(350, 200))  # more ids than a 16-bit map holds
    assert rgb.dtype == np.uint8 and len(np.unique(rgb.reshape(-1, 3), axis=0)) == 70_000
    np.testing.assert_array_equal(colours(np.array([[5, 5]]))[0, 0], colours(np.array([[5]]))[0, 0])


def test_no_figure2_panel_without_kept_maps(tmp_path, caplog):
    trials, evaluations = _ranked_frames()
    out = tmp_path / "segmentation.png"
    with caplog.at_level(logging.WARNING):
        plot_segmentation(trials, evaluations, out, location(tmp_path))  # an older sweep
    assert out.exists() and not figure2_path(out).exists()
    assert "kept no label maps" in caplog.text and "cnn_lr01_a" in caplog.text
