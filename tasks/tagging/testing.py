"""Fixture writer of the tagging task: clips in the MagnaTagATune layout of ``data.py`` (real MP3 files and the
annotations table), for tests and for trying the loader on made-up audio."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .data import CSV_NAME


@dataclass(frozen=True)
class FixtureClip:
    """A clip for :func:`write_mtat_fixture`: ``mp3_path`` relative to root (its first character is the folder),
    ``audio`` float mono, its ``sample_rate``, and its positive ``tags``."""
    mp3_path: str
    audio: np.ndarray
    sample_rate: int
    tags: Sequence[str]


def write_mtat_fixture(root: str | Path, clips: Sequence[FixtureClip], tags: Sequence[str] | None = None) -> Path:
    """Write clips in the MagnaTagATune layout under ``root``: real MP3 files (libsndfile's LAME encoder) and a
    tab-separated ``annotations_final.csv`` with columns clip_id (0, 1, ...), one 0/1 column per tag (``tags``, or
    the sorted union of the clips' tags), mp3_path. Returns the root."""
    import soundfile as sf
    root = Path(root)
    names = list(tags) if tags is not None else sorted({t for c in clips for t in c.tags})
    rows = []
    for i, clip in enumerate(clips):
        path = root / clip.mp3_path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.asarray(clip.audio, dtype=np.float32), clip.sample_rate, format="MP3")
        rows.append({"clip_id": str(i), **{t: int(t in clip.tags) for t in names}, "mp3_path": clip.mp3_path})
    pd.DataFrame(rows, columns=["clip_id", *names, "mp3_path"]).to_csv(root / CSV_NAME, sep="\t", index=False)
    return root
