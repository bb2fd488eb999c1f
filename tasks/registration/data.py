"""Data of the registration task (Shu et al., MICCAI 2021, Section 3): Mindboggle101, IXI, a generic folder, and the
embedded default made from nilearn's MNI152 template.

Preprocessing as the paper: the volumes are already affinely aligned to MNI152; each is cropped or padded about its
centre to ``volume_shape`` (default 160 x 192 x 160) and the image divided by its maximum. Pairs are all ordered pairs
(moving, fixed) of distinct subjects of a split (the paper's 42 x 41 = 1,722 training and 20 x 19 = 380 test pairs).
A :class:`Subject` holds file paths and reads its volumes when asked (``load()``), so a dataset's volumes are never
all in memory at once (training keeps the images it decoded in a :class:`VolumeCache`, bounded in bytes). Headers
are read at load time: a non-3D file, an unreadable file, an image and a label volume of different shapes, or a label
volume without its image (and the reverse) stop with a ``ValueError`` naming the file; a missing folder or split
file with a ``FileNotFoundError`` naming it.

Layouts (``dataset``, root ``data_dir``):

* ``mindboggle``: Mindboggle101 as distributed (``Mindboggle101_volumes/`` or the folder inside it), one folder per
  subject, ``<GROUP>_volumes/<GROUP>-<n>/``, with ``t1weighted_brain.MNI152.nii.gz`` (skull-stripped T1 in MNI152)
  and ``labels.DKT31.manual.MNI152.nii.gz`` (the manual DKT31 labels). Train on NKI-RS-22 + NKI-TRT-20 (42
  subjects), test on OASIS-TRT-20 (20), as the paper after its reference [15]. Evaluated labels: the DKT31 cortical
  labels of both hemispheres that lie in the five regions of Table 1 (frontal, parietal, occipital, temporal,
  cingulate): 30 per hemisphere, 60 in all. The grouping of [15] is not published; ours (``DKT_LOBES``) follows the
  lobes of the DKT protocol (Klein & Tourville 2012), with the cingulate gyrus as its own region and the insula,
  which belongs to none of the five, left out. The paper speaks of "25 cortical segmentation parts"; the list it
  used is not published either, so the figures compare with Table 1 only approximately.
* ``ixi``: IXI after FreeSurfer, as the user made it (IXI is distributed raw): one folder per subject with
  ``norm`` and ``aseg`` volumes (``.nii.gz``, ``.nii`` or ``.mgz``, directly or under ``mri/``) affinely aligned to
  MNI152. 80% of the subjects train and 20% test (a split seeded by ``data_seed``, or ``split.json`` in the root
  with ``{"train": [...], "test": [...]}``). Evaluated: left/right cerebral white and grey matter (aseg 2, 41, 3, 42),
  each its own region (Table 1's LWm, RWm, LGm, RGm).
* ``folder``: anyone's data, ``<id>_image.nii.gz`` and ``<id>_labels.nii.gz`` with ``split.json`` =
  ``{"train": [ids], "test": [ids], "labels": {"<label>": "name", ...}, "groups": {"<label>": "group", ...}}``;
  ``labels`` (default: every non-zero label of the first test subject) and ``groups`` (default: each label its
  own group) are optional.
* ``embedded`` (the default; no download): the MNI152 2009a template, its brain mask and its grey/white-matter
  probability maps, all shipped inside the ``nilearn`` wheel, made into an aseg-numbered label volume (white or
  grey matter where their probability is larger and the two sum to at least 0.5; left/right by the midline x = 0),
  cropped as above and resampled to ``volume_shape`` when that is not 160 x 192 x 160. Subject s is that anatomy
  moved by a random smooth deformation (cubic interpolation of N(0, ``deformation`` mm) control displacements on a
  coarse grid) with a random gamma, a smooth multiplicative bias field and Gaussian noise, all seeded by
  (``data_seed``, s). These are synthetic subjects of one real anatomy, not scans of different people; the last
  ``n_test_subjects`` test.
"""
from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PAPER_SHAPE = (160, 192, 160)  # the crop of Section 3, also the embedded anatomy's grid at 1 mm
MINDBOGGLE_TRAIN = ("NKI-RS-22", "NKI-TRT-20")
MINDBOGGLE_TEST = ("OASIS-TRT-20",)
MINDBOGGLE_IMAGE = "t1weighted_brain.MNI152.nii.gz"
MINDBOGGLE_LABELS = "labels.DKT31.manual.MNI152.nii.gz"
# DKT31 cortical regions (FreeSurfer's aparc numbering: 1000 + k left, 2000 + k right) by region of Table 1
DKT_LOBES = {
    "frontal": {3: "caudalmiddlefrontal", 12: "lateralorbitofrontal", 14: "medialorbitofrontal",
                17: "paracentral", 18: "parsopercularis", 19: "parsorbitalis", 20: "parstriangularis",
                24: "precentral", 27: "rostralmiddlefrontal", 28: "superiorfrontal"},
    "parietal": {8: "inferiorparietal", 22: "postcentral", 25: "precuneus", 29: "superiorparietal",
                 31: "supramarginal"},
    "occipital": {5: "cuneus", 11: "lateraloccipital", 13: "lingual", 21: "pericalcarine"},
    "temporal": {6: "entorhinal", 7: "fusiform", 9: "inferiortemporal", 15: "middletemporal",
                 16: "parahippocampal", 30: "superiortemporal", 34: "transversetemporal"},
    "cingulate": {2: "caudalanteriorcingulate", 10: "isthmuscingulate", 23: "posteriorcingulate",
                  26: "rostralanteriorcingulate"},
}
# aseg labels of IXI's Table 1 regions (and of the embedded anatomy): label -> (FreeSurfer name, region)
TISSUES = {2: ("Left-Cerebral-White-Matter", "LWm"), 3: ("Left-Cerebral-Cortex", "LGm"),
           41: ("Right-Cerebral-White-Matter", "RWm"), 42: ("Right-Cerebral-Cortex", "RGm")}
