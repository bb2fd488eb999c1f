"""Warping, composition (eq. 2), flow resizing and the Jacobian determinant against direct computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeplab.tasks.registration.layers import (SpatialTransformer, compose, folding_percent, jacobian_determinant,
                                                resize_flow, warp)


def _smooth(shape, seed, scale=1.0) -> torch.Tensor:
    """A smooth random field (B, C, *size): sums of low-frequency cosines."""
    rng = np.random.default_rng(seed)
    b, c, *size = shape
    grids = np.meshgrid(*[np.arange(n) / n for n in size], indexing="ij")
    out = np.zeros(shape)
    for n in range(b):
        for ch in range(c):
            for _ in range(3):
                k, phase = rng.uniform(0.5, 2.0, len(size)), rng.uniform(0, 2 * np.pi)
                out[n, ch] += rng.normal() * np.cos(2 * np.pi * sum(ki * g for ki, g in zip(k, grids)) + phase)
    return torch.from_numpy(scale * out).float()


@pytest.mark.parametrize("size", [(8, 12), (6, 8, 10)])
def test_transformer_shapes_2d_and_3d(size):
    image, flow = torch.rand(2, 3, *size), torch.rand(2, len(size), *size)
    out = SpatialTransformer(size)(image, flow)
    assert out.shape == image.shape and out.dtype == image.dtype
    with pytest.raises(ValueError):
        SpatialTransformer(size)(image, flow[:, :1])


@pytest.mark.parametrize("size, shift", [((12, 16), (2, -3)), ((16, 32, 16), (2, -3, 1))])
def test_integer_translation_is_recovered(size, shift):
    # channel i shifts along spatial axis i: warped[x] = image[x + shift], zeros where x + shift leaves the volume
    image = torch.rand(1, 2, *size)
    flow = torch.tensor(shift, dtype=torch.float32).view(1, -1, *[1] * len(size)).expand(1, len(size), *size)
    expected = torch.zeros_like(image)
    dst = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, size))
    src = tuple(slice(max(0, s), n + min(0, s)) for s, n in zip(shift, size))
    expected[(..., *dst)] = image[(..., *src)]
    torch.testing.assert_close(warp(image, flow), expected, atol=1e-5, rtol=0)  # (tri)linear: up to rounding
    assert torch.equal(warp(image, flow, mode="nearest"), expected)


def _interp(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of volume (X, Y, Z) at points (..., 3), written out over the 8 corners."""
    base = np.floor(points).astype(int)
    frac = points - base
    out = np.zeros(points.shape[:-1])
    for corner in np.ndindex(2, 2, 2):
        idx = [np.clip(base[..., a] + corner[a], 0, volume.shape[a] - 1) for a in range(3)]
        weight = np.prod([frac[..., a] if corner[a] else 1 - frac[..., a] for a in range(3)], axis=0)
        out += weight * volume[tuple(idx)]
    return out


def test_compose_matches_the_direct_formula():
    size = (10, 12, 9)
    prev, flow = _smooth((1, 3, *size), 1, 1.5), _smooth((1, 3, *size), 2, 1.5)
    got = compose(prev, flow)[0].double().numpy()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1)
    points = grid + np.moveaxis(flow[0].double().numpy(), 0, -1)  # x + flow(x)
    inside = np.all((points >= 0) & (points <= np.array(size) - 1), axis=-1)
    assert inside.mean() > 0.5
    for i in range(3):  # composed_i(x) = flow_i(x) + prev_i(x + flow(x))
        expected = flow[0, i].double().numpy() + _interp(prev[0, i].double().numpy(), points)
        np.testing.assert_allclose(got[i][inside], expected[inside], atol=1e-5)


def test_warping_twice_equals_warping_by_the_composed_flow():
    # on an image linear in the coordinates (trilinear interpolation is exact) and away from the border
    size = (12, 12, 12)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in size], indexing="ij"))
    image = (0.3 * grid[0] - 0.2 * grid[1] + 0.5 * grid[2] + 1.0)[None, None]
    prev, flow = _smooth((1, 3, *size), 3, 0.3).double(), _smooth((1, 3, *size), 4, 0.3).double()
    assert prev.abs().max() < 1.5 and flow.abs().max() < 1.5  # the core's sample points stay inside
    twice, once = warp(warp(image, prev), flow), warp(image, compose(prev, flow))
    core = (..., slice(3, -3), slice(3, -3), slice(3, -3))
    torch.testing.assert_close(twice[core], once[core], atol=1e-9, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_flow_scales_displacements(align_corners):
    flow = torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1, 1).expand(2, 3, 4, 6, 5)
    out = resize_flow(flow, (16, 12, 20), align_corners=align_corners)
    factors = [(15 / 3, 11 / 5, 19 / 4)] if align_corners else [(4.0, 2.0, 4.0)]
    expected = torch.tensor([1.0, -2.0, 0.5]) * torch.tensor(factors[0])
    assert out.shape == (2, 3, 16, 12, 20)
    torch.testing.assert_close(out, expected.view(1, 3, 1, 1, 1).expand_as(out))


@pytest.mark.parametrize("ndims", [2, 3])
def test_jacobian_of_an_affine_flow_is_det_of_identity_plus_a(ndims):
    rng = np.random.default_rng(ndims)
    a, b = rng.uniform(-0.4, 0.4, (ndims, ndims)), rng.normal(size=ndims)
    size = (7, 9, 8)[:ndims]
    x = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"))
    u = np.einsum("ij,j...->i...", a, x) + b.reshape(-1, *[1] * ndims)  # u(x) = A x + b
    det = jacobian_determinant(torch.from_numpy(u[None]))
    assert det.shape == (1, *size)
    np.testing.assert_allclose(det.numpy(), np.linalg.det(np.eye(ndims) + a), rtol=1e-10)


def test_folding_percent_counts_non_positive_determinants():
    size = (24, 8, 8)
    x0 = np.arange(size[0])
    u0 = 6.0 * np.sin(2 * np.pi * x0 / size[0])  # 1 + du0/dx0 < 0 around the sine's steep descent
    flow = np.zeros((1, 3, *size))
    flow[0, 0] = u0[:, None, None]
    det = 1 + np.gradient(u0)  # the other axes do not move: det = 1 + du0/dx0
    expected = 100.0 * np.mean(det <= 0)
    assert 0 < expected < 100
    assert folding_percent(torch.from_numpy(flow)) == pytest.approx(expected)
    assert folding_percent(torch.zeros(1, 3, *size)) == 0.0
