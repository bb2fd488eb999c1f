"""Embedded tagged-audio set of the `tagging` task: synthesised music with known tags (no download).

Ferraro et al. 2020 (Section VII) train on MagnaTagATune, whose 50 tags mix instruments, tempo, loudness and mood.
This set keeps that mix with tags that are true by construction, so that ROC-AUC / PR-AUC mean something and the
trade-off the paper studies (fewer mel bands, coarser hops) has something to lose: instruments need frequency
resolution (timbre, pitch), tempo needs time resolution. Tags (``TAGS``):

* instruments, 1-3 per clip drawn without replacement: ``sine-lead`` (sine melody), ``square-bass`` (band-limited
  square, chord roots an octave down), ``plucked`` (Karplus-Strong arpeggio), ``noise-drums`` (kick on beats 1 and 3,
  noise snare on 2 and 4), ``organ`` (additive harmonics 1, 2, 3, 4, 6, 8), ``strings`` (three saws detuned by
  -8, 0, +8 cents, slow attack);
* tempo, one of three bands with equal probability: ``slow`` (60-85 BPM), no tag (95-125 BPM), ``fast`` (140-180
  BPM); gaps between the bands keep the tags unambiguous;
* loudness, one of three bands: ``quiet`` (mix RMS -38..-32 dBFS), no tag (-26..-22), ``loud`` (-16..-12);
* mode: ``major`` or ``minor`` (natural minor), one per clip, of a random root (MIDI 48-59), chords I/IV/V/vi
  (degrees 0, 3, 4, 5 of the scale) one per bar of 4 beats.

Every note starts on a beat: lead, bass, plucked and drums on every beat, organ and strings every second beat, so
the onset rate follows the tempo. A clip is 29.1 s (the paper's MTAT clip length, Section III), rendered directly
at the requested sample rate, deterministic in (seed, index): the recipe comes from ``default_rng([seed, index, 0])``
and the notes and noise from ``default_rng([seed, index, 1])``, so the same music is rendered at 12 and 16 kHz and a
clip does not depend on ``n_clips``. Split by ``crc32(clip_id) % 10``: 0-6 train, 7 valid, 8-9 test (about
70/10/20, stable when ``n_clips`` grows). Notes are cached per pitch within a clip, so rendering is vectorised numpy.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

CLIP_SECONDS = 29.1  # Section III: MTAT clips are 29.1 s
INSTRUMENTS = ("sine-lead", "square-bass", "plucked", "noise-drums", "organ", "strings")
TAGS = (*INSTRUMENTS, "slow", "fast", "quiet", "loud", "major", "minor")
TEMPO_BANDS = {"slow": (60.0, 85.0), None: (95.0, 125.0), "fast": (140.0, 180.0)}
LEVEL_BANDS_DB = {"quiet": (-38.0, -32.0), None: (-26.0, -22.0), "loud": (-16.0, -12.0)}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
CHORD_DEGREES = (0, 3, 4, 5)  # I, IV, V, vi
ORGAN_HARMONICS = ((1, 1.0), (2, 0.7), (3, 0.5), (4, 0.3), (6, 0.2), (8, 0.1))
STRING_DETUNE_CENTS = (-8.0, 0.0, 8.0)


@dataclass(frozen=True)
class Recipe:
    """What a synthesised clip plays; its tags follow from it (``tags()``)."""
    instruments: tuple[str, ...]
    bpm: float
    tempo: str | None
    rms_db: float
    level: str | None
    mode: str
    root: int  # MIDI note of the key's tonic

    def tags(self) -> list[str]:
        return [t for t in (*self.instruments, self.tempo, self.level, self.mode) if t is not None]


def make_recipe(seed: int, index: int) -> Recipe:
    rng = np.random.default_rng([seed, index, 0])
    n_inst = int(rng.integers(1, 4))
    instruments = tuple(INSTRUMENTS[i] for i in sorted(rng.choice(len(INSTRUMENTS), n_inst, replace=False)))
    tempo = list(TEMPO_BANDS)[int(rng.integers(3))]
    level = list(LEVEL_BANDS_DB)[int(rng.integers(3))]
    return Recipe(instruments, float(rng.uniform(*TEMPO_BANDS[tempo])), tempo,
                  float(rng.uniform(*LEVEL_BANDS_DB[level])), level,
                  ("major", "minor")[int(rng.integers(2))], int(rng.integers(48, 60)))


def split_of(clip_id: str) -> str:
    bucket = zlib.crc32(clip_id.encode()) % 10
    return "train" if bucket < 7 else "valid" if bucket == 7 else "test"


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _envelope(n: int, sr: int, attack: float, tau: float | None, release: float = 0.02) -> np.ndarray:
    """Linear attack, then exponential decay (``tau`` s) or sustain (None), linear release over the last samples."""
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / max(attack, 1.0 / sr))
    if tau is not None:
        env *= np.exp(-np.maximum(t - attack, 0.0) / tau)
    n_rel = min(n, int(release * sr))
    env[n - n_rel:] *= np.linspace(1.0, 0.0, n_rel)
    return env


def _additive(freqs_weights, n: int, sr: int) -> np.ndarray:
    """Sum of sines (frequency, weight), partials at or above Nyquist dropped (no aliasing)."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for f, w in freqs_weights:
        if f < 0.5 * sr:
            out += w * np.sin(2.0 * np.pi * f * t)
    return out


