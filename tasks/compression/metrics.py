"""Distortion and rate of the `compression` task (Dumas et al., ICASSP 2018, Section 4).

Distortion: PSNR of the luminance reconstruction with peak 255. As in the authors' ``tools.cast_bt601`` and
``tools.psnr_2d``, the decoder output is clipped to the BT.601 luminance range [16, 235], rounded to integers,
and the MSE is taken in float64 against the uint8 reference.

Rate: Section 4 estimates it by the empirical entropy of the quantised latents, "assuming that the quantized
coefficients are i.i.d." within each feature map (authors' ``tools.rate_3d``): with n = h * w coefficients per map,
H_i the entropy in bits of the histogram of map i and N the number of pixels, ``rate = sum_i n * H_i / N`` bpp.

Exact rate: :mod:`.coder` codes the symbols losslessly with probabilities estimated on the extra image set, as
the authors' coder does; the difference of its size to this estimate is the paper's 0.04 bpp comparison.
"""
from __future__ import annotations

import math

import numpy as np
import torch

LUMA_RANGE = (16.0, 235.0)  # ITU-R BT.601 luminance range (authors' cast_bt601)
PEAK = 255.0


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def to_uint8(x_hat, clip: tuple[float, float] = LUMA_RANGE) -> np.ndarray:
    """Clip to ``clip`` and round to the nearest integer, as uint8 (authors' ``cast_bt601``)."""
    return np.round(np.clip(_numpy(x_hat), *clip)).astype(np.uint8)


def mse(x, x_hat, clip: tuple[float, float] = LUMA_RANGE) -> float:
    """Mean squared error between the reference ``x`` and ``to_uint8(x_hat)`` (any matching shapes)."""
    ref = _numpy(x)
    rec = to_uint8(x_hat, clip).astype(np.float64)
    if ref.shape != rec.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, reconstruction {rec.shape}")
    return float(np.mean((ref - rec) ** 2))


def psnr(x, x_hat, clip: tuple[float, float] = LUMA_RANGE) -> float:
    """PSNR in dB, peak 255, of the reconstruction clipped to ``clip`` and rounded (inf when exact).

    ``clip=(0, 255)`` leaves an already-uint8 decoded anchor image unchanged (the authors' JPEG 2000 PSNR uses
    the decoded file as it is).
    """
    err = mse(x, x_hat, clip)
    return math.inf if err == 0 else 10.0 * math.log10(PEAK ** 2 / err)


def flat_indices(indices) -> np.ndarray:
    """Integer indices (m, h, w) (numpy or torch) -> (m, h * w) int64; ValueError for anything else."""
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if idx.ndim != 3 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be an integer array (m, h, w), got {idx.dtype} {idx.shape}")
    return idx.reshape(idx.shape[0], -1).astype(np.int64)


def map_histograms(indices) -> list[np.ndarray]:
    """Per map i, the counts of its symbols min_i, min_i + 1, ..., max_i."""
    flat = flat_indices(indices)
    return [np.bincount(s) for s in flat - flat.min(axis=1, keepdims=True)]


def map_entropies(indices) -> np.ndarray:
    """(m,) empirical entropy H_i in bits per symbol of each map (Section 4, i.i.d. assumption)."""
    out = []
    for counts in map_histograms(indices):
        p = counts[counts > 0] / counts.sum()
        out.append(float(-(p * np.log2(p)).sum()))
    return np.asarray(out)


def empirical_entropy_bpp(indices, n_pixels: int) -> float:
    """Estimated rate in bits per pixel: ``sum_i n * H_i / n_pixels`` for indices (m, h, w), n = h * w."""
    n = int(np.prod(np.shape(indices)[1:]))
    return float(n * map_entropies(indices).sum() / n_pixels)
