"""Loaders of the restoration task on fixtures in the real layouts (a Pascal VOC root, a DIV2K-like folder, old
photos with a mask folder), the bad-input messages, the embedded default, the seeded Sampler and the tensor helpers."""
from __future__ import annotations

import socket
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from PIL import Image

from sweeplab.tasks.restoration import data, testing

CROP = 32


@dataclass(frozen=True)
class Cfg:
    """The config fields the loaders read (the task's config has them with these names)."""
    dataset: str = "files"
    clean_dir: str = ""
    old_dir: str = ""
    mask_dir: str = ""
    test_dir: str = ""
    crop: int = CROP
    n_test: int = 2
    data_seed: int = 0
    scratch_p: float = 0.5
    test_scratch_p: float = 0.5  # every other test image scratched (the detector's default)


@pytest.fixture
def layout(tmp_path):
    voc = testing.write_voc_fixture(tmp_path / "VOC2012", n=4, size=48)
    div2k = testing.write_div2k_fixture(tmp_path / "DIV2K_valid_HR", n=3, size=40)
    old, masks = testing.write_old_fixture(tmp_path / "old", n=3, masked=2, size=40)
    return Cfg(clean_dir=str(voc), old_dir=str(old), mask_dir=str(masks), test_dir=str(div2k))


def test_files_layouts_counts_and_test_images(layout):
    ds = data.load_data(layout)
    assert len(ds.clean) == 4 and ds.clean[0].shape == (48, 56, 3) and ds.clean[0].dtype == np.uint8
    assert len(ds.old) == 3 and ds.masked_old == [0, 1] and ds.old_masks[2] is None and len(ds.mask_bank) == 2
    assert ds.old_masks[0].shape == (40, 40) and set(np.unique(ds.old_masks[0])) <= {0.0, 1.0}
    assert [t.name for t in ds.test] == ["0801", "0802"]  # the first n_test of test_dir
    for k, t in enumerate(ds.test):
        assert t.clean.shape == t.degraded.shape == (CROP, CROP, 3) and t.mask.shape == (CROP, CROP)
        assert t.mask.dtype == np.float32 and bool(t.mask.any()) == (k % 2 == 1)  # every other one scratched
    assert (ds.test[1].degraded[ds.test[1].mask == 1] == 255).all()
    full = np.asarray(Image.open(layout.test_dir + "/0801.png").convert("RGB"))
    assert np.array_equal(ds.test[0].clean, full[6:38, 4:36])  # the centre crop of a 44 x 40 image
    again = data.load_data(layout)
    assert all(np.array_equal(a.degraded, b.degraded) for a, b in zip(ds.test, again.test))
    held = data.load_data(replace(layout, test_dir="", clean_dir=layout.clean_dir + "/JPEGImages"))
    assert len(held.clean) == 2 and [t.name for t in held.test] == ["2008_000002", "2008_000003"]
    assert "Y 2" in held.source and len(data.load_data(replace(layout, old_dir="", mask_dir="")).old) == 0


def test_small_images_are_skipped_with_a_warning_naming_them(layout):
    Image.fromarray(np.zeros((20, 60, 3), np.uint8)).save(layout.clean_dir + "/JPEGImages/tiny.jpg")
    with pytest.warns(UserWarning, match="tiny.jpg"):
        ds = data.load_data(layout)
    assert len(ds.clean) == 4


def test_bad_inputs_raise_naming_the_file_or_folder(layout, tmp_path):
    bad = tmp_path / "VOC2012" / "JPEGImages" / "2008_bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="2008_bad.jpg"):
        data.load_data(layout)
    bad.unlink()
    stray = tmp_path / "old" / "masks" / "stray.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(stray)
    with pytest.raises(ValueError, match="stray.png has no matching image"):
        data.load_data(layout)
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(stray.with_name("old_2.png"))
    stray.unlink()
    with pytest.raises(ValueError, match="old_2.png is"):
        data.load_data(layout)
    (tmp_path / "empty").mkdir()
    cfg = replace(layout, clean_dir=str(tmp_path / "nowhere"), test_dir=str(tmp_path / "empty"))
    problems = data.layout_problems(cfg)
    assert len(problems) == 2 and "nowhere" in problems[0] and "holds no images" in problems[1]
    with pytest.raises(ValueError, match="nowhere"):
        data.load_data(cfg)
    assert data.layout_problems(replace(layout, old_dir="")) == ["mask_dir: its masks label the photos of old_dir, "
                                                                 "which is not set"]
    assert data.layout_problems(Cfg(dataset="embedded")) == []


