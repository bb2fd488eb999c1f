"""A Figure 2-like panel of Kanezaki, "Unsupervised image segmentation by backpropagation" (ICASSP 2018, Section 3;
Fig. 2: "Example results of the proposed method. Different segments are shown in different colors"), with the
baselines beside the method.

One row per kept image; columns: the image, the segments of the selected configuration of each method the sweep
has (proposed, k-means, GS, in that order), and the ground truth of the image's first annotator. A method's
configuration is its highest-scoring curve of the Fig. 3 panel (the ranking of ``plot_selection``, ``plot.py``);
its trial's kept label maps (``label_maps.py``: the first ``keep_label_maps`` images of the trial) are drawn. The
image and its ground truth come from the task's data loader (``data.load_data``) with that trial's data settings,
matched by image name. A segment's colour is a fixed function of its id, distinct ids getting distinct colours;
colours do not correspond between columns, as in the paper's figure.

Written beside the main PNG as ``<stem>-figure2.png``. Without kept maps (a sweep from before ``keep_label_maps``,
or ``keep_label_maps`` = 0), or without the sweep's location, no panel is written and a warning says so; a method
whose trial kept no maps, an image a trial did not keep, or an image that cannot be loaded gets a cell with a note.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sweeplab.api import build, fields

from . import label_maps

logger = logging.getLogger(__name__)

SUFFIX = "-figure2"
_MIX = 2654435761  # odd, so id -> (id + 1) * _MIX mod 2**24 is one-to-one: distinct segments, distinct colours


def figure2_path(out_path) -> Path:
    """``<stem>-figure2.png`` beside ``out_path``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}{SUFFIX}.png")


def colours(labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a label map: one colour per label, distinct for labels below 2**24."""
    code = (np.asarray(labels, dtype=np.int64) + 1) * _MIX % 2**24
    return np.stack([(code >> s) & 255 for s in (16, 8, 0)], axis=-1).astype(np.uint8)


def _samples(config: dict, names: list[str]) -> dict:
    """{name: Sample} of a trial's first ``len(names)`` images, loaded with its data settings; {} (with a warning)
    when they cannot be loaded here (e.g. its ``data_dir`` is not on this machine)."""
    from .config import SegmentationConfig
    from .data import load_data
    known = fields(SegmentationConfig)
    try:
        cfg = build(SegmentationConfig, {k: v for k, v in config.items() if k in known and v is not None})
        cap = len(names) if cfg.n_images == 0 else min(cfg.n_images, len(names))  # the kept maps are the first
        data = load_data(dataclasses.replace(cfg, n_images=cap))
    except (ValueError, OSError) as exc:
        logger.warning("Figure 2 panel: the images cannot be loaded: %s", exc)
        return {}
    return {s.name: s for s in data.images if s.name in names}


def _cell(ax, picture: np.ndarray | None, note: str, shape) -> None:
    """Draw ``picture`` in ``ax``, or ``note`` when there is none or its size is not the image's (``shape``)."""
    if picture is not None and shape is not None and picture.shape[:2] != shape:
        picture, note = None, f"{picture.shape[0]}x{picture.shape[1]}, not the image's size"
    if picture is None:
        ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=7, transform=ax.transAxes)
    else:
        ax.imshow(picture, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_examples(curves, sweep, out_path) -> Path | None:
    """Write the panel (module docstring) for ``curves`` (``plot.select_curves``' Fig. 3 curves) beside
    ``out_path``; returns its path, or None when nothing was kept."""
    chosen = {}  # method -> its best curve, in the curves' (legend) order
    for curve in curves:
        if curve.method not in chosen or curve.score > chosen[curve.method].score:
            chosen[curve.method] = curve
    if not chosen:
        return None
    kept = {m: label_maps.load(sweep, c.trial_id) for m, c in chosen.items()} if sweep is not None else {}
    if not any(kept.values()):
        logger.warning("no Figure 2 panel: %s", "no sweep location given" if sweep is None else
                       "the selected trials (" + ", ".join(c.trial_id for c in chosen.values()) + ") kept no "
                       "label maps (a sweep from before keep_label_maps, or keep_label_maps = 0)")
        return None
    names = list(dict.fromkeys(name for got in kept.values() if got for name in got[1]))
    samples: dict = {}
    for got in kept.values():
        if got and any(name not in samples for name in got[1]):
            samples.update({k: v for k, v in _samples(got[0], list(got[1])).items() if k not in samples})

    heads = ["image", *(c.label for c in chosen.values()), "ground truth (annotator 1)"]
    fig = Figure(figsize=(2.4 * len(heads), 2.4 * len(names) + 0.3), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), len(heads), squeeze=False)
    for row, name in zip(axes, names):
        sample = samples.get(name)
        shape = sample.image.shape[:2] if sample is not None else None
        _cell(row[0], None if sample is None else sample.image, "image not found", None)
        for ax, got in zip(row[1:], kept.values()):
            maps = got[1] if got else {}
            _cell(ax, colours(maps[name]) if name in maps else None,
                  "not kept" if got else "no label maps kept", shape)
        _cell(row[-1], None if sample is None else colours(sample.gts[0]), "ground truth not found", None)
        row[0].set_ylabel(name, fontsize=8)
    for ax, head in zip(axes[0], heads):
        ax.set_title(head, fontsize=8)
    fig.tight_layout()
    path = figure2_path(out_path)
    fig.savefig(path, format="png")
    return path
