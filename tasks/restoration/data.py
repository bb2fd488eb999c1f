"""Data of the restoration task (Wan et al., CVPR 2020, Section 3 and its experiments): the clean photos Y, the
old photos R, scratch masks, the held-out synthetic test, and the seeded batches of each training stage.

Layouts (``dataset``):

* ``files``: ``clean_dir`` holds Y, a Pascal VOC root (its ``JPEGImages/``, the authors' training photos) or a
  folder of images; ``old_dir`` the real old photos R ("" = none); ``mask_dir`` optional scratch masks (white =
  scratch) named as photos of ``old_dir`` (same stem, same size): they label those photos for the detector and
  are the bank of masks pasted on synthetic samples ("" = the procedural :func:`~.degrade.scratch_mask`);
  ``test_dir`` clean photos of the held-out synthetic test, e.g. DIV2K_valid_HR (the paper's evaluation) -- its
  first ``n_test`` in name order; "" holds out the last ``n_test`` images of ``clean_dir`` in name order. Images
  are read when used (a VOC JPEGImages folder decodes to about 10 GB); their headers are read at load time.
* ``embedded`` (the default; no download): photographs shipped inside scikit-image. The colour ones
  (:data:`EMBEDDED_PHOTOS`) give Y from their left parts and the test from their right bands (``held_out_split``:
  disjoint pixels; there are too few colour photos for disjoint sets of photos, and training Y on the grey or
  texture images would leave the VAE of clean photos unable to give colour back); the grey ones
  (:data:`EMBEDDED_OLD`) are made into the aged prints R by :func:`~.degrade.aged_print` seeded by ``data_seed``
  (NOT real old photos, and their scratch masks are known).

Clean and test images with a side under ``crop`` are skipped with a warning naming them (as the authors' loader);
old photos R that small are scaled up to the crop instead (the authors' loader of old photos); unreadable
images, masks without a matching image or of another size, and missing or empty folders raise ``ValueError``
naming them. Test image k is a ``crop`` x ``crop`` centre crop (embedded: the centred grid of crops of the few
test bands, taken photo by photo in turn, as there are fewer photos than ``n_test``), degraded by the four
operations of :func:`~.degrade.degrade` and never greyed (the authors' synthetic test), and scratched on a share
``test_scratch_p`` of the images (:func:`scratched`); all from ``data_seed``, so every trial sees the same test.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweeplab.api import read_image

from .degrade import COLOUR, aged_print, degrade, greyscale, maybe_grey, paste_scratches, scratch_mask
from .files import Files, clean_folder, images_in, kept, large_enough, layout_problems, old_photos, readers_of_old

# scikit-image's bundled photographs (none downloads: lily, skin, eagle... do and are not used), disjoint roles
# colour photographs: their left parts are Y, their right bands the held-out test (``held_out_split``)
EMBEDDED_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
EMBEDDED_OLD = ("camera", "coins", "clock", "moon")
REAL_SHARE = 0.5  # share of detection samples from real old photos with masks, when there are any (ours)
_TEST_STREAM, _OLD_STREAM = 1, 2  # keys of the data_seed streams


@dataclass
class TestImage:
    """One held-out test image: ``clean`` and ``degraded`` uint8 (crop, crop, 3), ``mask`` float32 (crop, crop)
    of the scratches pasted on ``degraded`` (zeros when none were)."""
    __test__ = False  # not a pytest class
    name: str
    clean: np.ndarray
    degraded: np.ndarray
    mask: np.ndarray


@dataclass
class RestorationData:
    """Y training photos (``clean``), R photos (``old``) with their masks or None each (``old_masks``), the bank of
    scratch masks pasted on synthetic samples (``mask_bank``; empty: procedural), the test and a description."""
    clean: Sequence[np.ndarray]
    old: Sequence[np.ndarray]
    old_masks: Sequence[np.ndarray | None]
    mask_bank: Sequence[np.ndarray]
    test: list[TestImage]
    source: str

    @functools.cached_property
    def masked_old(self) -> list[int]:
        """Indices of the old photos that have a mask (no file is read)."""
        masks = self.old_masks
        return [k for k, m in enumerate(masks.paths if isinstance(masks, Files) else masks) if m is not None]


# ---------------------------------------------------------------------------------------------- the files layout

def load_files(cfg) -> RestorationData:
    problems = layout_problems(cfg)
    if problems:
        raise ValueError("; ".join(problems))
    crop, n_test = int(cfg.crop), int(cfg.n_test)
    clean = kept(images_in(clean_folder(cfg.clean_dir)), crop)
    if cfg.test_dir:
        test_paths = kept(images_in(Path(cfg.test_dir).expanduser()), crop)
        if len(test_paths) < n_test:
            raise ValueError(f"test_dir {cfg.test_dir} holds {len(test_paths)} usable images, n_test is {n_test}")
        test_paths = test_paths[:n_test]
    else:
        if len(clean) <= n_test:
            raise ValueError(f"clean_dir {cfg.clean_dir} holds {len(clean)} usable images: too few to hold out "
                             f"n_test = {n_test} and train on the rest (or set test_dir)")
        clean, test_paths = clean[:-n_test], clean[-n_test:]
    old, old_masks = old_photos(cfg, crop)
    read_old, read_old_mask = readers_of_old(crop)
    bank = Files([m for m in old_masks if m is not None], read_old_mask)
    test = make_test([(p.stem, read_image(p)) for p in test_paths], crop, int(cfg.data_seed), bank, per_photo=1,
                     scratch_share=cfg.test_scratch_p)
    source = (f"files: Y {len(clean)} from {clean_folder(cfg.clean_dir)}, R {len(old)}"
              f"{f' from {cfg.old_dir}' if cfg.old_dir else ''}, masks {len(bank) or 'procedural'}, test {len(test)} "
              f"from {cfg.test_dir or 'the last of Y'}")
    return RestorationData(Files(clean, read_image), Files(old, read_old), Files(old_masks, read_old_mask), bank,
                           test, source)


# ---------------------------------------------------------------------------------------------- the test set

def grid_crops(img: np.ndarray, crop: int, per_photo: int | None) -> list[np.ndarray]:
    """The centred grid of non-overlapping crop x crop crops, row by row (per_photo=1: the centre crop)."""
    h, w = img.shape[:2]
    ny, nx = (1, 1) if per_photo == 1 else (h // crop, w // crop)
    y0, x0 = (h - ny * crop) // 2, (w - nx * crop) // 2
    crops = [img[y0 + i * crop:y0 + (i + 1) * crop, x0 + j * crop:x0 + (j + 1) * crop]
             for i in range(ny) for j in range(nx)]
    return crops[:per_photo] if per_photo else crops


def scratched(k: int, share: float) -> bool:
    """Whether test image k gets scratches: spread evenly, floor((k + 1) share) > floor(k share), so the first n
    images hold round(n share) of them to within one (share 0.5: the odd k; 0: none; 1: all)."""
    return math.floor((k + 1) * share) > math.floor(k * share)


def make_test(photos: list[tuple[str, np.ndarray]], crop: int, seed: int, bank: Sequence[np.ndarray] = (),
              n: int | None = None, per_photo: int | None = 1, scratch_share: float = 0.5) -> list[TestImage]:
    """Test images from (name, photo) pairs (module docstring): crops taken photo by photo in turn, the first
    ``n`` (None: all); image k degraded by the four operations, never greyed (``degrade.COLOUR``: the authors'
    synthetic test), with a generator of (seed, k); scratches pasted when :func:`scratched` (k, ``scratch_share``)
    (a mask of ``bank`` when there is one, else a procedural one)."""
    per = [[(f"{name}" if len(c) == 1 else f"{name}-{i}", x) for i, x in enumerate(c)]
           for name, c in ((name, grid_crops(img, crop, per_photo)) for name, img in photos)]
    order = [row[r] for r in range(max(map(len, per), default=0)) for row in per if r < len(row)][:n]
    out = []
    for k, (name, clean) in enumerate(order):
        rng = np.random.default_rng([seed, _TEST_STREAM, k])
        degraded = degrade(np.ascontiguousarray(clean), rng, COLOUR)
        mask = np.zeros((crop, crop), np.float32)
        if scratched(k, scratch_share):
            mask = _bank_mask(bank, crop, rng)
            degraded = paste_scratches(degraded, mask)
        out.append(TestImage(name, np.ascontiguousarray(clean), degraded, mask))
    return out


def _bank_mask(bank: Sequence[np.ndarray], crop: int, rng: np.random.Generator, tries: int = 10) -> np.ndarray:
    """A scratch mask with some scratch in it (a sample meant to be scratched always is): a random crop (and flip)
    of a random mask of the bank (its masks are at least crop on a side), else a procedural one (a small crop can
    miss every curve), up to ``tries`` draws, then a procedural one."""
    for _ in range(tries):
        mask = _random_crop(bank[int(rng.integers(len(bank)))], crop, rng) if len(bank) else \
            scratch_mask((crop, crop), rng)
        if mask.any():
            return mask
    return scratch_mask((crop, crop), rng)


def _random_crop(img: np.ndarray, crop: int, rng: np.random.Generator, *more: np.ndarray):
    """A random crop x crop window and a horizontal flip (p = 0.5) of ``img`` and, at the same place, ``more``."""
    h, w = img.shape[:2]
    y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
    step = -1 if rng.random() < 0.5 else 1
    out = [np.ascontiguousarray(a[y:y + crop, x:x + crop][:, ::step]) for a in (img, *more)]
    return out[0] if not more else tuple(out)


# ---------------------------------------------------------------------------------------------- the embedded data

@functools.lru_cache(maxsize=None)
def embedded_photo(name: str) -> np.ndarray:
    """A photograph bundled with scikit-image as uint8 (H, W, 3) (grey ones replicated), read-only."""
    from skimage import data as skdata
    img = skdata.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skdata, name)()
    img = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
    img = np.ascontiguousarray(img, dtype=np.uint8)
    img.setflags(write=False)
    return img


def held_out_split(img: np.ndarray, crop: int) -> tuple[np.ndarray | None, np.ndarray]:
    """An embedded photo -> (its training part, its held-out test band): the right max(crop, width / 4) columns
    are the test's, the rest trains (None when the rest is narrower than ``crop``: the photo is test-only)."""
    w = img.shape[1]
    cut = w - max(crop, w // 4)
    return (img[:, :cut] if cut >= crop else None), img[:, cut:]


def load_embedded(crop: int, n_test: int, seed: int, scratch_share: float = 0.5) -> RestorationData:
    def usable(names):
        return [(n, embedded_photo(n)) for n in names
                if large_enough(f"embedded photo {n}", embedded_photo(n).shape[:2], crop)]

    photos = [(name, held_out_split(img, crop)) for name, img in usable(EMBEDDED_PHOTOS)]
    clean = [train for _, (train, _) in photos if train is not None]
    test = make_test([(name, band) for name, (_, band) in photos], crop, seed, n=n_test, per_photo=None,
                     scratch_share=scratch_share)
    if len(test) < n_test:
        raise ValueError(f"the embedded test bands give {len(test)} crops of {crop}, n_test is {n_test}")
    old, masks = [], []
    for k, (_, photo) in enumerate(usable(EMBEDDED_OLD)):
        aged, mask = aged_print(photo, np.random.default_rng([seed, _OLD_STREAM, k]))
        old.append(aged)
        masks.append(mask)
    source = (f"embedded: Y {len(clean)} scikit-image photos (left parts), test {len(test)} crops of their "
              f"held-out right bands, R {len(old)} aged prints of others (synthetic, not real old photos)")
    return RestorationData(clean, old, masks, [], test, source)


def load_data(cfg) -> RestorationData:
    if cfg.dataset == "files":
        return load_files(cfg)
    return load_embedded(int(cfg.crop), int(cfg.n_test), int(cfg.data_seed), cfg.test_scratch_p)


# ---------------------------------------------------------------------------------------------- batches

def to_tensor(img: np.ndarray):
    """uint8 (H, W, C) -> float32 tensor (C, H, W) in [-1, 1]."""
    import torch
    img = np.require(img, requirements=("C_CONTIGUOUS", "WRITEABLE"))  # a copy only of read-only arrays
    return torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1.0


def to_image(tensor) -> np.ndarray:
    """A (3, H, W) or (1, H, W) tensor in [-1, 1] -> uint8 (H, W, 3) (one channel replicated)."""
    import torch
    x = ((tensor.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()
    x = x.transpose(1, 2, 0)
    return np.ascontiguousarray(np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x)


class Sampler:
    """Seeded batches of random crop x crop crops with horizontal flips (an image larger than crop: a random
    position; equal: the whole image), as float32 NCHW tensors in [-1, 1]. Every per-sample draw comes from one
    ``numpy.random.Generator`` seeded by ``seed`` (an int or a list of ints)."""

    def __init__(self, data: RestorationData, crop: int, seed):
        self.data, self.crop, self.rng = data, int(crop), np.random.default_rng(seed)

    def _pick(self, images: Sequence[np.ndarray], what: str) -> np.ndarray:
        if not len(images):
            raise ValueError(f"no {what} to sample from")
        return _random_crop(images[int(self.rng.integers(len(images)))], self.crop, self.rng)

    def _mask(self) -> np.ndarray:
        return _bank_mask(self.data.mask_bank, self.crop, self.rng)

    @staticmethod
    def _stack(images: list[np.ndarray]):
        import torch
        return torch.stack([to_tensor(img) for img in images])

    def clean(self, n: int):
        """y (n, 3, c, c): crops of Y, each greyed with probability 0.1 on its own (stage 1's VAE2, as the
        authors' loader)."""
        return self._stack([maybe_grey(self.rng, self._pick(self.data.clean, "clean photos"))[0] for _ in range(n)])

    def old(self, n: int):
        """r (n, 3, c, c): crops of R, each greyed with probability 0.1 on its own (the authors' loader)."""
        return self._stack([maybe_grey(self.rng, self._pick(self.data.old, "old photos (old_dir)"))[0]
                            for _ in range(n)])

    def synthetic(self, n: int):
        """x (n, 3, c, c): degrade() of crops of Y, no scratches (stage 1's X; greyed with probability 0.1 by
        degrade's own draw, independently of the R and Y samples)."""
        return self._stack([degrade(self._pick(self.data.clean, "clean photos"), self.rng) for _ in range(n)])

    def pairs(self, n: int, scratch_p: float):
        """(x, y, mask): x = degrade(y) by the four operations, then x and y greyed together with probability 0.1
        (the authors' pair loader: T never has to invent colour), then scratches pasted on x with probability
        ``scratch_p`` per sample; mask (n, 1, c, c) in {0, 1}, zeros where none were pasted (the mapping stage,
        Section 3.2)."""
        import torch
        xs, ys, masks = [], [], []
        for _ in range(n):
            y = self._pick(self.data.clean, "clean photos")
            x, y = maybe_grey(self.rng, degrade(y, self.rng, COLOUR), y)
            mask = self._mask() if self.rng.random() < scratch_p else np.zeros((self.crop,) * 2, np.float32)
            xs.append(paste_scratches(x, mask))
            ys.append(y)
            masks.append(mask)
        return self._stack(xs), self._stack(ys), torch.from_numpy(np.stack(masks))[:, None]

    def detection(self, n: int):
        """(grey (n, 1, c, c) in [-1, 1], mask (n, 1, c, c)): scratched greyscale crops for the detector (Section
        3.3): degraded crops of Y with scratches pasted and, with probability :data:`REAL_SHARE` when some old
        photos have masks, crops of those photos with their masks (the paper's mixture)."""
        import torch
        greys, masks = [], []
        real = self.data.masked_old
        for _ in range(n):
            if real and self.rng.random() < REAL_SHARE:
                k = real[int(self.rng.integers(len(real)))]
                img, mask = _random_crop(self.data.old[k], self.crop, self.rng, self.data.old_masks[k])
            else:
                mask = self._mask()
                img = paste_scratches(degrade(self._pick(self.data.clean, "clean photos"), self.rng), mask)
            greys.append(greyscale(img)[..., :1])
            masks.append(mask.astype(np.float32))
        return self._stack(greys), torch.from_numpy(np.stack(masks))[:, None]


# ---------------------------------------------------------------------------------------------- batches by step

BATCH_KINDS = ("vae1", "clean", "pairs", "detection")


def is_old(index: int) -> bool:
    """Whether sample ``index`` of a VAE1 batch is a real old photo r (even indices) rather than a synthetic x
    (odd): half and half, interleaved so that every rank's contiguous share holds both kinds when it can."""
    return index % 2 == 0


class StepBatches:
    """The training batches of one network indexed by step: a map-style dataset for ``torch.utils.data.DataLoader``,
    so that worker processes can degrade the samples while the network trains.

    Step s's global batch is ``batch`` samples; sample g is drawn by a :class:`Sampler` seeded by (``seed``,
    ``stream``, s, g). A batch thus depends on the seed, the network's stream and the step only: not on the process
    that builds it, on the number of ranks, nor on whether the trial was resumed. Item s is this rank's share,
    samples ``rank * n .. rank * n + n - 1`` of the global batch with n = batch / world_size (``batch`` a
    multiple of ``world_size``), as the tuple of the
    kind's tensors concatenated over them. ``kind``: ``vae1`` (r at even g, x at odd g: :func:`is_old`),
    ``clean`` (y), ``pairs`` (x, y, mask; ``scratch_p``) or ``detection`` (grey, mask)."""

    def __init__(self, data: RestorationData, crop: int, kind: str, batch: int, seed: int, stream: int,
                 rank: int = 0, world_size: int = 1, scratch_p: float = 0.0):
        if kind not in BATCH_KINDS:
            raise ValueError(f"kind {kind!r} is not one of {list(BATCH_KINDS)}")
        self.data, self.crop, self.kind, self.batch = data, int(crop), kind, int(batch)
        self.seed, self.stream, self.scratch_p = int(seed), int(stream), float(scratch_p)
        n = self.batch // world_size
        self.indices = range(rank * n, (rank + 1) * n)

    def _draw(self, step: int, g: int) -> tuple:
        s = Sampler(self.data, self.crop, seed=[self.seed, self.stream, step, g])
        if self.kind == "vae1":
            return (s.old(1) if is_old(g) else s.synthetic(1),)
        if self.kind == "clean":
            return (s.clean(1),)
        if self.kind == "pairs":
            return s.pairs(1, self.scratch_p)
        return s.detection(1)

    def __getitem__(self, step: int) -> tuple:
        import torch
        samples = [self._draw(int(step), g) for g in self.indices]
        return tuple(torch.cat(parts) for parts in zip(*samples))


def step_loader(batches: StepBatches, steps: range, workers: int):
    """``batches[s]`` for s in ``steps``, in order, built ahead by ``workers`` spawned processes (0: here, when
    asked). Spawned, not forked: a fork of a process holding threads (Ray's, torch's) can deadlock."""
    import torch
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=steps, num_workers=workers,
                                       multiprocessing_context="spawn" if workers else None)