IXI_TRAIN_SHARE = 0.8
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mgz")


def _tissue_labels() -> tuple[dict[int, str], dict[int, str]]:
    """({label: FreeSurfer name}, {label: region}) of ``TISSUES``."""
    return {k: name for k, (name, _) in TISSUES.items()}, {k: g for k, (_, g) in TISSUES.items()}


def _dkt_labels() -> tuple[dict[int, str], dict[int, str]]:
    names, groups = {}, {}
    for offset, hemi in ((1000, "lh"), (2000, "rh")):
        for lobe, regions in DKT_LOBES.items():
            for k, name in regions.items():
                names[offset + k], groups[offset + k] = f"ctx-{hemi}-{name}", lobe
    return dict(sorted(names.items())), groups


# ---------------------------------------------------------------------------------------------- reading volumes

def _open(path: Path):
    """(nibabel image, its 3D shape) of a volume file, from the header only (no voxel read); trailing axes of
    length 1 are dropped. A ValueError names the file when it cannot be read or is not 3D."""
    import nibabel as nib
    try:
        volume = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for truncated or foreign files
        raise ValueError(f"cannot read volume {path}: {exc}") from exc
    shape = tuple(int(s) for s in volume.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ValueError(f"volume {path} has shape {shape}: a 3D volume is needed")
    return volume, shape


def volume_shape_of(path: Path) -> tuple[int, ...]:
    """The shape of a 3D volume from its header (:func:`_open`)."""
    return _open(path)[1]


def read_volume(path: Path) -> np.ndarray:
    """The voxels of a 3D NIfTI or MGH volume as float32, any failure a ValueError naming the file."""
    volume, shape = _open(path)
    try:
        data = np.asanyarray(volume.dataobj, dtype=np.float32)
    except Exception as exc:
        raise ValueError(f"cannot read the voxels of {path}: {exc}") from exc
    return data.reshape(shape)


def fit(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Crop or zero-pad each axis about its centre to ``shape`` (Section 3)."""
    out = np.zeros(tuple(shape), volume.dtype)
    src, dst = [], []
    for n, m in zip(volume.shape, shape):
        if n >= m:
            start = (n - m) // 2
            src.append(slice(start, start + m))
            dst.append(slice(0, m))
        else:
            start = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def normalise(image: np.ndarray, what: str) -> np.ndarray:
    peak = float(image.max())
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError(f"image {what} has no positive voxel (maximum {peak}): it cannot be divided by its maximum")
    return image / peak


# ---------------------------------------------------------------------------------------------- subjects and splits

@dataclass(frozen=True)
class Subject:
    """One subject: its name and either two files or a generator (the embedded data). ``load()`` -> (image float32
    divided by its maximum, labels int32), both of ``shape``."""
    name: str
    shape: tuple[int, ...]
    image: Path | None = None
    labels: Path | None = None
    make: Callable[[], tuple[np.ndarray, np.ndarray]] | None = field(default=None, compare=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        if self.make is not None:
            return self.make()
        labels = fit(np.rint(read_volume(self.labels)).astype(np.int32), self.shape)
        return self.load_image(), labels

    def load_image(self) -> np.ndarray:
        """The image alone (training needs no labels: the label file is not read)."""
        if self.make is not None:
            return self.make()[0]
        return normalise(fit(read_volume(self.image), self.shape), str(self.image)).astype(np.float32)


class VolumeCache:
    """Decoded volumes by key, at most ``max_bytes`` of them held: the least recently used are dropped first to make
    room, and a volume larger than the bound is returned without being kept. ``get(key, load)`` returns the held
    volume or ``load()``'s (which it then holds)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.nbytes = int(max_bytes), 0
        self._held: OrderedDict[Any, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key, load: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._held:
            self._held.move_to_end(key)
            return self._held[key]
        volume = load()
        if volume.nbytes <= self.max_bytes:
            while self.nbytes + volume.nbytes > self.max_bytes:
                self.nbytes -= self._held.popitem(last=False)[1].nbytes
            self._held[key] = volume
            self.nbytes += volume.nbytes
        return volume


def file_subject(name: str, image: Path, labels: Path, shape: Sequence[int]) -> Subject:
    """A subject read from two files, their headers checked now (3D, readable, the same shape)."""
    a, b = volume_shape_of(image), volume_shape_of(labels)
    if a != b:
        raise ValueError(f"image {image} has shape {a} but its labels {labels} have shape {b}")
    return Subject(name, tuple(shape), image, labels)


@dataclass(frozen=True)
class RegistrationData:
    """Training and test subjects, the evaluated labels {label: name} and their region groups {label: group}."""
    train: list[Subject]
    test: list[Subject]
    labels: dict[int, str]
    groups: dict[int, str]
    n_test_pairs: int = 0

    def train_pairs(self) -> list[tuple[int, int]]:
        """All ordered pairs (moving, fixed) of distinct training subjects."""
        return ordered_pairs(len(self.train))

    def test_pairs(self) -> list[tuple[int, int]]:
        """All ordered test pairs, or the first ``n_test_pairs`` of them."""
        pairs = ordered_pairs(len(self.test))
        return pairs[:self.n_test_pairs] if self.n_test_pairs else pairs


def ordered_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in VOLUME_SUFFIXES:
        for place in (folder / f"{stem}{suffix}", folder / "mri" / f"{stem}{suffix}"):
            if place.is_file():
                return place
    return None


def _root(data_dir: str | Path, what: str) -> Path:
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder {str(root)!r} does not exist or is not a folder")
    return root


def mindboggle_root(data_dir: str | Path) -> Path:
    """The folder holding the ``<GROUP>_volumes`` folders: ``data_dir`` or its ``Mindboggle101_volumes``."""
    root = _root(data_dir, "Mindboggle101")
    inner = root / "Mindboggle101_volumes"
    return inner if inner.is_dir() else root


def mindboggle_problems(data_dir: str | Path) -> list[str]:
    """What is missing from a Mindboggle101 layout (cheap: folders only), for the spec check."""
    try:
        root = mindboggle_root(data_dir)
    except FileNotFoundError as exc:
        return [str(exc)]
    return [f"Mindboggle101 folder {str(root / f'{g}_volumes')!r} does not exist"
            for g in (*MINDBOGGLE_TRAIN, *MINDBOGGLE_TEST) if not (root / f"{g}_volumes").is_dir()]


def load_mindboggle(data_dir: str | Path, shape: Sequence[int], n_test_pairs: int = 0) -> RegistrationData:
    root = mindboggle_root(data_dir)
    problems = mindboggle_problems(root)
    if problems:
        raise FileNotFoundError("; ".join(problems))

    def group(name: str) -> list[Subject]:
        folders = sorted((p for p in (root / f"{name}_volumes").iterdir() if p.is_dir()),
                         key=lambda p: (len(p.name), p.name))  # NKI-RS-22-2 before NKI-RS-22-10
        out = []
        for folder in folders:
            image, labels = folder / MINDBOGGLE_IMAGE, folder / MINDBOGGLE_LABELS
            if image.is_file() != labels.is_file():
                there, missing = (image, labels) if image.is_file() else (labels, image)
                raise ValueError(f"{there} has no matching {missing.name} in {folder}")
            if image.is_file():
                out.append(file_subject(folder.name, image, labels, shape))
        if not out:
            raise FileNotFoundError(f"Mindboggle101 folder {str(root / f'{name}_volumes')!r} holds no subject with "
                                    f"{MINDBOGGLE_IMAGE} and {MINDBOGGLE_LABELS}")
        return out

    names, groups = _dkt_labels()
    return RegistrationData([s for g in MINDBOGGLE_TRAIN for s in group(g)],
                            [s for g in MINDBOGGLE_TEST for s in group(g)], names, groups, n_test_pairs)


def _read_split(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"split file {str(path)!r} does not exist")
    try:
        split = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read split file {path}: {exc}") from exc
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "test")):
        raise ValueError(f"split file {path} needs lists 'train' and 'test'")
    return split


def load_ixi(data_dir: str | Path, shape: Sequence[int], seed: int = 0, n_test_pairs: int = 0) -> RegistrationData:
    root = _root(data_dir, "IXI")
    subjects = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        image, labels = _find(folder, "norm"), _find(folder, "aseg")
        if (image is None) != (labels is None):
            there = image or labels
            raise ValueError(f"{there} has no matching {'aseg' if labels is None else 'norm'} volume in {folder}")
        if image is not None:
            subjects[folder.name] = file_subject(folder.name, image, labels, shape)
    if len(subjects) < 4:
        raise FileNotFoundError(f"IXI folder {str(root)!r} holds {len(subjects)} subject folder(s) with norm and "
                                "aseg volumes; at least 4 are needed (two to train, two to test)")
    if (root / "split.json").is_file():
        split = _read_split(root / "split.json")
        train, test = _named(subjects, split["train"], root), _named(subjects, split["test"], root)
    else:
        names = sorted(subjects)
        order = np.random.default_rng(seed).permutation(len(names))
        cut = max(2, min(len(names) - 2, round(IXI_TRAIN_SHARE * len(names))))
        train = [subjects[names[k]] for k in sorted(order[:cut])]
        test = [subjects[names[k]] for k in sorted(order[cut:])]
    return RegistrationData(train, test, *_tissue_labels(), n_test_pairs)


def _named(subjects: dict[str, Subject], names: list, root: Path) -> list[Subject]:
    unknown = [str(n) for n in names if str(n) not in subjects]
    if unknown:
        raise ValueError(f"split file in {root} names subjects that are not there: {', '.join(unknown[:5])}")
    return [subjects[str(n)] for n in names]


def load_folder(data_dir: str | Path, shape: Sequence[int], n_test_pairs: int = 0) -> RegistrationData:
    root = _root(data_dir, "data")
    images = {p.name[:-len("_image.nii.gz")]: p for p in root.glob("*_image.nii.gz")}
    labels = {p.name[:-len("_labels.nii.gz")]: p for p in root.glob("*_labels.nii.gz")}
    for a, b, what in ((labels, images, "_image.nii.gz"), (images, labels, "_labels.nii.gz")):
        alone = sorted(set(a) - set(b))
        if alone:
            raise ValueError(f"{a[alone[0]]} has no matching {alone[0]}{what} in {root}")
    split = _read_split(root / "split.json")
    subjects = {k: file_subject(k, images[k], labels[k], shape) for k in images}
    train, test = _named(subjects, split["train"], root), _named(subjects, split["test"], root)
    if "labels" in split:
        names = {int(k): str(v) for k, v in split["labels"].items()}
    else:
        found = np.unique(test[0].load()[1]) if test else []
        names = {int(k): str(int(k)) for k in found if k != 0}
    groups = {int(k): str(v) for k, v in split.get("groups", {}).items()}
    return RegistrationData(train, test, names, {k: groups.get(k, v) for k, v in names.items()}, n_test_pairs)


# ---------------------------------------------------------------------------------------------- the embedded data

@functools.lru_cache(maxsize=4)
def mni152_anatomy(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(image, aseg-numbered labels) of the MNI152 template shipped in nilearn, skull-stripped by its brain mask,
    cropped to 160 x 192 x 160 at 1 mm and resampled to ``shape`` (module docstring)."""
    from nilearn import datasets
    from scipy import ndimage
    template = datasets.load_mni152_template(resolution=1)
    t1 = np.asarray(template.get_fdata(), np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata()) > 0.5
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(), np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), np.float32)
    x = template.affine[0, 0] * np.arange(t1.shape[0]) + template.affine[0, 3]  # world x (RAS: + is right)
    left = np.broadcast_to((x < 0)[:, None, None], t1.shape)
    tissue = (gm + wm >= 0.5) & mask
    labels = np.zeros(t1.shape, np.int32)
    labels[tissue & (wm >= gm) & left], labels[tissue & (wm >= gm) & ~left] = 2, 41
    labels[tissue & (gm > wm) & left], labels[tissue & (gm > wm) & ~left] = 3, 42
    image, labels = fit(t1 * mask, PAPER_SHAPE), fit(labels, PAPER_SHAPE)
    if tuple(shape) != PAPER_SHAPE:
        zoom = [m / n for n, m in zip(PAPER_SHAPE, shape)]
        image = ndimage.zoom(image, zoom, order=1, grid_mode=True, mode="grid-constant")
        labels = ndimage.zoom(labels, zoom, order=0, grid_mode=True, mode="grid-constant")
    return normalise(image, "MNI152 template").astype(np.float32), labels.astype(np.int32)


def smooth_field(shape: Sequence[int], amplitude: float, rng: np.random.Generator, spacing: int = 32,
                 components: int = 3) -> np.ndarray:
    """(components, *shape) random smooth field: N(0, amplitude) values on a control grid of about ``spacing``
    voxels of the 1 mm grid, interpolated with cubic splines to ``shape``."""
    from scipy import ndimage
    coarse = tuple(max(2, round(n / spacing) + 1) for n in PAPER_SHAPE)
    values = rng.normal(0.0, amplitude, size=(components, *coarse))
    zoom = [m / n for n, m in zip(coarse, shape)]
    return np.stack([ndimage.zoom(v, zoom, order=3, mode="nearest", grid_mode=True) for v in values])


@functools.lru_cache(maxsize=32)
def embedded_subject(index: int, shape: tuple[int, ...], deformation: float, seed: int) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """Subject ``index`` of the embedded data (module docstring): the anatomy moved by a smooth deformation of
    N(0, ``deformation``) mm control displacements, with a random gamma, bias field and noise. Cached (the embedded
    subjects are few by design)."""
    from scipy import ndimage
    base, base_labels = mni152_anatomy(shape)
    rng = np.random.default_rng([seed, index])
    mm = np.array([m / n for n, m in zip(PAPER_SHAPE, shape)])  # voxels per mm along each axis
    displacement = smooth_field(shape, deformation, rng) * mm[:, None, None, None]
    coords = np.indices(shape, dtype=np.float32) + displacement
    image = ndimage.map_coordinates(base, coords, order=1, mode="constant")
    labels = ndimage.map_coordinates(base_labels, coords, order=0, mode="constant")
    bias = np.exp(smooth_field(shape, 0.1, rng, spacing=80, components=1)[0])
    image = np.clip(image, 0, None) ** np.exp(rng.normal(0.0, 0.1)) * bias
    image = image + (image > 0) * rng.normal(0.0, 0.01, size=shape)
    return normalise(np.clip(image, 0, None), f"embedded subject {index}").astype(np.float32), labels.astype(np.int32)


def load_embedded(shape: Sequence[int], n_subjects: int, n_test: int, deformation: float, seed: int,
                  n_test_pairs: int = 0) -> RegistrationData:
    shape = tuple(int(s) for s in shape)
    subjects = [Subject(f"mni152-synth-{k:02d}", shape,
                        make=functools.partial(embedded_subject, k, shape, float(deformation), int(seed)))
                for k in range(n_subjects)]
    return RegistrationData(subjects[:n_subjects - n_test], subjects[n_subjects - n_test:], *_tissue_labels(),
                            n_test_pairs)


def layout_problems(cfg) -> list[str]:
    """Cheap checks of the dataset's folders, for the config's check at spec load (the files are read later)."""
    if cfg.dataset == "mindboggle" and cfg.data_dir:
        return mindboggle_problems(cfg.data_dir)
    if cfg.dataset == "folder" and cfg.data_dir and not (Path(cfg.data_dir).expanduser() / "split.json").is_file():
        return [f"data_dir: {cfg.data_dir} has no split.json"]
    return []


def load_data(cfg) -> RegistrationData:
    shape = tuple(cfg.volume_shape)
    if cfg.dataset == "mindboggle":
        return load_mindboggle(cfg.data_dir, shape, cfg.n_test_pairs)
    if cfg.dataset == "ixi":
        return load_ixi(cfg.data_dir, shape, cfg.data_seed, cfg.n_test_pairs)
    if cfg.dataset == "folder":
        return load_folder(cfg.data_dir, shape, cfg.n_test_pairs)
    return load_embedded(shape, cfg.n_subjects, cfg.n_test_subjects, cfg.deformation, cfg.data_seed,
                         cfg.n_test_pairs)
