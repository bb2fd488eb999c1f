"""The restoration task's batches with several workers and loader processes: an epoch's steps come from the global
batch, the ranks' shares make up the one-worker batch, spawned loader workers and a resumed run build the same
batches as the training process, and a trial runs under bfloat16."""
from __future__ import annotations

import pytest
import torch

from sweeplab import results
from sweeplab.config import build
from sweeplab.context import LocalContext
from sweeplab.task import get_task
from sweeplab.tasks.restoration import data, train
from sweeplab.tasks.restoration.config import RestorationConfig
from sweeplab.trial import run_trial

SMALL = {"crop": 32, "n_test": 2, "ngf": 4, "mapping_width": 8, "detector_width": 4, "epochs": 1, "decay_epochs": 0,
         "epoch_images": 24, "loader_workers": 0}


class Rank(LocalContext):
    """Rank ``rank`` of ``world_size`` as the training code sees it (no process group: nothing is exchanged)."""

    def __init__(self, rank: int, world_size: int):
        super().__init__(verbose=False, device=torch.device("cpu"))
        self.rank, self.world_size = rank, world_size


@pytest.fixture(scope="module")
def embedded():
    return data.load_data(build(RestorationConfig, SMALL))


@pytest.mark.parametrize("stage, batches", [("vaes", {"batch_vae1": 6, "batch_vae2": 12}),
                                            ("detector", {"batch_size": 6})])
def test_an_epoch_has_the_same_steps_and_batches_whatever_the_workers(embedded, stage, batches):
    cfg = build(RestorationConfig, {**SMALL, "stage": stage, **batches})
    one = train.PHASES[stage](cfg, embedded, Rank(0, 1))[0]
    for world in (2, 3):
        ranks = [train.PHASES[stage](cfg, embedded, Rank(r, world))[0] for r in range(world)]
        for k, phase in enumerate(one):
            assert [p[k].per_epoch for p in ranks] == [phase.per_epoch] * world  # 24 images / the global batch
            assert phase.per_epoch == 24 // phase.batches.batch
            for step in (0, 5):
                whole = phase.batches[step]
                shares = [p[k].batches[step] for p in ranks]
                assert all(len(s[0]) == len(whole[0]) // world for s in shares)
                for part, joined in zip(whole, zip(*shares)):  # the ranks' shares make up the one-rank batch
                    assert torch.equal(part, torch.cat(joined))
            assert not torch.equal(phase.batches[0][0], phase.batches[1][0])  # each step draws anew


def test_a_batch_that_does_not_split_over_the_workers_is_refused(embedded):
    cfg = build(RestorationConfig, {**SMALL, "stage": "vaes", "batch_vae1": 4, "batch_vae2": 3})
    with pytest.raises(ValueError, match="batch_vae2 3 does not split evenly over 2 workers"):
        train.vae_phases(cfg, embedded, Rank(0, 2))


def test_spawned_loader_workers_and_a_resumed_run_see_the_same_batches(embedded):
    batches = data.StepBatches(embedded, 32, "pairs", 4, seed=3, stream=3, rank=1, world_size=2, scratch_p=0.5)
    here = list(data.step_loader(batches, range(0, 4), workers=0))
    spawned = list(data.step_loader(batches, range(0, 4), workers=2))
    resumed = list(data.step_loader(batches, range(2, 4), workers=0))
    for a, b in zip(here, spawned):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    for a, b in zip(here[2:], resumed):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    x, y, mask = here[0]
    assert x.shape == y.shape == (2, 3, 32, 32) and mask.shape == (2, 1, 32, 32)


@pytest.mark.parametrize("batch", [6, 5])
def test_the_ranks_weighted_latent_terms_average_to_the_batch_means(batch):
    """VAE1's shares are half old photos, interleaved; a rank may hold the two kinds unequally (or one only), and
    the weights of its means make the ranks' average (what DDP's gradient averaging sees) the batch's mean."""
    assert [data.is_old(g) for g in range(5)] == [True, False, True, False, True]
    values = torch.rand(batch, dtype=torch.float64)
    whole = {old: float(values[[data.is_old(g) == old for g in range(batch)]].mean()) for old in (True, False)}
    for world in (w for w in (1, 2, 3, 5, 6) if batch % w == 0):
        n, averaged = batch // world, {True: 0.0, False: 0.0}
        for r in range(world):
            share = values[r * n:(r + 1) * n]
            for rows, weight, old in train.latent_shares(range(r * n, (r + 1) * n), batch, world):
                averaged[old] += weight * float(share[rows].mean()) / world
        assert averaged == pytest.approx(whole)


def test_a_detector_trial_runs_under_bfloat16(tmp_path):
    task = get_task("restoration")
    ctx = LocalContext(trial_id="bf16", seed=0, device=torch.device("cpu"), dtype="bfloat16", verbose=False)
    values = {**task.tiny, "stage": "detector", "batch_size": 2, "detector_width": 4, "epoch_images": 4}
    final = run_trial(task, values, ctx, sweep="bf16", sweep_dir=tmp_path / "sweep", code_version="test")
    assert 0 <= final["f1"] <= 1 and ctx.data_wait_seconds > 0
    trials = results.read(tmp_path / "sweep")[0]
    assert 0 < trials.data_wait_fraction.iloc[0] < 1
