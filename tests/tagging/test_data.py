"""Loaders of the tagging task: MagnaTagATune fixtures with real MP3 files, errors, and the synthesised set."""
import numpy as np
import pytest
import scipy.signal

from sweeplab.tasks.tagging import synth
from sweeplab.tasks.tagging.config import TaggingConfig
from sweeplab.tasks.tagging.data import CSV_NAME, load_data, load_mtat, synth_dataset
from sweeplab.tasks.tagging.testing import FixtureClip, write_mtat_fixture

SR = 16000
# mp3_path, positive tags: rock 4, guitar 3, piano 2, vocal 1 -> the 2 most frequent are rock, guitar
FIXTURE = [("0/a-clip-0-29.mp3", ("rock", "guitar")), ("0/b-clip-30-59.mp3", ("rock",)),
           ("c/c-clip-0-29.mp3", ("rock", "piano")), ("d/d-clip-0-29.mp3", ("guitar",)),
           ("d/e-clip-0-29.mp3", ("piano", "vocal")), ("f/f-clip-0-29.mp3", ("rock", "guitar"))]


def _tone(i: int) -> np.ndarray:
    t = np.arange(2 * SR) / SR
    f = 220.0 * (1 + i / 4)
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 2.5 * f * t)).astype(np.float32)


@pytest.fixture
def mtat(tmp_path):
    clips = [FixtureClip(p, _tone(i), SR, tags) for i, (p, tags) in enumerate(FIXTURE)]
    return write_mtat_fixture(tmp_path / "mtat", clips, tags=["guitar", "piano", "rock", "vocal"])


def test_mtat_round_trip_keeps_most_frequent_tags_and_folder_splits(mtat):
    data = load_mtat(mtat, n_tags=2)
    assert data.tags == ["rock", "guitar"]
    assert [c.clip_id for c in data.splits["train"]] == ["0", "1"]
    assert [c.clip_id for c in data.splits["valid"]] == ["2"]
    assert [c.clip_id for c in data.splits["test"]] == ["3", "4", "5"]  # clip 4 has no kept tag: kept
    np.testing.assert_array_equal(data.labels["test"], [[0, 1], [0, 0], [1, 1]])
    assert data.labels["train"].dtype == np.float32 and data.labels["valid"].shape == (1, 2)
    for split, clips in data.splits.items():
        np.testing.assert_array_equal(np.stack([c.labels for c in clips]), data.labels[split])
    assert data.key.startswith("mtat-") and load_mtat(mtat, 2).key == data.key != load_mtat(mtat, 3).key


def test_mtat_audio_decodes_close_to_the_original(mtat):
    clip = load_mtat(mtat, 4).splits["test"][1]  # 4th fixture clip
    audio = clip.load(SR)
    original = _tone(4)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - original.size) <= 2 * 1152  # at most two MP3 frames of encoder padding
    core = original[2000:-2000]  # away from the ends, where encoder padding and fades sit

    def corr(lag):
        return np.corrcoef(audio[2000 + lag:2000 + lag + core.size], core)[0, 1]

    xcorr = scipy.signal.correlate(audio[2000 - 1152:2000 + 1152 + core.size], core, mode="valid")
    lag = int(np.argmax(xcorr)) - 1152
    assert corr(lag) > 0.9
    assert np.sqrt(np.mean(audio ** 2)) == pytest.approx(np.sqrt(np.mean(original ** 2)), rel=0.1)
    resampled = clip.load(12000)  # resampled with soxr: 3/4 of the samples
    assert abs(resampled.size - 0.75 * audio.size) <= 2


def test_missing_csv_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=CSV_NAME):
        load_mtat(tmp_path, 50)


def test_missing_column_names_the_file(mtat):
    csv = mtat / CSV_NAME
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join("\t".join(line.split("\t")[:-1]) for line in lines) + "\n")  # drop mp3_path
    with pytest.raises(ValueError, match=r"annotations_final\.csv.*mp3_path"):
        load_mtat(mtat, 2)


def test_absent_mp3_is_named_at_load_time(mtat):
    (mtat / "d" / "e-clip-0-29.mp3").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 mp3 file.*e-clip-0-29\.mp3"):
        load_mtat(mtat, 2)


