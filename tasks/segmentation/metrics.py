"""Segment-level metrics of Kanezaki, "Unsupervised image segmentation by backpropagation" (ICASSP 2018), Section 3.

Section 3: "We calculated the intersection over union (IoU) of each estimated segment and ground truth segments and
regarded the IoU as correct if the maximum IoU is larger than 0.5"; Fig. 3 gives "the F-measure per image, which
is the harmonic mean of precision and recall"; Fig. 4 gives "precision-recall curves with an IoU threshold 0.5 and
0.7 ... segments were arranged in order of decreasing size", summarised by average precision (AP).

Choices the paper leaves open, made here:

* Precision = predicted segments whose best IoU with a ground-truth (GT) segment is > t, over predicted segments.
  Recall = GT segments whose best IoU with a predicted segment is > t, over GT segments. "Larger than" is strict.
* For t >= 0.5 a segment can have IoU > t with at most one segment of the other partition (IoU(P, G) > 0.5 needs
  |P & G| > |P| / 2 and > |G| / 2), so correct predicted segments and found GT segments match one to one: their
  counts are equal, and the GT found by a set of predicted segments is the number of correct ones among them.
  That makes the PR curve well defined from per-segment flags; thresholds below 0.5 are refused.
* Several annotators (BSDS500 has 5-9 per image): every quantity is computed against each annotation and averaged
  over the annotations of the image (F is the mean of the per-annotation F, not the F of the mean P and R). The
  mean, not the max, is what the BSDS500 region benchmarks (covering, PRI, VI) do; the max would reward a method for
  matching whichever annotator's granularity it happens to have, and grows with the number of annotators.
* GT segments are the annotation's labels as given (no connected components are extracted from them).
* PR curves: within each image, segments are ranked by decreasing size (ties by segment id); the curve's n-th point
  pools the top-n segments of every image (all of them for an image with fewer than n): precision(n) = correct
  among them / their number, recall(n) = correct among them / all GT segments. Images weigh by their segments and
  GT segments; annotators are averaged within an image (per-segment correct fractions, mean GT count).
* AP is the area under the step PR curve without interpolation, sum_n (R(n) - R(n-1)) P(n) with R(0) = 0 (as in
  scikit-learn's ``average_precision_score``); ``interpolated=True`` gives the PASCAL VOC variant, where P(n) is
  replaced by max_{m >= n} P(m). Recall rarely reaches 1, so AP is bounded by the final recall.

:func:`image_metrics` returns one row per image (the per-segment flags ``pr_{100 t}_correct`` are lists, a list
column of ``evaluations``); :func:`pool_pr` and :func:`ap` pool rows.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

IOU_THRESHOLD = 0.5  # Section 3: a segment is correct when its maximum IoU is larger than 0.5
PR_THRESHOLDS = (0.5, 0.7)  # Fig. 4: PR curves and AP at IoU 0.5 and 0.7


def _dense(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..S-1 in the order of their sorted values, flattened; and S."""
    values, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return inverse.ravel(), len(values)


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU (S_pred, S_gt) of every predicted segment with every GT segment, from their joint histogram.

    Rows and columns follow the sorted label values of ``pred`` and ``gt`` (0..S-1 for dense labels).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    p, n_p = _dense(pred)
    g, n_g = _dense(gt)
    joint = np.bincount(p * n_g + g, minlength=n_p * n_g).reshape(n_p, n_g).astype(np.float64)
    union = joint.sum(1, keepdims=True) + joint.sum(0, keepdims=True) - joint
    return joint / union  # union >= the segment's area >= 1


def _pr_key(t: float) -> str:
    return f"pr_{round(100 * t)}_correct"


def image_metrics(pred: np.ndarray, gts: Sequence[np.ndarray],
                  thresholds: Sequence[float] = PR_THRESHOLDS) -> dict:
    """Metrics of one predicted segmentation (H, W) against the image's annotations ``gts`` (each (H, W)).

    Returns a flat dict (module docstring for the definitions):

    * ``f_measure``, ``precision``, ``recall``: at IoU > 0.5, mean over annotations;
    * ``n_segments``: predicted segments; ``n_gt_segments``: GT segments, mean over annotations (float);
      ``n_annotators``;
    * ``pr_50_correct``, ``pr_70_correct`` (one per threshold t, key ``pr_{100 t}_correct``): for the predicted
      segments in decreasing size, the fraction of annotations for which the segment is correct at IoU > t.
    """
    if not len(gts):
        raise ValueError("need at least one ground-truth annotation")
    if min(thresholds) < 0.5:
        raise ValueError("PR thresholds below 0.5 are not supported (module docstring)")
    ids, n_seg = _dense(pred)
    order = np.argsort(-np.bincount(ids, minlength=n_seg), kind="stable")  # decreasing size, ties by id
    precision, recall, f, n_gt = [], [], [], []
    correct = {t: np.zeros(n_seg) for t in thresholds}
    for gt in gts:
        iou = iou_matrix(ids.reshape(np.shape(pred)), gt)
        best_pred, best_gt = iou.max(1), iou.max(0)
        p = float(np.mean(best_pred > IOU_THRESHOLD))
        r = float(np.mean(best_gt > IOU_THRESHOLD))
        precision.append(p)
        recall.append(r)
        f.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
        n_gt.append(iou.shape[1])
        for t in thresholds:
            correct[t] += best_pred[order] > t
    row = {"f_measure": float(np.mean(f)), "precision": float(np.mean(precision)),
           "recall": float(np.mean(recall)), "n_segments": int(n_seg),
           "n_gt_segments": float(np.mean(n_gt)), "n_annotators": len(gts)}
    for t in thresholds:
        row[_pr_key(t)] = (correct[t] / len(gts)).tolist()
    return row


def pool_pr(rows: Iterable[Mapping], t: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (each of length max_i S_i) at rank cutoffs n = 1, 2, ..., pooled over images.

    ``rows`` are :func:`image_metrics` rows (e.g. ``df.to_dict("records")`` of the results table).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to pool")
    flags = [np.asarray(row[_pr_key(t)], dtype=np.float64) for row in rows]
    n_gt = sum(float(row["n_gt_segments"]) for row in rows)
    sizes = np.array([len(x) for x in flags])
    ranks = np.concatenate([np.arange(s) for s in sizes])
    per_rank_correct = np.bincount(ranks, weights=np.concatenate(flags), minlength=sizes.max())
    per_rank_segments = np.bincount(ranks, minlength=sizes.max())  # images with at least n segments
    correct = np.cumsum(per_rank_correct)
    return correct / np.cumsum(per_rank_segments), correct / n_gt


def average_precision(precision: np.ndarray, recall: np.ndarray, interpolated: bool = False) -> float:
    """Area under the step PR curve, sum_n (R(n) - R(n-1)) P(n), R(0) = 0; VOC-interpolated if asked."""
    precision, recall = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    if interpolated:
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def ap(rows: Iterable[Mapping], t: float = 0.5, interpolated: bool = False) -> float:
    """AP at IoU threshold ``t`` of the pooled PR curve of ``rows`` (Fig. 4)."""
    return average_precision(*pool_pr(rows, t), interpolated=interpolated)
