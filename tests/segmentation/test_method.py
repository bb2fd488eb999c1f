"""Kanezaki 2018, Algorithm 1: the network, the superpixel refinement, and the per-image loop (``segment``)
against the authors' way of running it (``authors_loop_segment``)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sweeplab.tasks.segmentation.config import SegmentationConfig
from sweeplab.tasks.segmentation.method import (authors_loop_segment, authors_refine, refine_labels, segment,
                                                superpixel_members, superpixels)
from sweeplab.tasks.segmentation.model import SegNet, build_model


def _naive_refine(labels: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Majority label per superpixel, one superpixel at a time; ties to the smallest label."""
    out = labels.copy()
    for k in np.unique(sp):
        mask = sp == k
        counts = np.bincount(labels[mask])
        out[mask] = int(np.flatnonzero(counts == counts.max())[0])
    return out


def test_refine_labels_hand_computed():
    # 3x4 grid, superpixel 0 = left two columns, 1 = right two columns.
    sp = torch.tensor([[0, 0, 1, 1]] * 3)
    labels = torch.tensor([[2, 2, 0, 1],
                           [2, 5, 1, 1],
                           [3, 2, 0, 0]])
    # left: label 2 four times out of six -> 2; right: 0 three times, 1 three times -> tie -> smallest, 0.
    expected = torch.tensor([[2, 2, 0, 0]] * 3)
    out = refine_labels(labels, sp, n_sp=2, q=6)
    assert out.shape == labels.shape and out.dtype == torch.int64
    assert torch.equal(out, expected)


@pytest.mark.parametrize("q", [2, 7, 100])
def test_refine_labels_matches_naive_loop(q):
    rng = np.random.default_rng(q)
    sp = rng.integers(0, 40, size=(23, 31))
    sp = np.unique(sp, return_inverse=True)[1].reshape(sp.shape)  # ids 0..n_sp-1, all used
    labels = rng.integers(0, q, size=sp.shape)
    out = refine_labels(torch.from_numpy(labels), torch.from_numpy(sp), int(sp.max()) + 1, q)
    np.testing.assert_array_equal(out.numpy(), _naive_refine(labels, sp))
    theirs = authors_refine(labels.reshape(-1).copy(), superpixel_members(sp))  # demo.py's loop, same tie rule
    np.testing.assert_array_equal(out.numpy().reshape(-1), theirs)


def test_superpixels_are_dense_ids():
    rng = np.random.default_rng(0)
    image = rng.random((40, 60, 3)).astype(np.float32)
    sp = superpixels(image, K=30, compactness=100.0)
    assert sp.shape == (40, 60) and sp.dtype == np.int64
    assert np.array_equal(np.unique(sp), np.arange(sp.max() + 1)) and 10 <= sp.max() + 1 <= 60


def test_segnet_shapes_and_final_batchnorm():
    torch.manual_seed(0)
    model = SegNet(M=2, p=16, q=12).train()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == \
        [(3, 16, (3, 3)), (16, 16, (3, 3)), (16, 12, (1, 1))]
    assert list(model.modules())[-1].__class__ is torch.nn.BatchNorm2d
    assert all(torch.all(c.bias == 0) for c in convs)  # Xavier weights, zero biases
    bound = (6 / (16 * 9 + 16 * 9)) ** 0.5  # Glorot uniform bound of the middle 3x3 conv
    assert convs[1].weight.abs().max() <= bound and convs[1].weight.abs().max() > 0.9 * bound
    y = model(torch.rand(1, 3, 17, 23))
    assert y.shape == (1, 12, 17, 23)
    # Eq. (2): each response channel normalised over the N pixels of the image.
    mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(var, torch.ones(12), atol=1e-2, rtol=0)


def test_segnet_seeded_and_all_parameters_trained():
    a, b = SegNet(3, 8, 8), SegNet(3, 8, 8)
    a.reset_parameters(torch.Generator().manual_seed(3))
    b.reset_parameters(torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    # Every component is registered (and trained): 3 x (conv w, b, bn w, b) + (w, b) + (w, b).
    assert len(list(a.parameters())) == 3 * 4 + 4


def test_build_model_on_meta():
    cfg = SegmentationConfig(M=2, p=10, q=5)
    with torch.device("meta"):
        model = build_model(cfg)
    assert isinstance(model, SegNet) and (model.M, model.p, model.q) == (2, 10, 5)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert build_model(dataclasses.replace(cfg, method="kmeans")) is None


def _halves(h: int = 24, w: int = 32) -> np.ndarray:
    image = np.empty((h, w, 3), np.float32)
    image[:, : w // 2] = (0.9, 0.15, 0.1)
    image[:, w // 2:] = (0.1, 0.3, 0.85)
    return image


def test_segment_two_flat_halves():
    cfg = SegmentationConfig(M=2, p=16, q=16, T=30, K=50)
    labels = segment(_halves(), cfg, "cpu", seed=0)
    assert labels.shape == (24, 32) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < cfg.q
    left, right = labels[:, :16], labels[:, 16:]
    major_l, major_r = np.bincount(left.ravel()).argmax(), np.bincount(right.ravel()).argmax()
    assert major_l != major_r
    assert (left == major_l).mean() >= 0.95 and (right == major_r).mean() >= 0.95


def test_segment_agrees_with_authors_loop():
    rng = np.random.default_rng(1)
    image = np.clip(_halves(20, 28) + 0.1 * rng.standard_normal((20, 28, 3)), 0, 1).astype(np.float32)
    cfg = SegmentationConfig(M=2, p=12, q=12, T=8, K=40)
    ours = segment(image, cfg, torch.device("cpu"), seed=5)
    theirs = authors_loop_segment(image, cfg, torch.device("cpu"), seed=5)
    assert len(np.unique(ours)) > 1  # a non-trivial labelling, so agreement means something
    # Same weights, SLIC and tie rule (refinement equality is exact, test above); only the loss layout differs,
    # (1, q, H, W) here against (N, q) there, so float sums may round differently: allow a near-tie to flip.
    assert (ours == theirs).mean() >= 0.99
    other_seed = segment(image, cfg, "cpu", seed=6)
    assert (ours != other_seed).any()  # the seed matters (different initial weights)


def test_min_labels_early_stop():
    cfg = SegmentationConfig(M=1, p=8, q=8, T=40, K=20, min_labels=3)
    calls: list[tuple[int, int, float]] = []
    segment(_halves(16, 16), cfg, "cpu", seed=0, log=lambda t, n, loss: calls.append((t, n, loss)))
    assert 1 <= len(calls) < cfg.T
    assert [t for t, _, _ in calls] == list(range(1, len(calls) + 1))
    assert calls[-1][1] <= 3 and all(n > 3 for _, n, _ in calls[:-1])
    full: list = []
    segment(_halves(16, 16), dataclasses.replace(cfg, min_labels=0), "cpu", seed=0, log=lambda *a: full.append(a))
    assert len(full) == cfg.T  # min_labels = 0: all T iterations, as in the paper
