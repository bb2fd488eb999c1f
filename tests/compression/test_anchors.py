"""JPEG and JPEG 2000 anchors through Pillow, on a luminance photograph shipped with scikit-image."""
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch

from sweeplab.tasks.compression.anchors import encode_decode, evaluate_anchor
from sweeplab.tasks.compression.data import read_luminance


@pytest.fixture(scope="module")
def images():
    lum = read_luminance(Path(skimage.__file__).parent / "data" / "camera.png")
    crops = {"top": lum[64:192, 128:256], "bottom": lum[320:448, 192:352]}
    return [(name, torch.from_numpy(c.copy()).float()[None, None]) for name, c in crops.items()]


def test_jpeg_rate_and_psnr_increase_with_quality(images):
    rows = evaluate_anchor("jpeg", [10, 50, 90], images)
    assert len(rows) == 6 and set(rows[0]) == {"setting", "image", "bpp", "psnr", "mse"}
    for name, _ in images:
        mine = [r for r in rows if r["image"] == name]
        assert [r["setting"] for r in mine] == [10, 50, 90]
        bpps, psnrs = [r["bpp"] for r in mine], [r["psnr"] for r in mine]
        assert bpps == sorted(bpps) and bpps[0] < bpps[-1] / 2
        assert psnrs == sorted(psnrs) and psnrs[-1] > psnrs[0] + 5
        assert all(p > 20 for p in psnrs)


def test_jpeg2000_actual_rate_is_close_to_target(images):
    lum = images[0][1][0, 0].numpy().astype(np.uint8)
    psnrs = []
    for target in (0.25, 0.5, 1.0, 2.0):
        n_bytes, decoded = encode_decode(lum, "jpeg2000", target)
        assert decoded.shape == lum.shape and decoded.dtype == np.uint8
        actual = 8 * n_bytes / lum.size
        assert actual == pytest.approx(target, rel=0.1)  # the encoder meets the target within 10 %
        psnrs.append(10 * np.log10(255 ** 2 / np.mean((decoded.astype(float) - lum) ** 2)))
    assert psnrs == sorted(psnrs)


def test_bpp_is_measured_from_the_encoded_size(images):
    lum = images[1][1][0, 0].numpy().astype(np.uint8)
    n_bytes, _ = encode_decode(lum, "jpeg", 75)
    [row] = evaluate_anchor("jpeg", [75], images[1:])
    assert row["bpp"] == pytest.approx(8 * n_bytes / lum.size)


def test_unknown_codec_and_bad_input_raise(images):
    lum = images[0][1][0, 0].numpy().astype(np.uint8)
    with pytest.raises(ValueError, match="webp"):
        encode_decode(lum, "webp", 50)
    with pytest.raises(ValueError, match="uint8"):
        encode_decode(lum.astype(np.float32), "jpeg", 50)
