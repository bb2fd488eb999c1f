"""The ``files`` layout of the restoration task (``data.py``'s module docstring): listing, checking and reading
the folders of clean photos Y, old photos R with their optional scratch masks, and the test photos. Images are read
when used (``Files``); their headers are read at load time, so an unreadable file stops the load naming it.

Clean and test images smaller than the crop are skipped with a warning (the authors' loader); old photos that small
are scaled up to the crop (``upscaled``; the authors' old-photo loader rescales them).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from sweeplab.api import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Files(Sequence):
    """Images (or masks) read from their files on access, ``read(path)``; a None path reads as None."""

    def __init__(self, paths: Sequence[Path | None], read: Callable[[Path], np.ndarray]):
        self.paths, self.read = list(paths), read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return Files(self.paths[k], self.read)
        return None if self.paths[k] is None else self.read(self.paths[k])


def images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in name order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _size(path: Path) -> tuple[int, int]:
    """(height, width) from the header; a ValueError names an unreadable file."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception as exc:  # PIL raises several types for foreign or truncated files
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def large_enough(what: str, size: tuple[int, int], crop: int) -> bool:
    if min(size) < crop:
        warnings.warn(f"skipped {what}: {size[0]} x {size[1]} is smaller than the {crop} x {crop} crop",
                      stacklevel=3)
        return False
    return True


def kept(paths: list[Path], crop: int) -> list[Path]:
    """The paths whose image has both sides >= crop (headers read now; the others warned about)."""
    return [p for p in paths if large_enough(str(p), _size(p), crop)]


def clean_folder(clean_dir: str | Path) -> Path:
    """The folder of Y's images: ``JPEGImages/`` of a Pascal VOC root, else ``clean_dir`` itself."""
    root = Path(clean_dir).expanduser()
    return root / "JPEGImages" if (root / "JPEGImages").is_dir() else root


def layout_problems(cfg) -> list[str]:
    """Cheap checks of the ``files`` folders (listings only), for the config's check at spec load."""
    if cfg.dataset != "files":
        return []
    if not cfg.clean_dir:
        return ["clean_dir: needed with dataset files (a Pascal VOC root or a folder of images)"]
    problems = []
    folders = [("clean_dir", clean_folder(cfg.clean_dir)), ("old_dir", cfg.old_dir), ("mask_dir", cfg.mask_dir),
               ("test_dir", cfg.test_dir)]
    for name, folder in folders:
        if not folder:
            continue
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            problems.append(f"{name}: folder {str(folder)!r} does not exist")
        elif not images_in(folder):
            where = " (nor a JPEGImages/ folder with them)" if name == "clean_dir" else ""
            problems.append(f"{name}: folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}){where}")
    if cfg.mask_dir and not cfg.old_dir:
        problems.append("mask_dir: its masks label the photos of old_dir, which is not set")
    return problems


def upscaled(img: np.ndarray, crop: int, resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """``img`` (H, W[, C]) scaled up so its short side is ``crop`` (aspect kept; bicubic, nearest for masks), or
    itself when both sides are already >= crop: the authors' loader rescales old photos smaller than the crop."""
    h, w = img.shape[:2]
    if min(h, w) >= crop:
        return img
    scale = crop / min(h, w)
    size = (max(crop, round(w * scale)), max(crop, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, resample))


def readers_of_old(crop: int):
    """Readers of an old photo and of its mask, each scaled up to the crop when smaller (``upscaled``)."""
    def photo(path):
        return upscaled(read_image(path), crop)

    def mask(path):  # float32 (H, W) in {0, 1}: white (> 127) is scratch
        return (upscaled(read_image(path, mode="L"), crop, Image.Resampling.NEAREST) > 127).astype(np.float32)
    return photo, mask


def old_photos(cfg, crop: int) -> tuple[list[Path], list[Path | None]]:
    """R's image paths and their mask paths (or None) from ``old_dir`` and ``mask_dir``; old photos smaller than
    the crop are kept (read scaled up, ``upscaled``), as the authors' loader does (Y's small photos are skipped)."""
    if not cfg.old_dir:
        return [], []
    every = images_in(Path(cfg.old_dir).expanduser())
    for path in every:
        _size(path)  # headers read now: an unreadable photo stops the load
    by_stem, masks = {p.stem: p for p in every}, {}
    for path in images_in(Path(cfg.mask_dir).expanduser()) if cfg.mask_dir else []:
        image = by_stem.get(path.stem)
        if image is None:
            raise ValueError(f"mask {path} has no matching image (same name) in old_dir {cfg.old_dir}")
        if _size(path) != _size(image):
            raise ValueError(f"mask {path} is {_size(path)} but its image {image} is {_size(image)} (height, width)")
        masks[path.stem] = path
    return every, [masks.get(p.stem) for p in every]
