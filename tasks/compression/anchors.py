"""JPEG, JPEG 2000 and H.265 anchors of the rate-distortion comparison (Dumas et al., ICASSP 2018, Figure 5).

The codecs compress the uint8 luminance test images with Pillow; the rate is the size of the whole encoded file
in bits divided by the number of pixels (headers included, as the authors' ``jpeg2000.compute_rate_psnr`` does
with the size of the ``.jp2`` file) and the PSNR is that of the decoded uint8 image (peak 255, no clipping).

Deviations, and why: the authors made their JPEG 2000 curve with ImageMagick (``magick convert -quality q``);
Pillow's OpenJPEG encoder is used here (no external binary), driven by target rates instead of ImageMagick's
quality: a target of b bpp on 8-bit luminance is the compression ratio 8 / b (``quality_mode="rates"``), with the
irreversible 9/7 wavelet that lossy JPEG 2000 normally uses. Figure 5 has no JPEG curve; it is added as a
familiar reference (Pillow's baseline JPEG, 4:0:0 since the input is luminance only, default Huffman tables).

H.265 (``hevc``): the paper's curve comes from the HM-16.15 reference encoder (Section 4). HM is not a Python
package; x265 through ``pillow-heif`` (whose wheels carry libx265 and libde265) is used instead: one monochrome
(4:0:0, 8-bit, full range) intra image per test image, at a ``quality`` (0-100, x265's QP derived from it by
libheif; -1: lossless, bit-exact). x265's ``preset`` and ``tune`` move the rate-distortion points a lot, so both
are fixed by the config (``hevc_preset`` and ``hevc_tune``, whose defaults are the preset nearest HM's exhaustive
search and ``psnr``, as HM has no psycho-visual tuning) and recorded in the trials table. The rate is the size
of the whole HEIF file, like JPEG's: the container (``ftyp``/``meta`` boxes with the colour profile and the
parameter sets) adds a few hundred bytes to the HEVC slice data (370 with pillow-heif 1.9.0, whatever the quality:
0.008 bpp on a 768x512 Kodak image), most of which HM's raw bitstream does not have. ``pillow-heif`` is an optional
extra (``sweeplab[hevc]``), as its wheel bundles GPL-licensed x265: without it ``codec=hevc`` is refused at spec
validation (:func:`hevc_missing`). Only the pixels, the file size and the PSNR are recorded, not the encoder's
version (pillow-heif 1.9.0 carries x265 4.3).
"""
from __future__ import annotations

import importlib
import io

import numpy as np
from PIL import Image

from .metrics import mse, psnr

CODECS = ("jpeg", "jpeg2000", "hevc")
_FULL_RANGE = (0.0, 255.0)
X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
X265_TUNES = ("psnr", "ssim", "grain", "fastdecode")
HEVC_MISSING = ("codec=hevc needs the optional package pillow-heif (not installed by default: its wheel bundles the "
                "GPL-licensed x265 encoder); install it with `pip install 'sweeplab[hevc]'` (`make test` does)")


def hevc_missing() -> str:
    """Why ``codec=hevc`` cannot run here (:data:`HEVC_MISSING`), or "" when pillow-heif imports."""
    try:
        importlib.import_module("pillow_heif")
    except ImportError:
        return HEVC_MISSING
    return ""


def hevc_encode(lum: np.ndarray, quality: int, preset: str, tune: str) -> bytes:
    """A uint8 luminance image (H, W) as one monochrome (4:0:0) intra HEVC image in a HEIF file, by x265 through
    pillow-heif at ``quality`` (-1: lossless) with x265's ``preset`` and ``tune``; ImportError without pillow-heif."""
    if problem := hevc_missing():
        raise ImportError(problem)
    import pillow_heif
    image = pillow_heif.from_bytes(mode="L", size=(lum.shape[1], lum.shape[0]),
                                   data=np.ascontiguousarray(lum).tobytes())
    buf = io.BytesIO()
    image.save(buf, quality=int(quality), enc_params={"preset": preset, "tune": tune})
    return buf.getvalue()


def _hevc_decode(data: bytes) -> np.ndarray:
    import pillow_heif  # present: hevc_encode made ``data``
    return np.asarray(pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True))


def encode_decode(lum: np.ndarray, codec: str, setting: float, **options) -> tuple[int, np.ndarray]:
    """Compress a uint8 luminance image (H, W) -> (encoded size in bytes, decoded uint8 image).

    ``setting`` is the JPEG quality (1-100), the JPEG 2000 target rate in bits per pixel or the HEVC quality
    (0-100, -1 lossless); ``options``: ``preset`` and ``tune`` of ``hevc`` (:func:`hevc_encode`), no other.
    """
    if lum.dtype != np.uint8 or lum.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) luminance image, got {lum.dtype} {lum.shape}")
    if options and codec != "hevc":
        raise ValueError(f"{codec} takes no encoder options, got {sorted(options)}")
    buf = io.BytesIO()
    image = Image.fromarray(lum)  # mode "L"
    if codec == "jpeg":
        image.save(buf, "JPEG", quality=int(setting))
    elif codec == "jpeg2000":
        if setting <= 0:
            raise ValueError(f"JPEG 2000 target rate must be > 0 bpp, got {setting}")
        image.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[8.0 / setting], irreversible=True)
    elif codec == "hevc":
        data = hevc_encode(lum, int(setting), **options)
        return len(data), _hevc_decode(data)
    else:
        raise ValueError(f"unknown anchor codec {codec!r} (valid: {', '.join(CODECS)})")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        out = np.asarray(decoded.convert("L"))
    return len(data), out


def evaluate_anchor(codec: str, settings, test_images, **options) -> list[dict]:
    """For each setting and each test image ``(name, (1, 1, H, W) float tensor)``: a dict with keys
    ``setting, image, bpp, psnr, mse`` (bpp from the encoded size); ``options``: :func:`encode_decode`'s."""
    rows = []
    for setting in settings:
        for name, x in test_images:
            lum = np.round(x.detach().cpu().numpy()[0, 0]).clip(0, 255).astype(np.uint8)
            n_bytes, decoded = encode_decode(lum, codec, setting, **options)
            rows.append({"setting": setting, "image": name, "bpp": 8.0 * n_bytes / lum.size,
                         "psnr": psnr(lum, decoded, _FULL_RANGE), "mse": mse(lum, decoded, _FULL_RANGE)})
    return rows
