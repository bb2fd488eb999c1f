"""Segment-level metrics of Kanezaki, "Unsupervised image segmentation by backpropagation" (ICASSP 2018), Section 3.

Section 3: "We calculated the intersection over union (IoU) of each estimated segment and ground truth segments and
regarded the IoU as correct if the maximum IoU is larger than 0.5"; Fig. 3 gives "the F-measure per image, which
is the harmonic mean of precision and recall"; Fig. 4 gives "precision-recall curves with an IoU threshold 0.5 and
0.7 ... segments were arranged in order of decreasing size", summarised by average precision (AP).

Choices the paper leaves open. Section 3 defines correctness and the size order, and reports AP per method at IoU
0.5 and 0.7 (k-means 0.049 / 0.0129, GS 0.1161 / 0.0449, proposed 0.1394 / 0.0578), but does not say how the PR
curve is pooled over the 200 images, how the several annotators of an image are combined, or how AP is computed
from the curve. Each choice below changes the numbers, so ours are comparable with the paper's in kind, not
necessarily in value.

1. **Pooling the PR curve over images.** Possible: (a) one ranking of all segments of all images by decreasing
   size (micro, large images' segments first); (b) a curve, or an AP, per image, then averaged over images (macro);
   (c) *ours*, rank-wise pooling: within each image, segments are ranked by decreasing size (ties by segment id);
   the curve's n-th point pools the top-n segments of every image (all of them for an image with fewer than n):
   precision(n) = correct among them / their number, recall(n) = correct among them / all GT segments of all
   images. The curve has max_i S_i points; images weigh by their numbers of segments and GT segments (an image
   with many segments shapes the tail). :func:`pool_pr`.
2. **Several annotators** (BSDS500 has 5-9 per image). Possible: (a) the best annotator per image (max F or AP over
   annotators: it rewards matching whichever granularity a method happens to have, and grows with the number of
   annotators); (b) a segment correct when it is correct for any annotator (raises precision); (c) every
   annotation as an image of its own; (d) *ours*, the mean over the image's annotations: F, precision and recall
   are computed against each annotation and averaged (F is the mean of the per-annotation F, not the F of the mean
   P and R); for the PR curve a segment counts as the fraction of annotations for which it is correct and the GT
   count is the mean over annotations. For the PR curve of one image, (d) equals (c); over images, (c) would weigh
   an image by its number of annotators and (d) weighs every image alike (and Fig. 3 has one F per image). The
   mean is also what the BSDS500 region benchmarks (covering, PRI, VI) do.
3. **AP from the curve.** Possible: the area under the step curve (no interpolation); PASCAL VOC's all-point
   interpolation (P(n) replaced by max_{m >= n} P(m)), which can only raise AP; VOC 2007's 11-point average;
   extending the curve to recall 1. *Ours* (the ``ap50`` and ``ap70`` of ``trials``): the step area without
   interpolation, sum_n (R(n) - R(n-1)) P(n) with R(0) = 0 (as scikit-learn's ``average_precision_score``), the
   curve ending where it ends; ``ap(..., interpolated=True)`` gives the all-point VOC variant. Recall rarely
   reaches 1 (a GT segment that no predicted segment matches is never found), so AP is bounded by the final
   recall.

Smaller choices, also made here:

* Precision = predicted segments whose best IoU with a ground-truth (GT) segment is > t, over predicted segments.
  Recall = GT segments whose best IoU with a predicted segment is > t, over GT segments. "Larger than" is strict.
* For t >= 0.5 a segment can have IoU > t with at most one segment of the other partition (IoU(P, G) > 0.5 needs
  |P & G| > |P| / 2 and > |G| / 2), so correct predicted segments and found GT segments match one to one: their
  counts are equal, and the GT found by a set of predicted segments is the number of correct ones among them.
  That makes the PR curve well defined from per-segment flags; thresholds below 0.5 are refused.
* GT segments are the annotation's labels as given (no connected components are extracted from them).

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
