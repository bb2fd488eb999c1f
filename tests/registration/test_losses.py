"""Local NCC (both variants) against an explicit window loop and against MONAI; the multi-window loss (eq. 3); the
smoothness term against numpy, and why MONAI's DiffusionLoss is not it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiffusionLoss, LocalNormalizedCrossCorrelationLoss

from sweeplab.tasks.registration.losses import MultiWindowNCC, box_sum, local_ncc, smoothness


def _pair(shape, seed) -> tuple[torch.Tensor, torch.Tensor]:
    """Two related images in [0, 1]: a smooth-ish random volume and a noisy, contrast-changed copy."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(shape, generator=g, dtype=torch.float64)
    m = (0.7 * f + 0.3 * torch.rand(shape, generator=g, dtype=torch.float64)) ** 1.5
    return f, m


def _ncc_loop(f: np.ndarray, m: np.ndarray, w: int, squared: bool, eps: float = 1e-5) -> float:
    """Mean local NCC by an explicit loop over voxels, each window's values taken out of a zero-padded copy."""
    r = w // 2
    fp, mp = np.pad(f, r), np.pad(m, r)
    cc = np.empty(f.shape)
    for p in np.ndindex(*f.shape):
        window = tuple(slice(i, i + w) for i in p)
        a, b = fp[window].ravel(), mp[window].ravel()
        da, db = a - a.mean(), b - b.mean()
        cross, va, vb = (da * db).sum(), (da * da).sum(), (db * db).sum()
        cc[p] = cross ** 2 / (va * vb + eps) if squared else cross / np.sqrt(va * vb + eps)
    return float(cc.mean())


def test_box_sum_is_the_zero_padded_window_sum():
    x = torch.rand(1, 2, 5, 6, 7, dtype=torch.float64)
    got = box_sum(x, 3).numpy()
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1), (1, 1)))
    for p in np.ndindex(5, 6, 7):
        np.testing.assert_allclose(got[(0, slice(None), *p)],
                                   xp[0, :, p[0]:p[0] + 3, p[1]:p[1] + 3, p[2]:p[2] + 3].sum(axis=(1, 2, 3)))


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("window", [3, 5])
def test_local_ncc_matches_a_window_loop(squared, window):
    f, m = _pair((1, 1, 6, 5, 7), 0)
    got = float(local_ncc(f, m, window, squared=squared))
    assert got == pytest.approx(_ncc_loop(f[0, 0].numpy(), m[0, 0].numpy(), window, squared), rel=1e-10)


def test_local_ncc_in_2d_matches_a_window_loop():
    f, m = _pair((1, 1, 9, 8), 1)
    for squared in (True, False):
        assert float(local_ncc(f, m, 5, squared)) == pytest.approx(
            _ncc_loop(f[0, 0].numpy(), m[0, 0].numpy(), 5, squared), rel=1e-10)


def test_squared_ncc_matches_monai():
    # MONAI: forward(pred, target) = -mean(cross^2 / (max(var_t, 1e-5) max(var_p, 1e-5))), zero padding,
    # rectangular kernel of ones: the negative of our squared NCC, which adds eps = 1e-5 to the product instead.
    f, m = _pair((2, 1, 16, 32, 16), 2)
    f, m = f.float(), m.float()
    for w in (11, 9, 7):
        monai = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=w, kernel_type="rectangular")
        ours, theirs = float(local_ncc(f, m, w)), float(monai(m, f))
        assert theirs < 0 < ours
        assert abs(-ours - theirs) < 1e-6, (w, ours, theirs)  # seen: <= 1.2e-7 (float32), 1.4e-8 in float64


def test_squared_ncc_is_monais_formula_when_the_eps_conventions_vanish():
    # in float64 with both small constants at 1e-12 the two agree to rounding: the remaining difference above is
    # only where each puts its constant (MONAI clamps each variance at smooth_dr; we add eps to their product)
    f, m = _pair((1, 1, 16, 24, 16), 5)
    for w in (11, 7):
        monai = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=w, smooth_dr=1e-12)
        assert float(-local_ncc(f, m, w, eps=1e-12)) == pytest.approx(float(monai(m, f)), rel=1e-10)


def test_multi_window_loss_is_the_weighted_sum_of_eq_3():
    f, m = _pair((1, 1, 16, 16, 16), 3)
    loss = MultiWindowNCC((11, 9, 7), gamma=0.5)
    expected = -(local_ncc(f, m, 11) + 0.5 * local_ncc(f, m, 9) + 0.25 * local_ncc(f, m, 7))
    torch.testing.assert_close(loss(f, m), expected)
    torch.testing.assert_close(MultiWindowNCC((9,), squared=False)(f, m), -local_ncc(f, m, 9, squared=False))
    # identical images: each window's NCC is ~1 (eps aside), so the loss is ~ -(1 + 0.5 + 0.25)
    assert float(loss(f, f)) == pytest.approx(-1.75, abs=1e-3)


def test_multi_window_loss_gradient_is_finite():
    f, m = _pair((1, 1, 16, 16, 16), 4)
    m = m.float().requires_grad_()
    MultiWindowNCC()(f.float(), m).backward()
    assert torch.isfinite(m.grad).all() and m.grad.abs().sum() > 0


def test_smoothness_matches_numpy():
    flow = torch.randn(2, 3, 5, 6, 7, dtype=torch.float64)
    u = flow.numpy()
    expected = np.mean([np.mean(np.diff(u, axis=a) ** 2) for a in (2, 3, 4)])
    assert float(smoothness(flow)) == pytest.approx(expected, rel=1e-12)
    u2 = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    assert float(smoothness(u2)) == pytest.approx(
        np.mean([np.mean(np.diff(u2.numpy(), axis=a) ** 2) for a in (2, 3)]), rel=1e-12)


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")  # inside MONAI
def test_smoothness_of_constant_and_checkerboard_flows():
    assert float(smoothness(torch.full((1, 3, 6, 6, 6), 2.5))) == 0.0
    idx = torch.stack(torch.meshgrid(*[torch.arange(6)] * 3, indexing="ij")).sum(0)
    board = ((-1.0) ** idx).expand(1, 3, 6, 6, 6).contiguous()  # +1 / -1 alternating along every axis
    assert float(smoothness(board)) == pytest.approx(4.0)  # every forward difference is +-2
    # MONAI's DiffusionLoss uses central differences (u[j+1] - u[j-1]) / 2, which vanish on a checkerboard:
    # this is why we do not use it as eq. 4's term
    assert float(DiffusionLoss()(board)) == 0.0
