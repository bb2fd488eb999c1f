"""JPEG and JPEG 2000 anchors of the rate-distortion comparison (Dumas et al., ICASSP 2018, Figure 5).

Both codecs compress the uint8 luminance test images with Pillow; the rate is the size of the whole encoded file
in bits divided by the number of pixels (headers included, as the authors' ``jpeg2000.compute_rate_psnr`` does
with the size of the ``.jp2`` file) and the PSNR is that of the decoded uint8 image (peak 255, no clipping).

Deviations, and why: the authors made their JPEG 2000 curve with ImageMagick (``magick convert -quality q``);
Pillow's OpenJPEG encoder is used here (no external binary), driven by target rates instead of ImageMagick's
quality: a target of b bpp on 8-bit luminance is the compression ratio 8 / b (``quality_mode="rates"``), with the
irreversible 9/7 wavelet that lossy JPEG 2000 normally uses. Figure 5 has no JPEG curve; it is added as a
familiar reference (Pillow's baseline JPEG, 4:0:0 since the input is luminance only, default Huffman tables).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .metrics import mse, psnr

CODECS = ("jpeg", "jpeg2000")
_FULL_RANGE = (0.0, 255.0)


def encode_decode(lum: np.ndarray, codec: str, setting: float) -> tuple[int, np.ndarray]:
    """Compress a uint8 luminance image (H, W) -> (encoded size in bytes, decoded uint8 image).

    ``setting`` is the JPEG quality (1-100) or the JPEG 2000 target rate in bits per pixel.
    """
    if lum.dtype != np.uint8 or lum.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) luminance image, got {lum.dtype} {lum.shape}")
    buf = io.BytesIO()
    image = Image.fromarray(lum)  # mode "L"
    if codec == "jpeg":
        image.save(buf, "JPEG", quality=int(setting))
    elif codec == "jpeg2000":
        if setting <= 0:
            raise ValueError(f"JPEG 2000 target rate must be > 0 bpp, got {setting}")
        image.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[8.0 / setting], irreversible=True)
    else:
        raise ValueError(f"unknown anchor codec {codec!r} (valid: {', '.join(CODECS)})")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        out = np.asarray(decoded.convert("L"))
    return len(data), out


def evaluate_anchor(codec: str, settings, test_images) -> list[dict]:
    """For each setting and each test image ``(name, (1, 1, H, W) float tensor)``: a dict with keys
    ``setting, image, bpp, psnr, mse`` (bpp from the encoded size)."""
    rows = []
    for setting in settings:
        for name, x in test_images:
            lum = np.round(x.detach().cpu().numpy()[0, 0]).clip(0, 255).astype(np.uint8)
            n_bytes, decoded = encode_decode(lum, codec, setting)
            rows.append({"setting": setting, "image": name, "bpp": 8.0 * n_bytes / lum.size,
                         "psnr": psnr(lum, decoded, _FULL_RANGE), "mse": mse(lum, decoded, _FULL_RANGE)})
    return rows
