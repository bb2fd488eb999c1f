"""Fixture writer of the segmentation task: samples in the BSDS500 layout of ``data.py``, for tests and for users
who want to run the loader on their own annotated images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def boundaries(labels: np.ndarray) -> np.ndarray:
    """uint8 (H, W) map, 1 where a pixel's label differs from its right or lower neighbour. BSDS500 draws its
    boundaries at twice the resolution (``seg2bdry``); this pixel version is only used to fill fixtures."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge.astype(np.uint8)


def write_bsds_fixture(root: str | Path, split: str, samples, quality: int = 95) -> Path:
    """Write samples (anything with ``name``, ``image`` (H, W, 3) float in [0, 1] or uint8, ``gts`` 0-based label
    maps) in the BSDS500 layout under ``root``: ``images/<split>/<name>.jpg`` (JPEG, so pixels come back only
    approximately) and ``groundTruth/<split>/<name>.mat`` (v5, compressed; ``groundTruth`` a 1xN cell of structs
    with ``Segmentation`` uint16 1-based and ``Boundaries``). Nothing is checked, so tests can write broken fixtures
    (shapes that disagree). Returns the root."""
    root = Path(root)
    image_dir, gt_dir = root / "images" / split, root / "groundTruth" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        image = np.asarray(sample.image)
        if image.dtype != np.uint8:
            image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        Image.fromarray(image).save(image_dir / f"{sample.name}.jpg", quality=quality)
        cells = np.empty((1, len(sample.gts)), dtype=object)
        for i, gt in enumerate(sample.gts):
            struct = np.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object)])
            struct[0, 0] = (np.asarray(gt).astype(np.uint16) + 1, boundaries(np.asarray(gt)))
            cells[0, i] = struct
        scipy.io.savemat(gt_dir / f"{sample.name}.mat", {"groundTruth": cells}, do_compression=True)
    return root