def _wavetable(f: float, harmonics, n: int, sr: int, size: int = 4096) -> np.ndarray:
    """A periodic tone of fundamental ``f`` from (harmonic number, weight) pairs below Nyquist, read from a
    one-period table of ``size`` points: O(n) whatever the number of harmonics."""
    phase = np.arange(size) / size
    table = sum(w * np.sin(2.0 * np.pi * k * phase) for k, w in harmonics if k * f < 0.5 * sr)
    return table[(np.floor(f * np.arange(n) / sr * size) % size).astype(np.int64)]


def _karplus_strong(f: float, n: int, sr: int, rng: np.random.Generator, decay: float = 0.996) -> np.ndarray:
    """Karplus-Strong pluck: y[n] = decay * (y[n-P] + y[n-P-1]) / 2 from a noise burst of one period P. Computed a
    block of P samples at a time: every sample of a block depends only on the previous block."""
    p = max(2, int(round(sr / f)))
    y = np.zeros(n + p + 1)
    y[:p + 1] = rng.uniform(-1.0, 1.0, p + 1)
    for start in range(p + 1, n, p):
        stop = min(start + p, n)
        y[start:stop] = decay * 0.5 * (y[start - p:stop - p] + y[start - p - 1:stop - p - 1])
    return y[:n]


def _note(inst: str, midis: tuple[float, ...], n: int, sr: int, rng) -> np.ndarray:
    """One note (or chord) of an instrument, ``n`` samples long."""
    if inst == "sine-lead":
        return _additive([(_hz(midis[0]), 1.0)], n, sr) * _envelope(n, sr, 0.01, 0.3)
    if inst == "square-bass":
        f = _hz(midis[0])
        return _additive([(k * f, 1.0 / k) for k in range(1, 16, 2)], n, sr) * _envelope(n, sr, 0.005, 0.25)
    if inst == "plucked":
        return _karplus_strong(_hz(midis[0]), n, sr, rng) * _envelope(n, sr, 0.001, None)
    if inst == "organ":
        partials = [(k * _hz(m), w) for m in midis for k, w in ORGAN_HARMONICS]
        return _additive(partials, n, sr) * _envelope(n, sr, 0.02, None, 0.05)
    if inst == "strings":  # band-limited saws (harmonics k < 31 with weight 1/k) from a wavetable
        saw = [(k, 1.0 / k) for k in range(1, 31)]
        tones = sum(_wavetable(_hz(m + c / 100.0), saw, n, sr) for m in midis for c in STRING_DETUNE_CENTS)
        return tones * _envelope(n, sr, 0.15, None, 0.1)
    raise ValueError(f"unknown instrument {inst!r}")


def _drum(kind: int, n: int, sr: int, rng) -> np.ndarray:
    t = np.arange(n) / sr
    if kind == 0:  # kick: sine swept from 120 to 50 Hz
        phase = 2.0 * np.pi * (50.0 * t + 70.0 * 0.03 * (1.0 - np.exp(-t / 0.03)))
        return np.sin(phase) * np.exp(-t / 0.15)
    return (rng.uniform(-1.0, 1.0, n) + 0.5 * np.sin(2.0 * np.pi * 180.0 * t)) * np.exp(-t / 0.08)  # snare


def render(recipe: Recipe, sample_rate: int, seed: int, index: int) -> np.ndarray:
    """The clip's float32 mono audio, ``round(29.1 * sample_rate)`` samples in [-1, 1]."""
    sr = int(sample_rate)
    rng = np.random.default_rng([seed, index, 1])
    n_total = int(round(CLIP_SECONDS * sr))
    beat = 60.0 / recipe.bpm
    beats = np.arange(0.05, CLIP_SECONDS, beat)
    scale = SCALES[recipe.mode]

    def pitch(degree: int) -> int:
        return recipe.root + 12 * (degree // 7) + scale[degree % 7]

    chords = [CHORD_DEGREES[i] for i in rng.integers(len(CHORD_DEGREES), size=len(beats) // 4 + 1)]
    melody = rng.integers(0, 3, size=len(beats))
    mix = np.zeros(n_total)
    for inst in recipe.instruments:
        track, cache = np.zeros(n_total), {}
        every = 2 if inst in ("organ", "strings") else 1
        length = int(min(every * beat * 0.95, 1.5) * sr)
        for k in range(0, len(beats), every):
            start = int(beats[k] * sr)
            d = chords[k // 4]
            triad = (pitch(d), pitch(d + 2), pitch(d + 4))
            if inst == "noise-drums":
                key = (k % 2,)
            elif inst == "sine-lead":
                key = (triad[melody[k]] + 12,)
            elif inst == "square-bass":
                key = (triad[0] - 12,)
            elif inst == "plucked":
                key = (triad[k % 3],)
            else:
                key = triad
            if key not in cache or inst == "noise-drums" and key == (1,):  # fresh noise for every snare
                cache[key] = _drum(key[0], length, sr, rng) if inst == "noise-drums" else _note(inst, key, length,
                                                                                                 sr, rng)
            note = cache[key][:n_total - start]
            track[start:start + note.size] += note
        rms = np.sqrt(np.mean(track ** 2))
        mix += track * (rng.uniform(0.6, 1.0) / max(rms, 1e-12))
    mix *= 10.0 ** (recipe.rms_db / 20.0) / max(np.sqrt(np.mean(mix ** 2)), 1e-12)
    return np.clip(mix, -1.0, 1.0).astype(np.float32)
