"""Time to build the features of the whole Table II grid (Ferraro et al. 2020, Section V): 88 configurations.

Both sides start from the same N clips at 44.1 kHz (default: 20 synthetic 30 s clips of a noisy chord; MTAT
segments are ~30 s) and produce every configuration of Table II (12 and 16 kHz; 128/96/48 mel bands at hops
x1, 2, 3, 4, 5, 10; 32/24/16/8 bands at x1; log and dB), in one run, on the CPU:

* ours: ``tasks/tagging/features.py:FeatureStore`` (one resample and one STFT per clip and sample rate, all seven
  mel counts stored, every hop and log derived), in a temporary folder; the store hands out lazy views, and the
  timing includes reading every configuration of every clip from them into an array (``np.asarray(view)``);
* independent: each configuration on its own, the way a script per configuration computes it: resample from
  44.1 kHz (``librosa.resample``, soxr_hq as ``librosa.load``), 29.1 s centre cut,
  ``librosa.feature.melspectrogram`` with hop k x 256, then the log.

Each side is timed ``--repeat`` times (the store's side is well under a second, so one page-fault stall of this
shared machine moves a single timing by half); prints every timing, the ratio of the fastest of each side (and of
the medians) and the largest difference between the two sides' features. The full run takes about a minute on 2
cores (mostly the independent side); ``--smoke`` builds the whole grid for one clip, each side timed once, in
seconds, which proves both sides run and agree and says nothing about the speed-up. Usage:
    .venv/bin/python bench/features.py [--clips 20] [--repeat 3]
    .venv/bin/python bench/features.py --smoke
"""
from __future__ import annotations

import argparse
import tempfile
import time

import librosa
import numpy as np

from sweeplab.tasks.tagging.features import FeatureStore, centre_cut, derive, table_ii

SOURCE_RATE = 44100
SMOKE = {"clips": 1, "repeat": 1}  # --smoke: the whole grid for one clip, each side timed once


class SynthClip:
    """A 30 s noisy chord at 44.1 kHz; ``load`` resamples it as ``librosa.load(path, sr=...)`` would."""

    def __init__(self, index: int, seconds: float = 30.0):
        rng = np.random.default_rng(index)
        t = np.arange(round(seconds * SOURCE_RATE)) / SOURCE_RATE
        root = 110.0 * 2 ** (index % 12 / 12)
        y = sum(np.sin(2 * np.pi * root * r * t) for r in (1, 1.26, 1.5, 2, 3))
        y = y * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t)) + 0.5 * rng.standard_normal(len(t))
        self.clip_id, self.audio = f"synth{index}", (0.05 * y).astype(np.float32)

    def load(self, sample_rate: int) -> np.ndarray:
        return librosa.resample(self.audio, orig_sr=SOURCE_RATE, target_sr=sample_rate, res_type="soxr_hq")


def independent(clips, sample_rate: int, n_mels: int, hop_factor: int, log: str) -> np.ndarray:
    out = []
    for clip in clips:
        y = centre_cut(clip.load(sample_rate), sample_rate)
        s = librosa.feature.melspectrogram(y=y, sr=sample_rate, n_fft=512, hop_length=256 * hop_factor,
                                           window="hann", n_mels=n_mels, power=2.0)
        out.append(np.log10(1 + 10000 * s) if log == "log" else 10 * np.log10(np.maximum(s, 1e-10)))
    return np.stack(out).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="number of synthetic 30 s clips")
    parser.add_argument("--repeat", type=int, default=3, help="timings of each side; the fastest of each is compared")
    parser.add_argument("--smoke", action="store_true", help=f"tiny run {SMOKE}: proves the code runs")
    args = parser.parse_args()
    if args.smoke:  # the smoke values replace the defaults; options given on the command line still win
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    clips = [SynthClip(i) for i in range(args.clips)]
    grid = table_ii()
    independent(clips[:1], 12000, 8, 1, "dB")  # warm up librosa (numba, soxr) outside both timings
    derive(np.ones((1, 2)), 1, "dB")

    t_ours = []
    for _ in range(args.repeat):  # a new store each time: the build is timed, not a cached store
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            store = FeatureStore(root)
            ours = {cfg: np.asarray(store.get("bench", clips, *cfg)) for cfg in grid}
            t_ours.append(time.perf_counter() - start)
            stored = sum(r["bytes"] for r in store.sizes("bench") if r["log"] == "power")

    t_ind, diff = [], 0.0
    for r in range(args.repeat):
        start = time.perf_counter()
        refs = {cfg: independent(clips, *cfg) for cfg in grid}
        t_ind.append(time.perf_counter() - start)
        if r == 0:
            for cfg, ref in refs.items():
                assert ref.shape == ours[cfg].shape, (cfg, ref.shape, ours[cfg].shape)
                diff = max(diff, float(np.abs(ref - ours[cfg]).max()))

    def times(ts):
        return " ".join(f"{t:.2f}" for t in ts) + f" s (fastest {min(ts):.2f} s)"

    print(f"Table II grid: {len(grid)} configurations x {len(clips)} clips of 30 s at {SOURCE_RATE} Hz, "
          f"each side timed {args.repeat} times")
    print(f"FeatureStore (one STFT per clip and sample rate): {times(t_ours)}  ({stored / 2**20:.1f} MiB stored)")
    print(f"independent librosa per configuration:            {times(t_ind)}")
    print(f"speed-up (fastest against fastest): {min(t_ind) / min(t_ours):.1f}x; median against median: "
          f"{np.median(t_ind) / np.median(t_ours):.1f}x   largest |difference| of the features: {diff:.2e}")


if __name__ == "__main__":
    main()
