"""Per-image segmentation spread over a trial's workers, and its evaluation (Kanezaki 2018, Section 3).

The method optimises one network per image, and the baselines need no training, so the task's "training" is the
segmentation of every image. Images are independent: rank r of a trial with W workers segments images r, r + W,
r + 2W, ... and after each round of W images the rows are gathered on every rank (``ctx.all_gather``), reported
(images done, running mean F-measure) and checkpointed, so a retried or resumed trial skips the images it already
did. We spread a trial's images over its workers rather than making one trial per image so that one trial stays
one configuration (one row in ``trials``, its AP pooled over all its images as in the paper) while
``resources.workers`` still scales it out; Tune runs the configurations side by side.

Each image's prediction is turned into segments = connected components of its clusters (Section 3) and scored
against every annotation (:func:`.metrics.image_metrics`); ``evaluations`` gets one row per (trial, image).
The task is ``parallel="split"``: no model is shared between ranks (each image trains its own network), so there
is no gradient to average and no global batch. The images are all read by ``load_data`` before training, so
there is no data wait to time here; the network's forward passes run under ``ctx.autocast()`` (``method.py``).

The segments of the first ``cfg.keep_label_maps`` images are PNG-encoded by the rank that made them, gathered and
checkpointed with the rows, and kept as the artifact ``label_maps`` once all images are done (``label_maps.py``);
they are not part of the rows.
"""
from __future__ import annotations

import math
import time

import numpy as np

from sweeplab.api import Evaluation

from . import label_maps
from .baselines import connected_segments, felzenszwalb_segment, kmeans_segment
from .metrics import PR_THRESHOLDS, _pr_key, ap, image_metrics

# The task's declarations. Rows of ``evaluations`` (one per image): what :func:`train` adds, then
# :func:`.metrics.image_metrics`'s keys; the per-segment PR flags are lists (one value per predicted segment).
PR_COLUMNS = tuple(_pr_key(t) for t in PR_THRESHOLDS)
ROW_TYPES = {"image": str, "method": str, "height": int, "width": int, "seconds": float, "f_measure": float,
             "precision": float, "recall": float, "n_segments": int, "n_gt_segments": float, "n_annotators": int,
             **{key: list[float] for key in PR_COLUMNS}}
METRIC_TYPES = {"f_measure": float, "precision": float, "recall": float, "ap50": float, "ap70": float,
                "segments_per_image": float}
REPORTS = ("images_done", "progress", "mean_f_measure")  # what :func:`train` passes to ``ctx.report``


def _predict(cfg, image: np.ndarray, ctx, seed: int) -> np.ndarray:
    if cfg.method == "cnn":
        from .method import segment
        return connected_segments(segment(image, cfg, ctx.device, seed, autocast=ctx.autocast))
    if cfg.method == "kmeans":
        return kmeans_segment(image, cfg.alpha, cfg.k, seed)
    return felzenszwalb_segment(image, cfg.threshold)


def train(cfg, data, ctx) -> list[dict]:
    """Segment and score every image (see the module docstring); returns all rows, on every rank."""
    samples = data.images
    n, world = len(samples), ctx.world_size
    rows: list[dict] = []
    maps: dict[str, bytes] = {}  # image name -> PNG of its segments, for the first cfg.keep_label_maps images
    start = 0
    if (ckpt := ctx.load_checkpoint()) is not None:
        rows, start, maps = list(ckpt["rows"]), int(ckpt["round"]), dict(ckpt.get("maps", {}))
    for rnd in range(start, math.ceil(n / world)):
        i = rnd * world + ctx.rank
        mine = []  # (row, PNG or None) of this rank's image
        if i < n:
            sample = samples[i]
            t0 = time.perf_counter()
            pred = _predict(cfg, sample.image, ctx, ctx.seed + i)
            row = {"image": sample.name, "method": cfg.method, "height": pred.shape[0], "width": pred.shape[1],
                   "seconds": time.perf_counter() - t0, **image_metrics(pred, sample.gts)}
            mine.append((row, label_maps.encode(pred) if i < cfg.keep_label_maps else None))
        for row, png in (pair for part in ctx.all_gather(mine) for pair in part):
            rows.append(row)
            if png is not None:
                maps[row["image"]] = png
        done, mean_f = min(n, (rnd + 1) * world), float(np.mean([r["f_measure"] for r in rows]))
        ctx.report({"images_done": done, "progress": done / n, "mean_f_measure": mean_f},
                   checkpoint={"rows": rows, "round": rnd + 1, "maps": maps})
        ctx.log(f"{done}/{n} images, mean F-measure {mean_f:.4f}")
    if maps:  # in the data's order (rounds, then ranks); every rank has them, the core keeps rank 0's
        ctx.save_artifact(label_maps.ARTIFACT, {"maps": maps})
    return sorted(rows, key=lambda r: r["image"])


def evaluate(cfg, rows, data, ctx):
    """Trial metrics: mean F-measure, precision and recall per image; AP at IoU 0.5 and 0.7 pooled over images."""
    metrics = {key: float(np.mean([r[key] for r in rows])) for key in ("f_measure", "precision", "recall")}
    metrics.update(ap50=float(ap(rows, 0.5)), ap70=float(ap(rows, 0.7)),
                   segments_per_image=float(np.mean([r["n_segments"] for r in rows])))
    return Evaluation(metrics, rows)
