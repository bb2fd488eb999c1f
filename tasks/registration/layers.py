"""Warping, flow composition and resizing, and the Jacobian determinant (Shu et al., MICCAI 2021, Sections 2.1-2.3).

A displacement ``flow`` of shape (B, ndims, *size) is in voxel units: channel i is the displacement along spatial
axis i (the i-th axis after batch and channel), and the deformation it stands for is x -> x + flow(x). Warping an
image M by it gives ``(M o phi)(x) = M(x + flow(x))`` (Section 2.3: "o is the warping operation based on trilinear
interpolation [11]"). Everything here works in 2D and 3D, picked from the number of spatial axes, and on any device
(the meta device included: no ``.item()``, no device literals, the sampling grid built from the flow itself).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}  # F.interpolate's name for (multi)linear, by ndims


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear",
         padding_mode: str = "zeros") -> torch.Tensor:
    """``image(x + flow(x))`` for an image (B, C, *size) and a flow (B, ndims, *size), ndims = 2 or 3.

    Sampled with ``grid_sample(align_corners=True)``: voxel centres sit at the normalised coordinates
    -1 + 2 i / (n - 1), so voxel i + d (d in voxels) is exactly where the voxel-unit flow points; an integer
    flow therefore samples voxel values exactly (up to float rounding of the normalisation). ``mode`` "bilinear"
    is bilinear in 2D and trilinear in 3D (``grid_sample``'s name for both); "nearest" for label maps.
    Border handling: a sample point outside [0, n - 1] along an axis reads ``padding_mode``'s value, "zeros"
    (the default, VoxelMorph's and the authors' code's: the background of a skull-stripped brain is 0; near the
    border, (tri)linear interpolation blends the edge voxels with zeros), "border" (the nearest edge voxel) or
    "reflection".
    Computed in at least float32, whatever the inputs' dtype (``dtype: bfloat16`` gives the network's flows in it):
    bfloat16's 8-bit mantissa would put a normalised coordinate up to 0.75 voxel off along a side of 192.
    """
    ndims = flow.shape[1]
    if ndims not in (2, 3) or flow.dim() != ndims + 2 or image.dim() != ndims + 2:
        raise ValueError(f"need an image (B, C, *size) and a flow (B, ndims, *size) with ndims 2 or 3, got "
                         f"{tuple(image.shape)} and {tuple(flow.shape)}")
    if tuple(image.shape[2:]) != tuple(flow.shape[2:]):
        raise ValueError(f"image size {tuple(image.shape[2:])} and flow size {tuple(flow.shape[2:])} differ")
    size = flow.shape[2:]
    dtype = torch.promote_types(torch.promote_types(image.dtype, flow.dtype), torch.float32)
    coords = []
    for i, n in enumerate(size):
        # normalised position of voxel j along axis i, plus the displacement in normalised units
        scale = 2.0 / max(n - 1, 1)
        view = [1] * ndims
        view[i] = n
        base = torch.arange(n, dtype=dtype, device=flow.device).view(1, *view) * scale - 1.0
        coords.append(base + flow[:, i].to(dtype) * scale)
    # grid_sample wants the last dimension ordered (x, y[, z]) = (last axis, ..., first axis)
    grid = torch.stack(coords[::-1], dim=-1)
    return F.grid_sample(image.to(dtype), grid, mode=mode, padding_mode=padding_mode, align_corners=True)


class SpatialTransformer(nn.Module):
    """Warps an image (B, C, *size) by a voxel-unit flow (B, ndims, *size): ``M o phi`` of eq. 1-2.

    2D or 3D from ``len(size)``; (bi/tri)linear interpolation ("nearest" for labels). See :func:`warp` for the
    coordinate convention and the border handling (``padding_mode``, "zeros" by default). Holds no grid buffer:
    the grid is built from the flow at each call, so the module has no state to save or move between devices.
    """

    def __init__(self, size: Sequence[int], mode: str = "bilinear", padding_mode: str = "zeros"):
        super().__init__()
        if len(size) not in (2, 3):
            raise ValueError(f"size {tuple(size)}: need 2 or 3 spatial sides")
        self.size, self.mode, self.padding_mode = tuple(int(s) for s in size), mode, padding_mode

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        if tuple(flow.shape[1:]) != (len(self.size), *self.size):
            raise ValueError(f"flow {tuple(flow.shape)} does not match size {self.size}")
        return warp(image, flow, self.mode, self.padding_mode)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode!r}, padding_mode={self.padding_mode!r}"


def compose(prev: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """``S(phi_prev) o phi_k + phi_k`` of eq. 2, the previous flow warped by the new one plus the new one:

        composed(x) = flow(x) + prev(x + flow(x)),

    i.e. the point map x -> x + composed(x) is (id + prev) o (id + flow), so that
    ``warp(warp(M, prev), flow) == warp(M, composed)`` up to interpolation: step k warps the image that steps
    1..k-1 already warped, M_k(x) = M_{k-1}(x + phi_k(x)) = M(x + phi_k(x) + phi_prev(x + phi_k(x))).
    ``prev`` must already be at the resolution of ``flow`` (the S of eq. 2 is :func:`resize_flow`). Sampling the
    previous flow outside the volume reads ``padding_mode`` ("zeros", as the authors' code; "border" is an option).
    """
    return warp(prev, flow, "bilinear", padding_mode) + flow


def resize_flow(flow: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """The up-sampling S of eq. 2: (bi/tri)linear interpolation of a voxel-unit flow to ``size``, each component
    multiplied by its axis's scale so that it stays in voxels of the new grid.

    With ``align_corners=False`` (the default) voxel j of n sits at (j + 1/2) N / n - 1/2 of N, so a displacement of
    d coarse voxels is d N / n fine voxels; with ``align_corners=True`` the end voxels coincide and the factor is
    (N - 1) / (n - 1). The authors' code interpolates with ``align_corners=True`` but multiplies by N / n (4 or 2);
    the two differ by (N - 1) / (n - 1) / (N / n) - 1, about 2% at n = 40. We keep each pairing consistent.
    """
    size = tuple(int(s) for s in size)
    ndims = flow.shape[1]
    if len(size) != ndims or flow.dim() != ndims + 2:
        raise ValueError(f"flow {tuple(flow.shape)} and size {size} disagree on the number of axes")
    src = flow.shape[2:]
    out = F.interpolate(flow, size=size, mode=_LINEAR[ndims], align_corners=align_corners)
    if align_corners:
        factors = [(m - 1) / max(n - 1, 1) for n, m in zip(src, size)]
    else:
        factors = [m / n for n, m in zip(src, size)]
    return out * torch.tensor(factors, dtype=flow.dtype, device=flow.device).view(1, ndims, *([1] * ndims))


def jacobian_determinant(flow: torch.Tensor) -> torch.Tensor:
    """det(I + grad u) of the deformation x -> x + u(x) at every voxel: (B, ndims, *size) -> (B, *size).

    ``grad u`` by ``torch.gradient`` (as ``np.gradient``: central differences (u[j+1] - u[j-1]) / 2 inside, one-sided
    differences at the two ends); entry (i, j) of the matrix is delta_ij + d u_i / d x_j. 2D and 3D.
    """
    ndims = flow.shape[1]
    if ndims not in (2, 3) or flow.dim() != ndims + 2:
        raise ValueError(f"need a flow (B, ndims, *size) with ndims 2 or 3, got {tuple(flow.shape)}")
    spatial = tuple(range(1, ndims + 1))  # of flow[:, i], which is (B, *size)
    rows = [torch.stack(torch.gradient(flow[:, i], dim=spatial), dim=-1) for i in range(ndims)]
    jac = torch.stack(rows, dim=-2) + torch.eye(ndims, dtype=flow.dtype, device=flow.device)
    return torch.linalg.det(jac)


def folding_percent(flow: torch.Tensor) -> float:
    """Percentage of voxels (over the whole batch) where the Jacobian determinant of x + u(x) is <= 0, i.e. where
    the deformation folds (ULAE-net and VoxelMorph here integrate no velocity field, so nothing prevents it)."""
    with torch.no_grad():
        det = jacobian_determinant(flow.detach())
        return float((det <= 0).to(torch.float64).mean() * 100.0)
