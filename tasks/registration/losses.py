"""The losses of ULAE-net (Shu et al., MICCAI 2021, Section 2.4): multi-window local NCC (eq. 3) and the smoothness
of the flow (eq. 4); eq. 5 is L = L_sim(F, M o phi) + lambda * L_smooth(phi).

Local NCC over a cubic window of side w centred on each voxel p, n = w^ndims voxels (VoxelMorph's formulation,
which the authors' code uses): with the window sums S_F, S_M, S_FF, S_MM, S_FM (zero padding outside the volume,
n fixed everywhere),

    cross = S_FM - S_F S_M / n,   var_F = S_FF - S_F^2 / n,   var_M = S_MM - S_M^2 / n,
    squared: cc(p) = cross^2 / (var_F var_M + eps)     (the authors' code and VoxelMorph; MONAI's
                                                        LocalNormalizedCrossCorrelationLoss computes the same)
    plain:   cc(p) = cross / sqrt(var_F var_M + eps)   (the NCC that eq. 3 names)

and NCC_w = the mean of cc over all voxels (and batch and channels). The window sums are separable box filters:
one 1D convolution per axis for all five moments at once, O(ndims w) per voxel instead of O(w^ndims); the
multi-window loss forms the five moments once for all its windows. (Running sums would be O(ndims) per voxel, but
in float32 they lose about 0.7% of NCC_w at 160 x 192 x 160 to rounding; the convolutions keep it within 1e-7.)
Variances are clamped at 0 (rounding can leave a tiny negative one in a flat window), so neither variant divides
by a negative product.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sum of x over the window of side ``window`` (odd) centred on each voxel, zero padding: (B, C, *size) ->
    same shape. Separable: one depthwise 1D convolution per spatial axis (``ndims`` convolutions in all)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window {window}: must be odd and positive")
    ndims, channels = x.dim() - 2, x.shape[1]
    conv = _CONV[ndims]
    for axis in range(ndims):
        shape = [1] * ndims
        shape[axis] = window
        padding = [0] * ndims
        padding[axis] = window // 2
        kernel = torch.ones((channels, 1, *shape), dtype=x.dtype, device=x.device)
        x = conv(x, kernel, padding=tuple(padding), groups=channels)
    return x


def moments(fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
    """F, M, F^2, M^2 and F M stacked along the channels, the quantities whose window sums local NCC needs."""
    if fixed.shape != warped.shape:
        raise ValueError(f"fixed {tuple(fixed.shape)} and warped {tuple(warped.shape)} differ")
    return torch.cat([fixed, warped, fixed * fixed, warped * warped, fixed * warped], dim=1)


def _ncc(stacked: torch.Tensor, window: int, squared: bool, eps: float) -> torch.Tensor:
    ndims = stacked.dim() - 2
    n = float(window ** ndims)
    s_f, s_m, s_ff, s_mm, s_fm = box_sum(stacked, window).chunk(5, dim=1)
    cross = s_fm - s_f * s_m / n
    var_f = (s_ff - s_f * s_f / n).clamp_min(0)
    var_m = (s_mm - s_m * s_m / n).clamp_min(0)
    cc = cross * cross / (var_f * var_m + eps) if squared else cross / torch.sqrt(var_f * var_m + eps)
    return cc.mean()


def local_ncc(fixed: torch.Tensor, warped: torch.Tensor, window: int, squared: bool = True,
              eps: float = 1e-5) -> torch.Tensor:
    """Mean local NCC of F and M o phi over windows of side ``window`` (module docstring): squared (the default,
    cross^2 / (var_F var_M + eps)) or plain (cross / sqrt(var_F var_M + eps)). Channels are treated separately
    (the authors' code sums the channels into one window; both read the same for the one-channel MRI here).
    A scalar; higher is better (1 for images equal up to an affine intensity change, windows with variance)."""
    return _ncc(moments(fixed, warped), window, squared, eps)


class MultiWindowNCC(nn.Module):
    """L_sim of eq. 3: ``-sum_i gamma^(i-1) NCC_{w_i}(F, M o phi)``, windows (w_1, w_2, w_3) = (11, 9, 7) and
    gamma = 0.5 in the paper; one window is the plain single-window local NCC loss (Table 2's baseline, w = 9).
    ``squared`` picks the squared local NCC (the authors' code) or the plain one (the paper's eq. 3).
    ``forward(fixed, warped)`` -> a scalar to minimise."""

    def __init__(self, windows: Sequence[int] = (11, 9, 7), gamma: float = 0.5, squared: bool = True,
                 eps: float = 1e-5):
        super().__init__()
        if not windows:
            raise ValueError("windows: need at least one window")
        self.windows, self.gamma, self.squared, self.eps = tuple(int(w) for w in windows), float(gamma), squared, eps

    def forward(self, fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        stacked = moments(fixed, warped)  # once for all windows
        return -sum(self.gamma ** i * _ncc(stacked, w, self.squared, self.eps) for i, w in enumerate(self.windows))

    def extra_repr(self) -> str:
        return f"windows={self.windows}, gamma={self.gamma}, squared={self.squared}"


def smoothness(flow: torch.Tensor) -> torch.Tensor:
    """L_smooth of eq. 4 as the authors' code computes it: for each spatial axis the mean over voxels of the squared
    forward difference u(p + e_axis) - u(p) (all components), then the mean over the axes. Eq. 4 writes a sum over
    voxels of ||grad phi(p)||^2; the means only rescale it (by 1 / (ndims x voxels x components), roughly), which
    changes what lambda = 1 means: we follow the code, whose lambda the published figures used.
    Forward differences, not central ones: a central difference misses a voxel-to-voxel checkerboard."""
    ndims = flow.dim() - 2
    terms = [torch.diff(flow, dim=2 + axis).pow(2).mean() for axis in range(ndims)]
    return sum(terms) / ndims
