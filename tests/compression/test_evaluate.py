"""Test-time evaluation (quantisation over beta, rates, PSNR), anchors evaluation and the rate-distortion plot."""
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import skimage
import torch
import torch.nn.functional as F

from sweeplab.context import LocalContext
from sweeplab.tasks.compression.config import CompressionConfig
from sweeplab.tasks.compression.data import read_luminance
from sweeplab.tasks.compression.evaluate import ROW_KEYS, evaluate, quantize
from sweeplab.tasks.compression.plot import plot_rate_distortion, rate_distortion_curves


class StandIn(torch.nn.Module):
    """Same API as the task's model: an exactly invertible 16x16 space-to-depth transform (m = 256 maps)."""

    def __init__(self, delta: float = 1.0):
        super().__init__()
        self.register_buffer("latent_means", torch.zeros(256))
        self.delta = delta

    def encode(self, x):
        return F.pixel_unshuffle(x - 128.0, 16) / 4.0

    def decode(self, y_hat):
        return F.pixel_shuffle(y_hat * 4.0, 16) + 128.0

    def steps(self):
        return torch.full((256,), self.delta)


def _as_tensor(lum):
    return torch.from_numpy(lum.copy()).float()[None, None]


@pytest.fixture(scope="module")
def camera():
    return read_luminance(Path(skimage.__file__).parent / "data" / "camera.png")


@pytest.fixture(scope="module")
def test_images(camera):
    return [("a", _as_tensor(camera[:64, :64])), ("b", _as_tensor(camera[200:264, 100:196]))]


@pytest.fixture(scope="module")
def data(camera, test_images):
    """Test images and an extra set (other crops of the same photograph) for mu_i and the coder."""
    extra = [_as_tensor(camera[300:364, 300:364]), _as_tensor(camera[100:164, 350:446])]
    return SimpleNamespace(test_images=test_images, extra_images=extra)


@pytest.fixture
def ctx():
    return LocalContext(device=torch.device("cpu"), verbose=False)


def _model(data, delta=1.0):
    model = StandIn(delta)
    model.latent_means.copy_(torch.cat([model.encode(x) for x in data.extra_images], -1).mean((0, 2, 3)))
    return model


def test_quantize_centres_and_scales_the_steps():
    y = torch.tensor([0.9, 2.6, -3.1]).reshape(1, 3, 1, 1)
    mu, delta = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([1.0, 2.0, 0.5])
    q, y_hat = quantize(y, mu, delta, beta=2.0)  # steps 2, 4, 1
    assert q.dtype == torch.int64 and q.flatten().tolist() == [0, 1, -2]
    assert y_hat.flatten().tolist() == pytest.approx([1.0, 4.0, -3.0])


def test_autoencoder_rows_metrics_and_monotone_rate(data, ctx):
    cfg = dataclasses.replace(CompressionConfig(), betas=(1.0, 2.0, 4.0, 8.0))
    result = evaluate(cfg, _model(data), data, ctx)
    rows = pd.DataFrame(result.rows)
    assert len(rows) == 4 * 2 and list(rows.columns) == list(ROW_KEYS)
    assert set(rows["method"]) == {"autoencoder"} and rows["quality"].isna().all()
    means = rows.groupby("beta")[["bpp", "bpp_coded", "psnr"]].mean()
    assert means["bpp"].is_monotonic_decreasing and means["bpp"].iloc[0] > 2 * means["bpp"].iloc[-1]
    assert means["psnr"].is_monotonic_decreasing
    # a code with probabilities fixed in advance cannot beat the image's own empirical entropy
    assert (rows["rate_gap_bpp"] > 0).all()
    # the transform is exact: at beta = 1 the only error is the quantisation (step 4 in pixels: MSE ~ 16/12)
    assert rows[rows["beta"] == 1.0]["mse"].between(0.5, 2.5).all()
    assert set(result.metrics) == {"psnr", "bpp", "bpp_coded", "rate_gap_bpp", "mean_rate_gap_bpp"}
    at_one = rows[rows["beta"] == 1.0]
    assert result.metrics["psnr"] == pytest.approx(at_one["psnr"].mean())
    assert result.metrics["mean_rate_gap_bpp"] == pytest.approx(rows["rate_gap_bpp"].mean())


