"""Loaders of the segmentation task: BSDS500 fixtures in the real format, errors, and the embedded mosaics."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.ndimage
import skimage
from PIL import Image

from sweeplab.tasks.segmentation import data as data_mod
from sweeplab.tasks.segmentation.config import SegmentationConfig
from sweeplab.tasks.segmentation.data import Sample, load_data, make_mosaic
from sweeplab.tasks.segmentation.testing import write_bsds_fixture


def _smooth_image(rng, h, w):
    """Smooth colours, so that JPEG gives the pixels back closely."""
    yy, xx = np.mgrid[0:h, 0:w]
    chans = [0.5 + 0.3 * np.sin(xx / (5.0 + c) + c) * np.cos(yy / 7.0) for c in range(3)]
    return np.clip(np.stack(chans, -1) + rng.normal(0, 0.01, (h, w, 3)), 0, 1).astype(np.float32)


def _samples():
    rng = np.random.default_rng(0)
    out = []
    for name, (h, w) in (("b_img", (24, 40)), ("a_img", (40, 24))):  # landscape and portrait, as BSDS500
        gts = [rng.integers(0, 5, (h, w)), (np.arange(h)[:, None] // 8 + np.zeros((1, w), int))]
        out.append(Sample(name, _smooth_image(rng, h, w), gts))
    return out


@pytest.fixture
def bsds(tmp_path):
    root = tmp_path / "BSDS500"
    write_bsds_fixture(root, "test", _samples())
    return root


def _load(root, **kw):
    return load_data(SegmentationConfig(data_dir=str(root), split=kw.pop("split", "test"), **kw))


def test_fixture_is_in_the_bsds500_format(bsds):
    assert sorted(p.name for p in (bsds / "images" / "test").iterdir()) == ["a_img.jpg", "b_img.jpg"]
    mat = scipy.io.loadmat(bsds / "groundTruth" / "test" / "b_img.mat")
    cells = mat["groundTruth"]
    assert cells.shape == (1, 2) and cells.dtype == object
    struct = cells[0, 1]
    assert set(struct.dtype.names) == {"Segmentation", "Boundaries"}
    seg = struct["Segmentation"][0, 0]
    assert seg.dtype == np.uint16 and seg.min() == 1  # stored 1-based, as BSDS500
    np.testing.assert_array_equal(seg, _samples()[0].gts[1] + 1)
    bdry = struct["Boundaries"][0, 0]
    assert bdry.shape == seg.shape and bdry[7, 0] == 1 and bdry[0, 0] == 0  # rows 7|8 change label


def test_bsds_round_trip(bsds):
    data = _load(bsds)
    originals = {s.name: s for s in _samples()}
    assert [s.name for s in data.images] == ["a_img", "b_img"]  # sorted by name
    assert data.source.startswith("bsds500:")
    for sample in data.images:
        orig = originals[sample.name]
        assert sample.image.dtype == np.float32 and sample.image.shape == orig.image.shape
        assert 0.0 <= sample.image.min() and sample.image.max() <= 1.0
        assert np.abs(sample.image - orig.image).mean() < 0.02  # JPEG: close, not exact
        assert len(sample.gts) == 2
        for gt, expected in zip(sample.gts, orig.gts):
            assert gt.dtype == np.int32 and gt.shape == sample.image.shape[:2]
            np.testing.assert_array_equal(gt, expected)  # 0-based again
            assert gt.min() == 0


def test_n_images_keeps_the_first(bsds):
    assert [s.name for s in _load(bsds, n_images=1).images] == ["a_img"]


def test_missing_root_and_split_folders(bsds, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data_mod.load_bsds(tmp_path / "nowhere", "test")
    with pytest.raises(FileNotFoundError, match=r"images[/\\]val"):
        _load(bsds, split="val")
    (bsds / "images" / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=r"groundTruth[/\\]train"):
        _load(bsds, split="train")


def test_image_without_mat_and_mat_without_image(bsds):
    (bsds / "groundTruth" / "test" / "a_img.mat").rename(bsds / "a_img.mat")
    with pytest.raises(ValueError, match="a_img.jpg"):
        _load(bsds)
    (bsds / "a_img.mat").rename(bsds / "groundTruth" / "test" / "a_img.mat")
    (bsds / "images" / "test" / "b_img.jpg").unlink()
    with pytest.raises(ValueError, match="b_img.mat"):
        _load(bsds)


def test_unrelated_files_are_ignored(bsds):
    (bsds / "images" / "test" / "Thumbs.db").write_bytes(b"\0" * 16)  # as in the BSDS500 archive
    assert len(_load(bsds)) == 2


@pytest.mark.parametrize("which", ["image", "mat"])
def test_unreadable_files_raise_naming_them(bsds, which):
    path = bsds / ("images" if which == "image" else "groundTruth") / "test" / ("b_img.jpg" if which == "image"
                                                                              else "b_img.mat")
    path.write_bytes(np.random.default_rng(1).bytes(200))
    with pytest.raises(ValueError, match="b_img"):
        _load(bsds)


def test_mat_without_groundtruth_variable(bsds):
    scipy.io.savemat(bsds / "groundTruth" / "test" / "a_img.mat", {"something": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"a_img\.mat.*groundTruth"):
        _load(bsds)


def test_shape_mismatch_names_the_mat_file(tmp_path):
    rng = np.random.default_rng(0)
    bad = Sample("odd", _smooth_image(rng, 20, 30), [np.zeros((30, 20), int)])
    write_bsds_fixture(tmp_path, "val", [bad])
    with pytest.raises(ValueError, match=r"odd\.mat.*30 x 20.*20 x 30"):
        _load(tmp_path, split="val")


def test_zero_label_in_bsds_file_is_rejected(bsds):
    struct = np.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object)])
    struct[0, 0] = (np.zeros((40, 24), np.uint16), np.zeros((40, 24), np.uint8))
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = struct
    scipy.io.savemat(bsds / "groundTruth" / "test" / "a_img.mat", {"groundTruth": cells})
    with pytest.raises(ValueError, match="start at 1"):
        _load(bsds)


# ------------------------------------------------------------------------------------------------ mosaics

def test_mosaics_are_deterministic_and_well_formed():
    cfg = SegmentationConfig(mosaic_size=64, n_mosaics=4)
    first, second = load_data(cfg), load_data(cfg)
    assert [s.name for s in first.images] == ["mosaic_00", "mosaic_01", "mosaic_02", "mosaic_03"]
    for a, b in zip(first.images, second.images):
        np.testing.assert_array_equal(a.image, b.image)
        for ga, gb in zip(a.gts, b.gts):
            np.testing.assert_array_equal(ga, gb)
    assert len({s.image.tobytes() for s in first.images}) == 4
    for s in first.images:
        assert s.image.dtype == np.float32 and s.image.shape == (64, 64, 3)
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        regions, merged = s.gts
        n = int(regions.max()) + 1
        assert 3 <= n <= 8 and set(np.unique(regions)) == set(range(n))
        assert set(np.unique(merged)) == set(range(n - 1))
    assert len(load_data(SegmentationConfig(mosaic_size=64, n_mosaics=4, n_images=2))) == 2


def _texture_crop(name, top, left, size):
    """The texture crop read independently of data.py: the shipped file, its crop box, then the patch."""
    filename, box = data_mod.TEXTURES[name]
    rgb = np.asarray(Image.open(Path(skimage.__file__).parent / "data" / filename).convert("RGB"))
    if box is not None:
        rgb = rgb[box[1]:box[3], box[0]:box[2]]
    return rgb[top:top + size, left:left + size].astype(np.float32) / 255


@pytest.mark.parametrize("index", [0, 1, 2, 5])
def test_mosaic_ground_truth_is_exact(index):
    size = 64  # smaller than every texture: no mirror extension
    mosaic = make_mosaic(index, size)
    regions = mosaic.regions
    n = int(regions.max()) + 1
    assert len(mosaic.patches) == n
    assert len({name for name, _, _ in mosaic.patches}) == n  # one different texture per region
    for region, (name, top, left) in enumerate(mosaic.patches):
        mask = regions == region
        assert scipy.ndimage.label(mask)[1] == 1  # Voronoi cells are connected
        crop = _texture_crop(name, top, left, size)
        np.testing.assert_array_equal(mosaic.image[mask], crop[mask])  # every pixel from its region's texture
        assert np.ptp(mosaic.image[mask]) > 0  # a photograph's pixels, not a flat fill


def test_second_annotator_merges_two_adjacent_regions():
    sample = data_mod.mosaic_sample(3, 64)
    regions, merged = sample.gts
    pairs = {(int(a), int(b)) for a, b in zip(regions.ravel(), merged.ravel())}
    assert len({a for a, _ in pairs}) == len(pairs)  # each region maps to one merged label
    by_merged = {}
    for a, b in pairs:
        by_merged.setdefault(b, []).append(a)
    joined = [v for v in by_merged.values() if len(v) == 2]
    assert len(joined) == 1 and all(len(v) <= 2 for v in by_merged.values())
    a, b = joined[0]
    grown = scipy.ndimage.binary_dilation(regions == a)
    assert np.any(grown & (regions == b))  # the merged regions touch
