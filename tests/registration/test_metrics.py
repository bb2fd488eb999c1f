"""Dice per label and per region group against direct computations; labels warped by nearest neighbour."""
from __future__ import annotations

import math

import numpy as np
import torch

from sweeplab.tasks.registration.metrics import dice, group_dice, warp_labels


def direct_dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    return 2.0 * np.logical_and(x, y).sum() / (x.sum() + y.sum())


def test_dice_matches_the_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.choice([0, 3, 7, 1002, 2035], size=(9, 10, 11))
    b = np.where(rng.random(a.shape) < 0.7, a, rng.choice([0, 3, 7, 1002, 2035], size=a.shape))
    got = dice(a, b, [3, 7, 1002, 2035])
    assert set(got) == {3, 7, 1002, 2035}
    for label, value in got.items():
        assert math.isclose(value, direct_dice(a, b, label), rel_tol=1e-12)
    assert 0.6 < got[3] < 1.0


def test_dice_of_a_label_absent_from_both_is_nan_and_other_labels_are_ignored():
    a = np.zeros((4, 4, 4), int)
    a[:2] = 5
    b = a.copy()
    b[0] = 9  # a label nobody asked for
    got = dice(a, b, [5, 6])
    assert got[5] == direct_dice(a, b, 5) and math.isnan(got[6])
    assert dice(a, a, [5])[5] == 1.0


def test_group_dice_is_the_mean_over_labels_with_a_dice():
    per_label = {1: 0.5, 2: 0.7, 3: math.nan, 4: 0.2, 5: 0.9}
    groups = {1: "frontal", 2: "frontal", 3: "frontal", 4: "occipital", 6: "temporal"}
    got = group_dice(per_label, groups)
    assert got == {"frontal": 0.6, "occipital": 0.2}  # label 5 has no group; temporal has no label evaluated
    assert math.isnan(group_dice({1: math.nan}, groups)["frontal"])


def test_warp_labels_is_nearest_neighbour_and_keeps_the_dtype():
    labels = torch.zeros((1, 1, 6, 6, 6), dtype=torch.int64)
    labels[..., 1:3, 1:3, 1:3] = 2035
    flow = torch.zeros((1, 3, 6, 6, 6))
    flow[:, 0] = -1.4  # read 1.4 voxels back along axis 0: rounds to one voxel
    out = warp_labels(labels, flow)
    assert out.dtype == torch.int64 and set(out.unique().tolist()) == {0, 2035}  # no blended label values
    assert torch.equal(out[..., 2:4, 1:3, 1:3], labels[..., 1:3, 1:3, 1:3])
