"""Figures 3 and 4 of Kanezaki, "Unsupervised image segmentation by backpropagation" (ICASSP 2018, Section 3), and
a Figure 2-like panel of example segmentations.

One PNG, three panels:

* Fig. 3: F-measure per image (IoU > 0.5) for each method configuration. Each curve is sorted by decreasing F on
  its own (x = rank of the image within that curve), so curves are monotone and comparable by their area, as in
  the paper's figure;
* Fig. 4: precision-recall curves at IoU 0.5 and at IoU 0.7, segments ranked by decreasing size, pooled over
  images by ``metrics.pool_pr``; the legend gives each curve's average precision (``metrics.average_precision``),
  the number the paper reports for Fig. 4.

Beside it, ``<stem>-figure2.png``: the kept label maps of the selected configuration of each method, with the
image and its ground truth (``figure2.py``).

Which configurations are drawn. Section 3 trains the proposed method with M = 1, ..., 5 (at lr = 0.1, the value
Section 2.4 found best), labels k-means curves by (alpha, k) and GS curves by beta, "chose the best results from
k = 2, 3, ..., 20 for k-means clustering and beta = 100, 500, 1,000, 1,500, 2,000 for GS", and reports "the best
average precision scores for each method with IoU = (0.5, 0.7)". Here the curves are groups:

* proposed: one curve per ``M``, the best trial of that M over the other settings, "proposed (M=3)" (with
  ", lr=0.2" when its lr is not the paper's);
* k-means: one curve per window size ``alpha``, the best ``k`` of that alpha, "k-means (alpha, k)" (the paper's
  labels are (alpha, k) pairs; one curve per alpha shows the effect of the window as the paper's legend does);
* GS (Felzenszwalb): the single best ``threshold`` (the paper's beta), "GS (beta)".

"Best" follows the config field ``plot_selection`` (``config.PLOT_SELECTIONS``; set it in a spec's ``config`` or
with ``--set plot_selection=...`` when running the sweep):

* ``paper`` (default): the highest AP pooled over the images (``metrics.ap``) at the panel's IoU: AP at 0.5 for the
  IoU 0.5 panel, AP at 0.7 for the IoU 0.7 panel (the paper gives each method's best AP at each IoU, which may come
  from different configurations), and AP at 0.5 for Fig. 3 (the paper does not say what picks Fig. 3's curves; 0.5
  is Fig. 3's IoU). The proposed method is drawn at lr = ``config.PAPER_LR`` only; a sweep without such a trial
  draws no proposed curve and a warning says so;
* ``ap``: the same ranking over every lr (the best lr of each M);
* ``f_measure``: the highest mean F-measure over the images (the Fig. 3 quantity), every lr, the same
  configurations in all three panels.

Ties go to the first trial id. Trials whose ``status`` is ``failed`` are left out, even when they have evaluation
rows (they may be partial), as are trials without evaluation rows or without a finite score (under ``paper`` and
``ap``, rows without PR columns); a missing method family simply draws no curve. Config columns absent from
``trials`` take the defaults of :class:`SegmentationConfig`. The same colour marks a group (a method and its M or
alpha) in all three panels, even where two panels pick different configurations of it.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .config import PAPER_LR, PLOT_SELECTIONS, SegmentationConfig

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = (0.5, 0.7)  # Fig. 4
FIG3_IOU = 0.5  # the IoU of the AP that picks Fig. 3's curves under an AP ranking (Fig. 3's own IoU)
CONFIG_COLUMNS = ("method", "M", "lr", "alpha", "k", "threshold")
LINE_STYLES = {"cnn": "-", "kmeans": "--", "felzenszwalb": ":"}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SegmentationConfig)}


def _fmt(value) -> str:
    """A number as a short label: 3 not 3.0, 500 not 500.0, 0.05 as is."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _cnn_label(r) -> str:
    """"proposed (M=3)"; the lr too when it is not the paper's (selections over every lr)."""
    lr = "" if np.isclose(float(r.lr), PAPER_LR) else f", lr={_fmt(r.lr)}"
    return f"proposed (M={_fmt(r.M)}{lr})"


