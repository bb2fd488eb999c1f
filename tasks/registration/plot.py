"""The figures of Shu et al. (MICCAI 2021): Dice per region group for each method (box plots, like the paper's
figure of results), a Table 1-like table (average Dice, parameters, GMACs) written beside the PNG as Markdown, and
the middle slice of the fixed, moving and warped volume with the deformation grid for one test pair; for a learned
model also Fig. 3 (top: each accumulative step's displacement field as a grid; bottom: the moving image, the images
warped by the steps M_1, M_2, final, and the fixed image) and Fig. 4(a, c) (the moving and fixed image, and the
intensity differences between warping stages |M_1 - M|, |M_2 - M_1|, |final - M_2|, brighter for larger; Fig. 4(b),
LapIRN's stages, needs LapIRN, which sweeplab does not have). VoxelMorph has one step, so its rows have one field
and one difference.

A "method" is one trial: its ``model`` and, when a sweep varies them, the settings that tell its trials apart
(windows, lambda_, the ablation switches). Failed and stopped trials are left out. The slice panels need the
sweep's artifacts (the first test pair of the best learned trial, kept by ``train.evaluate``); without them the
figure has the box plots only.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sweeplab.api import open_source

logger = logging.getLogger(__name__)
SETTINGS = ("decoder", "uncoupled", "accumulative", "final_warp", "vm_width", "windows", "ncc", "lambda_",
            "syn_metric", "syn_iterations")


def labels(trials: pd.DataFrame) -> dict[str, str]:
    """trial_id -> a short name: the model, plus the settings that differ between the sweep's trials."""
    varied = [c for c in SETTINGS if c in trials and trials[c].astype(str).nunique() > 1]
    out = {}
    for _, t in trials.iterrows():
        extra = [f"{c}={_shown(t[c])}" for c in varied if pd.notna(t[c])]
        out[t.trial_id] = t.model + (f" ({', '.join(extra)})" if extra else "")
    return out


def _shown(value) -> str:
    """A setting as a label shows it: a whole number without ".0" (an integer column with gaps reads as floats)."""
    return f"{value:g}" if isinstance(value, float) and value.is_integer() else str(value)


