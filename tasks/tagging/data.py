"""Clips and tags of the `tagging` task (Ferraro, Bogdanov, Yoon, Kim & Serra, "How low can you go? Reducing
frequency and time resolution in current CNN architectures for music auto-tagging", EUSIPCO 2020, Section VII).

A :class:`TaggingData` holds ``tags`` (the kept tag names, in label-column order), ``splits`` ("train", "valid",
"test": lists of :class:`Clip`), ``labels`` (float32 (n_clips, n_tags) 0/1 per split, rows in clip order) and
``key``, a name of the data for the feature store (``features.py``): two configs with the same key see the same
clips and audio. ``Clip.load(sample_rate)`` returns float32 mono audio at that rate; the feature code calls it once
per clip and sample rate (12 or 16 kHz, Table II).

MagnaTagATune (``cfg.data_dir``; the paper's MTAT experiments)::

    <root>/annotations_final.csv   # tab-separated: clip_id, one 0/1 column per tag (188), mp3_path
    <root>/0/ ... <root>/f/        # mp3_path is relative to root, e.g. f/american_bach_soloists-...-0-29.mp3

* split by the first character of ``mp3_path``: folders 0-b train, c validation, d-f test (the split of the
  authors' code, andrebola/EUSIPCO2020, and jordipons/musicnn-training);
* the ``n_tags`` most frequent tags, counted over the whole file (all three splits, as the usual "top-50" list
  is), ties broken by column order; label columns in decreasing frequency;
* clips with no positive among the kept tags are **kept**: they are true negatives for every tag, and dropping them
  would change the test set the metrics are measured on;
* a missing csv, a missing column (``clip_id``, ``mp3_path``, or no tag column), a non-0/1 tag value, an
  ``mp3_path`` outside folders 0-f, and listed mp3 files that do not exist (checked for every row when the data is
  loaded; the first five are named) raise errors naming the file; an mp3 that cannot be decoded raises
  ``ValueError`` naming it when its clip is loaded. Empty (0-byte) mp3 files, of which the MTAT archive has a
  few, are left out with a warning naming them.

Audio: decoded by libsndfile (``soundfile``, which reads MP3 since 1.1), channels averaged, resampled with soxr
(``librosa.resample(res_type="soxr_hq")``) when the file's rate differs (MTAT mp3s are 16 kHz).

Embedded default (``cfg.data_dir`` empty): ``cfg.n_clips`` synthesised clips with known tags, see ``synth.py``.
``cfg.n_clips_limit`` > 0 keeps the first N clips of each split, in either case.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import synth

CSV_NAME = "annotations_final.csv"
SPLIT_OF_FOLDER = {**{c: "train" for c in "0123456789ab"}, "c": "valid", **{c: "test" for c in "def"}}
SPLITS = ("train", "valid", "test")
SYNTH_SEED = 2020  # the embedded set does not change with the trial seed: all trials see the same data


@dataclass(frozen=True, eq=False)
class Clip:
    """One clip: ``clip_id``, ``labels`` float32 (n_tags,) 0/1 in ``TaggingData.tags`` order, and its audio."""
    clip_id: str
    labels: np.ndarray

    def load(self, sample_rate: int) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Mp3Clip(Clip):
    path: Path = field(default=Path())

    def load(self, sample_rate: int) -> np.ndarray:
        return read_audio(self.path, sample_rate)


@dataclass(frozen=True, eq=False)
class SynthClip(Clip):
    recipe: synth.Recipe | None = None
    seed: int = SYNTH_SEED
    index: int = 0

    def load(self, sample_rate: int) -> np.ndarray:
        return synth.render(self.recipe, sample_rate, self.seed, self.index)


@dataclass
class TaggingData:
    tags: list[str]
    splits: dict[str, list[Clip]]
    labels: dict[str, np.ndarray]
    key: str

    def limit(self, n: int) -> "TaggingData":
        """The first ``n`` clips of each split (``n`` <= 0: all); the key says so."""
        if n <= 0:
            return self
        return TaggingData(self.tags, {s: c[:n] for s, c in self.splits.items()},
                           {s: y[:n] for s, y in self.labels.items()}, f"{self.key}-first{n}")


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode an audio file to float32 mono at ``sample_rate``; a decoding failure raises ValueError naming it."""
    import soundfile as sf
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise ValueError(f"cannot decode audio file {path}: {exc}") from exc
    if audio.size == 0:
        raise ValueError(f"cannot decode audio file {path}: no samples")
    audio = audio.mean(axis=1)
    if sr != sample_rate:
        import librosa
        audio = librosa.resample(audio, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(audio, dtype=np.float32)


def top_tags(matrix: np.ndarray, names: Sequence[str], n: int) -> list[int]:
    """Indices of the ``n`` most frequent tags (column sums), decreasing, ties broken by column order."""
    counts = np.asarray(matrix).sum(axis=0)
    return [int(i) for i in np.argsort(-counts, kind="stable")[:n]]


def _assemble(clip_ids, split_names, matrix, names, n_tags, make_clip, key) -> TaggingData:
    keep = top_tags(matrix, names, n_tags)
    y = np.asarray(matrix, dtype=np.float32)[:, keep]
    splits = {s: [] for s in SPLITS}
    rows = {s: [] for s in SPLITS}
    for i, (cid, split) in enumerate(zip(clip_ids, split_names)):
        splits[split].append(make_clip(i, cid, y[i]))
        rows[split].append(i)
    labels = {s: y[np.asarray(rows[s], dtype=np.int64)].reshape(-1, len(keep)) for s in SPLITS}
    return TaggingData([names[i] for i in keep], splits, labels, key)


# ---------------------------------------------------------------------------------------------- MagnaTagATune

def load_mtat(root: str | Path, n_tags: int) -> TaggingData:
    """MagnaTagATune under ``root`` (module docstring): the ``n_tags`` most frequent tags, split by folder."""
    root = Path(root).expanduser()
    csv = root / CSV_NAME
    if not csv.is_file():
        raise FileNotFoundError(f"MagnaTagATune annotations {str(csv)!r} not found (expected <root>/{CSV_NAME})")
    try:
        table = pd.read_csv(csv, sep="\t", dtype={"clip_id": str, "mp3_path": str})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse {csv} as a tab-separated table: {exc}") from exc
    missing = [c for c in ("clip_id", "mp3_path") if c not in table.columns]
    names = [c for c in table.columns if c not in ("clip_id", "mp3_path")]
    if missing or not names:
        raise ValueError(f"{csv}: missing column(s) {missing or ['<any tag column>']}; columns found: "
                         f"{list(table.columns)[:10]}")
    values = table[names].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{csv}: tag values must be 0 or 1; row {r + 2} column {names[c]!r} holds "
                         f"{table[names[c]].iloc[r]!r}")
    paths = table["mp3_path"].fillna("").astype(str).str.strip().tolist()
    splits = []
    for r, p in enumerate(paths):
        if not p or p[0] not in SPLIT_OF_FOLDER:
            raise ValueError(f"{csv}: row {r + 2} mp3_path {p!r} is not in a folder 0..f")
        splits.append(SPLIT_OF_FOLDER[p[0]])
    absent = [root / p for p in paths if not (root / p).is_file()]
    if absent:
        shown = ", ".join(str(p) for p in absent[:5]) + (" ..." if len(absent) > 5 else "")
        raise FileNotFoundError(f"{len(absent)} mp3 file(s) listed in {csv} do not exist: {shown}")
    empty = [r for r, p in enumerate(paths) if (root / p).stat().st_size == 0]
    if empty:  # the MTAT archive ships a few empty mp3 files: leave those clips out, loudly
        print(f"warning: {len(empty)} empty mp3 file(s) left out: "
              + ", ".join(paths[r] for r in empty[:5]) + (" ..." if len(empty) > 5 else ""), file=sys.stderr)
        keep = np.setdiff1d(np.arange(len(paths)), empty)
        table, values = table.iloc[keep].reset_index(drop=True), values[keep]
        paths, splits = [paths[r] for r in keep], [splits[r] for r in keep]
    stat = csv.stat()
    digest = hashlib.sha1(f"{root.resolve()}|{n_tags}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return _assemble(table["clip_id"].astype(str).tolist(), splits, values, names, n_tags,
                     lambda i, cid, y: Mp3Clip(cid, y, root / paths[i]), f"mtat-{digest[:12]}")


