"""Images and ground truth of the `segmentation` task (Kanezaki, "Unsupervised image segmentation by
backpropagation", ICASSP 2018, Section 3).

The paper evaluates on the BSDS500 test set: 200 images, each annotated by several people (Section 3; the metric
compares a segmentation with every annotator's segments). Every image is a :class:`Sample`: ``image`` float32
(H, W, 3) in [0, 1], ``gts`` one int32 (H, W) label map per annotator with **0-based** labels (BSDS500 stores them
1-based: the loader subtracts 1). int32 rather than int64 halves the memory of the 200 test images (about 330 MB of
label maps), and rather than uint16/int16 leaves room for label arithmetic (contingency tables) downstream.

BSDS500 layout (``cfg.data_dir``, ``cfg.split``)::

    <root>/images/<split>/<stem>.jpg
    <root>/groundTruth/<split>/<stem>.mat   # MATLAB v5: groundTruth = 1xN cell of structs {Segmentation, Boundaries}

Images and .mat files are paired by stem and sorted by name; ``cfg.n_images`` > 0 keeps the first N pairs. Files
that are neither images nor .mat (the archive's ``Thumbs.db``) are ignored. An image without its .mat, or a .mat
without its image, is an **error**, not a skip: the official folders pair exactly, so an unpaired file means a
partial copy or a wrong folder, and skipping it would silently change the set the paper's numbers are measured on.
Unreadable files, a missing ``groundTruth`` variable, labels below 1 and a segmentation whose shape differs from its
image's raise ``ValueError`` naming the file; missing folders raise ``FileNotFoundError`` naming the folder.
MATLAB v7.3 (HDF5) files are not supported (BSDS500 ships v5 files).

Embedded default (``cfg.data_dir`` empty; no download): ``cfg.n_mosaics`` texture mosaics of side
``cfg.mosaic_size`` with exact ground truth, named ``mosaic_00``, ``mosaic_01``... (``cfg.n_images`` caps their
number too). Mosaic i: 3..8 Voronoi cells around integer seed pixels at least ``size / 5`` apart, drawn from a
generator seeded with (2018, i), so a mosaic depends only on its index and size; each cell is filled with a crop,
at a random offset, of a different texture photograph shipped inside scikit-image (table ``TEXTURES``; greyscale
files are repeated to RGB; a texture smaller than the mosaic is extended by mirror reflection). Two annotators, as
BSDS500 has several: annotator 0 is the exact cell map; annotator 1 merges the two cells that share the longest
border (a coarser annotator, which exercises multi-annotator code).

:func:`~.testing.write_bsds_fixture` writes samples in the BSDS500 format (JPEG images, v5 .mat files), for tests
and for users who want to run the loader on their own annotated images.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from sweeplab.api import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MOSAIC_SEED = 2018
MIN_REGIONS, MAX_REGIONS = 3, 8
# name: (file under skimage/data, crop box (left, top, right, bottom) of its texture-like part, or None: whole image)
TEXTURES = {
    "brick": ("brick.png", None),
    "grass": ("grass.png", None),
    "gravel": ("gravel.png", None),
    "moon": ("moon.png", (0, 200, 512, 512)),
    "histology": ("ihc.png", None),
    "galaxies": ("hubble_deep_field.jpg", None),
    "retina": ("retina.jpg", (420, 780, 1000, 1200)),
    "wood": ("coffee.png", (465, 275, 600, 400)),
    "fur": ("chelsea.png", (110, 0, 330, 70)),
}


@dataclass
class Sample:
    """One image: ``image`` float32 (H, W, 3) in [0, 1]; ``gts`` int32 (H, W) 0-based labels, one per annotator."""
    name: str
    image: np.ndarray
    gts: list[np.ndarray]


@dataclass
class SegmentationData:
    """The evaluation images of a config, in a fixed order; ``source`` says where they came from."""
    images: list[Sample]
    source: str

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------------------------------------------- BSDS500

def as_unit_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [0, 1], a :class:`Sample`'s ``image``."""
    return rgb.astype(np.float32) / np.float32(255.0)


