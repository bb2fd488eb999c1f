"""Fixture writers of the restoration task: small folders in the layouts of ``data.py`` (a Pascal VOC root, a
DIV2K-like folder, old photos with scratch masks), for tests and for trying the ``files`` dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .degrade import scratch_mask


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A small smooth colour image with some texture, for fixtures."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in rng.uniform(0, 3, 3)], -1)
    return np.clip(127.5 + 90 * base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def write_voc_fixture(root: str | Path, n: int = 4, size: int = 48, seed: int = 0) -> Path:
    """A Pascal VOC root: ``<root>/JPEGImages/2008_00000k.jpg``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "JPEGImages"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(_photo(rng, size, size + 8)).save(folder / f"2008_{k:06d}.jpg", quality=95)
    return Path(root)


def write_div2k_fixture(root: str | Path, n: int = 3, size: int = 40, seed: int = 1) -> Path:
    """A DIV2K-like folder of clean PNGs: ``<root>/08kk.png``."""
    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(_photo(rng, size + 4, size)).save(Path(root) / f"{801 + k:04d}.png")
    return Path(root)


def write_old_fixture(root: str | Path, n: int = 3, masked: int = 2, size: int = 40,
                      seed: int = 2) -> tuple[Path, Path]:
    """Old photos ``<root>/old/old_k.jpg`` and masks of the first ``masked`` ``<root>/masks/old_k.png``."""
    rng = np.random.default_rng(seed)
    old, masks = Path(root) / "old", Path(root) / "masks"
    old.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(_photo(rng, size, size)).save(old / f"old_{k}.jpg")
        if k < masked:
            mask = scratch_mask((size, size), rng)
            Image.fromarray((mask * 255).astype(np.uint8)).save(masks / f"old_{k}.png")
    return old, masks
