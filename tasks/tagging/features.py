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
hop factor and log type is derived from those on request, by a :class:`FeatureView` that reads only the clips asked
for (a trial's memory does not grow with the number of clips).
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import operator
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Protocol, Sequence

import librosa
import numpy as np
import scipy.sparse
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


@functools.lru_cache(maxsize=None)
def _stacked_basis(sample_rate: int, n_mels_list: tuple[int, ...]) -> scipy.sparse.csr_array:
    """The filterbanks of ``n_mels_list`` stacked (sum of n_mels, 1 + WINDOW // 2), as a sparse matrix: each
    triangle covers a few FFT bins (about 4% of the stacked matrix is non-zero), so one sparse product computes all
    seven mel counts about 6x faster than one dense matmul."""
    return scipy.sparse.csr_array(np.concatenate([mel_basis(sample_rate, m) for m in n_mels_list]))


@functools.lru_cache(maxsize=None)
def _window() -> np.ndarray:
    return librosa.filters.get_window("hann", WINDOW, fftbins=True)  # float64, periodic: librosa.stft's window


def power_spectrum(audio: np.ndarray, block: int = 128) -> np.ndarray:
    """|STFT|^2 (1 + WINDOW // 2, frames) float32 of ``audio``, as ``np.abs(librosa.stft(audio, n_fft=512,
    hop_length=256)) ** 2``: centred frames (zero padding of WINDOW / 2 at both ends), Hann window, a float64 FFT
    rounded to complex64 as LibROSA stores it; ``block`` frames at a time, which stay in the CPU's cache."""
    y = np.pad(np.asarray(audio, dtype=np.float32), WINDOW // 2)  # librosa.stft(center=True, pad_mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(y, WINDOW)[::HOP]
    out = np.empty((1 + WINDOW // 2, len(frames)), dtype=np.float32)
    for b in range(0, len(frames), block):
        spec = np.fft.rfft(frames[b:b + block] * _window(), axis=-1).astype(np.complex64)
        np.square(np.abs(spec), out=out[:, b:b + block].T)
    return out


def power_mel(audio: np.ndarray, sample_rate: int, n_mels_list: Sequence[int]) -> dict[int, np.ndarray]:
    """Power mel spectrograms {n_mels: (n_mels, frames) float32, C-contiguous} of ``audio`` from ONE centred STFT
    and one product with the stacked filterbanks (Section V).

    Equal to ``librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=512, hop_length=256, n_mels=n_mels)``.
    """
    n_mels_list = tuple(n_mels_list)
    mel = _stacked_basis(sample_rate, n_mels_list) @ power_spectrum(audio)  # (sum of n_mels, frames)
    bounds = np.cumsum((0, *n_mels_list))
    return {m: mel[a:b] for m, a, b in zip(n_mels_list, bounds[:-1], bounds[1:])}


def _empty(shape: Sequence[int]) -> np.ndarray:
    """An uninitialised float32 array, allocated by torch: numpy asks the kernel for transparent huge pages for
    large arrays (``madvise``), and on our virtual machines a first touch of huge pages is far slower than of 4 KiB
    pages (faulting in 370 MB: 0.5-1.5 s with numpy's allocation, 0.15 s with torch's); see also _NpyWriter."""
    return torch.empty(tuple(shape), dtype=torch.float32).numpy()


def derive(power: np.ndarray, hop_factor: int, log: str, out: np.ndarray | None = None) -> np.ndarray:
    """A Table II configuration from a hop-256 power mel spectrogram (..., n_mels, frames): every
    ``hop_factor``-th frame, then ``log`` = log10(1 + 10000 x) or ``dB`` = 10 log10(max(x, 1e-10)); float32, in
    ``out`` if given (``out`` may be ``power`` itself when ``hop_factor`` is 1).

    In place, in float32, with numpy's vectorised log10: about 4x faster than torch's here, and single-threaded
    (torch's threads made it far slower on a loaded machine). The operations are those of a plain numpy
    ``np.log10(1 + 10000 * x)`` / ``10 * np.log10(np.maximum(x, 1e-10))`` on float32 ``x``, in the same order."""
    if log not in LOG_TYPES:
        raise ValueError(f"log must be one of {LOG_TYPES}, not {log!r}")
    src = np.asarray(power)[..., ::hop_factor]
    if out is None:
        out = _empty(src.shape)
    if log == "log":
        np.multiply(src, 10000.0, out=out, casting="same_kind")
        np.log10(np.add(out, 1.0, out=out), out=out)
    else:
        np.log10(np.maximum(src, DB_FLOOR, out=out, casting="same_kind"), out=out)
        np.multiply(out, 10.0, out=out)
    return out


class FeatureView:
    """One Table II configuration (``hop_factor``, ``log``) of a stored hop-256 power array, read on request.

    ``view[i]`` (one clip: (n_mels, frames)), ``view[a:b]`` and ``view[indices]`` (a 1-D int or boolean array; rows
    come back in the order asked) return float32 arrays; ``len(view)``, ``view.shape`` (n_clips, n_mels,
    ``n_frames(sample_rate, hop_factor)``) and ``np.asarray(view)`` (every clip) as for an array. Only the rows
    asked for are read, in increasing file order, by positional reads of at most READ_BYTES; hop and log are
    derived from them (:func:`derive`). Reads go through ``os.preadv`` rather than a memory mapping of the file:
    every page of a mapping that an epoch touches stays in the process's resident set while mapped, so the RSS of
    a trial would grow with the number of clips. The view holds no open file and pickles small.
    """

    READ_BYTES = 1 << 20  # about a core's L2 cache: derive finds what was just read there
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | os.PathLike, hop_factor: int, log: str):
        if log not in LOG_TYPES:
            raise ValueError(f"log must be one of {LOG_TYPES}, not {log!r}")
        self.path, self.hop_factor, self.log = Path(path), int(hop_factor), log
        with open(self.path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            self.offset = fh.tell()
        if len(shape) != 3 or fortran or dtype != self.dtype:
            raise ValueError(f"{self.path}: expected a C-ordered float32 (clips, n_mels, frames) array, found "
                             f"{dtype} {shape}{' (Fortran order)' if fortran else ''}")
        self.stored_shape = tuple(shape)
        self.shape = (shape[0], shape[1], -(-shape[2] // self.hop_factor))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"FeatureView({str(self.path)!r}, hop_factor={self.hop_factor}, log={self.log!r}, shape={self.shape})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = operator.index(key)
            if not -n <= i < n:
                raise IndexError(f"clip {i} out of range for {n} clips")
            return self._read(np.array([i % n]))[0]
        if isinstance(key, slice):
            return self._read(np.arange(*key.indices(n)))
        rows = np.asarray(key)
        if rows.dtype == bool and rows.shape == (n,):
            rows = np.flatnonzero(rows)
        if rows.size == 0:
            rows = rows.astype(np.int64)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise IndexError(f"index clips with an int, a slice or a 1-D int or boolean (length {n}) array, not "
                             f"{rows.dtype} {rows.shape}")
        if ((rows < -n) | (rows >= n)).any():
            raise IndexError(f"clip index out of range for {n} clips")
        return self._read(np.where(rows < 0, rows + n, rows))

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = _empty((len(rows), *self.shape[1:]))
        row_bytes = 4 * self.stored_shape[1] * self.stored_shape[2]
        per_read = max(1, self.READ_BYTES // row_bytes)
        pos = np.argsort(rows, kind="stable")  # read in file order, write each row where it was asked
        rows = rows[pos]
        # runs of consecutive stored rows that also land in consecutive output rows, cut into reads of per_read
        cuts = np.flatnonzero((np.diff(rows) != 1) | (np.diff(pos) != 1)) + 1
        reads = [(a, min(a + per_read, stop)) for first, stop in zip((0, *cuts), (*cuts, len(rows)))
                 for a in range(first, stop, per_read)]

        def read(part: list[tuple[int, int]]) -> None:
            raw = None if self.hop_factor == 1 else _empty((min(per_read, len(rows)), *self.stored_shape[1:]))
            with open(self.path, "rb", buffering=0) as fh:
                for a, b in part:
                    target = out[pos[a]:pos[a] + b - a]
                    buf = target if raw is None else raw[:b - a]  # hop x1: read into the output, derive in place
                    _pread(fh.fileno(), buf, self.offset + int(rows[a]) * row_bytes, self.path)
                    derive(buf, self.hop_factor, self.log, out=target)

        # eight reads or more go in two threads (preadv and numpy's log release the GIL), each with its buffer
        threads = 2 if len(reads) >= 8 and (os.cpu_count() or 1) > 1 else 1
        if threads == 1:
            read(reads)
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="feature-read") as pool:
                for future in [pool.submit(read, reads[k::threads]) for k in range(threads)]:
                    future.result()
        return out


def _pread(fd: int, out: np.ndarray, offset: int, path: Path) -> None:
    """Fill the C-contiguous ``out`` with the bytes of ``fd`` from ``offset``."""
    view, done = memoryview(out).cast("B"), 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise EOFError(f"feature file {path} is truncated (wanted {len(view)} bytes at {offset})")
        done += got


class _NpyWriter:
    """``with _NpyWriter(path, shape) as fh``: a new ``.npy`` file (version 1.0 header) of a C-ordered float32
    array of ``shape``, whose rows ``fh.write_row(i, row)`` writes in any order, from any thread (``os.pwrite``).

    Writes go in pieces of WRITE_BYTES: Linux sizes the page-cache folios it allocates for a write by the write's
    length, and on our virtual machines folios above 64 KiB come ~20x slower (100 MB written in 1 MiB pieces took
    ~1 s, in 64 KiB pieces 0.03-0.1 s); elsewhere the smaller pieces cost a few more system calls."""

    WRITE_BYTES = 64 << 10

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.file = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.file, {
            "descr": np.lib.format.dtype_to_descr(FeatureView.dtype), "fortran_order": False, "shape": shape})
        self.file.flush()
        self.fd, self.offset, self.shape = self.file.fileno(), self.file.tell(), shape

    def __enter__(self) -> "_NpyWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def write_row(self, i: int, row: np.ndarray) -> None:
        if row.shape != self.shape[1:] or row.dtype != FeatureView.dtype or not row.flags.c_contiguous:
            raise ValueError(f"row of {row.dtype} {row.shape}, expected C-ordered float32 {self.shape[1:]}")
        view, done = memoryview(row).cast("B"), 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:done + self.WRITE_BYTES], self.offset + i * len(view) + done)


class Clip(Protocol):
    clip_id: str

    def load(self, sample_rate: int) -> np.ndarray:  # mono float32 audio at sample_rate
        ...


class FeatureStore:
    """Power mel spectrograms on disk, shared by the trials of a sweep (Section V, Table II).

    Layout: ``root/<dataset_key>/<sample_rate>/mel<n_mels>.npy`` (float32, (n_clips, n_mels, frames), hop 256,
    before log) for every n_mels of Table II, and ``clips.json`` (the clip ids, written last: its presence marks a
    complete build). Concurrent builders (threads or processes) serialise on an exclusive ``fcntl.flock`` of
    ``root/<dataset_key>/<sample_rate>.lock``; arrays are written to temporary files, synced to disk and moved into
    place with ``os.replace``. (flock across nodes needs a file system that supports it, e.g. local or a modern NFS.)
    A build loads (decodes, resamples), transforms and writes ``workers`` clips at a time in threads (the audio
    decoder, soxr, the FFT, the sparse product and the writes release the GIL); each writes its clip's rows in place.
    """

    def __init__(self, root: str | os.PathLike, log: Callable[[str], None] | None = None,
                 workers: int | None = None):
        self.root = Path(root).expanduser()
        self.log = log or (lambda msg: None)
        self.workers = workers or min(4, len(os.sched_getaffinity(0)))

    def _dir(self, dataset_key: str, sample_rate: int) -> Path:
        return self.root / dataset_key / str(sample_rate)

    def get(self, dataset_key: str, clips: Sequence[Clip], sample_rate: int, n_mels: int, hop_factor: int,
            log: str) -> FeatureView:
        """Features (n_clips, n_mels, n_frames(sample_rate, hop_factor)) float32 of one Table II configuration, as
        a :class:`FeatureView` that reads the clips it is asked for; the store is built on the first request."""
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
        return FeatureView(folder / f"mel{n_mels}.npy", hop_factor, log)

    def _build(self, dataset_key: str, clips: Sequence[Clip], ids: list[str], sample_rate: int) -> None:
        folder = self._dir(dataset_key, sample_rate)
        folder.mkdir(parents=True, exist_ok=True)
        # flock locks belong to an open file description: two threads opening the file exclude each other too
        with open(folder.parent / f"{sample_rate}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if (folder / "clips.json").exists():  # another builder finished while we waited
                return
            tag = f".tmp-{socket.gethostname()}-{os.getpid()}"
            temps = {m: folder / f"mel{m}.npy{tag}" for m in MEL_BANDS}
            try:
                with contextlib.ExitStack() as stack:
                    files = {m: stack.enter_context(_NpyWriter(path, (len(clips), m, n_frames(sample_rate))))
                             for m, path in temps.items()}
                    self._transform(dataset_key, clips, sample_rate, files)
            except BaseException:
                for path in temps.values():
                    path.unlink(missing_ok=True)
                raise
            for m, path in temps.items():
                os.replace(path, folder / f"mel{m}.npy")
            tmp = folder / f"clips.json{tag}"
            tmp.write_text(json.dumps(ids))
            os.replace(tmp, folder / "clips.json")
        self.sizes(dataset_key)

    def _transform(self, dataset_key: str, clips: Sequence[Clip], sample_rate: int,
                   files: dict[int, _NpyWriter]) -> None:
        """power_mel of every clip's centre cut into row i of every file, ``workers`` clips at a time in threads,
        each of which writes the rows it computed; then the files are synced to disk."""
        def one(i: int, clip: Clip) -> None:
            mels = power_mel(centre_cut(clip.load(sample_rate), sample_rate), sample_rate, MEL_BANDS)
            for m, fh in files.items():
                fh.write_row(i, mels[m])

        _stacked_basis(sample_rate, MEL_BANDS), _window()  # built once, before the threads share them
        start, every = time.time(), max(1, math.ceil(len(clips) / 10))
        with ThreadPoolExecutor(max(1, self.workers), thread_name_prefix="features") as pool:
            futures = [pool.submit(one, i, clip) for i, clip in enumerate(clips)]
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    future.result()
                    if done % every == 0 or done == len(clips):
                        self.log(f"features {dataset_key} {sample_rate} Hz: {done}/{len(clips)} clips "
                                 f"({time.time() - start:.0f} s)")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        for fh in files.values():
            os.fsync(fh.fd)

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