def test_corrupt_mp3_is_named_when_loaded(mtat):
    bad = mtat / "c" / "c-clip-0-29.mp3"
    bad.write_bytes(b"not an mp3 at all" * 50)
    data = load_mtat(mtat, 2)
    data.splits["train"][0].load(SR)  # the others still load
    with pytest.raises(ValueError, match=r"c-clip-0-29\.mp3"):
        data.splits["valid"][0].load(SR)


def test_load_data_reads_mtat_and_limits_each_split(mtat):
    data = load_data(TaggingConfig(data_dir=str(mtat), n_tags=3, n_clips_limit=1))
    assert {s: len(c) for s, c in data.splits.items()} == {"train": 1, "valid": 1, "test": 1}
    assert data.labels["test"].shape == (1, 3) and data.key.endswith("-first1")


# -------------------------------------------------------------------------------------------- synthesised set

def test_synth_is_deterministic_and_tags_follow_the_recipe():
    a, b = synth_dataset(30), synth_dataset(30)
    assert a.key == b.key and a.tags == b.tags
    clip = a.splits["train"][0]
    x = clip.load(12000)
    assert x.dtype == np.float32 and x.shape == (round(29.1 * 12000),) and np.abs(x).max() <= 1.0
    np.testing.assert_array_equal(x, b.splits["train"][0].load(12000))
    assert [c.recipe for c in synth_dataset(30, seed=1).splits["train"]] != [c.recipe for c in a.splits["train"]]
    for split, clips in a.splits.items():
        for c, row in zip(clips, a.labels[split]):
            assert {t for t, y in zip(a.tags, row) if y} == set(c.recipe.tags())
    # a clip does not depend on the size of the set
    bigger = synth_dataset(40)
    assert bigger.splits["train"][0].recipe == clip.recipe
    assert {t for t, y in zip(bigger.tags, bigger.labels["train"][0]) if y} == set(clip.recipe.tags())


def test_synth_tags_have_positives_and_negatives_in_train_and_test():
    data = synth_dataset(200)
    assert sorted(data.tags) == sorted(synth.TAGS) and data.key == "synth-200-s2020-v1"
    n = {s: len(c) for s, c in data.splits.items()}
    assert sum(n.values()) == 200 and 0.6 < n["train"] / 200 < 0.8 and n["valid"] > 5 and n["test"] > 20
    for split in ("train", "test"):
        pos = data.labels[split].sum(axis=0)
        assert (pos > 0).all() and (pos < n[split]).all(), (split, dict(zip(data.tags, pos)))
    assert synth_dataset(50, n_tags=3).labels["train"].shape[1] == 3


def test_load_data_synth_limits_each_split():
    data = load_data(TaggingConfig(n_clips=50, n_clips_limit=3))
    assert {s: len(c) for s, c in data.splits.items()} == {"train": 3, "valid": 3, "test": 3}
    assert data.key == "synth-50-s2020-v1-first3" and len(data.tags) == len(synth.TAGS)


def _clips(data, tag, k):
    j = data.tags.index(tag)
    return [c for c in data.splits["train"] if c.labels[j]][:k]


def test_loud_clips_are_louder_than_quiet_ones():
    data = synth_dataset(40)
    rms = {tag: [float(np.sqrt(np.mean(c.load(12000) ** 2))) for c in _clips(data, tag, 2)]
           for tag in ("quiet", "loud")}
    assert len(rms["loud"]) == len(rms["quiet"]) == 2
    assert min(rms["loud"]) > 3 * max(rms["quiet"])  # bands are >= 16 dB apart: a factor > 6


def test_fast_clips_have_more_onsets_per_second_than_slow_ones():
    import librosa
    data = synth_dataset(40)

    def rate(clip):
        return librosa.onset.onset_detect(y=clip.load(12000), sr=12000).size / synth.CLIP_SECONDS

    fast, slow = [rate(c) for c in _clips(data, "fast", 3)], [rate(c) for c in _clips(data, "slow", 3)]
    assert len(fast) == len(slow) == 3
    assert np.mean(fast) > 1.4 * np.mean(slow), (fast, slow)
