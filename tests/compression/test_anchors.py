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


def _decode_heif(data: bytes) -> np.ndarray:
    """Independent decoding: pillow-heif's own reader, monochrome 8-bit out."""
    import io

    import pillow_heif
    heif = pillow_heif.open_heif(io.BytesIO(data))
    assert heif.mode == "L" and heif.info["bit_depth"] == 8  # monochrome 4:0:0, 8 bits
    return np.asarray(heif)


def test_hevc_rate_is_the_file_size_and_psnr_that_of_the_decoded_file(images):
    from sweeplab.tasks.compression.anchors import hevc_encode
    lum = images[0][1][0, 0].numpy().astype(np.uint8)
    rows = evaluate_anchor("hevc", [20, 60], images[:1], preset="veryslow", tune="psnr")
    for row, quality in zip(rows, (20, 60)):
        data = hevc_encode(lum, quality, "veryslow", "psnr")  # x265 is deterministic: the same bytes again
        assert row["bpp"] == 8 * len(data) / lum.size
        err = np.mean((_decode_heif(data).astype(np.float64) - lum) ** 2)
        assert row["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / err), abs=1e-9) and 25 < row["psnr"] < 60
    assert rows[0]["bpp"] < rows[1]["bpp"] and rows[0]["psnr"] < rows[1]["psnr"]
    reference = hevc_encode(lum, 60, "veryslow", "psnr")  # the settings reach x265: others give other files
    assert hevc_encode(lum, 60, "veryslow", "ssim") != reference != hevc_encode(lum, 60, "ultrafast", "psnr")


def test_hevc_is_bit_exact_lossless_at_quality_minus_one(images):
    lum = images[1][1][0, 0].numpy().astype(np.uint8)
    n_bytes, decoded = encode_decode(lum, "hevc", -1, preset="veryslow", tune="psnr")
    assert np.array_equal(decoded, lum) and n_bytes * 8 / lum.size < 8
    [row] = evaluate_anchor("hevc", [-1], images[1:], preset="veryslow", tune="psnr")
    assert row["psnr"] == float("inf") and row["mse"] == 0.0
    with pytest.raises(ValueError, match="no encoder options"):
        encode_decode(lum, "jpeg", 50, preset="veryslow")


def test_hevc_is_refused_with_a_clear_message_without_pillow_heif(images, monkeypatch):
    import sys

    from sweeplab.spec import SpecError, load
    from sweeplab.tasks.compression.config import CompressionConfig
    from sweeplab.tasks.compression.anchors import hevc_encode
    spec = Path(__file__).parents[2] / "sweeps" / "compression-gamma-set-smoke.yaml"
    assert CompressionConfig(codec="hevc").check() == [] and load(spec).include[-1] == {"codec": "hevc"}
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # `import pillow_heif` now raises ImportError
    [problem] = CompressionConfig(codec="hevc").check()
    assert "pillow-heif" in problem and "sweeplab[hevc]" in problem and "GPL" in problem
    assert CompressionConfig(codec="jpeg").check() == []  # the other anchors do not need it
    with pytest.raises(SpecError, match=r"sweeplab\[hevc\]"):
        load(spec)
    with pytest.raises(ImportError, match="pillow-heif"):
        hevc_encode(images[0][1][0, 0].numpy().astype(np.uint8), 50, "veryslow", "psnr")
