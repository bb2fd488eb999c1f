"""Distortion and rate of the `compression` task (Dumas et al., ICASSP 2018, Section 4).

Distortion: PSNR of the luminance reconstruction with peak 255. As in the authors' ``tools.cast_bt601`` and
``tools.psnr_2d``, the decoder output is clipped to the BT.601 luminance range [16, 235], rounded to integers,
and the MSE is taken in float64 against the uint8 reference.

Rate: Section 4 estimates it by the empirical entropy of the quantised latents, "assuming that the quantized
coefficients are i.i.d." within each feature map (authors' ``tools.rate_3d``): with n = h * w coefficients per map,
H_i the entropy in bits of the histogram of map i and N the number of pixels, ``rate = sum_i n * H_i / N`` bpp.

Exact rate: :func:`range_code` really codes the symbols with a range coder (``constriction``), map by map, each
map with a categorical model built from its own empirical pmf, so the coded size is within a few words of the
empirical entropy. What that size does NOT count is the side information the decoder would need: per map, the
smallest symbol, the alphabet size and the histogram. :func:`side_information_bits` gives a simple estimate of
it. (The authors instead wrote a binariser and a binary arithmetic coder, and report that their exact rate stays
within 0.04 bpp of the estimate; we use a range coder because it is available, fast and exact for a given pmf.)
"""
from __future__ import annotations

import math

import constriction
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


def _symbols(indices) -> tuple[np.ndarray, np.ndarray]:
    """(m, n) int64 symbols >= 0 per map and the (m,) per-map minima that were subtracted."""
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if idx.ndim < 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be an integer array (m, h, w), got {idx.dtype} {idx.shape}")
    flat = idx.reshape(idx.shape[0], -1).astype(np.int64)
    mins = flat.min(axis=1)
    return flat - mins[:, None], mins


def map_histograms(indices) -> list[np.ndarray]:
    """Per map i, the counts of its symbols min_i, min_i + 1, ..., max_i."""
    symbols, _ = _symbols(indices)
    return [np.bincount(s) for s in symbols]


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


def range_code(indices) -> tuple[int, np.ndarray]:
    """Range-code the quantised latents (m, h, w) -> (compressed size in bits, decoded indices (m, h, w)).

    Maps are coded one after another into one ``constriction.stream.queue.RangeEncoder`` stream, each with a
    ``Categorical`` model over [0, max_i - min_i] whose probabilities are the map's empirical frequencies. A map
    holding a single value costs 0 bits (its value is in the side information) and is not put into the stream.
    The decoder is handed the same models, i.e. the side information is assumed transmitted, not counted here.
    """
    shape = np.shape(indices)
    symbols, mins = _symbols(indices)
    models = []
    encoder = constriction.stream.queue.RangeEncoder()
    for s in symbols:
        counts = np.bincount(s)
        if len(counts) == 1:
            models.append(None)
            continue
        model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
        encoder.encode(s.astype(np.int32), model)
        models.append(model)
    compressed = encoder.get_compressed()
    decoder = constriction.stream.queue.RangeDecoder(compressed)
    decoded = np.empty_like(symbols)
    for i, model in enumerate(models):
        decoded[i] = 0 if model is None else decoder.decode(model, symbols.shape[1])
    return 32 * int(compressed.size), (decoded + mins[:, None]).reshape(shape)


def side_information_bits(indices) -> int:
    """A simple estimate of the side information :func:`range_code` leaves out: per map, the smallest symbol
    and the alphabet size (16 bits each) and each histogram count in ``ceil(log2(n + 1))`` bits."""
    n = int(np.prod(np.shape(indices)[1:]))
    bits_per_count = math.ceil(math.log2(n + 1))
    return int(sum(32 + len(counts) * bits_per_count for counts in map_histograms(indices)))