def test_learned_steps_scale_the_rate(data, ctx):
    cfg = dataclasses.replace(CompressionConfig(), betas=(1.0,))
    coarse = evaluate(cfg, _model(data, delta=2.0), data, ctx)
    fine = evaluate(dataclasses.replace(cfg, betas=(2.0,)), _model(data, delta=1.0), data, ctx)
    # delta = 2 at beta = 1 is the same quantiser as delta = 1 at beta = 2 (on the extra set too)
    for key in ("bpp", "bpp_coded", "psnr"):
        assert coarse.metrics[key] == pytest.approx(fine.metrics[key])


def test_coded_rate_comes_from_the_extra_set_and_every_stream_is_decoded(data, ctx, monkeypatch):
    cfg = dataclasses.replace(CompressionConfig(), betas=(1.0, 2.0))
    model = _model(data)
    rows = pd.DataFrame(evaluate(cfg, model, data, ctx).rows)
    # the same model and test images, the coder's statistics from another extra set (the test images themselves)
    matched = SimpleNamespace(test_images=data.test_images, extra_images=[x for _, x in data.test_images])
    other = pd.DataFrame(evaluate(cfg, model, matched, ctx).rows)
    assert (other["bpp"] == rows["bpp"]).all() and (other["psnr"] == rows["psnr"]).all()
    assert (other["bpp_coded"] != rows["bpp_coded"]).all()
    assert (other["rate_gap_bpp"] < rows["rate_gap_bpp"]).all()  # statistics of the coded images fit them better
    # an image's coded rate does not depend on the other images evaluated beside it
    alone = evaluate(cfg, model, SimpleNamespace(test_images=data.test_images[:1], extra_images=data.extra_images),
                     ctx).rows
    assert [r["bpp_coded"] for r in alone] == rows[rows["image"] == "a"]["bpp_coded"].tolist()
    with pytest.raises(ValueError, match="extra_images"):
        evaluate(cfg, model, SimpleNamespace(test_images=data.test_images, extra_images=[]), ctx)
    from sweeplab.tasks.compression import evaluate as evaluation
    monkeypatch.setattr(evaluation.coder, "code", lambda indices, models: (8, indices + 1))  # a broken decoder
    with pytest.raises(RuntimeError, match="does not decode"):
        evaluate(cfg, model, data, ctx)


@pytest.mark.parametrize("codec, settings", [("jpeg", (10, 50, 90)), ("jpeg2000", (0.5, 1.0, 2.0)),
                                             ("hevc", (10, 50, 90))])
def test_anchor_rows_and_metrics(test_images, ctx, codec, settings):
    field = {"jpeg": "jpeg_qualities", "jpeg2000": "jpeg2000_rates", "hevc": "hevc_qualities"}[codec]
    cfg = dataclasses.replace(CompressionConfig(), codec=codec, **{field: settings})
    result = evaluate(cfg, None, SimpleNamespace(test_images=test_images), ctx)  # no extra set: not needed
    rows = pd.DataFrame(result.rows)
    assert len(rows) == 3 * 2 and list(rows.columns) == list(ROW_KEYS)
    assert rows["beta"].isna().all() and (rows["rate_gap_bpp"] == 0).all()
    assert (rows["bpp"] == rows["bpp_coded"]).all()
    middle = rows[rows["quality"] == float(settings[1])]
    assert result.metrics["bpp"] == pytest.approx(middle["bpp"].mean())
    assert result.metrics["mean_rate_gap_bpp"] == 0.0
    if codec == "hevc":  # the config's x265 settings are the ones the rows come from
        other = evaluate(dataclasses.replace(cfg, hevc_tune="ssim", hevc_preset="ultrafast"), None,
                         SimpleNamespace(test_images=test_images), ctx)
        assert [r["bpp"] for r in other.rows] != rows["bpp"].tolist()


@pytest.mark.parametrize("codec", ["autoencoder", "jpeg", "jpeg2000", "hevc"])
def test_declarations_cover_what_evaluate_returns(data, ctx, codec):
    """The task's ``metrics``/``eval_columns`` are exactly the keys evaluate returns, with matching types (a value
    that does not apply to the row's method is None)."""
    from sweeplab.task import get_task
    from sweeplab.trial import check_declared
    task = get_task("compression")
    cfg = dataclasses.replace(CompressionConfig(), codec=codec, betas=(1.0, 2.0), jpeg_qualities=(10, 50),
                              jpeg2000_rates=(0.5, 1.0), hevc_qualities=(10, 50))
    result = evaluate(cfg, _model(data) if codec == "autoencoder" else None, data, ctx)
    check_declared(task, result.metrics, result.rows)
    assert set(result.metrics) == set(task.metrics)
    assert all(isinstance(v, task.metrics[k]) for k, v in result.metrics.items())
    assert {k for r in result.rows for k in r} == set(task.eval_columns) == set(ROW_KEYS)
    for row in result.rows:
        for key, value in row.items():
            assert value is None or isinstance(value, task.eval_columns[key]), (key, value)
    present = {k for r in result.rows for k, v in r.items() if v is not None}
    assert ("beta" in present, "quality" in present) == ((True, False) if codec == "autoencoder" else (False, True))