# (method, the config column of its groups or None for one group, the label of a curve), in legend order
GROUPS = (("cnn", "M", _cnn_label),
          ("kmeans", "alpha", lambda r: f"k-means ({_fmt(r.alpha)}, {_fmt(r.k)})"),
          ("felzenszwalb", None, lambda r: f"GS ({_fmt(r.threshold)})"))


class Curve(NamedTuple):
    """One drawn curve: legend label, trial, method, the group whose colour it takes (the method and its M or
    alpha) and the score that picked it."""
    label: str
    trial_id: str
    method: str
    group: str
    score: float


def _configs(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per usable trial id with the config columns (defaults filled in), failed trials dropped."""
    if trials is None or trials.empty or "trial_id" not in trials.columns:
        return pd.DataFrame(columns=["trial_id", *CONFIG_COLUMNS])
    table = trials.drop_duplicates("trial_id").copy()
    if "status" in table.columns:
        table = table[table["status"].astype(str) != "failed"]
    for col in CONFIG_COLUMNS:
        if col not in table.columns:
            table[col] = _DEFAULTS[col]
        table[col] = table[col].fillna(_DEFAULTS[col])
    return table[["trial_id", *CONFIG_COLUMNS]]


def selection_of(trials: pd.DataFrame) -> str:
    """The ``plot_selection`` of a sweep's trials (the first trial id's when they differ, with a warning); the
    config's default for tables without the column."""
    values = (trials.sort_values("trial_id")["plot_selection"].dropna().unique()
              if trials is not None and {"trial_id", "plot_selection"} <= set(trials.columns) else [])
    if len(values) > 1:
        logger.warning("the trials differ in plot_selection (%s): drawing with %s", ", ".join(values), values[0])
    return str(values[0]) if len(values) else _DEFAULTS["plot_selection"]


def _pr_curve(rows: pd.DataFrame, t: float):
    """(precision, recall, AP) pooled over a trial's rows, or None when its rows cannot be pooled (e.g. a results
    table written without PR columns)."""
    from .metrics import average_precision, pool_pr  # imported on use, as the task imports this module lazily
    try:
        precision, recall = pool_pr(rows.to_dict("records"), t)
    except (KeyError, ValueError, TypeError):
        return None
    precision, recall = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    if precision.size == 0:
        return None
    return precision, recall, average_precision(precision, recall)


def _scores(evaluations: pd.DataFrame, rank: str, iou: float) -> pd.Series:
    """trial id -> its mean F-measure (``rank`` = f_measure) or its pooled AP at ``iou`` (``ap``); NaN where none."""
    if rank == "f_measure":
        f = pd.to_numeric(evaluations["f_measure"], errors="coerce").replace([np.inf, -np.inf], np.nan)
        return f.groupby(evaluations["trial_id"]).mean()
    aps = {}
    for trial_id, rows in evaluations.groupby("trial_id", sort=False):
        pr = _pr_curve(rows, iou)
        aps[trial_id] = np.nan if pr is None else pr[2]
    return pd.Series(aps, dtype=np.float64)


def select_curves(trials: pd.DataFrame, evaluations: pd.DataFrame, selection: str = "paper",
                  iou: float = FIG3_IOU) -> list[Curve]:
    """Every curve to draw in legend order, for a panel whose AP ranking is at ``iou`` (module docstring)."""
    if selection not in PLOT_SELECTIONS:
        raise ValueError(f"plot_selection {selection!r}: one of {', '.join(PLOT_SELECTIONS)}")
    rank, paper_lr = PLOT_SELECTIONS[selection]
    if evaluations is None or evaluations.empty or not {"trial_id", "f_measure"} <= set(evaluations.columns):
        return []
    table = _configs(trials)
    if paper_lr:
        lr = pd.to_numeric(table["lr"], errors="coerce").to_numpy(np.float64)
        table = table[(table["method"] != "cnn").to_numpy() | np.isclose(lr, PAPER_LR)]
    score = _scores(evaluations[evaluations["trial_id"].isin(table["trial_id"])], rank, iou)
    table = table.merge(score.dropna().rename("score"), left_on="trial_id", right_index=True, how="inner")
    table = table.sort_values("trial_id", kind="stable")  # ties: the first trial id wins
    curves = []
    for method, key, label in GROUPS:
        family = table[table["method"] == method]
        for value, rows in (family.groupby(key, sort=True) if key else [(None, family)]):
            if rows.empty:
                continue
            best = rows.loc[rows["score"].idxmax()]
            group = f"{method} {key}={_fmt(best[key])}" if key else method
            curves.append(Curve(label(best), best["trial_id"], method, group, float(best["score"])))
    return curves


