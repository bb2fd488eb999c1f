"""Luminance data of the `compression` task (Dumas et al., ICASSP 2018, Sections 3 and 3.1).

Three sets, as in the paper and the authors' code (``kodak_tensorflow/datasets/{imagenet,kodak,extra}``):

* training: ``n_train_crops`` random ``crop_size`` x ``crop_size`` luminance crops (paper: 24,000 crops of 256 x 256
  from ImageNet), read from ``train_dir`` searched recursively (``train/n01440764/*.JPEG`` works);
* extra: luminance images from which the per-map means mu_i of Y are measured (Section 3.1), and the coder's
  probabilities of the quantised symbols (:mod:`.coder`); the authors use
  centre crops of 384 x 384 of 1000 ImageNet / INRIA Holidays images. Default: files of the training folder,
  taken from the other end of the shuffled file list so that, with a large folder, they are not also cropped for
  training;
* test: a Kodak-style folder (paper: the 24 Kodak images, 512 x 768 luminance), sorted by file name.

Luminance is ITU-R BT.601 "studio swing", as the authors' ``tools.rgb_to_ycbcr`` (Matlab's ``rgb2ycbcr``):
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, computed in float64, clipped to [0, 255], rounded to the
nearest integer and stored as uint8, so Y lies in [16, 235]. Models see it as float in that range (no rescaling).

Embedded default (empty paths, no download): photographs shipped inside scikit-image's ``skimage/data`` folder.
Training/extra: camera, rocket, motorcycle_left, motorcycle_right, moon, coins, grass, gravel, brick.
Test: astronaut, coffee, chelsea. The two sets are disjoint.

Deviations from the authors' code, and why:

* unreadable or corrupt files raise ``ValueError`` naming the file (the authors print and skip them): a broken
  dataset should be noticed, not silently shrink the training set;
* non-RGB files (grayscale, CMYK, palette) are converted to RGB by Pillow first (the authors skip them);
* the training file list is shuffled with the seed before cropping (the authors take the first files in sorted
  order of one flat folder; with ImageNet's class folders that would keep only the first few classes);
  when the folder has fewer usable images than ``n_train_crops``, several random crops are taken per image;
* test images are not rotated to landscape (the authors rotate Kodak's portrait images); non-multiple-of-16
  sizes are centre-cropped to a multiple of 16.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from sweeplab.api import read_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
EMBEDDED_TRAIN = ("camera.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png", "moon.png",
                  "coins.png", "grass.png", "gravel.png", "brick.png")
EMBEDDED_TEST = ("astronaut.png", "coffee.png", "chelsea.png")
STRIDE = 16  # the encoder downsamples by 16 (Section 3)
_CHUNK = 64  # files decoded per batch of threads


def rgb_to_luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luminance of a uint8 RGB array (H, W, 3) -> uint8 (H, W) in [16, 235] (authors' formula)."""
    rgb = rgb.astype(np.float64)
    y = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    return np.round(np.clip(y, 0.0, 255.0)).astype(np.uint8)


def read_luminance(path: str | os.PathLike) -> np.ndarray:
    """uint8 luminance (H, W) of an image file (the authors' BT.601 formula, not Pillow's "L" mode)."""
    return rgb_to_luminance(read_image(path))


