"""The restoration task's data as the authors' loaders make it (issue 22): a test set that never greys and is
scratched only as its knob says, grey draws shared by a mapping pair and independent per stage-1 sample, VAE1's
epoch over the clean set, and old photos smaller than the crop scaled up rather than skipped."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sweeplab.config import build
from sweeplab.context import LocalContext
from sweeplab.tasks.restoration import data, degrade, files, testing, train
from sweeplab.tasks.restoration.config import RestorationConfig

CROP = 16
SMALL = {"crop": 32, "n_test": 2, "ngf": 4, "mapping_width": 8, "detector_width": 4, "epochs": 1, "decay_epochs": 0,
         "loader_workers": 0}


def is_grey(img) -> bool:
    """uint8 (H, W, 3) or a (3, H, W) tensor whose channels are all equal."""
    img = np.asarray(img) if not torch.is_tensor(img) else img.permute(1, 2, 0).numpy()
    return bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())


@pytest.fixture(scope="module")
def embedded():
    return data.load_data(build(RestorationConfig, SMALL))


@pytest.fixture(scope="module")
def photo():
    return data.embedded_photo("astronaut")[:CROP * 8, :CROP * 6]  # 48 crops of 16 x 16


def test_the_test_set_never_greys_and_scratches_only_as_its_knob_says(photo):
    plain = data.make_test([("a", photo)], CROP, seed=0, per_photo=None, scratch_share=0.0)
    assert len(plain) == 48 and not any(is_grey(t.degraded) for t in plain)
    assert not any(t.mask.any() for t in plain)
    # the same seeds through the training degradation grey some of them: the test above could fail
    greyed = [degrade.degrade(t.clean, np.random.default_rng([0, 1, k]))[..., :3] for k, t in enumerate(plain)]
    assert sum(map(is_grey, greyed)) >= 2
    half = data.make_test([("a", photo)], CROP, seed=0, per_photo=None, scratch_share=0.5)
    assert [data.scratched(k, 0.5) for k in range(48)] == [k % 2 == 1 for k in range(48)]
    assert sum(data.scratched(k, 0.25) for k in range(48)) == 12 and not any(data.scratched(k, 0) for k in range(48))
    assert [bool(t.mask.any()) for t in half] == [k % 2 == 1 for k in range(48)]  # never an empty mask
    assert all(np.array_equal(a.degraded, b.degraded) for a, b in zip(plain, half) if not b.mask.any())


@pytest.mark.parametrize("stage, expected", [("vaes", 0.0), ("mapping", 0.0), ("detector", 0.5)])
def test_the_test_scratch_share_defaults_by_stage(stage, expected):
    assert build(RestorationConfig, {"stage": stage}).test_scratch_p == expected


def test_a_mapping_pair_greys_x_and_y_together(embedded):
    x, y, _ = data.Sampler(embedded, 32, seed=1).pairs(150, 0.0)
    x_grey, y_grey = [is_grey(a) for a in x], [is_grey(b) for b in y]
    assert x_grey == y_grey and 5 <= sum(x_grey) <= 30  # p = 0.1 of 150


def test_stage1_samples_grey_each_on_its_own_draw(embedded):
    r, x = data.Sampler(embedded, 32, seed=2).old(150), data.Sampler(embedded, 32, seed=3).synthetic(150)
    y = data.Sampler(embedded, 32, seed=4).clean(150)
    shares = [sum(map(is_grey, batch)) / 150 for batch in (r, x, y)]
    assert all(0.03 <= s <= 0.2 for s in shares), shares
    # in a VAE1 batch, R (even) and X (odd) samples draw their grey on their own: not always together
    (batch,) = data.StepBatches(embedded, 32, "vae1", 300, seed=0, stream=1)[0]
    flags = [is_grey(b) for b in batch]
    r_flags, x_flags = flags[0::2], flags[1::2]
    assert sum(r_flags) >= 5 and sum(x_flags) >= 5 and r_flags != x_flags


def test_vae1_epoch_is_the_clean_set_over_the_batch(embedded):
    assert len(embedded.old) != len(embedded.clean)  # 4 aged prints, 5 clean photos: the two readings differ
    cfg = build(RestorationConfig, {**SMALL, "stage": "vaes", "epoch_images": 0, "batch_vae1": 2, "batch_vae2": 2})
    vae1, vae2 = train.vae_phases(cfg, embedded, LocalContext(verbose=False, device=torch.device("cpu")))[0]
    assert vae1.per_epoch == -(-len(embedded.clean) // 2) == vae2.per_epoch == 3


def test_old_photos_smaller_than_the_crop_are_scaled_up_not_skipped(tmp_path):
    old, masks = testing.write_old_fixture(tmp_path / "old", n=3, masked=2, size=20)
    voc = testing.write_voc_fixture(tmp_path / "VOC", n=3, size=40)
    cfg = build(RestorationConfig, {**SMALL, "dataset": "files", "clean_dir": str(voc), "old_dir": str(old),
                                    "mask_dir": str(masks), "n_test": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped" warning for the old photos
        ds = data.load_data(cfg)
    assert len(ds.old) == 3 and ds.old[0].shape == (32, 32, 3) and ds.old_masks[0].shape == (32, 32)
    assert set(np.unique(ds.old_masks[0])) == {0.0, 1.0} and len(ds.mask_bank) == 2
    assert data.Sampler(ds, 32, seed=0).old(2).shape == (2, 3, 32, 32)
    wide = np.zeros((10, 30, 3), np.uint8)
    assert files.upscaled(wide, 32).shape == (32, 96, 3) and files.upscaled(wide, 8) is wide
