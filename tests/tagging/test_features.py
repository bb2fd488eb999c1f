"""Mel spectrograms of Ferraro et al. 2020 (Section V, Table II) against LibROSA, and the shared FeatureStore."""
from __future__ import annotations

import json
import pickle
import threading
import time

import librosa
import numpy as np
import pytest

from sweeplab.tasks.tagging import features as F


def chord(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A noisy A-major chord with a slow tremolo: a spectrum with structure in every band."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0 * (1 + seed / 10)))
    y = y * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)) + 0.3 * rng.standard_normal(len(t))
    return (0.1 * y).astype(np.float32)


class FakeClip:
    """The data helper's clip interface; counts ``load`` calls (thread-safe)."""

    calls = 0
    lock = threading.Lock()

    def __init__(self, clip_id: str, seed: int, seconds: float = 1.5, delay: float = 0.0):
        self.clip_id, self.seed, self.seconds, self.delay = clip_id, seed, seconds, delay

    def load(self, sample_rate: int) -> np.ndarray:
        with FakeClip.lock:
            FakeClip.calls += 1
        time.sleep(self.delay)
        return chord(self.seconds, sample_rate, self.seed)


@pytest.fixture
def short_clips(monkeypatch):
    """Clips cut to 1 s (CLIP_SECONDS patched) so that the store tests stay fast."""
    monkeypatch.setattr(F, "CLIP_SECONDS", 1.0)
    FakeClip.calls = 0
    return [FakeClip(f"c{i}", i) for i in range(4)]


@pytest.mark.parametrize("sample_rate", [12000, 16000])
def test_power_mel_equals_librosa_melspectrogram(sample_rate):
    y = chord(2.0, sample_rate)
    ours = F.power_mel(y, sample_rate, (128, 48, 8))
    for m, s in ours.items():
        ref = librosa.feature.melspectrogram(y=y, sr=sample_rate, n_fft=512, hop_length=256, window="hann",
                                             n_mels=m, power=2.0)
        assert s.dtype == np.float32 and s.shape == ref.shape == (m, 1 + len(y) // 256)
        np.testing.assert_allclose(s, ref, rtol=1e-4, atol=1e-6 * ref.max())
    power = np.abs(librosa.stft(y, n_fft=512, hop_length=256, window="hann", center=True)) ** 2
    np.testing.assert_allclose(F.power_spectrum(y), power, rtol=1e-5, atol=1e-7 * power.max())


@pytest.mark.parametrize("hop_factor", [2, 3, 4, 5, 10])
def test_every_kth_frame_equals_a_k_times_longer_hop(hop_factor, monkeypatch):
    monkeypatch.setattr(F, "CLIP_SECONDS", 3.0)
    sr, m = 12000, 96
    y = F.centre_cut(chord(3.3, sr), sr)
    power = F.power_mel(y, sr, (m,))[m]
    ref = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=hop_factor * 256, n_mels=m)
    kept = power[:, ::hop_factor]
    assert kept.shape == ref.shape == (m, F.n_frames(sr, hop_factor))
    np.testing.assert_allclose(kept, ref, rtol=1e-4, atol=1e-6 * ref.max())
    for log in F.LOG_TYPES:
        np.testing.assert_allclose(F.derive(power, hop_factor, log), F.derive(ref, 1, log), rtol=1e-4, atol=1e-4)


def test_log_types_follow_the_hand_formulas():
    x = np.array([[0.0, 1e-12, 1e-10, 1e-4, 0.5, 3.0, 250.0]], dtype=np.float32)
    np.testing.assert_allclose(F.derive(x, 1, "log"), np.log10(1 + 10000 * x.astype(np.float64)), rtol=1e-6, atol=1e-7)
    expected_db = 10 * np.log10(np.maximum(x.astype(np.float64), 1e-10))
    np.testing.assert_allclose(F.derive(x, 1, "dB"), expected_db, rtol=1e-6)
    assert F.derive(x, 1, "dB")[0, 0] == pytest.approx(-100.0)  # the floor
    assert F.derive(x, 1, "log").dtype == F.derive(x, 1, "dB").dtype == np.float32
    np.testing.assert_array_equal(F.derive(x, 2, "log"), F.derive(x[:, ::2], 1, "log"))
    with pytest.raises(ValueError):
        F.derive(x, 1, "ln")


