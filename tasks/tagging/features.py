"""Mel spectrograms of Ferraro et al. 2020, Section V and Table II, and the on-disk store that a sweep shares.

Section V: a 29.1 s centre cut of each clip at 12 or 16 kHz, Hann window of 512 samples, hop 256, power spectrum,
``n_mels`` Slaney-scale mel bands with unit-area (Slaney-normalised) triangles up to Nyquist, as LibROSA computes
them (the authors configure Essentia to reproduce LibROSA). Two log compressions:

* ``log``: log10(1 + 10000 x) (Dieleman & Schrauwen 2014; the ``logC`` of musicnn-training);
* ``dB``:  10 log10(max(x, 1e-10)): the floor is Essentia's ``lin2db`` silence cutoff (1e-10 -> -100 dB), which is
  also LibROSA's ``power_to_db`` ``amin``; no ``top_db`` clipping is applied.

A k x 256 hop (Table II: k = 1, 2, 3, 4, 5, 10) keeps every k-th frame of the hop-256 spectrogram, which is exactly a
centred STFT with hop k x 256 and the same window (frame j is centred on sample j k 256 in both).

Frame counts: the paper gives 1366 frames at 12 kHz and 1820 at 16 kHz for 29.1 s. A centred LibROSA STFT gives
1 + floor(N / 256) frames (1365 and 1819); the paper's counts are 1 + ceil(N / 256), what Essentia's centred frame
cutter gives. :func:`centre_cut` therefore zero-pads the 29.1 s cut to a multiple of the hop (at 12 kHz that is
349440 samples = 29.12 s, the duration of Choi et al. 2016), so that LibROSA's centred STFT yields 1366 / 1820 frames.

:class:`FeatureStore` computes, on the first request for a (dataset, sample rate), the power mel spectrograms of all
seven mel counts of Table II in one pass (one load and one STFT per clip) and keeps one ``.npy`` per mel count; every
hop factor and log type is derived from those on request.
"""
from __future__ import annotations

import fcntl
import functools
import json
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

import librosa
import numpy as np
import torch

from .config import HOP_FACTORS, LOG_TYPES, MEL_BANDS, SAMPLE_RATES

WINDOW = 512  # Hann window (= n_fft), Section V
HOP = 256  # reference hop, Section V
CLIP_SECONDS = 29.1  # centre cut, Section V
FULL_TIME_MELS = (128, 96, 48)  # Table II: the mel counts evaluated at every hop factor; the others only at x1
DB_FLOOR = 1e-10  # power floor of "dB" (Essentia lin2db / LibROSA amin)


def table_ii() -> list[tuple[int, int, int, str]]:
    """The 88 configurations (sample_rate, n_mels, hop_factor, log) of Table II."""
    return [(sr, m, k, log) for sr in SAMPLE_RATES for m in MEL_BANDS
            for k in (HOP_FACTORS if m in FULL_TIME_MELS else (1,)) for log in LOG_TYPES]


def clip_samples(sample_rate: int) -> int:
    """Samples of the padded centre cut: CLIP_SECONDS rounded up to a multiple of HOP (see the module docstring)."""
    return math.ceil(round(CLIP_SECONDS * sample_rate) / HOP) * HOP