def list_images(folder: str | os.PathLike, what: str = "image") -> list[Path]:
    """Image files under ``folder`` (recursive, case-insensitive extensions), sorted; a clear error when none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder {str(root)!r} does not exist or is not a folder")
    paths = sorted(Path(d) / f for d, _, files in os.walk(root, followlinks=True) for f in files
                   if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)  # os.walk: no stat per file
    if not paths:
        raise FileNotFoundError(f"{what} folder {str(root)!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def centre_crop(lum: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (lum.shape[0] - height) // 2, (lum.shape[1] - width) // 2
    return lum[top:top + height, left:left + width]


def crop_to_multiple(lum: np.ndarray, side: int = 0, multiple: int = STRIDE) -> np.ndarray:
    """Centre crop to ``side`` x ``side`` (each side capped by the image) or, when side = 0, to the largest
    multiple of ``multiple`` in each dimension."""
    h, w = lum.shape
    if side > 0:
        h, w = min(h, side), min(w, side)
    return centre_crop(lum, h // multiple * multiple, w // multiple * multiple)


def _as_float(lum: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(lum)).to(torch.float32)[None, None]


class _FloatImages(Sequence):
    """uint8 luminance images kept compactly, handed out as (1, 1, H, W) float32 tensors in [0, 255]."""

    def __init__(self, images: list[np.ndarray]):
        self._images = images

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [_as_float(im) for im in self._images[i]]
        return _as_float(self._images[i])


def _shuffled(paths: list[Path], seed: int) -> list[Path]:
    order = np.random.default_rng([seed, 0]).permutation(len(paths))
    return [paths[i] for i in order]


def random_crops(paths: list[Path], n: int, crop: int, seed: int = 0) -> tuple[torch.Tensor, int]:
    """``n`` random ``crop`` x ``crop`` uint8 luminance crops -> (tensor (n, 1, crop, crop), number of images
    skipped because they are smaller than the crop).

    Files are visited in a seeded random order, decoded lazily in threads (Pillow releases the GIL) until ``n``
    crops are collected; ``ceil(n / len(paths))`` crops are taken per image so that a small folder is read once.
    Crop positions come from a generator seeded by (seed, pass, file index): the result does not depend on the
    number of threads.
    """
    order = _shuffled(paths, seed)
    per_image = max(1, math.ceil(n / len(order)))
    out = np.empty((n, 1, crop, crop), dtype=np.uint8)
    filled, skipped, n_pass = 0, 0, 0

    def crops_of(job):
        (k, path), pass_idx = job
        rgb = read_image(path)
        h, w = rgb.shape[:2]
        if h < crop or w < crop:
            return None
        rng = np.random.default_rng([seed, pass_idx, k])
        rows, cols = rng.integers(0, h - crop + 1, per_image), rng.integers(0, w - crop + 1, per_image)
        if per_image == 1:  # luminance is per pixel: converting only the crop gives the same values, faster
            return rgb_to_luminance(rgb[rows[0]:rows[0] + crop, cols[0]:cols[0] + crop])[None]
        lum = rgb_to_luminance(rgb)
        return np.stack([lum[r:r + crop, c:c + crop] for r, c in zip(rows, cols)])

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        while filled < n:
            usable_this_pass = 0
            for start in range(0, len(order), _CHUNK):
                chunk = [((k, order[k]), n_pass) for k in range(start, min(start + _CHUNK, len(order)))]
                for crops in pool.map(crops_of, chunk):
                    if crops is None:
                        skipped += n_pass == 0
                        continue
                    usable_this_pass += 1
                    take = min(len(crops), n - filled)
                    out[filled:filled + take, 0] = crops[:take]
                    filled += take
                    if filled == n:
                        break
                if filled == n:
                    break
            if usable_this_pass == 0:
                folder = os.path.commonpath([str(p.parent) for p in paths])
                raise ValueError(f"no image under {folder} is at least {crop} x {crop} pixels "
                                 f"({skipped} smaller images skipped)")
            n_pass += 1
    return torch.from_numpy(out), skipped


class CompressionData:
    """The three luminance sets of the task. ``train_crops`` and ``extra_images`` are built on first access
    (an anchor trial never pays for them); ``test_images`` is read at construction.

    train_crops:  uint8 tensor (N, 1, crop, crop).
    extra_images: sequence of (1, 1, H, W) float32 tensors in [0, 255] (H, W multiples of 16).
    test_images:  list of (name, (1, 1, H, W) float32 tensor in [0, 255]) sorted by file name.
    """

    def __init__(self, train_paths: list[Path], test_paths: list[Path], extra_paths: list[Path] | None, *,
                 n_train_crops: int, crop_size: int, n_extra_images: int, extra_crop: int, seed: int = 0,
                 n_test_images: int = 0, test_crop: int = 0):
        self._train_paths, self._extra_paths = train_paths, extra_paths
        self._n_train_crops, self._crop_size, self._seed = n_train_crops, crop_size, seed
        self._n_extra, self._extra_crop = n_extra_images, extra_crop
        self.n_skipped_small = 0
        if n_test_images > 0:
            test_paths = test_paths[:n_test_images]
        self.test_images = []
        for path in test_paths:
            lum = read_luminance(path)
            cropped = crop_to_multiple(lum, test_crop)
            if min(cropped.shape) == 0 or (test_crop > 0 and cropped.shape != (test_crop, test_crop)):
                logger.warning("test image %s (%d x %d) is smaller than test_crop=%d: cropped to %d x %d",
                               path, *lum.shape, test_crop, *cropped.shape)
            if min(cropped.shape) == 0:
                raise ValueError(f"test image {path} is smaller than {STRIDE} x {STRIDE} pixels")
            self.test_images.append((path.stem, _as_float(cropped)))

    @functools.cached_property
    def train_crops(self) -> torch.Tensor:
        crops, self.n_skipped_small = random_crops(self._train_paths, self._n_train_crops, self._crop_size,
                                                   self._seed)
        if self.n_skipped_small:
            logger.warning("training: %d images smaller than %d x %d were skipped (of %d files)",
                           self.n_skipped_small, self._crop_size, self._crop_size, len(self._train_paths))
        return crops

    @functools.cached_property
    def extra_images(self) -> Sequence[torch.Tensor]:
        if self._extra_paths is not None:
            paths = _shuffled(self._extra_paths, self._seed)[:self._n_extra]
        else:  # the training files, from the end of the training order (disjoint from the crops when possible)
            paths = _shuffled(self._train_paths, self._seed)[::-1][:self._n_extra]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            images = list(pool.map(lambda p: crop_to_multiple(read_luminance(p), self._extra_crop), paths))
        return _FloatImages([im for im in images if min(im.shape) > 0])


def _embedded(names: tuple[str, ...]) -> list[Path]:
    import skimage  # only for the location of its shipped images; nothing is downloaded
    folder = Path(skimage.__file__).parent / "data"
    paths = [folder / name for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-image does not ship the embedded images {missing}")
    return paths


def load_data(cfg) -> CompressionData:
    """The task's data for a config: folders named by ``train_dir``/``test_dir``/``extra_dir``, else the embedded
    scikit-image photographs (see the module docstring)."""
    train_paths = list_images(cfg.train_dir, "training") if cfg.train_dir else _embedded(EMBEDDED_TRAIN)
    test_paths = list_images(cfg.test_dir, "test") if cfg.test_dir else _embedded(EMBEDDED_TEST)
    extra_paths = list_images(cfg.extra_dir, "extra") if cfg.extra_dir else None
    return CompressionData(
        train_paths, test_paths, extra_paths, n_train_crops=cfg.n_train_crops, crop_size=cfg.crop_size,
        n_extra_images=cfg.n_extra_images, extra_crop=cfg.extra_crop,
        seed=cfg.data_seed, n_test_images=cfg.n_test_images, test_crop=cfg.test_crop)
