"""Evaluation of a registration (Shu et al., MICCAI 2021, Section 3 and Table 1): the moving labels warped by the
deformation, Dice per label against the fixed labels, and Dice per region group.

Dice of label l: 2 |A_l & B_l| / (|A_l| + |B_l|) over the voxels of the fixed labels A and the warped moving labels
B; a label absent from both volumes has no Dice (NaN, left out of every mean) rather than a perfect one. A region
group's Dice in one pair is the mean of its labels' Dice (the paper's Table 1 reports the five Mindboggle lobes and
IXI's four tissue classes this way); the pair's Dice is the mean over its groups (Table 1's "Avg.").
The folding measure is :func:`layers.folding_percent`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from .layers import warp


def warp_labels(labels: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """A label volume (B, 1, *size), integer, warped by a voxel-unit flow with nearest-neighbour sampling (labels
    cannot be interpolated); returned in the input's integer dtype. Exact for labels up to 2^24 (sampled as
    float32: Mindboggle's largest label is 2035)."""
    warped = warp(labels.to(flow.dtype), flow, mode="nearest")
    return warped.round().to(labels.dtype)


def dice(fixed: np.ndarray, warped: np.ndarray, labels: Iterable[int]) -> dict[int, float]:
    """{label: Dice of that label between the two label volumes}; NaN for a label found in neither. One pass
    over the volumes (a histogram of the (fixed, warped) label pairs), not one comparison per label."""
    if fixed.shape != warped.shape:
        raise ValueError(f"label volumes differ in shape: {fixed.shape} and {warped.shape}")
    labels = [int(label) for label in labels]
    index = {label: k + 1 for k, label in enumerate(labels)}  # 0: any label not evaluated

    def code(volume: np.ndarray) -> np.ndarray:
        lookup = np.zeros(int(max(volume.max(initial=0), max(labels, default=0))) + 1, np.int64)
        for label, k in index.items():
            lookup[label] = k
        return lookup[np.clip(volume.astype(np.int64), 0, None)]

    n = len(labels) + 1
    joint = np.bincount((code(fixed) * n + code(warped)).ravel(), minlength=n * n).reshape(n, n)
    both, in_fixed, in_warped = np.diag(joint), joint.sum(axis=1), joint.sum(axis=0)
    out = {}
    for label, k in index.items():
        total = in_fixed[k] + in_warped[k]
        out[label] = float(2.0 * both[k] / total) if total else math.nan
    return out


def group_dice(per_label: Mapping[int, float], groups: Mapping[int, str]) -> dict[str, float]:
    """{group: mean Dice of its labels that have one} for the labels of ``per_label`` that belong to a group;
    NaN for a group none of whose labels has a Dice."""
    members: dict[str, list[float]] = {}
    for label, value in per_label.items():
        if label in groups:
            members.setdefault(groups[label], [])
            if math.isfinite(value):
                members[groups[label]].append(value)
    return {g: float(np.mean(v)) if v else math.nan for g, v in members.items()}