def n_frames(sample_rate: int, hop_factor: int = 1) -> int:
    """Frames of a clip at ``hop_factor`` x 256: 1366 / 1820 at x1 for 12 / 16 kHz, 137 / 182 at x10."""
    return -(-(1 + clip_samples(sample_rate) // HOP) // hop_factor)  # every k-th of the x1 frames


def centre_cut(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The centre CLIP_SECONDS of mono ``audio``, zero-padded at the end to a multiple of HOP (clip_samples).

    A clip shorter than CLIP_SECONDS is zero-padded evenly on both sides, so that it stays centred.
    """
    audio = np.asarray(audio, dtype=np.float32)
    cut = round(CLIP_SECONDS * sample_rate)
    if len(audio) >= cut:
        start = (len(audio) - cut) // 2
        audio, before = audio[start:start + cut], 0
    else:
        before = (cut - len(audio)) // 2
    out = np.zeros(clip_samples(sample_rate), dtype=np.float32)
    out[before:before + len(audio)] = audio
    return out


@functools.lru_cache(maxsize=None)
def mel_basis(sample_rate: int, n_mels: int) -> np.ndarray:
    """Slaney-scale, unit-area mel filterbank (n_mels, 1 + WINDOW // 2) up to Nyquist, as LibROSA's default."""
    return librosa.filters.mel(sr=sample_rate, n_fft=WINDOW, n_mels=n_mels, htk=False, norm="slaney")


def power_mel(audio: np.ndarray, sample_rate: int, n_mels_list: Sequence[int]) -> dict[int, np.ndarray]:
    """Power mel spectrograms {n_mels: (n_mels, frames) float32} of ``audio`` from ONE centred STFT (Section V).

    Equal to ``librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=512, hop_length=256, n_mels=n_mels)``.
    """
    stft = librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=WINDOW, hop_length=HOP, window="hann",
                        center=True)
    power = np.abs(stft) ** 2
    return {m: (mel_basis(sample_rate, m) @ power).astype(np.float32) for m in n_mels_list}


def derive(power: np.ndarray, hop_factor: int, log: str) -> np.ndarray:
    """A Table II configuration from a hop-256 power mel spectrogram (..., n_mels, frames): every
    ``hop_factor``-th frame, then ``log`` = log10(1 + 10000 x) or ``dB`` = 10 log10(max(x, 1e-10)); float32.

    The logarithm runs in torch, in place: its vectorised float32 log10 is about 10x faster than numpy's on our
    CPUs, and the log is most of the cost of serving a configuration from the store."""
    if log not in LOG_TYPES:
        raise ValueError(f"log must be one of {LOG_TYPES}, not {log!r}")
    # always a writable in-memory copy: power may be a read-only memmap, and the log below works in place
    x = torch.from_numpy(np.array(power[..., ::hop_factor], dtype=np.float32, order="C", copy=True))
    if log == "log":
        torch.log10(x.mul_(10000.0).add_(1.0), out=x)
    else:
        torch.log10(x.clamp_(min=DB_FLOOR), out=x).mul_(10.0)
    return x.numpy()


class Clip(Protocol):
    clip_id: str

    def load(self, sample_rate: int) -> np.ndarray:  # mono float32 audio at sample_rate
        ...


class FeatureStore:
    """Power mel spectrograms on disk, shared by the trials of a sweep (Section V, Table II).

    Layout: ``root/<dataset_key>/<sample_rate>/mel<n_mels>.npy`` (float32, (n_clips, n_mels, frames), hop 256,
    before log) for every n_mels of Table II, and ``clips.json`` (the clip ids, written last: its presence marks a
    complete build). Concurrent builders (threads or processes) serialise on an exclusive ``fcntl.flock`` of
    ``root/<dataset_key>/<sample_rate>.lock``; arrays are written to temporary files and moved into place with
    ``os.replace``. (flock across nodes needs a file system that supports it, e.g. local or a modern NFS.)
    """

    def __init__(self, root: str | os.PathLike, log: Callable[[str], None] | None = None):
        self.root = Path(root).expanduser()
        self.log = log or (lambda msg: None)

    def _dir(self, dataset_key: str, sample_rate: int) -> Path:
        return self.root / dataset_key / str(sample_rate)

    def get(self, dataset_key: str, clips: Sequence[Clip], sample_rate: int, n_mels: int, hop_factor: int,
            log: str) -> np.ndarray:
        """Features (n_clips, n_mels, n_frames(sample_rate, hop_factor)) float32 of one Table II configuration."""
        if n_mels not in MEL_BANDS:
            raise ValueError(f"n_mels must be one of {MEL_BANDS}, not {n_mels}")
        if log not in LOG_TYPES:
            raise ValueError(f"log must be one of {LOG_TYPES}, not {log!r}")
        folder = self._dir(dataset_key, sample_rate)
        ids = [str(c.clip_id) for c in clips]
        if not (folder / "clips.json").exists():
            self._build(dataset_key, clips, ids, sample_rate)
        stored = json.loads((folder / "clips.json").read_text())
        if stored != ids:
            raise ValueError(f"feature store {folder} holds {len(stored)} other clips than the {len(ids)} asked "
                             "for: use a dataset_key that identifies the clip set")
        return derive(np.load(folder / f"mel{n_mels}.npy", mmap_mode="r"), hop_factor, log)

    def _build(self, dataset_key: str, clips: Sequence[Clip], ids: list[str], sample_rate: int) -> None:
        folder = self._dir(dataset_key, sample_rate)
        folder.mkdir(parents=True, exist_ok=True)
        # flock locks belong to an open file description: two threads opening the file exclude each other too
        with open(folder.parent / f"{sample_rate}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if (folder / "clips.json").exists():  # another builder finished while we waited
                return
            tag = f".tmp-{socket.gethostname()}-{os.getpid()}"
            frames = n_frames(sample_rate)
            arrays = {m: np.lib.format.open_memmap(folder / f"mel{m}.npy{tag}", mode="w+", dtype=np.float32,
                                                   shape=(len(clips), m, frames)) for m in MEL_BANDS}
            start, every = time.time(), max(1, math.ceil(len(clips) / 10))
            for i, clip in enumerate(clips):
                mels = power_mel(centre_cut(clip.load(sample_rate), sample_rate), sample_rate, MEL_BANDS)
                for m, a in arrays.items():
                    a[i] = mels[m]
                if (i + 1) % every == 0 or i + 1 == len(clips):
                    self.log(f"features {dataset_key} {sample_rate} Hz: {i + 1}/{len(clips)} clips "
                             f"({time.time() - start:.0f} s)")
            for a in arrays.values():
                a.flush()
            arrays.clear()  # closes the memmaps
            for m in MEL_BANDS:
                os.replace(folder / f"mel{m}.npy{tag}", folder / f"mel{m}.npy")
            tmp = folder / f"clips.json{tag}"
            tmp.write_text(json.dumps(ids))
            os.replace(tmp, folder / "clips.json")
        self.sizes(dataset_key)

    def sizes(self, dataset_key: str) -> list[dict]:
        """Storage of every Table II configuration as float32 (``log`` = "log" / "dB", bytes = 4 n_mels frames
        n_clips), then the stored hop-256 power arrays (``log`` = "power", bytes on disk); written to
        ``root/<dataset_key>/sizes.json``. Needs at least one sample rate built (for the number of clips)."""
        built = {sr: json.loads((self._dir(dataset_key, sr) / "clips.json").read_text())
                 for sr in SAMPLE_RATES if (self._dir(dataset_key, sr) / "clips.json").exists()}
        if not built:
            raise FileNotFoundError(f"no features built for {dataset_key!r} under {self.root}")
        n_clips = len(next(iter(built.values())))
        rows = [dict(sample_rate=sr, n_mels=m, hop_factor=k, log=log, n_clips=n_clips, frames=n_frames(sr, k),
                     bytes=4 * m * n_frames(sr, k) * n_clips) for sr, m, k, log in table_ii()]
        rows += [dict(sample_rate=sr, n_mels=m, hop_factor=1, log="power", n_clips=len(ids), frames=n_frames(sr),
                      bytes=(self._dir(dataset_key, sr) / f"mel{m}.npy").stat().st_size)
                 for sr, ids in built.items() for m in MEL_BANDS]
        out = self.root / dataset_key / "sizes.json"
        tmp = out.with_name(f"sizes.json.tmp-{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, out)
        return rows
