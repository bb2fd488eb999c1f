"""Figures 3 and 4 of Kanezaki, "Unsupervised image segmentation by backpropagation" (ICASSP 2018, Section 3).

One PNG, three panels:

* Fig. 3: F-measure per image (IoU > 0.5) for each method configuration. Each curve is sorted by decreasing F on
  its own (x = rank of the image within that curve), so curves are monotone and comparable by their area, as in
  the paper's figure;
* Fig. 4: precision-recall curves at IoU 0.5 and at IoU 0.7, segments ranked by decreasing size, pooled over
  images by ``metrics.pool_pr``; the legend gives each curve's average precision (``metrics.average_precision``),
  the number the paper reports for Fig. 4.

Which trials are drawn. Section 3 shows "the best results from k = 2, 3, ..., 20 for k-means clustering and
beta = 100, 500, 1,000, 1,500, 2,000 for GS" and the proposed method for several M. Here, "best" is the highest mean
F-measure over the images (the Fig. 3 quantity), and the curves are:

* proposed: one curve per ``M``, the best trial of that M over the other settings (lr, seeds...), "proposed (M=3)";
* k-means: one curve per window size ``alpha``, the best ``k`` of that alpha, "k-means (alpha, k)" (the paper's
  labels are (alpha, k) pairs; one curve per alpha shows the effect of the window as the paper's legend does);
* GS (Felzenszwalb): the single best ``threshold`` (the paper's beta), "GS (beta)".

Trials whose ``status`` is ``failed`` are left out, even when they have evaluation rows (they may be partial), as
are trials without evaluation rows or with no finite F-measure; a missing method family simply draws no curve.
Config columns absent from ``trials`` take the defaults of :class:`SegmentationConfig`. The same colour marks a
configuration in all three panels.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .config import SegmentationConfig

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = (0.5, 0.7)  # Fig. 4
CONFIG_COLUMNS = ("method", "M", "lr", "alpha", "k", "threshold")
FAMILY_ORDER = {"cnn": 0, "kmeans": 1, "felzenszwalb": 2}
LINE_STYLES = {"cnn": "-", "kmeans": "--", "felzenszwalb": ":"}


def _fmt(value) -> str:
    """A number as a short label: 3 not 3.0, 500 not 500.0, 0.05 as is."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _configs(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per usable trial id with the config columns (defaults filled in), failed trials dropped."""
    if trials is None or trials.empty or "trial_id" not in trials.columns:
        return pd.DataFrame(columns=["trial_id", *CONFIG_COLUMNS])
    table = trials.drop_duplicates("trial_id").copy()
    if "status" in table.columns:
        table = table[table["status"].astype(str) != "failed"]
    defaults = {f.name: f.default for f in dataclasses.fields(SegmentationConfig)}
    for col in CONFIG_COLUMNS:
        if col not in table.columns:
            table[col] = defaults[col]
        table[col] = table[col].fillna(defaults[col])
    return table[["trial_id", *CONFIG_COLUMNS]]


def select_curves(trials: pd.DataFrame, evaluations: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(label, trial id, method) of every curve to draw, in legend order (see the module docstring)."""
    if evaluations is None or evaluations.empty or not {"trial_id", "f_measure"} <= set(evaluations.columns):
        return []
    f = pd.to_numeric(evaluations["f_measure"], errors="coerce").replace([np.inf, -np.inf], np.nan)
    mean_f = f.groupby(evaluations["trial_id"]).mean().dropna().rename("mean_f")
    table = _configs(trials).merge(mean_f, left_on="trial_id", right_index=True, how="inner")
    table = table.sort_values("trial_id", kind="stable")  # ties in mean F: the first trial id wins
    curves = []
    for method, key, label in (
            ("cnn", ["M"], lambda r: f"proposed (M={_fmt(r.M)})"),
            ("kmeans", ["alpha"], lambda r: f"k-means ({_fmt(r.alpha)}, {_fmt(r.k)})"),
            ("felzenszwalb", [], lambda r: f"GS ({_fmt(r.threshold)})")):
        family = table[table["method"] == method]
        if family.empty:
            continue
        groups = family.groupby(key, sort=True) if key else [(None, family)]
        for _, rows in groups:
            best = rows.loc[rows["mean_f"].idxmax()]
            curves.append((label(best), best["trial_id"], method))
    return curves


def _pr_curve(rows: pd.DataFrame, t: float):
    """(precision, recall, AP) pooled over a trial's rows, or None (with a warning) when its rows cannot be
    pooled (e.g. a results table written without PR columns)."""
    from .metrics import average_precision, pool_pr  # imported on use, as the task imports this module lazily
    try:
        precision, recall = pool_pr(rows.to_dict("records"), t)
    except (KeyError, ValueError, TypeError) as exc:
        logger.warning("no PR curve at IoU %g for trial %s: %s", t, rows["trial_id"].iloc[0], exc)
        return None
    precision, recall = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    if precision.size == 0:
        return None
    return precision, recall, average_precision(precision, recall)


def plot_segmentation(trials: pd.DataFrame, evaluations: pd.DataFrame, out_path) -> None:
    """Write Figures 3 and 4 (module docstring) as one PNG to ``out_path`` (an empty-plot note when no trial has
    evaluation rows)."""
    fig = Figure(figsize=(16.0, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    ax_f, *ax_pr = fig.subplots(1, 1 + len(IOU_THRESHOLDS))
    curves = select_curves(trials, evaluations)
    for i, (label, trial_id, method) in enumerate(curves):
        rows = evaluations[evaluations["trial_id"] == trial_id]
        style = dict(color=f"C{i % 10}", linestyle=LINE_STYLES[method])
        f = pd.to_numeric(rows["f_measure"], errors="coerce").to_numpy(np.float64)
        f = np.sort(f[np.isfinite(f)])[::-1]
        ax_f.plot(np.arange(1, f.size + 1), f, label=f"{label}, mean {f.mean():.3f}", **style)
        for ax, t in zip(ax_pr, IOU_THRESHOLDS):
            pr = _pr_curve(rows, t)
            if pr is not None:
                ax.plot(pr[1], pr[0], label=f"{label}, AP {pr[2]:.4f}", **style)

    n_images = evaluations["image"].nunique() if curves and "image" in evaluations.columns else 0
    ax_f.set_title(f"F-measure per image (Fig. 3), {n_images} images")
    ax_f.set_xlabel("image rank (decreasing F-measure, per curve)")
    ax_f.set_ylabel("F-measure (IoU > 0.5)")
    ax_f.set_ylim(0.0, 1.0)
    ax_f.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, t in zip(ax_pr, IOU_THRESHOLDS):
        ax.set_title(f"Precision-recall, IoU > {t:g} (Fig. 4)")
        ax.set_xlabel("recall (segments in decreasing size)")
        ax.set_ylabel("precision")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
    for ax in (ax_f, *ax_pr):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            note = "no PR columns in the evaluation rows" if curves else "no completed trial with evaluation rows"
            ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, format="png")
