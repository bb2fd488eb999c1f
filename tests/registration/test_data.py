"""Loaders of the registration task: fixtures in the Mindboggle101, IXI and generic layouts, the bad-input messages,
the crop/pad and normalisation of Section 3, pairs, and the embedded MNI152-based subjects."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from sweeplab.config import build
from sweeplab.tasks.registration import data, testing
from sweeplab.tasks.registration.config import RegistrationConfig

SHAPE = (16, 16, 16)


def test_mindboggle_layout_split_labels_and_groups(tmp_path):
    root = testing.write_mindboggle_fixture(tmp_path, subjects_per_group=2, shape=(20, 24, 20))
    assert (root / "NKI-RS-22_volumes" / "NKI-RS-22-1" / data.MINDBOGGLE_LABELS).is_file()
    ds = data.load_mindboggle(tmp_path, SHAPE)  # the folder above Mindboggle101_volumes is accepted too
    assert [s.name for s in ds.train] == ["NKI-RS-22-1", "NKI-RS-22-2", "NKI-TRT-20-1", "NKI-TRT-20-2"]
    assert [s.name for s in ds.test] == ["OASIS-TRT-20-1", "OASIS-TRT-20-2"]
    assert len(ds.labels) == 60 and set(ds.groups.values()) == {"frontal", "parietal", "occipital", "temporal",
                                                                "cingulate"}
    assert ds.labels[1028] == "ctx-lh-superiorfrontal" and ds.groups[2021] == "occipital"
    assert 1035 not in ds.labels  # the insula is in none of the five regions
    image, labels = ds.train[0].load()
    assert image.shape == labels.shape == SHAPE and image.dtype == np.float32 and image.max() == 1.0
    assert set(np.unique(labels)) - {0} <= set(ds.labels)
    assert len(ds.train_pairs()) == 4 * 3 and len(ds.test_pairs()) == 2


def test_mindboggle_problems_name_the_missing_folder(tmp_path):
    root = testing.write_mindboggle_fixture(tmp_path, subjects_per_group=1)
    for path in sorted((root / "OASIS-TRT-20_volumes").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "OASIS-TRT-20_volumes").rmdir()
    problems = data.mindboggle_problems(tmp_path)
    assert len(problems) == 1 and "OASIS-TRT-20_volumes" in problems[0]
    cfg = RegistrationConfig(dataset="mindboggle", data_dir=str(tmp_path))
    assert any("OASIS-TRT-20_volumes" in p for p in cfg.check())  # refused at spec load
    with pytest.raises(FileNotFoundError, match="OASIS-TRT-20_volumes"):
        data.load_mindboggle(tmp_path, SHAPE)


def test_labels_without_their_image_are_named(tmp_path):
    root = testing.write_mindboggle_fixture(tmp_path, subjects_per_group=1)
    image = root / "NKI-TRT-20_volumes" / "NKI-TRT-20-1" / data.MINDBOGGLE_IMAGE
    image.unlink()
    with pytest.raises(ValueError, match=f"NKI-TRT-20-1/{data.MINDBOGGLE_LABELS}.* no matching "
                                         f"{data.MINDBOGGLE_IMAGE}"):
        data.load_mindboggle(root, SHAPE)


def test_shape_mismatch_non_3d_and_unreadable_files_are_named(tmp_path):
    root = testing.write_mindboggle_fixture(tmp_path, subjects_per_group=1)
    folder = root / "NKI-RS-22_volumes" / "NKI-RS-22-1"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.eye(4)), str(folder / data.MINDBOGGLE_LABELS))
    with pytest.raises(ValueError, match=r"NKI-RS-22-1/t1weighted_brain.MNI152.nii.gz has shape \(20, 24, 20\) but "
                                         r"its labels .* have shape \(10, 10, 10\)"):
        data.load_mindboggle(root, SHAPE)
    nib.save(nib.Nifti1Image(np.zeros((10, 10), np.float32), np.eye(4)), str(folder / data.MINDBOGGLE_LABELS))
    with pytest.raises(ValueError, match=r"NKI-RS-22-1/labels.DKT31.manual.MNI152.nii.gz has shape \(10, 10\): a 3D"):
        data.load_mindboggle(root, SHAPE)
    (folder / data.MINDBOGGLE_LABELS).write_bytes(b"not a volume")
    with pytest.raises(ValueError, match="cannot read volume .*NKI-RS-22-1/labels.DKT31"):
        data.load_mindboggle(root, SHAPE)


def test_ixi_freesurfer_layout_and_the_80_20_split(tmp_path):
    testing.write_ixi_fixture(tmp_path, subjects=10, shape=(18, 18, 18))
    ds = data.load_ixi(tmp_path, SHAPE, seed=0)
    assert len(ds.train) == 8 and len(ds.test) == 2
    assert {s.name for s in ds.train} | {s.name for s in ds.test} == {f"IXI{n:03d}" for n in range(10)}
    assert data.load_ixi(tmp_path, SHAPE, seed=0).test == ds.test != data.load_ixi(tmp_path, SHAPE, seed=1).test
    assert ds.groups == {2: "LWm", 3: "LGm", 41: "RWm", 42: "RGm"}
    image, labels = ds.test[0].load()  # .mgz read, uint8 intensities divided by their maximum
    assert image.max() == 1.0 and set(np.unique(labels)) == {0, 2, 3, 41, 42}
    (tmp_path / "split.json").write_text(json.dumps({"train": ["IXI000", "IXI001", "IXI002"],
                                                     "test": ["IXI003", "IXI009"]}))
    ds = data.load_ixi(tmp_path, SHAPE)
    assert [s.name for s in ds.test] == ["IXI003", "IXI009"]
    (tmp_path / "split.json").write_text(json.dumps({"train": ["IXI000", "IXI077"], "test": ["IXI003"]}))
    with pytest.raises(ValueError, match="names subjects that are not there: IXI077"):
        data.load_ixi(tmp_path, SHAPE)
    (tmp_path / "IXI004" / "mri" / "norm.mgz").unlink()
    with pytest.raises(ValueError, match="IXI004/mri/aseg.mgz has no matching norm"):
        data.load_ixi(tmp_path, SHAPE)


def test_generic_folder_layout(tmp_path):
    testing.write_folder_fixture(tmp_path, train=3, test=2, shape=SHAPE, labels=(1, 2, 3))
    ds = data.load_folder(tmp_path, SHAPE, n_test_pairs=1)
    assert [s.name for s in ds.train] == ["s0", "s1", "s2"] and len(ds.test_pairs()) == 1
    assert ds.labels == {1: "1", 2: "2", 3: "3"} and ds.groups == ds.labels  # each label its own group by default
    split = json.loads((tmp_path / "split.json").read_text())
    split.update(labels={"1": "a", "2": "b"}, groups={"1": "g", "2": "g"})
    (tmp_path / "split.json").write_text(json.dumps(split))
    assert data.load_folder(tmp_path, SHAPE).groups == {1: "g", 2: "g"}
    (tmp_path / "s4_image.nii.gz").unlink()
    with pytest.raises(ValueError, match="s4_labels.nii.gz has no matching s4_image.nii.gz"):
        data.load_folder(tmp_path, SHAPE)
    (tmp_path / "split.json").unlink()
    assert any("split.json" in p for p in RegistrationConfig(dataset="folder", data_dir=str(tmp_path)).check())


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="IXI folder .*nowhere"):
        data.load_ixi(tmp_path / "nowhere", SHAPE)
    with pytest.raises(ValueError, match=f"data_dir: folder not found: {tmp_path / 'x'}"):
        build(RegistrationConfig, {"dataset": "ixi", "data_dir": str(tmp_path / "x")})
    assert any("needs its root folder" in p for p in RegistrationConfig(dataset="mindboggle").check())


def test_fit_crops_and_pads_about_the_centre():
    volume = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    out = data.fit(volume, (4, 7, 4))
    assert out.shape == (4, 7, 4)
    assert np.array_equal(out[:, 1:6], volume[1:5])  # axis 0 cropped by one each side, axis 1 padded by one each
    assert not out[:, 0].any() and not out[:, 6].any()


def test_empty_image_cannot_be_normalised(tmp_path):
    testing.write_folder_fixture(tmp_path, shape=SHAPE)
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), np.eye(4)), str(tmp_path / "s1_image.nii.gz"))
    ds = data.load_folder(tmp_path, SHAPE)
    with pytest.raises(ValueError, match="s1_image.nii.gz has no positive voxel"):
        ds.train[1].load()


def test_embedded_subjects_from_the_mni152_template():
    shape = (32, 48, 32)
    ds = data.load_embedded(shape, n_subjects=5, n_test=2, deformation=4.0, seed=0)
    assert len(ds.train) == 3 and len(ds.test) == 2 and len(ds.test_pairs()) == 2
    base_image, base_labels = data.mni152_anatomy(shape)
    assert set(np.unique(base_labels)) == {0, 2, 3, 41, 42}
    left = base_labels[: shape[0] // 2]
    assert (np.isin(left, [2, 3]).sum() > 50 * np.isin(left, [41, 42]).sum())  # left of the midline is left
    a, la = ds.train[0].load()
    b, lb = ds.train[1].load()
    assert a.shape == shape and a.max() == 1.0 and la.dtype == np.int32
    assert not np.array_equal(la, lb) and not np.array_equal(la, base_labels)  # every subject is deformed
    again = data.load_embedded(shape, 5, 2, 4.0, 0).train[0].load()
    assert np.array_equal(again[0], a) and np.array_equal(again[1], la)  # seeded
    other = data.load_embedded(shape, 5, 2, 4.0, 1).train[0].load()
    assert not np.array_equal(other[1], la)
    from sweeplab.tasks.registration.metrics import dice
    overlap = dice(la, lb, list(ds.labels))
    assert 0.4 < min(overlap.values()) < max(overlap.values()) < 0.95  # similar anatomy, not the same