def _empty_note(trials, evaluations, selection: str) -> str:
    """Why a panel has no curve."""
    from .metrics import _pr_key
    if not select_curves(trials, evaluations, "f_measure"):
        return "no completed trial with evaluation rows"
    if not {_pr_key(t) for t in IOU_THRESHOLDS} <= set(evaluations.columns):
        return "no PR columns in the evaluation rows" + (
            "\n(plot_selection=f_measure ranks by mean F)" if PLOT_SELECTIONS[selection][0] == "ap" else "")
    return f"no trial selected (plot_selection={selection})"


def plot_segmentation(trials: pd.DataFrame, evaluations: pd.DataFrame, out_path, sweep=None,
                      selection: str | None = None) -> None:
    """Write Figures 3 and 4 (module docstring) as one PNG to ``out_path`` (a note in a panel without curves), and
    the Figure 2-like panel beside it when the sweep kept label maps (``figure2.py``). ``selection`` overrides the
    trials' ``plot_selection``."""
    from .figure2 import plot_examples
    selection = selection or selection_of(trials)
    fig = Figure(figsize=(16.0, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax_f, *ax_pr = fig.subplots(1, 1 + len(IOU_THRESHOLDS))
    per_panel = [select_curves(trials, evaluations, selection, t) for t in (FIG3_IOU, *IOU_THRESHOLDS)]
    colours = {g: f"C{i % 10}" for i, g in enumerate(dict.fromkeys(c.group for cs in per_panel for c in cs))}
    _warn_paper_lr(trials, selection)
    for label, trial_id, method, group, _ in per_panel[0]:
        rows = evaluations[evaluations["trial_id"] == trial_id]
        f = pd.to_numeric(rows["f_measure"], errors="coerce").to_numpy(np.float64)
        f = np.sort(f[np.isfinite(f)])[::-1]
        ax_f.plot(np.arange(1, f.size + 1), f, label=f"{label}, mean {f.mean():.3f}", color=colours[group],
                  linestyle=LINE_STYLES[method])
    for ax, t, curves in zip(ax_pr, IOU_THRESHOLDS, per_panel[1:]):
        for label, trial_id, method, group, _ in curves:
            pr = _pr_curve(evaluations[evaluations["trial_id"] == trial_id], t)
            if pr is None:
                logger.warning("no PR curve at IoU %g for trial %s", t, trial_id)
                continue
            ax.plot(pr[1], pr[0], label=f"{label}, AP {pr[2]:.4f}", color=colours[group],
                    linestyle=LINE_STYLES[method])

    n_images = evaluations["image"].nunique() if per_panel[0] and "image" in evaluations.columns else 0
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
            ax.text(0.5, 0.5, _empty_note(trials, evaluations, selection), ha="center", va="center",
                    transform=ax.transAxes)
    fig.suptitle(f"configurations by plot_selection={selection}", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, format="png")
    plot_examples(per_panel[0], sweep, out_path)


def _warn_paper_lr(trials, selection: str) -> None:
    """Say so when the paper's selection leaves out every trial of the proposed method (none at lr 0.1)."""
    table = _configs(trials)
    lr = pd.to_numeric(table.loc[table["method"] == "cnn", "lr"], errors="coerce").to_numpy(np.float64)
    if PLOT_SELECTIONS[selection][1] and lr.size and not np.isclose(lr, PAPER_LR).any():
        logger.warning("plot_selection=%s draws the proposed method at lr = %g only (Section 2.4) and no trial has "
                       "it: plot_selection=ap draws the best lr", selection, PAPER_LR)