# ---------------------------------------------------------------------------------------------- embedded set

def synth_dataset(n_clips: int, seed: int = SYNTH_SEED, n_tags: int = len(synth.TAGS)) -> TaggingData:
    """``n_clips`` synthesised clips with known tags (``synth.py``); audio is rendered on ``Clip.load``. The
    ``n_tags`` most frequent of the 12 tags are kept (all of them for the default ``cfg.n_tags`` = 50)."""
    recipes = [synth.make_recipe(seed, i) for i in range(n_clips)]
    ids = [f"synth-{i:05d}" for i in range(n_clips)]
    matrix = np.array([[t in r.tags() for t in synth.TAGS] for r in recipes], dtype=np.float32).reshape(
        n_clips, len(synth.TAGS))
    return _assemble(ids, [synth.split_of(c) for c in ids], matrix, list(synth.TAGS), n_tags,
                     lambda i, cid, y: SynthClip(cid, y, recipes[i], seed, i), f"synth-{n_clips}-s{seed}-v1")


def load_data(cfg) -> TaggingData:
    """MagnaTagATune under ``cfg.data_dir``, else the embedded set of ``cfg.n_clips``; ``cfg.n_clips_limit``."""
    if cfg.data_dir:
        data = load_mtat(cfg.data_dir, cfg.n_tags)
    else:
        data = synth_dataset(cfg.n_clips, SYNTH_SEED, cfg.n_tags)
    return data.limit(cfg.n_clips_limit)
