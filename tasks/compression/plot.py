"""Rate-distortion figure of the `compression` task, like Figure 5 of Dumas et al., ICASSP 2018.

PSNR (dB) against rate (bpp), both averaged over the test images (the PSNR is the mean of the per-image PSNRs,
as the authors average their PSNR arrays). Curves, each drawn only when its trials have rows:

* case 1: fixed-step trials at beta = 1, one point per gamma, linked (only with more than one gamma);
* case 2: each learned-step trial over its betas;
* case 3: each fixed-step trial over its betas (only with more than one beta);
* JPEG, JPEG 2000 and H.265 (x265) over their settings.

The autoencoder's rate is the paper's estimate (column ``bpp``, empirical entropy) unless ``rate="bpp_coded"``.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ANCHOR_LABELS = {"jpeg": "JPEG", "jpeg2000": "JPEG 2000", "hevc": "H.265 (x265)"}


def _with_config(trials: pd.DataFrame, evaluations: pd.DataFrame) -> pd.DataFrame:
    """Evaluation rows joined with the trial config columns they need (defaults when a column is absent)."""
    ev = evaluations.copy()
    cols = [c for c in ("trial_id", "quantization", "gamma") if c in trials.columns]
    if "trial_id" in cols and len(cols) > 1:
        ev = ev.merge(trials[cols].drop_duplicates("trial_id"), on="trial_id", how="left")
    for col, default in (("quantization", "fixed-step"), ("gamma", math.nan), ("beta", math.nan),
                         ("quality", math.nan), ("trial_id", "trial")):
        if col not in ev.columns:
            ev[col] = default
    ev["quantization"] = ev["quantization"].fillna("fixed-step")
    for col in ("beta", "quality", "gamma", "psnr"):
        ev[col] = pd.to_numeric(ev[col], errors="coerce")
    ev["psnr"] = ev["psnr"].replace([np.inf, -np.inf], np.nan)
    return ev


def _curve(rows: pd.DataFrame, key: str, rate: str) -> pd.DataFrame:
    """Mean rate and PSNR per value of ``key``, sorted by rate."""
    means = rows.groupby(key, dropna=False)[[rate, "psnr"]].mean(numeric_only=True).reset_index()
    return means.dropna(subset=[rate, "psnr"]).sort_values(rate)


def rate_distortion_curves(trials: pd.DataFrame, evaluations: pd.DataFrame,
                           rate: str = "bpp") -> list[tuple[str, pd.DataFrame]]:
    """(legend label, DataFrame with columns ``rate`` and ``psnr``) for every curve present in the tables."""
    if evaluations is None or evaluations.empty or "method" not in evaluations.columns:
        return []
    ev = _with_config(trials if trials is not None else pd.DataFrame(), evaluations)
    curves = []
    ae = ev[ev["method"] == "autoencoder"]
    fixed, learned = ae[ae["quantization"] == "fixed-step"], ae[ae["quantization"] == "learned-step"]
    at_one = fixed[np.isclose(fixed["beta"], 1.0)]
    if at_one["gamma"].nunique() > 1:
        curves.append(("case 1: one model per gamma", _curve(at_one, "gamma", rate)))
    for rows, min_betas, label in ((learned, 1, "case 2: learned steps"), (fixed, 2, "case 3: GDN, step 1")):
        kept = [(tid, r) for tid, r in rows.groupby("trial_id", sort=True) if r["beta"].nunique() >= min_betas]
        texts = [label if pd.isna(g) else f"{label}, gamma={g:g}" for g in (r["gamma"].iloc[0] for _, r in kept)]
        for (trial_id, trial_rows), text in zip(kept, texts):
            if texts.count(text) > 1:
                text += f" ({trial_id})"  # several trials with one gamma (e.g. seeds): tell them apart
            curves.append((text, _curve(trial_rows, "beta", rate)))
    for codec, label in ANCHOR_LABELS.items():
        rows = ev[ev["method"] == codec]
        if not rows.empty:
            curves.append((label, _curve(rows, "quality", rate)))
    return [(label, c.rename(columns={rate: "rate"})[["rate", "psnr"]]) for label, c in curves if not c.empty]


def plot_rate_distortion(trials: pd.DataFrame, evaluations: pd.DataFrame, out_path, sweep=None,
                         rate: str = "bpp") -> None:
    """Write the rate-distortion PNG to ``out_path`` (an empty-plot note when there is nothing to draw); ``sweep``
    is not used (the figure needs only the tables)."""
    fig = Figure(figsize=(7.0, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curves = rate_distortion_curves(trials, evaluations, rate)
    styles = {"case 1": ("o", "-"), "case 2": ("s", "-"), "case 3": ("^", "--"), "JPEG 2000": ("d", ":"),
              "JPEG": ("x", ":"), "H.265": ("v", "-.")}
    for label, curve in curves:
        marker, line = next((v for k, v in styles.items() if label.startswith(k)), ("o", "-"))
        ax.plot(curve["rate"], curve["psnr"], marker=marker, linestyle=line, label=label)
    if curves:
        n_images = evaluations["image"].nunique() if "image" in evaluations.columns else 0
        ax.set_title(f"Rate-distortion, mean over {n_images} test images")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluation rows to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("rate (bits per pixel)" + (", range-coded" if rate == "bpp_coded" else ""))
    ax.set_ylabel("PSNR (dB)")
    ax.grid(True, alpha=0.3)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, format="png", bbox_inches="tight")