def _unwrap(value):
    """MATLAB cells arrive as object arrays of size 1 around the real value: peel them off."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.item()
    return value


def read_ground_truth(path: str | Path) -> list[np.ndarray]:
    """The annotators' label maps of a BSDS500 .mat file, as int32 (H, W) with 0-based labels."""
    try:
        mat = scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as exc:
        raise ValueError(f"cannot read ground-truth file {path} (MATLAB v5 expected): {exc}") from exc
    if "groundTruth" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"ground-truth file {path} has no variable 'groundTruth' (variables: {found})")
    var = np.asarray(mat["groundTruth"])
    if var.dtype.names:  # a struct array rather than a cell array of structs: one struct per annotator
        cells = [var.ravel()[i:i + 1] for i in range(var.size)]
    else:
        cells = var.ravel()
    if len(cells) == 0:
        raise ValueError(f"ground-truth file {path} holds no annotator")
    gts = []
    for i, cell in enumerate(cells):
        struct = _unwrap(cell)
        if not isinstance(struct, np.ndarray) or "Segmentation" not in (struct.dtype.names or ()):
            raise ValueError(f"ground-truth file {path}: annotator {i} has no field 'Segmentation'")
        seg = np.asarray(_unwrap(struct["Segmentation"].ravel()[0]))
        if seg.ndim != 2 or seg.dtype.kind not in "uif" or (seg.dtype.kind == "f" and np.any(seg != np.round(seg))):
            raise ValueError(f"ground-truth file {path}: annotator {i}'s Segmentation is not a 2-D integer label "
                             f"map (shape {seg.shape}, dtype {seg.dtype})")
        if seg.size and seg.min() < 1:
            raise ValueError(f"ground-truth file {path}: annotator {i}'s Segmentation has label {seg.min():g}; "
                             "BSDS500 labels start at 1")
        gts.append(seg.astype(np.int32) - 1)
    return gts


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in files:
                raise ValueError(f"two files with stem {path.stem!r} in {folder}: {files[path.stem].name}, "
                                 f"{path.name}")
            files[path.stem] = path
    return files


def bsds_pairs(root: str | Path, split: str) -> list[tuple[str, Path, Path]]:
    """(stem, image path, .mat path) of every image of a BSDS500 split, sorted by stem."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"BSDS500 root {str(root)!r} does not exist or is not a folder")
    image_dir, gt_dir = root / "images" / split, root / "groundTruth" / split
    for folder in (image_dir, gt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"BSDS500 folder {str(folder)!r} does not exist (expected "
                                    f"<root>/images/{split} and <root>/groundTruth/{split})")
    images, mats = _by_stem(image_dir, IMAGE_EXTENSIONS), _by_stem(gt_dir, (".mat",))
    for have, lack, what in ((images, mats, f".mat file in {gt_dir}"), (mats, images, f"image in {image_dir}")):
        unpaired = sorted(set(have) - set(lack))
        if unpaired:
            shown = ", ".join(str(have[s]) for s in unpaired[:5]) + (" ..." if len(unpaired) > 5 else "")
            raise ValueError(f"{len(unpaired)} file(s) without a matching {what}: {shown}")
    if not images:
        raise FileNotFoundError(f"BSDS500 folder {str(image_dir)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return [(stem, images[stem], mats[stem]) for stem in sorted(images)]


def load_bsds(root: str | Path, split: str, n_images: int = 0) -> SegmentationData:
    """The samples of a BSDS500 split (see the module docstring); ``n_images`` > 0 keeps the first N."""
    pairs = bsds_pairs(root, split)
    if n_images > 0:
        pairs = pairs[:n_images]
    samples = []
    for stem, image_path, mat_path in pairs:
        image, gts = as_unit_float(read_image(image_path)), read_ground_truth(mat_path)
        for i, gt in enumerate(gts):
            if gt.shape != image.shape[:2]:
                raise ValueError(f"ground-truth file {mat_path}: annotator {i}'s Segmentation is {gt.shape[0]} x "
                                 f"{gt.shape[1]} but image {image_path} is {image.shape[0]} x {image.shape[1]}")
        samples.append(Sample(stem, image, gts))
    return SegmentationData(samples, source=f"bsds500:{Path(root).expanduser() / 'images' / split}")


# ---------------------------------------------------------------------------------------------- texture mosaics

@functools.lru_cache(maxsize=None)
def texture(name: str) -> np.ndarray:
    """Texture ``name`` of ``TEXTURES`` as float32 RGB (h, w, 3) in [0, 1] (read-only, cached)."""
    import skimage  # only for the location of its shipped images; nothing is downloaded
    filename, box = TEXTURES[name]
    path = Path(skimage.__file__).parent / "data" / filename
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image does not ship the texture image {path}")
    rgb = as_unit_float(read_image(path))
    if box is not None:
        left, top, right, bottom = box
        rgb = rgb[top:bottom, left:right]
    rgb = np.ascontiguousarray(rgb)
    rgb.flags.writeable = False
    return rgb


def _seed_points(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integer pixel positions at least ``size / 5`` apart (rejection sampling; the bound is relaxed if a
    draw keeps failing, which only happens for tiny sizes)."""
    min_dist = size / 5.0
    while True:
        points: list[np.ndarray] = []
        for _ in range(1000 * n):
            p = rng.integers(0, size, 2)
            if all(np.hypot(*(p - q)) >= min_dist for q in points):
                points.append(p)
                if len(points) == n:
                    return np.stack(points)
        min_dist *= 0.8


