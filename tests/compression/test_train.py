"""The training loop on tiny random crops, in-process (LocalContext): loss decreases, reports, checkpoint, resume."""
import math
import types

import pytest
import torch

from sweeplab.context import LocalContext
from sweeplab.tasks.compression import config
from sweeplab.tasks.compression.config import GAMMA_SET, CompressionConfig
from sweeplab.tasks.compression.model import DELTA_MIN
from sweeplab.tasks.compression.train import _Batches, lr_factor, train

CPU = torch.device("cpu")


def _data(n: int = 16, side: int = 32):
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-20, 20, side).view(1, 1, 1, side)
    crops = (120 + ramp + 5 * torch.randn(n, 1, side, side, generator=gen)).clamp(0, 255).to(torch.uint8)
    extra = [torch.rand(1, 1, 32, 48, generator=gen) * 255 for _ in range(2)]
    return types.SimpleNamespace(train_crops=crops, extra_images=extra)


def _cfg(**kw) -> CompressionConfig:
    base = dict(m=8, crop_size=32, batch_size=4, iterations=30, report_every=5, checkpoint_every=10, lr=1e-3,
                gamma=10.0)
    return CompressionConfig(**{**base, **kw})


def test_training_reduces_the_loss_reports_and_resumes(tmp_path):
    data = _data()
    ctx = LocalContext(trial_dir=tmp_path, device=CPU, verbose=False)
    model = train(_cfg(), data, ctx)
    assert [r["iteration"] for r in ctx.reports] == [5, 10, 15, 20, 25, 30]
    assert set(ctx.reports[0]) == {"iteration", "progress", "loss", "distortion", "rate", "psnr_train"}
    from sweeplab.task import get_task
    assert set(get_task("compression").reports) == {k for r in ctx.reports for k in r}  # the task's declaration
    assert [r["progress"] for r in ctx.reports] == [i / 30 for i in (5, 10, 15, 20, 25, 30)]
    assert ctx.reports[-1]["loss"] < 0.8 * ctx.reports[0]["loss"]
    assert ctx.reports[-1]["psnr_train"] > ctx.reports[0]["psnr_train"]
    assert all(r["rate"] > 0 for r in ctx.reports)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["iteration"] == 30
    expected_mu = torch.cat([model.encode(x).detach().transpose(0, 1).reshape(8, -1) for x in data.extra_images],
                            dim=1).mean(1)
    torch.testing.assert_close(model.latent_means, expected_mu)

    resumed = LocalContext(trial_dir=tmp_path, device=CPU, verbose=False)
    train(_cfg(iterations=40), data, resumed)
    assert [r["iteration"] for r in resumed.reports] == [35, 40]
    assert resumed.reports[0]["loss"] < 0.8 * ctx.reports[0]["loss"]  # continued from the trained weights
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["iteration"] == 40


def test_learned_step_projects_delta_and_zero_iterations_is_the_smoke_path(tmp_path):
    data = _data()
    model = train(_cfg(quantization="learned-step", iterations=3, report_every=1), data,
                  LocalContext(device=CPU, verbose=False))
    assert model.delta.min() >= DELTA_MIN and model.delta.max() < DELTA_MIN + 0.01  # 0.5 projected onto [0.8, 4]
    ctx = LocalContext(trial_dir=tmp_path, device=CPU, verbose=False)
    model = train(_cfg(iterations=0), data, ctx)  # density warm-up only
    assert len(ctx.reports) == 1 and ctx.reports[0]["iteration"] == 0
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["iteration"] == 0
    assert model.latent_means.abs().sum() > 0
    assert train(_cfg(codec="jpeg"), data, ctx) is None


# The authors' released models (REFERENCES.md): phases of 80 epochs x 2,400 mini-batches, 10 for gamma <= 40000,
# 7 for 72000, 6 for 96000; the first learning-rate drop reached for gamma <= 40000, both for 72000 and 96000.
AUTHORS_LENGTH = {10000.0: 1_920_000, 12000.0: 1_920_000, 16000.0: 1_920_000, 24000.0: 1_920_000,
                  40000.0: 1_920_000, 72000.0: 1_344_000, 96000.0: 1_152_000}
AUTHORS_LAST_LR = {10000.0: 0.1, 12000.0: 0.1, 16000.0: 0.1, 24000.0: 0.1, 40000.0: 0.1, 72000.0: 0.01,
                   96000.0: 0.01}


def test_authors_learning_rate_schedule():
    assert lr_factor(_cfg(gamma=10000.0), 1_499_999) == 1.0
    assert lr_factor(_cfg(gamma=10000.0), 1_500_000) == 0.1
    assert lr_factor(_cfg(gamma=72000.0), 950_000) == 0.01
    assert lr_factor(_cfg(gamma=96000.0), 760_000) == 0.1
    assert lr_factor(_cfg(gamma=96000.0, lr_schedule="constant"), 5_000_000) == 1.0


def test_each_gamma_of_s_trains_for_the_authors_length_with_their_drops():
    assert set(AUTHORS_LENGTH) == set(GAMMA_SET)
    for gamma in GAMMA_SET:
        cfg = CompressionConfig(gamma=gamma)  # iterations not given: the authors' length for this gamma
        assert cfg.iterations == AUTHORS_LENGTH[gamma], gamma
        assert lr_factor(cfg, cfg.iterations - 1) == AUTHORS_LAST_LR[gamma], gamma
    assert CompressionConfig(gamma=96000.0, iterations=20).iterations == 20  # an explicit length wins


def test_the_trainer_follows_the_schedule_table(tmp_path, monkeypatch):
    """With a tiny table in place of the authors' one, a trial that gives no iterations trains for the table's
    length and ends at the learning rate after both of its drops."""
    monkeypatch.setattr(config, "AUTHORS_SCHEDULE", (config.Schedule(math.inf, (4, 7), 9),))
    ctx = LocalContext(trial_dir=tmp_path, device=CPU, verbose=False)
    cfg = _cfg(iterations=None, report_every=3, checkpoint_every=100, lr=1e-3)
    train(cfg, _data(), ctx)
    assert cfg.iterations == 9 and [r["iteration"] for r in ctx.reports] == [3, 6, 9]
    groups = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["opt_transform"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(1e-3 * 0.01)


def test_two_ranks_share_each_batch_and_keep_one_density(tmp_path):
    """Over two ranks (tests/dist_harness.py): each step trains on batch_size / 2 crops a rank, and the ranks end with
    the same transform, steps delta_i (a second optimiser in the same step) and density psi (kept out of the
    data-parallel wrapper, its gradient and grid all-reduced); a global batch the workers cannot share is refused."""
    from sweeplab.task import get_task
    from tests.dist_harness import run_distributed
    values = {**get_task("compression").tiny, "quantization": "learned-step", "batch_size": 4, "iterations": 3,
              "n_train_crops": 8}
    ranks = run_distributed("compression", values, checkpoints=True)
    assert [r["samples"] for r in ranks] == [[2, 2, 2]] * 2
    (a,), (b,) = (r["params"] for r in ranks)
    torch.testing.assert_close(a, b)
    psi = [r["checkpoint"]["density"]["psi"] for r in ranks]
    assert psi[0].shape == psi[1].shape
    torch.testing.assert_close(psi[0], psi[1])
    with pytest.raises(ValueError, match="does not split evenly over 2 workers"):  # a config built by hand
        _Batches(_data().train_crops, _cfg(batch_size=3), types.SimpleNamespace(world_size=2, rank=0, seed=0))
