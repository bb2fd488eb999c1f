"""Accuracy against cost for the `tagging` task, after Figure 1 of Ferraro et al., "How low can you go? Reducing
frequency and time resolution in current CNN architectures for music auto-tagging" (EUSIPCO 2020, Section VII).

Figure 1 of the paper gives, per mel-spectrogram configuration (# mel, hop, sample rate, log type), the mean and
standard deviation over three runs of ROC-AUC and PR-AUC, and the GMACs. Here the same numbers are drawn as one
scatter plot per metric against GMACs (log x axis), which shows the paper's question (how much accuracy a cheaper
input costs) directly:

* one point per configuration (``model``, ``sample_rate``, ``n_mels``, ``hop_factor``, ``log``): the mean over its
  trials (the seeds), with min-max error bars (the spread of three runs; a standard deviation of three is noisy);
* colour: model and sample rate; marker: log compression (``o`` dB, ``^`` log);
* the Pareto front over all configurations (no other point has fewer or equal GMACs and a higher or equal AUC,
  one of them strictly) as a step line, computed separately for each metric by :func:`pareto_front`.

``roc_auc``/``pr_auc``/``gmacs`` come from ``trials``; a metric column absent there is taken as the per-trial mean
of ``evaluations`` (rows with ``trial_id``). Trials whose ``status`` is ``failed``, and points without a finite
metric or a positive GMAC value, are left out; missing config columns take the defaults of :class:`TaggingConfig`.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .config import TaggingConfig

CONFIG_COLUMNS = ("model", "sample_rate", "n_mels", "hop_factor", "log")
METRICS = (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"))
MARKERS = {"dB": "o", "log": "^"}


def pareto_front(gmacs, auc) -> np.ndarray:
    """Boolean mask of the points not dominated by another: j dominates i when gmacs_j <= gmacs_i and
    auc_j >= auc_i with one of the two strict. Points with a non-finite value are never on the front; exact
    duplicates are both on it."""
    g, a = np.asarray(gmacs, np.float64), np.asarray(auc, np.float64)
    ok = np.isfinite(g) & np.isfinite(a)
    le, ge = g[None, :] <= g[:, None], a[None, :] >= a[:, None]  # [i, j]: j at least as good as i
    strict = (g[None, :] < g[:, None]) | (a[None, :] > a[:, None])
    dominated = (le & ge & strict & ok[None, :]).any(axis=1)
    return ok & ~dominated


def summarise(trials: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: config columns, ``n`` trials, and ``<metric>``/``_min``/``_max`` for gmacs,
    roc_auc and pr_auc (module docstring)."""
    if trials is None or trials.empty:
        return pd.DataFrame()
    table = trials.copy()
    if "status" in table.columns:
        table = table[table["status"].astype(str) != "failed"]
    defaults = {f.name: f.default for f in dataclasses.fields(TaggingConfig)}
    for col in CONFIG_COLUMNS:
        table[col] = table[col].fillna(defaults[col]) if col in table.columns else defaults[col]
    for col in ("gmacs", *(m for m, _ in METRICS)):
        if col not in table.columns:
            if evaluations is not None and {"trial_id", col} <= set(evaluations.columns) \
                    and "trial_id" in table.columns:
                per_trial = pd.to_numeric(evaluations[col], errors="coerce").groupby(evaluations["trial_id"]).mean()
                table[col] = table["trial_id"].map(per_trial)
            else:
                table[col] = np.nan
        table[col] = pd.to_numeric(table[col], errors="coerce").replace([np.inf, -np.inf], np.nan)
    groups = table.groupby(list(CONFIG_COLUMNS), dropna=False, sort=True)
    out = groups.size().rename("n").to_frame()
    for col in ("gmacs", *(m for m, _ in METRICS)):
        out[col], out[f"{col}_min"], out[f"{col}_max"] = groups[col].mean(), groups[col].min(), groups[col].max()
    return out.reset_index()


def _label(model, sample_rate) -> str:
    return f"{model}, {float(sample_rate) / 1000:g} kHz"


def plot_tagging(trials: pd.DataFrame, evaluations: pd.DataFrame, out_path, sweep=None) -> None:
    """Write the two panels (ROC-AUC, PR-AUC against GMACs; module docstring) as one PNG to ``out_path``
    (``sweep`` is not used: the figure needs only the tables)."""
    fig = Figure(figsize=(13.0, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(METRICS))
    table = summarise(trials, evaluations)
    colours = {}
    for ax, (metric, title) in zip(axes, METRICS):
        ax.set_title(f"{title} against cost (cf. Fig. 1); labels: mel bands / hop factor")
        ax.set_xlabel("GMACs per input (log scale)")
        ax.set_ylabel(f"{title} (macro over tags; mean, min-max over seeds)")
        ax.grid(True, which="both", alpha=0.3)
        points = table[(table["gmacs"] > 0) & np.isfinite(table[metric])] if len(table) else table
        if points.empty:
            ax.text(0.5, 0.5, "no completed trial with GMACs and this metric", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        for (model, sr, log), rows in points.groupby(["model", "sample_rate", "log"], sort=True):
            colour = colours.setdefault((model, sr), f"C{len(colours) % 10}")
            err = np.vstack([rows[metric] - rows[f"{metric}_min"], rows[f"{metric}_max"] - rows[metric]])
            ax.errorbar(rows["gmacs"], rows[metric], yerr=err, fmt=MARKERS.get(str(log), "s"), color=colour,
                        markersize=6, capsize=2, linewidth=0.8, label=f"{_label(model, sr)}, {log}")
            for _, r in rows.iterrows():
                ax.annotate(f"{int(r.n_mels)}/x{int(r.hop_factor)}", (r.gmacs, r[metric]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points", alpha=0.7)
        front = points[pareto_front(points["gmacs"], points[metric])].sort_values("gmacs")
        ax.step(front["gmacs"], front[metric], where="post", color="k", linewidth=1.2, alpha=0.7,
                label=f"Pareto front ({len(front)} configs)")
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, format="png")