def table(trials: pd.DataFrame, evaluations: pd.DataFrame) -> str:
    """Table 1 as Markdown: Dice per region group and their average, then parameters and GMACs."""
    names = labels(trials)
    per_group = (evaluations.groupby(["trial_id", "pair", "group"]).dice.mean()  # a group's Dice in one pair
                 .groupby(["trial_id", "group"]).mean().unstack("group"))
    groups = list(per_group.columns)
    head = ["method", *groups, "avg.", "folding %", "s / pair", "params", "GMACs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, t in trials.iterrows():
        g = per_group.loc[t.trial_id] if t.trial_id in per_group.index else pd.Series(dtype=float)
        cells = [names[t.trial_id], *(f"{g.get(k, np.nan):.3f}" for k in groups), f"{t.dice:.3f}",
                 f"{t.folding_percent:.3f}", f"{t.seconds_per_pair:.2f}",
                 f"{t.params / 1e3:.2f}K" if t.params else "-", f"{t.gmacs:.2f}" if t.gmacs else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _grid(ax, flow: np.ndarray, every: int = 4) -> None:
    """Grid lines of an axial slice moved by its in-plane displacement ``flow`` (2, X, Y): x to the right, y up,
    as the slices are shown."""
    nx, ny = flow.shape[1:]
    xx, yy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x, y = xx + flow[0], yy + flow[1]
    for i in range(0, nx, every):
        ax.plot(x[i], y[i], color="C0", lw=0.6)
    for j in range(0, ny, every):
        ax.plot(x[:, j], y[:, j], color="C0", lw=0.6)
    ax.set_xlim(0, nx - 1)
    ax.set_ylim(0, ny - 1)
    ax.set_aspect("equal")


def _example(trials: pd.DataFrame, sweep):
    """The kept example slices of the best learned trial (then of any trial), or None."""
    if sweep is None:
        return None
    from .config import LEARNED
    from .train import EXAMPLE
    order = trials.assign(learned=trials.model.isin(LEARNED)).sort_values(
        ["learned", "dice"], ascending=False)
    for trial_id in order.trial_id:
        try:
            return open_source(f"{sweep}/{trial_id}").load(EXAMPLE)
        except (FileNotFoundError, KeyError):
            continue
    return None


def step_differences(example: dict) -> list[np.ndarray]:
    """Fig. 4's |M_1 - M|, |M_2 - M_1|, ..., |final - M_(k-1)| of a kept example's slices."""
    stages = [np.asarray(example["moving"]), *np.asarray(example["steps_warped"])]
    return [np.abs(b - a) for a, b in zip(stages[:-1], stages[1:])]


def _image(fig, rows: int, cols: int, index: int, img, title: str, cmap: str = "gray"):
    a = fig.add_subplot(rows, cols, index)
    a.imshow(np.asarray(img).T, cmap=cmap, origin="lower")  # x (axis 0) to the right, y up
    a.set_title(title, fontsize=9)
    a.axis("off")
    return a


def figures_3_and_4(fig, example: dict, rows: int) -> None:
    """Rows 3-5 of the figure (module docstring): Fig. 3's fields and images, Fig. 4's step differences."""
    flows, warped = np.asarray(example["steps_flow"]), np.asarray(example["steps_warped"])
    k, cols = len(flows), len(flows) + 2
    for i, flow in enumerate(flows):
        a = fig.add_subplot(rows, cols, 2 * cols + 2 + i)
        _grid(a, flow)
        a.set_title(f"Fig. 3: phi_{i + 1}", fontsize=9)
        a.axis("off")
    stages = [("M", example["moving"]), *((f"M_{i + 1}" if i < k - 1 else "final", w) for i, w in enumerate(warped)),
              ("F", example["fixed"])]
    for i, (name, img) in enumerate(stages):
        _image(fig, rows, cols, 3 * cols + 1 + i, img, f"Fig. 3: {name}")
    names = ["M", *(f"M_{i + 1}" for i in range(k - 1)), "final"]
    _image(fig, rows, cols, 4 * cols + 1, example["moving"], "Fig. 4(a): M")
    for i, diff in enumerate(step_differences(example)):
        _image(fig, rows, cols, 4 * cols + 2 + i, diff, f"Fig. 4(c): |{names[i + 1]} - {names[i]}|", cmap="magma")
    _image(fig, rows, cols, 5 * cols, example["fixed"], "Fig. 4(a): F")


def plot_registration(trials: pd.DataFrame, evaluations: pd.DataFrame, out_path, sweep=None) -> None:
    """Write the PNG to ``out_path`` and the table to ``out_path`` with the suffix ``.md``."""
    out_path = Path(out_path)
    trials = trials[trials.status == "completed"]
    evaluations = evaluations[evaluations.trial_id.isin(trials.trial_id)]
    out_path.with_suffix(".md").write_text(table(trials, evaluations))
    example = _example(trials, sweep)
    steps = example is not None and "steps_flow" in example
    rows = 1 + (example is not None) + 3 * steps
    fig = Figure(figsize=(14.0, 5.0 + 4.0 * (rows - 1)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(rows, 1, 1)
    names = labels(trials)
    groups = sorted(evaluations.group.dropna().unique())
    per_pair = evaluations.groupby(["trial_id", "pair", "group"]).dice.mean().reset_index()
    width = 0.8 / max(len(trials), 1)
    for k, trial_id in enumerate(trials.trial_id):
        data = [per_pair[(per_pair.trial_id == trial_id) & (per_pair.group == g)].dice.dropna().to_numpy()
                for g in groups]
        pos = np.arange(len(groups)) + (k - (len(trials) - 1) / 2) * width
        box = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, manage_ticks=False)
        for patch in box["boxes"]:
            patch.set_facecolor(f"C{k % 10}")
        ax.plot([], [], color=f"C{k % 10}", lw=6, label=names[trial_id])
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("Dice (per test pair)")
    ax.set_title("Dice per region group")
    ax.legend(fontsize=8, loc="lower right")
    if example is not None:
        panels = [("fixed", example["fixed"]), ("moving", example["moving"]),
                  (f"warped ({example['method']})", example["warped"])]
        for i, (title, img) in enumerate(panels):
            _image(fig, rows, 4, 5 + i, img, title)
        a = fig.add_subplot(rows, 4, 8)
        _grid(a, example["flow"])
        a.set_title(f"deformation, {example['pair']}", fontsize=9)
        a.axis("off")
    if steps:
        figures_3_and_4(fig, example, rows)
    fig.tight_layout()
    fig.savefig(out_path)
