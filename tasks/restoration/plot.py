"""The figures of a restoration sweep: PSNR and SSIM per method (the restored images of each mapping trial beside
the degraded input and the classical baseline; the VAEs' reconstructions for a stage-1 sweep; the detector's
precision, recall, F1 and IoU for a detector sweep), and a grid of example test images (degraded input, mask,
restored, clean) of the best trial, from its ``examples`` artifact (left out when the sweep has none).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sweeplab.api import open_source

SETTINGS = ("latent_l1", "feat_match", "gan", "nonlocal_block", "pixel_l1", "kl", "latent_gan")
QUALITY = ("psnr", "ssim")
DETECTION = ("precision", "recall", "f1", "iou")
BASELINES = ("degraded", "classical")  # the same for every mapping trial: drawn once


def labels(trials: pd.DataFrame) -> dict[str, str]:
    """trial_id -> the settings that differ between the sweep's trials (or the trial id)."""
    varied = [c for c in SETTINGS if c in trials and trials[c].astype(str).nunique() > 1]
    return {t.trial_id: ", ".join(f"{c}={t[c]}" for c in varied) or t.trial_id for _, t in trials.iterrows()}


def method_means(trials: pd.DataFrame, evaluations: pd.DataFrame) -> pd.DataFrame:
    """Mean of each score over the test images, per method; a trained method per trial, the baselines once."""
    names = labels(trials)
    ev = evaluations[evaluations.trial_id.isin(trials.trial_id)]
    scores = [c for c in (*QUALITY, *DETECTION) if c in ev and ev[c].notna().any()]
    baseline = ev.method.isin(BASELINES)
    first = ev.trial_id == ev.trial_id.iloc[0] if len(ev) else baseline
    kept = ev[~baseline | first].copy()
    kept["name"] = np.where(kept.method.isin(BASELINES), kept.method,
                            kept.method + " (" + kept.trial_id.map(names) + ")")
    return kept.groupby("name", sort=False)[scores].mean()


def _examples(trials: pd.DataFrame, sweep):
    if sweep is None or not len(trials):
        return None
    from .evaluate import EXAMPLES
    key = "psnr" if trials.psnr.notna().any() else "f1"
    for trial_id in trials.sort_values(key, ascending=False).trial_id:
        try:
            return open_source(f"{sweep}/{trial_id}").load(EXAMPLES)
        except (FileNotFoundError, KeyError):
            continue
    return None


def _panels(example: dict) -> list[tuple[str, np.ndarray]]:
    order = (("degraded", "degraded input"), ("mask", "mask"), ("restored", "restored"), ("classical", "classical"),
             ("true_mask", "true mask"), ("clean", "clean"))
    return [(title, np.asarray(example[key])) for key, title in order if key in example]


def plot_restoration(trials: pd.DataFrame, evaluations: pd.DataFrame, out_path, sweep=None) -> None:
    out_path = Path(out_path)
    trials = trials[trials.status == "completed"]
    means = method_means(trials, evaluations)
    saved = _examples(trials, sweep)
    examples = saved["examples"] if saved else []
    columns = max((len(_panels(e)) for e in examples), default=0)
    rows = 1 + len(examples)
    fig = Figure(figsize=(max(10.0, 2.2 * columns), 4.5 + 2.2 * len(examples)), dpi=100)
    FigureCanvasAgg(fig)
    scores = list(means.columns)  # a panel per score (mean over the test images): PSNR, SSIM or the detector's
    width = max(columns, len(scores), 1)
    grid = fig.add_gridspec(rows, width, height_ratios=[2.0] + [1.0] * len(examples))
    for k, score in enumerate(scores):
        ax = fig.add_subplot(grid[0, k * width // len(scores):(k + 1) * width // len(scores)])
        ax.bar(np.arange(len(means)), means[score], color=[f"C{j % 10}" for j in range(len(means))])
        ax.set_xticks(np.arange(len(means)), means.index, rotation=30, ha="right", fontsize=7)
        ax.set_title(score, fontsize=9)
    for i, example in enumerate(examples):
        for j, (title, img) in enumerate(_panels(example)):
            ax = fig.add_subplot(grid[1 + i, j])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1 if img.max() <= 1 else 255)
            ax.set_title(f"{title}" + (f" ({example['name']})" if j == 0 else ""), fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path)
