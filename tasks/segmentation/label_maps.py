"""The label maps a trial keeps for the plot's Figure 2-like panel (Kanezaki 2018, Fig. 2: "Example results of the
proposed method. Different segments are shown in different colors").

A trial keeps the predicted segments (after connected components, exactly what was scored) of its first
``cfg.keep_label_maps`` images, in the order of its data. The core stores a trial's artifacts as ``torch.save``'d
dicts (:mod:`sweeplab.artifacts`), so the maps travel as PNG files inside one::

    <sweep>/artifacts/<trial_id>/label_maps.pt    {"maps": {image name: PNG bytes}}

Each PNG is lossless: a 16-bit greyscale image whose pixel values are the segment ids (0..S-1) when S <= 65,536,
else an 8-bit RGB image holding the id in 24 bits (R the low byte). The bytes can be written to a ``.png`` file as
they are and read by any PNG reader (:func:`decode` undoes the RGB packing).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from sweeplab.api import open_source

ARTIFACT = "label_maps"


def encode(labels: np.ndarray) -> bytes:
    """PNG bytes of a (H, W) map of non-negative integer labels below 2**24 (module docstring)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label map is an (H, W) integer array, got {labels.dtype} {labels.shape}")
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if low < 0 or high >= 2**24:
        raise ValueError(f"labels must lie in [0, 2**24), got {low}..{high}")
    if high < 2**16:
        image = Image.fromarray(labels.astype(np.uint16))  # mode I;16
    else:
        image = Image.fromarray(np.stack([(labels >> s) & 255 for s in (0, 8, 16)], axis=-1).astype(np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decode(png: bytes) -> np.ndarray:
    """The (H, W) int64 labels of :func:`encode`'s PNG bytes."""
    with Image.open(io.BytesIO(png)) as image:
        values = np.asarray(image).astype(np.int64)
    if values.ndim == 3:
        return values[..., 0] | values[..., 1] << 8 | values[..., 2] << 16
    return values


def load(sweep, trial_id: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(the trial's full config, {image name: labels}) of a trial of ``sweep`` (a sweep folder, URI or
    :class:`~sweeplab.storage.Location`), or None when it kept no label maps (an older sweep, or
    ``keep_label_maps`` = 0)."""
    try:
        source = open_source(f"{sweep}/{trial_id}")
        payload = source.load(ARTIFACT)
    except (FileNotFoundError, KeyError):
        return None
    return source.config, {name: decode(png) for name, png in payload["maps"].items()}