def voronoi_regions(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """int32 (size, size) map of the Voronoi cells of ``n`` seed pixels, labels 0..n-1 (each cell holds its own
    seed pixel, so none is empty; cells are convex, hence connected)."""
    seeds = _seed_points(size, n, rng)
    yy, xx = np.mgrid[:size, :size]
    d2 = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return np.argmin(d2, axis=0).astype(np.int32)


def merge_longest_border(regions: np.ndarray) -> np.ndarray:
    """The label map with the two regions that share the longest border merged, relabelled 0..n-2."""
    n = int(regions.max()) + 1
    a = np.concatenate([regions[:, :-1].ravel(), regions[:-1, :].ravel()])
    b = np.concatenate([regions[:, 1:].ravel(), regions[1:, :].ravel()])
    differ = a != b
    lo, hi = np.minimum(a, b)[differ], np.maximum(a, b)[differ]
    counts = np.bincount(lo.astype(np.int64) * n + hi, minlength=n * n)
    keep, drop = divmod(int(np.argmax(counts)), n)  # argmax: the first pair in (lo, hi) order on ties
    merged = np.where(regions == drop, keep, regions)
    return np.unique(merged, return_inverse=True)[1].reshape(regions.shape).astype(np.int32)


@dataclass
class Mosaic:
    """A mosaic, its exact cell map, and per cell ``(texture name, top, left)`` of the crop that fills it."""
    image: np.ndarray
    regions: np.ndarray
    patches: list[tuple[str, int, int]]


def make_mosaic(index: int, size: int) -> Mosaic:
    """Mosaic ``index`` of side ``size`` (see the module docstring); deterministic in (index, size)."""
    rng = np.random.default_rng([MOSAIC_SEED, index])
    n = int(rng.integers(MIN_REGIONS, MAX_REGIONS + 1))
    regions = voronoi_regions(size, n, rng)
    names = list(TEXTURES)
    image = np.empty((size, size, 3), dtype=np.float32)
    patches = []
    for region, t in enumerate(rng.choice(len(names), n, replace=False)):
        tex = texture(names[t])
        h, w = tex.shape[:2]
        if h < size or w < size:  # extend by mirror reflection rather than rescale: keeps the texture's scale
            tex = np.pad(tex, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="symmetric")
        top, left = int(rng.integers(0, tex.shape[0] - size + 1)), int(rng.integers(0, tex.shape[1] - size + 1))
        mask = regions == region
        image[mask] = tex[top:top + size, left:left + size][mask]
        patches.append((names[t], top, left))
    return Mosaic(image, regions, patches)


def mosaic_sample(index: int, size: int) -> Sample:
    mosaic = make_mosaic(index, size)
    return Sample(f"mosaic_{index:02d}", mosaic.image, [mosaic.regions, merge_longest_border(mosaic.regions)])


def load_data(cfg) -> SegmentationData:
    """The task's images: the BSDS500 split under ``cfg.data_dir``, else the embedded texture mosaics."""
    if cfg.data_dir:
        return load_bsds(cfg.data_dir, cfg.split, cfg.n_images)
    n = cfg.n_mosaics if cfg.n_images <= 0 else min(cfg.n_mosaics, cfg.n_images)
    return SegmentationData([mosaic_sample(i, cfg.mosaic_size) for i in range(n)], source="mosaics")
