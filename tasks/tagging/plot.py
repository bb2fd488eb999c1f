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
  one of them strictly) as a step line, computed separately for each metric by :func:`pareto_front`;
* a third panel: Section VII's Student's t-tests over the seeds (:mod:`.stats`) on ROC-AUC, the p-value of each
  configuration against the best one (filled) and against its 96-band counterpart (hollow; the paper's 48-vs-96
  comparison, "P > 0.08"), against GMACs. Every p-value, for both metrics, is also written beside the PNG as
  ``<stem>-ttest.csv`` (``sweeplab plot`` keeps it next to ``tagging.png``).

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
from .stats import CONFIG_COLUMNS, REFERENCE_MELS, t_tests

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


def trial_values(trials: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial that did not fail: config columns (defaults where absent) and numeric gmacs, roc_auc and
    pr_auc (NaN where not finite; module docstring)."""
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
    return table


def summarise(trials: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: config columns, ``n`` trials, and ``<metric>``/``_min``/``_max`` for gmacs,
    roc_auc and pr_auc (module docstring)."""
    if trials is None or trials.empty:
        return pd.DataFrame()
    table = trial_values(trials, evaluations)
    groups = table.groupby(list(CONFIG_COLUMNS), dropna=False, sort=True)
    out = groups.size().rename("n").to_frame()
    for col in ("gmacs", *(m for m, _ in METRICS)):
        out[col], out[f"{col}_min"], out[f"{col}_max"] = groups[col].mean(), groups[col].min(), groups[col].max()
    return out.reset_index()


def _label(model, sample_rate) -> str:
    return f"{model}, {float(sample_rate) / 1000:g} kHz"


def significance(trials: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Section VII's t-tests for both metrics, one row per configuration: config columns, ``gmacs`` (mean) and for
    each metric ``<metric>_n``, ``<metric>`` (mean), ``<metric>_best``, ``<metric>_p_best``, ``<metric>_p_96``
    (:func:`.stats.t_tests`)."""
    if trials is None or trials.empty:
        return pd.DataFrame()
    values = trial_values(trials, evaluations)
    table = values.groupby(list(CONFIG_COLUMNS), sort=True)["gmacs"].mean().reset_index()
    for metric, _ in METRICS:
        tests = t_tests(values, metric).rename(columns={"n": f"{metric}_n", "mean": metric, "best": f"{metric}_best",
                                                        "p_best": f"{metric}_p_best", "p_96": f"{metric}_p_96"})
        table = table.merge(tests, on=list(CONFIG_COLUMNS), how="left")
    return table


def _p_panel(ax, tests: pd.DataFrame, colours: dict) -> None:
    """ROC-AUC p-values against GMACs: against the best configuration (filled) and 96 mel bands (hollow)."""
    ax.set_title("Student's t-test over seeds, ROC-AUC (Section VII)")
    ax.set_xlabel("GMACs per input (log scale)")
    ax.set_ylabel("two-sided p-value (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ok = tests[(tests["gmacs"] > 0) & (np.isfinite(tests["roc_auc_p_best"]) | np.isfinite(tests["roc_auc_p_96"]))] \
        if len(tests) else tests
    if ok.empty:
        ax.text(0.5, 0.5, "no p-value: a t-test needs two or more\ncompleted seeds in each configuration",
                ha="center", va="center", transform=ax.transAxes)
        return
    for (model, sr), rows in ok.groupby(["model", "sample_rate"], sort=True):
        colour = colours.setdefault((model, sr), f"C{len(colours) % 10}")
        ax.scatter(rows["gmacs"], rows["roc_auc_p_best"], color=colour, s=22, label=f"{_label(model, sr)}: vs best")
        ax.scatter(rows["gmacs"], rows["roc_auc_p_96"], facecolors="none", edgecolors=colour, s=40,
                   label=f"{_label(model, sr)}: vs {REFERENCE_MELS} mel")
        for _, r in rows.iterrows():
            ax.annotate(f"{int(r.n_mels)}/x{int(r.hop_factor)}", (r.gmacs, np.nanmin([r.roc_auc_p_best,
                        r.roc_auc_p_96])), fontsize=6, xytext=(3, 3), textcoords="offset points", alpha=0.7)
    ax.axhline(0.05, color="k", linestyle="--", linewidth=0.8, label="p = 0.05")
    best = tests[tests["roc_auc_best"].eq(True)].iloc[0]  # eq: NaN where a configuration has no ROC-AUC
    notes = [f"best: {best.model}, {_label(best.model, best.sample_rate).split(', ')[1]}, {int(best.n_mels)} mel, "
             f"hop x{int(best.hop_factor)}, {best.log} (mean {best.roc_auc:.4f}, {int(best.roc_auc_n)} seeds)"]
    pairs = ok["roc_auc_p_96"].dropna()
    if len(pairs):
        notes.append(f"vs {REFERENCE_MELS} mel: smallest p {pairs.min():.3g} over {len(pairs)} pairs (paper: > 0.08)")
    ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lowest = np.nanmin(ok[["roc_auc_p_best", "roc_auc_p_96"]].to_numpy(np.float64))
    ax.set_ylim(min(0.005, max(lowest, 1e-12) / 2), 1.5)  # the 0.05 line clear of the notes at the bottom
    ax.legend(fontsize=6, loc="lower right")


def plot_tagging(trials: pd.DataFrame, evaluations: pd.DataFrame, out_path, sweep=None) -> None:
    """Write the three panels (ROC-AUC, PR-AUC against GMACs; the t-tests; module docstring) as one PNG to
    ``out_path`` and the t-tests as ``<stem>-ttest.csv`` beside it (``sweep`` is not used: the figure needs only
    the tables)."""
    fig = Figure(figsize=(19.0, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(METRICS) + 1)
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
    tests = significance(trials, evaluations)
    _p_panel(axes[-1], tests, colours)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, format="png")
    stem = os.path.splitext(os.fspath(out_path))[0]
    tests.to_csv(f"{stem}-ttest.csv", index=False)
