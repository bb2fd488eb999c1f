"""SyN (Avants et al. 2008), the classical baseline of Shu et al.'s Table 1 ("We implemented SyN by using ANTs"),
through antspyx: ``ants.registration(type_of_transform="SyNOnly")``, deformable only since the volumes are already
affinely aligned (Section 3), with ``iterations`` per level (ANTs' SyN default 40 x 20 x 0; ANTsPy makes one level
per entry, shrink factors 2^(levels-1) .. 1 and smoothing sigmas levels-1 .. 0 voxels), the similarity ``metric``
with its parameter ``sampling`` (ANTsPy's defaults: Mattes mutual information with 32 bins) and ANTs' defaults
otherwise (Gaussian regularisation). The paper names none of these ("We implemented SyN by using ANTs"). CPU, no
training.

The transforms ANTs returns are composed into one displacement field on the fixed grid
(``apply_transforms(compose=...)``), which is the flow of this package's convention: image axis i of the numpy
volume is ITK index axis i (unit spacing, zero origin, identity direction), and ANTs' field u maps a fixed point x
to the moving point x + u(x), exactly ``warp``'s x -> M(x + flow(x)). The labels are warped by ANTs itself
(nearest neighbour); tests check that our warp with the field gives the same labels.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def register_syn(fixed: np.ndarray, moving: np.ndarray, moving_labels: np.ndarray, iterations=(40, 20, 0),
                 seed: int = 0, metric: str = "mattes", sampling: int = 32) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """(warped image, warped labels, flow (3, *size) in voxels) of one pair of 3D volumes."""
    import ants
    f, m = ants.from_numpy(np.asarray(fixed, np.float32)), ants.from_numpy(np.asarray(moving, np.float32))
    with tempfile.TemporaryDirectory(prefix="sweeplab-syn-") as tmp:
        reg = ants.registration(f, m, type_of_transform="SyNOnly", reg_iterations=tuple(int(i) for i in iterations),
                                syn_metric=metric, syn_sampling=int(sampling), outprefix=str(Path(tmp) / "syn"),
                                random_seed=int(seed), verbose=False)
        transforms = reg["fwdtransforms"]
        labels = ants.apply_transforms(f, ants.from_numpy(np.asarray(moving_labels, np.float32)), transforms,
                                       interpolator="nearestNeighbor")
        field = ants.image_read(ants.apply_transforms(f, m, transforms, compose=str(Path(tmp) / "composed")))
        flow = np.moveaxis(np.asarray(field.numpy(), np.float32), -1, 0)
    return (np.asarray(reg["warpedmovout"].numpy(), np.float32), np.rint(labels.numpy()).astype(np.int32), flow)