def test_frame_counts_of_the_paper_at_29_1_seconds():
    assert [F.n_frames(12000, k) for k in (1, 2, 10)] == [1366, 683, 137]
    assert [F.n_frames(16000, k) for k in (1, 2, 10)] == [1820, 910, 182]
    for sr, frames in ((12000, 1366), (16000, 1820)):
        y = F.centre_cut(chord(30.0, sr), sr)
        assert y.dtype == np.float32 and len(y) % F.HOP == 0
        power = F.power_mel(y, sr, (48,))[48]
        assert power.shape == (48, frames)
        assert [F.derive(power, k, "dB").shape[1] for k in F.HOP_FACTORS] == [F.n_frames(sr, k)
                                                                              for k in F.HOP_FACTORS]
    assert F.derive(power, 10, "dB").shape == (48, 182)


def test_centre_cut_takes_the_middle_and_pads_short_clips():
    sr = 12000
    long = np.arange(40 * sr, dtype=np.float32)
    cut = F.centre_cut(long, sr)
    n = round(29.1 * sr)
    assert len(cut) == F.clip_samples(sr) == 349440  # 29.12 s: padded to a multiple of the hop
    np.testing.assert_array_equal(cut[:n], long[(len(long) - n) // 2:][:n])
    assert not cut[n:].any()
    short = np.ones(10 * sr, dtype=np.float32)
    cut = F.centre_cut(short, sr)
    before = (n - len(short)) // 2
    assert cut.sum() == len(short) and cut[before] == 1 and cut[before - 1] == 0 and cut[before + len(short)] == 0


def test_table_ii_has_88_configurations():
    grid = F.table_ii()
    assert len(grid) == len(set(grid)) == 88
    assert (12000, 8, 1, "dB") in grid and (16000, 48, 10, "log") in grid and (12000, 32, 2, "log") not in grid


def test_store_computes_once_and_derives_every_configuration(short_clips, tmp_path):
    messages = []
    store = F.FeatureStore(tmp_path, log=messages.append, workers=3)  # threads write rows in any order
    a = store.get("toy", short_clips, 12000, 96, 1, "dB")
    assert FakeClip.calls == len(short_clips)  # one load per clip for all 7 mel counts
    b = store.get("toy", short_clips, 12000, 48, 3, "log")
    c = store.get("toy", short_clips, 12000, 8, 1, "log")
    assert FakeClip.calls == len(short_clips)  # derived from the stored power mels, no new load
    assert a.dtype == np.float32 and a.shape == (4, 96, F.n_frames(12000)) and b.shape == (4, 48, F.n_frames(12000, 3))
    for i, clip in enumerate(short_clips):
        power = F.power_mel(F.centre_cut(clip.load(12000), 12000), 12000, (96, 48, 8))
        np.testing.assert_allclose(a[i], F.derive(power[96], 1, "dB"), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(b[i], F.derive(power[48], 3, "log"), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(c[i], F.derive(power[8], 1, "log"), rtol=1e-6, atol=1e-6)
    assert len(messages) == 4 and messages[-1].startswith("features toy 12000 Hz: 4/4 clips")
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]  # temporaries were all moved into place


def test_store_persists_across_instances(short_clips, tmp_path):
    first = F.FeatureStore(tmp_path).get("toy", short_clips, 16000, 128, 2, "dB")
    FakeClip.calls = 0
    again = F.FeatureStore(tmp_path).get("toy", short_clips, 16000, 128, 2, "dB")
    assert FakeClip.calls == 0
    assert isinstance(again, F.FeatureView)  # reads on request: nothing of the split is held in memory
    np.testing.assert_array_equal(np.asarray(first), np.asarray(pickle.loads(pickle.dumps(again))))
    with pytest.raises(ValueError, match="dataset_key"):  # another clip set under the same key
        F.FeatureStore(tmp_path).get("toy", short_clips[:3], 16000, 128, 2, "dB")


def test_feature_view_reads_the_rows_asked_for(short_clips, tmp_path, monkeypatch):
    store = F.FeatureStore(tmp_path)
    store.get("toy", short_clips, 12000, 48, 1, "log")
    power = np.load(tmp_path / "toy" / "12000" / "mel48.npy")
    for hop, log, read_bytes in ((1, "log", 1 << 30), (3, "dB", 1 << 30), (3, "dB", 1)):  # 1: one clip per read
        monkeypatch.setattr(F.FeatureView, "READ_BYTES", read_bytes)
        view, full = store.get("toy", short_clips, 12000, 48, hop, log), F.derive(power, hop, log)
        assert len(view) == 4 and view.shape == full.shape == (4, 48, F.n_frames(12000, hop))
        np.testing.assert_array_equal(view[2], full[2])
        np.testing.assert_array_equal(view[-1], full[3])
        for key in (slice(1, 3), slice(None, None, -1), [3, 0, 3, 1], np.array([-1, 0]), np.array([], int),
                    np.array([True, False, False, True])):
            got = view[key]
            assert got.dtype == np.float32 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, full[key])
        np.testing.assert_array_equal(np.asarray(view), full)
    for bad in (4, -5, [0, 4], 1.0, np.array([[0]])):
        with pytest.raises(IndexError):
            view[bad]
    for version in ((1, 0), (2, 0)):  # files written by open_memmap, as stores built before the views were
        old = np.lib.format.open_memmap(tmp_path / f"old{version[0]}.npy", mode="w+", dtype=np.float32,
                                        shape=power.shape, version=version)
        old[:] = power
        old.flush()
        np.testing.assert_array_equal(F.FeatureView(old.filename, 3, "dB")[[2, 1]], full[[2, 1]])


def test_failed_build_leaves_no_files(short_clips, tmp_path):
    class Broken(FakeClip):
        def load(self, sample_rate):
            raise RuntimeError("cannot decode")

    clips = [*short_clips[:2], Broken("bad", 9), short_clips[3]]
    with pytest.raises(RuntimeError, match="cannot decode"):
        F.FeatureStore(tmp_path).get("toy", clips, 12000, 48, 1, "log")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["12000.lock"]
    view = F.FeatureStore(tmp_path).get("toy", short_clips, 12000, 48, 1, "log")  # the next try builds
    assert len(view) == 4


def test_concurrent_builders_compute_once(short_clips, tmp_path):
    clips = [FakeClip(c.clip_id, c.seed, delay=0.05) for c in short_clips]
    results, barrier = [None, None], threading.Barrier(2)

    def build(slot, store):
        barrier.wait()
        results[slot] = np.asarray(store.get("toy", clips, 12000, 48, 1, "log"))

    threads = [threading.Thread(target=build, args=(i, F.FeatureStore(tmp_path))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert FakeClip.calls == len(clips)
    np.testing.assert_array_equal(results[0], results[1])
    assert np.isfinite(results[0]).all() and results[0].std() > 0


def test_sizes_report_table_ii_storage(short_clips, tmp_path):
    store = F.FeatureStore(tmp_path)
    store.get("toy", short_clips, 12000, 96, 1, "dB")
    rows = store.sizes("toy")
    table = [r for r in rows if r["log"] in F.LOG_TYPES]
    assert len(table) == 88
    for r in table:
        assert r["bytes"] == 4 * r["n_mels"] * F.n_frames(r["sample_rate"], r["hop_factor"]) * len(short_clips)
    stored = [r for r in rows if r["log"] == "power"]
    assert sorted(r["n_mels"] for r in stored) == sorted(F.MEL_BANDS) and {r["sample_rate"] for r in stored} == {12000}
    for r in stored:  # the .npy files: the float32 data plus a small header
        assert 0 < r["bytes"] - 4 * r["n_mels"] * F.n_frames(12000) * len(short_clips) <= 128
    assert json.loads((tmp_path / "toy" / "sizes.json").read_text()) == rows
