"""Luminance loaders of the compression task on fixture folders made here, and the embedded default."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sweeplab.tasks.compression import data as data_mod
from sweeplab.tasks.compression.config import CompressionConfig
from sweeplab.tasks.compression.data import load_data, rgb_to_luminance


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _photo(rng, h, w, rgb=True):
    """A smooth random image (gradients + noise) so that JPEG files stay small and decodable."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    chans = [base + rng.normal(0, 10, (h, w)) + 20 * k for k in range(3 if rgb else 1)]
    out = np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)
    return out if rgb else out[..., 0]


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    train = tmp_path / "train"
    _save(train / "n01" / "a.JPEG", _photo(rng, 50, 70))
    _save(train / "n01" / "b.png", _photo(rng, 64, 64, rgb=False))  # grayscale: converted, not skipped
    _save(train / "n02" / "c.jpg", _photo(rng, 40, 90))
    _save(train / "n02" / "tiny.png", _photo(rng, 20, 20))  # smaller than the crop: skipped
    (train / "n02" / "notes.txt").write_text("not an image")
    test = tmp_path / "kodak"
    _save(test / "kodim02.png", _photo(rng, 70, 90))
    _save(test / "kodim01.png", _photo(rng, 48, 64))
    return tmp_path


def _cfg(root: Path, **kw) -> CompressionConfig:
    values = dict(train_dir=str(root / "train"), test_dir=str(root / "kodak"), crop_size=32, n_train_crops=7)
    return CompressionConfig(**{**values, **kw})


def test_luminance_is_bt601_studio_swing():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    # 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded
    assert rgb_to_luminance(rgb).tolist() == [[16, 235, 81, 145, 41]]


def test_training_crops_shape_dtype_range_and_determinism(folders):
    data = load_data(_cfg(folders))
    crops = data.train_crops
    assert crops.dtype == torch.uint8 and crops.shape == (7, 1, 32, 32)
    assert 16 <= int(crops.min()) and int(crops.max()) <= 235
    assert data.n_skipped_small == 1
    assert torch.equal(crops, load_data(_cfg(folders)).train_crops)  # same seed, same crops
    assert len({bytes(c.numpy()) for c in crops}) == 7  # random positions: no two crops equal


def test_training_crops_are_lazy(folders, monkeypatch):
    calls = []
    monkeypatch.setattr(data_mod, "random_crops", lambda *a, **k: calls.append(1) or (torch.zeros(1), 0))
    data = load_data(_cfg(folders))
    assert calls == []
    data.train_crops
    data.train_crops
    assert calls == [1]


def test_test_images_sorted_cropped_to_multiples_of_16(folders):
    data = load_data(_cfg(folders))
    assert [name for name, _ in data.test_images] == ["kodim01", "kodim02"]
    shapes = [tuple(x.shape) for _, x in data.test_images]
    assert shapes == [(1, 1, 48, 64), (1, 1, 64, 80)]
    x = data.test_images[1][1]
    assert x.dtype == torch.float32 and 16 <= float(x.min()) and float(x.max()) <= 235
    # the centre crop of the luminance of the file
    full = rgb_to_luminance(np.asarray(Image.open(folders / "kodak" / "kodim02.png").convert("RGB")))
    np.testing.assert_array_equal(x[0, 0].numpy(), full[3:67, 5:85])


def test_test_crop_and_n_test_images(folders):
    data = load_data(_cfg(folders, test_crop=32, n_test_images=1))
    assert [(name, tuple(x.shape)) for name, x in data.test_images] == [("kodim01", (1, 1, 32, 32))]


def test_extra_images_default_to_training_files_and_can_be_a_folder(folders):
    extra = load_data(_cfg(folders)).extra_images
    assert len(extra) == 4  # every training image, even the tiny one (centre-cropped to 16 x 16)
    assert all(x.dtype == torch.float32 and x.shape[-1] % 16 == 0 and x.shape[-2] % 16 == 0 for x in extra)
    extra = load_data(_cfg(folders, extra_dir=str(folders / "kodak"))).extra_images
    assert sorted(tuple(x.shape) for x in extra) == [(1, 1, 48, 64), (1, 1, 64, 80)]


def test_corrupt_training_file_raises_naming_it(folders):
    bad = folders / "train" / "n02" / "broken.png"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    data = load_data(_cfg(folders, n_train_crops=20))
    with pytest.raises(ValueError, match="broken.png"):
        data.train_crops


def test_corrupt_test_file_raises_naming_it(folders):
    (folders / "kodak" / "kodim03.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="kodim03.png"):
        load_data(_cfg(folders))


def test_missing_and_empty_folders_raise_naming_them(folders, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_data(_cfg(folders, train_dir=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_data(_cfg(folders, test_dir=str(tmp_path / "empty")))


def test_no_image_large_enough_raises(folders):
    data = load_data(_cfg(folders, crop_size=160))
    with pytest.raises(ValueError, match="160 x 160"):
        data.train_crops


def test_embedded_default_is_disjoint_and_loads():
    cfg = dataclasses.replace(CompressionConfig(), n_train_crops=3, crop_size=64)
    data = load_data(cfg)
    test_names = {name for name, _ in data.test_images}
    assert test_names == {"astronaut", "coffee", "chelsea"}
    assert test_names.isdisjoint(Path(p).stem for p in data_mod.EMBEDDED_TRAIN)
    assert data.train_crops.shape == (3, 1, 64, 64)
    assert len(data.extra_images) == len(data_mod.EMBEDDED_TRAIN)
    # no test image's pixels appear among the training/extra images
    extra_shapes = {tuple(x.shape) for x in data.extra_images}
    for _, x in data.test_images:
        assert x.shape[-1] % 16 == 0 and x.shape[-2] % 16 == 0
        for e in data.extra_images:
            if e.shape == x.shape:
                assert not torch.equal(e, x)
    assert extra_shapes