def _synthetic_tables():
    trials, rows = [], []
    rng = np.random.default_rng(0)

    def add(trial_id, codec, quantization, gamma, points, key, status="ok"):
        trials.append(dict(trial_id=trial_id, status=status, codec=codec, quantization=quantization, gamma=gamma))
        for setting, bpp, psnr in points:
            for image in ("kodim01", "kodim02"):
                rows.append(dict(trial_id=trial_id, method=codec, beta=setting if key == "beta" else None,
                                 quality=setting if key == "quality" else None, image=image,
                                 bpp=bpp + rng.normal(0, 0.01), bpp_coded=bpp + 0.01, rate_gap_bpp=0.01,
                                 psnr=psnr + rng.normal(0, 0.1), mse=1.0))

    for i, gamma in enumerate((10000.0, 24000.0, 96000.0)):
        add(f"t{i}", "autoencoder", "fixed-step", gamma, [(1.0, 0.4 + 0.4 * i, 30 + 3 * i)], "beta")
    add("t3", "autoencoder", "learned-step", 10000.0, [(b, 1.2 / b, 36 - 3 * np.log2(b)) for b in (1, 2, 4)], "beta")
    add("t4", "autoencoder", "fixed-step", 10000.0, [(b, 1.1 / b, 35 - 3 * np.log2(b)) for b in (1, 2, 4)], "beta")
    add("t5", "jpeg", "fixed-step", 10000.0, [(q, q / 40, 25 + q / 8) for q in (10, 50, 90)], "quality")
    add("t6", "jpeg2000", "fixed-step", 10000.0, [(r, r, 28 + 4 * r) for r in (0.25, 1.0)], "quality")
    add("t8", "hevc", "fixed-step", 10000.0, [(q, q / 60, 30 + q / 6) for q in (90, 10, 50)], "quality")
    trials.append(dict(trial_id="t7", status="error", codec="autoencoder", quantization="learned-step",
                       gamma=40000.0))  # failed: no rows
    return pd.DataFrame(trials), pd.DataFrame(rows)


def test_rate_distortion_curves_and_png(tmp_path):
    trials, evaluations = _synthetic_tables()
    curves = dict(rate_distortion_curves(trials, evaluations))
    assert set(curves) == {"case 1: one model per gamma", "case 2: learned steps, gamma=10000",
                           "case 3: GDN, step 1, gamma=10000", "JPEG", "JPEG 2000", "H.265 (x265)"}
    assert len(curves["case 1: one model per gamma"]) == 3 and len(curves["JPEG 2000"]) == 2
    hevc = curves["H.265 (x265)"]  # mean over the two images per quality, sorted by rate
    assert hevc["rate"].tolist() == pytest.approx([10 / 60, 50 / 60, 90 / 60], abs=0.02)
    assert hevc["psnr"].tolist() == pytest.approx([30 + 10 / 6, 30 + 50 / 6, 30 + 90 / 6], abs=0.2)
    case2 = curves["case 2: learned steps, gamma=10000"]
    assert case2["rate"].is_monotonic_increasing  # sorted by rate for drawing
    out = tmp_path / "fig" / "rd.png"
    plot_rate_distortion(trials, evaluations, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_survives_missing_curves(tmp_path):
    trials, evaluations = _synthetic_tables()
    only_jpeg = evaluations[evaluations["method"] == "jpeg"]
    assert [label for label, _ in rate_distortion_curves(trials, only_jpeg)] == ["JPEG"]
    plot_rate_distortion(trials[["trial_id", "status"]], only_jpeg.drop(columns=["beta"]), tmp_path / "a.png")
    plot_rate_distortion(trials, evaluations.iloc[0:0], tmp_path / "empty.png")
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "empty.png").stat().st_size > 0
