"""Reading image files, once for every task: decoded by Pillow, converted to one mode, returned as uint8."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

_CHANNELS = {"RGB": 3, "L": 1}


def read_image(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """The image file at ``path`` as uint8: (H, W, 3) for ``mode="RGB"``, (H, W) for ``mode="L"`` (luminance by
    Pillow's ITU-R 601-2 transform). Grey, palette, CMYK and RGBA files are converted first. Any decoding failure
    raises ValueError naming the file."""
    if mode not in _CHANNELS:
        raise ValueError(f"read_image: mode {mode!r} is not one of {list(_CHANNELS)}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except Exception as exc:  # noqa: BLE001 - Pillow raises several types for foreign or truncated files
        raise ValueError(f"cannot read image file {path}: {exc}") from exc
