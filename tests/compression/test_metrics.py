"""PSNR and empirical entropy of the compression task, against independent computations."""
import math

import numpy as np
import pytest
import torch

from sweeplab.tasks.compression.metrics import empirical_entropy_bpp, map_entropies, mse, psnr, to_uint8


def test_psnr_matches_hand_computation():
    x = np.full((4, 4), 100.0)
    x_hat = x.copy()
    x_hat[0, 0] = 110.0  # one pixel off by 10: MSE = 100 / 16
    assert mse(x, x_hat) == pytest.approx(6.25)
    assert psnr(x, x_hat) == pytest.approx(10 * math.log10(255.0 ** 2 / 6.25))


def test_psnr_clips_to_bt601_range_and_rounds():
    x = torch.full((1, 1, 2, 2), 235.0)
    x_hat = torch.tensor([[[[300.0, 235.4], [234.6, 1000.0]]]])  # clipped to 235, rounded to 235
    assert mse(x, x_hat) == 0.0
    assert psnr(x, x_hat) == math.inf
    assert to_uint8(np.array([-5.0, 15.6, 120.5, 121.5, 250.0])).tolist() == [16, 16, 120, 122, 235]
    assert to_uint8(np.array([-5.0, 250.0]), clip=(0, 255)).tolist() == [0, 250]


def test_entropy_of_uniform_four_symbols_is_two_bits():
    m, h, w = 3, 8, 8
    base = np.repeat(np.arange(4), h * w // 4).reshape(h, w)  # each of 4 symbols 16 times
    indices = np.stack([base - 2, base + 5, base * 1 - 7])  # offsets must not matter
    assert map_entropies(indices) == pytest.approx([2.0, 2.0, 2.0])
    n_pixels = (16 * h) * (16 * w)
    assert empirical_entropy_bpp(indices, n_pixels) == pytest.approx(m * h * w * 2.0 / n_pixels)


def test_entropy_against_numpy_unique_on_a_laplace_sample():
    rng = np.random.default_rng(1)
    indices = np.round(rng.laplace(0.0, [[[0.5]], [[2.0]], [[6.0]]], size=(3, 20, 30))).astype(np.int64)
    indices[1] += 40  # a map far from zero
    expected = []
    for plane in indices:
        _, counts = np.unique(plane, return_counts=True)
        p = counts / counts.sum()
        expected.append(-(p * np.log2(p)).sum())
    assert map_entropies(indices) == pytest.approx(expected, abs=1e-12)
    assert expected[0] < expected[1] < expected[2]
    assert empirical_entropy_bpp(indices, 100 * 100) == pytest.approx(600 * sum(expected) / 1e4)


def test_constant_map_has_zero_entropy():
    indices = np.full((2, 5, 5), -3, dtype=np.int32)
    assert empirical_entropy_bpp(indices, 400) == 0.0


def test_entropy_rejects_float_input():
    with pytest.raises(ValueError, match="integer"):
        map_entropies(np.zeros((2, 3, 3)))
