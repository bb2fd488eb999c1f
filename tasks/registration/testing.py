"""Fixture writers of the registration task: small volumes in the Mindboggle101, IXI and generic layouts of
``data.py``, for tests and for trying the loaders on made-up data."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import MINDBOGGLE_IMAGE, MINDBOGGLE_LABELS, MINDBOGGLE_TEST, MINDBOGGLE_TRAIN, TISSUES, _dkt_labels


def _write(path: Path, volume: np.ndarray) -> Path:
    import nibabel as nib
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".mgz"):
        nib.save(nib.MGHImage(volume, np.eye(4)), str(path))
    else:
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    return path


def fixture_volumes(shape: Sequence[int], labels: Sequence[int], rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """A small image and label volume for the loaders' tests: the labels tile the volume in slabs along the first
    axis (each label at least one slab when there are enough), the image is the label index plus noise."""
    shape = tuple(shape)
    slab = np.arange(shape[0]) * len(labels) // shape[0]
    lab = np.broadcast_to(np.asarray(labels, np.int16)[slab][:, None, None], shape).copy()
    lab[:, :2] = 0  # some background
    image = (lab > 0) * (1.0 + slab[:, None, None]) + rng.uniform(0, 0.1, size=shape)
    return image.astype(np.float32), lab


def write_mindboggle_fixture(root: str | Path, subjects_per_group: int = 2, shape=(20, 24, 20),
                             seed: int = 0) -> Path:
    """A Mindboggle101 tree as distributed (``Mindboggle101_volumes/<GROUP>_volumes/<GROUP>-<n>/``), small."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "Mindboggle101_volumes"
    dkt = list(_dkt_labels()[0])
    for group in (*MINDBOGGLE_TRAIN, *MINDBOGGLE_TEST):
        for n in range(1, subjects_per_group + 1):
            image, labels = fixture_volumes(shape, dkt, rng)
            folder = base / f"{group}_volumes" / f"{group}-{n}"
            _write(folder / MINDBOGGLE_IMAGE, image)
            _write(folder / MINDBOGGLE_LABELS, labels.astype(np.float32))  # Mindboggle stores labels as float
    return base


def write_ixi_fixture(root: str | Path, subjects: int = 5, shape=(20, 24, 20), seed: int = 0) -> Path:
    """IXI subjects processed by FreeSurfer: ``<root>/IXI<nnn>/mri/{norm,aseg}.mgz``."""
    rng = np.random.default_rng(seed)
    for n in range(subjects):
        image, labels = fixture_volumes(shape, list(TISSUES), rng)
        _write(Path(root) / f"IXI{n:03d}" / "mri" / "norm.mgz", (image * 100).astype(np.uint8))
        _write(Path(root) / f"IXI{n:03d}" / "mri" / "aseg.mgz", labels.astype(np.int32))
    return Path(root)


def write_folder_fixture(root: str | Path, train: int = 3, test: int = 2, shape=(16, 16, 16), seed: int = 0,
                         labels: Sequence[int] = (1, 2, 3)) -> Path:
    """The generic layout: ``<id>_image.nii.gz``, ``<id>_labels.nii.gz`` and ``split.json``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    ids = [f"s{n}" for n in range(train + test)]
    for k in ids:
        image, lab = fixture_volumes(shape, labels, rng)
        _write(root / f"{k}_image.nii.gz", image)
        _write(root / f"{k}_labels.nii.gz", lab)
    (root / "split.json").write_text(json.dumps({"train": ids[:train], "test": ids[train:]}))
    return root