def test_embedded_loads_offline_disjoint_and_deterministic(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the embedded data must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    cfg = Cfg(dataset="embedded", crop=64, n_test=3)
    ds = data.load_data(cfg)
    assert not set(data.EMBEDDED_PHOTOS) & set(data.EMBEDDED_OLD)  # R from other photos than Y and the test
    for img, name in zip(ds.clean, data.EMBEDDED_PHOTOS):  # Y: each photo's left part, the test its right band
        full = data.embedded_photo(name)
        assert img.shape == (full.shape[0], full.shape[1] - max(64, full.shape[1] // 4), 3)
        assert np.array_equal(img, full[:, :img.shape[1]])
    assert [t.name.rsplit("-", 1)[0] for t in ds.test] == list(data.EMBEDDED_PHOTOS[:3])
    for t in ds.test:  # every test crop lies inside its photo's held-out band
        band = data.held_out_split(data.embedded_photo(t.name.rsplit("-", 1)[0]), 64)[1]
        assert any(np.array_equal(t.clean, tile) for tile in data.grid_crops(band, 64, None))
    assert len(ds.old) == len(ds.old_masks) == len(data.EMBEDDED_OLD) and ds.masked_old == [0, 1, 2, 3]
    assert not any(np.array_equal(o, data.embedded_photo(n)) for o, n in zip(ds.old, data.EMBEDDED_OLD))
    again, other = data.load_data(cfg), data.load_data(replace(cfg, data_seed=1))
    assert all(np.array_equal(a.degraded, b.degraded) for a, b in zip(ds.test, again.test))
    assert all(np.array_equal(a, b) for a, b in zip(ds.old, again.old))
    assert not all(np.array_equal(a.degraded, b.degraded) for a, b in zip(ds.test, other.test))
    with pytest.raises(ValueError, match="n_test"):
        data.load_data(replace(cfg, crop=256, n_test=50))


def small_data(n_clean=3, size=40, masked=False):
    r = np.random.default_rng(0)
    photos = [r.integers(0, 256, (size, size + 4, 3), dtype=np.uint8) for _ in range(n_clean)]
    masks = [(r.random((size, size + 4)) < 0.05).astype(np.float32)] if masked else [None]
    return data.RestorationData(photos, photos[:1], masks, [], [], "test")


def test_sampler_shapes_range_and_seed():
    ds = small_data()
    s = data.Sampler(ds, CROP, seed=3)
    for batch, channels in ((s.clean(2), 3), (s.old(2), 3), (s.synthetic(2), 3)):
        assert batch.shape == (2, channels, CROP, CROP) and batch.dtype == torch.float32
        assert batch.min() >= -1 and batch.max() <= 1
    x, y, mask = s.pairs(3, 0.5)
    assert x.shape == y.shape == (3, 3, CROP, CROP) and mask.shape == (3, 1, CROP, CROP)
    grey, gmask = s.detection(2)
    assert grey.shape == gmask.shape == (2, 1, CROP, CROP) and grey.min() >= -1 and grey.max() <= 1
    a, b, c = (data.Sampler(ds, CROP, seed=seed).pairs(4, 0.5) for seed in (7, 7, 8))
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and not torch.equal(a[1], c[1])
    exact = data.RestorationData([ds.clean[0][:CROP, :CROP]], [], [], [], [], "t")  # equal to crop: the whole
    whole = data.to_tensor(exact.clean[0])
    assert any(torch.equal(data.Sampler(exact, CROP, 0).clean(1)[0], v) for v in (whole, whole.flip(-1)))
    with pytest.raises(ValueError, match="old photos"):
        data.Sampler(exact, CROP, 0).old(1)


def test_pairs_paste_white_scratches_on_about_scratch_p_of_samples():
    s = data.Sampler(small_data(), CROP, seed=0)
    x, y, mask = s.pairs(200, 0.5)
    scratched = mask.flatten(1).amax(1) > 0
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0} and 0.38 < scratched.float().mean() < 0.62
    assert (x.permute(0, 2, 3, 1)[mask[:, 0] == 1] == 1).all()  # mask-1 pixels are white (+1) in x
    assert not data.Sampler(small_data(), CROP, 0).pairs(20, 0.0)[2].any()
    assert (data.Sampler(small_data(), CROP, 0).pairs(20, 1.0)[2].flatten(1).amax(1) == 1).all()


def test_detection_scratches_every_sample_and_mixes_in_masked_old_photos():
    grey, mask = data.Sampler(small_data(), CROP, seed=1).detection(16)
    assert (mask.flatten(1).amax(1) == 1).all() and (grey[mask == 1] == 1).all()
    ds = small_data(masked=True)
    assert ds.masked_old == [0]
    grey, mask = data.Sampler(ds, CROP, seed=2).detection(40)
    assert (grey[mask == 1] < 1).any()  # real crops keep their own pixels under the mask (synthetic ones: +1)


def test_tensor_helpers_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = data.to_tensor(img)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(data.to_image(t), img)
    grey = data.to_image(t[:1])
    assert grey.shape == (5, 7, 3) and np.array_equal(grey[..., 2], img[..., 0])
