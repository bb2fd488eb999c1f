"""The segmentation task through the platform: describe, the per-image loop, sweeps in-process and on Ray."""
import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeplab import artifacts, cli, results
from sweeplab.config import build, scalar_columns
from sweeplab.context import LocalContext
from sweeplab.spec import load
from sweeplab.tasks.segmentation import label_maps
from sweeplab.tasks.segmentation import train as seg_train
from sweeplab.tasks.segmentation.config import SegmentationConfig
from sweeplab.tasks.segmentation.data import load_data

SWEEPS = Path(__file__).parents[2] / "sweeps"


def _tables(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, evaluations) of a finished sweep, trials in trial-id order."""
    trials, evaluations = results.read(sweep_dir)
    return trials.sort_values("trial_id", ignore_index=True), evaluations


def test_describe_counts_the_architecture(capsys):
    assert cli.main(["describe", "segmentation", "--set", "M=3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # conv 3->100, 2 x conv 100->100 (3x3, bias) + 3 BN; 1x1 classifier 100->100 + BN
    assert out["params"] == (3 * 100 * 9 + 100) + 2 * (100 * 100 * 9 + 100) + (100 * 100 + 100) + 4 * 200
    assert out["gmacs"] == pytest.approx(321 * 481 * (3 * 100 * 9 + 2 * 100 * 100 * 9 + 100 * 100) / 1e9)
    assert out["input_shape"] == [1, 3, 321, 481]
    assert cli.main(["describe", "segmentation", "--set", "M=5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gmacs"] > out["gmacs"]


def test_paper_settings_in_full_specs():
    mlr = load(SWEEPS / "segmentation-m-lr.yaml")
    assert mlr.space["M"] == [1, 2, 3, 4, 5] and 0.1 in mlr.space["lr"]
    assert (mlr.config["T"], mlr.config["p"], mlr.config["q"], mlr.config["K"]) == (500, 100, 100, 10000)
    base = load(SWEEPS / "segmentation-baselines.yaml")
    assert base.space["alpha"] == [1, 3, 5, 7] and base.space["k"] == list(range(2, 21))
    assert sorted(p["threshold"] for p in base.include) == [100.0, 500.0, 1000.0, 1500.0, 2000.0]


def test_train_checkpoints_per_round_and_resumes(tmp_path, monkeypatch):
    cfg = build(SegmentationConfig, {"method": "felzenszwalb", "n_mosaics": 3, "mosaic_size": 64})
    data = load_data(cfg)
    ctx = LocalContext(trial_dir=tmp_path, verbose=False)
    rows = seg_train.train(cfg, data, ctx)
    assert [r["image"] for r in rows] == sorted(s.name for s in data.images)
    assert [r["images_done"] for r in ctx.reports] == [1, 2, 3]
    assert [r["progress"] for r in ctx.reports] == [1 / 3, 2 / 3, 1.0]

    def boom(*args):
        raise AssertionError("a resumed trial must not segment finished images again")
    monkeypatch.setattr(seg_train, "_predict", boom)
    resumed = LocalContext(trial_dir=tmp_path, verbose=False)
    again = seg_train.train(cfg, data, resumed)
    assert [r["f_measure"] for r in again] == [r["f_measure"] for r in rows]
    kept = ctx.artifacts[label_maps.ARTIFACT]["maps"]  # keep_label_maps = 3 by default: every image here
    assert list(kept) == [s.name for s in data.images] and resumed.artifacts[label_maps.ARTIFACT]["maps"] == kept
    ev = seg_train.evaluate(cfg, rows, data, ctx)
    assert 0 <= ev.metrics["ap50"] <= 1 and ev.metrics["ap70"] <= ev.metrics["ap50"] + 1e-12
    assert len(ev.rows) == 3


def test_local_smoke_sweeps_and_plot(tmp_path, sweeplab_cli):
    sweeplab_cli(["run", str(SWEEPS / "segmentation-m-lr-smoke.yaml"), "--local", "--set", f"storage={tmp_path}",
          "T=5", "n_mosaics=2"], tmp_path)
    sweeplab_cli(["run", str(SWEEPS / "segmentation-baselines-smoke.yaml"), "--local", "--set", f"storage={tmp_path}",
          "n_mosaics=2"], tmp_path)
    cnn = _tables(tmp_path / "segmentation-m-lr-smoke")[0]
    assert list(cnn.M) == [1, 2] and set(cnn.status) == {"completed"} and (cnn.params > 0).all()
    base, evals = _tables(tmp_path / "segmentation-baselines-smoke")
    assert len(base) == 6 and len(evals) == 6 * 2  # one row per (trial, image)
    assert evals.f_measure.between(0, 1).all()
    gs = base[base.method == "felzenszwalb"].set_index("threshold").segments_per_image
    assert gs.loc[100.0] >= gs.loc[1000.0]  # a lower merging threshold leaves more segments
    sweeplab_cli(["plot", str(tmp_path / "segmentation-baselines-smoke"), "--out", str(tmp_path / "fig.png")], tmp_path)
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert (tmp_path / "fig-figure2.png").stat().st_size > 10_000  # from the label maps the trials kept
    for tid in base.trial_id:
        source = artifacts.open_source(str(tmp_path / "segmentation-baselines-smoke" / tid))
        assert list(source.load(label_maps.ARTIFACT)["maps"]) == ["mosaic_00", "mosaic_01"]


@pytest.mark.ray
def test_ray_images_spread_over_two_workers(tmp_path, sweeplab_cli):
    """resources.workers = 2: the trial's images are split over two Ray Train workers and gathered."""
    sweeplab_cli(["run", str(SWEEPS / "segmentation-m-lr-smoke.yaml"), "--set", f"storage={tmp_path}",
          "resources.workers=2", "search.space.M=[2]", "T=4", "n_mosaics=3"], tmp_path)
    trials, evals = _tables(tmp_path / "segmentation-m-lr-smoke")
    assert len(trials) == 1 and trials.status.iloc[0] == "completed" and trials.num_workers.iloc[0] == 2
    assert sorted(evals.image) == ["mosaic_00", "mosaic_01", "mosaic_02"]
    # the label maps of images 0 and 2 (rank 0) and 1 (rank 1), gathered and kept once, in the data's order
    kept = label_maps.load(tmp_path / "segmentation-m-lr-smoke", trials.trial_id.iloc[0])[1]
    assert list(kept) == ["mosaic_00", "mosaic_01", "mosaic_02"] and all(m.shape == (96, 96) for m in kept.values())


@pytest.mark.parametrize("method", ["cnn", "kmeans", "felzenszwalb"])
def test_declarations_cover_what_evaluate_returns(tmp_path, monkeypatch, method):
    """``metrics``/``eval_columns`` are exactly the keys a (tiny) evaluation returns, with matching types; the kept
    label map is the prediction, and keeping it changes no row."""
    from sweeplab.task import get_task
    from sweeplab.trial import check_declared
    task = get_task("segmentation")
    cfg = build(SegmentationConfig, {"method": method, "n_mosaics": 2, "mosaic_size": 32, "T": 2, "M": 1, "p": 8,
                                     "q": 8, "K": 50, "keep_label_maps": 1})
    data = load_data(cfg)
    predicted = []

    def predict(*args):
        predicted.append(original(*args))
        return predicted[-1]
    original = seg_train._predict
    monkeypatch.setattr(seg_train, "_predict", predict)
    ctx = LocalContext(trial_dir=tmp_path, verbose=False)
    ev = seg_train.evaluate(cfg, seg_train.train(cfg, data, ctx), data, ctx)
    # the first image's segments are kept (lossless PNG inside the artifact), exactly what was scored
    kept = ctx.artifacts[label_maps.ARTIFACT]["maps"]
    assert list(kept) == ["mosaic_00"] and kept["mosaic_00"][:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(label_maps.decode(kept["mosaic_00"]), predicted[0])
    # keeping maps changes no row (the time aside)
    none = LocalContext(trial_dir=tmp_path / "none", verbose=False)
    plain = seg_train.train(dataclasses.replace(cfg, keep_label_maps=0), data, none)
    assert not none.artifacts
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in plain] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in ev.rows]
    check_declared(task, ev.metrics, ev.rows)
    assert set(ev.metrics) == set(task.metrics)
    assert all(isinstance(v, task.metrics[k]) for k, v in ev.metrics.items())
    assert {k for r in ev.rows for k in r} == set(task.eval_columns) and len(ev.rows) == 2
    for row in ev.rows:
        for key, value in row.items():
            tp = task.eval_columns[key]
            assert value is None or isinstance(value, typing.get_origin(tp) or tp), (key, value)
    assert set(task.reports) == {k for r in ctx.reports for k in r}
    from sweeplab.tasks.segmentation.metrics import ap
    assert ap(ev.rows, 0.5) == pytest.approx(ev.metrics["ap50"])  # the returned flags pool to the reported AP


def test_fields_that_do_not_apply_are_null():
    kmeans = scalar_columns(build(SegmentationConfig, {"method": "kmeans", "k": 4}))
    assert kmeans["k"] == 4 and kmeans["alpha"] == 1 and kmeans["threshold"] is None
    assert all(kmeans[f] is None for f in ("M", "p", "q", "T", "lr", "momentum", "K", "compactness", "min_labels"))
    gs = scalar_columns(build(SegmentationConfig, {"method": "felzenszwalb"}))
    assert gs["threshold"] == 500.0 and gs["M"] is None and gs["k"] is None and gs["alpha"] is None
    cnn = scalar_columns(SegmentationConfig())
    assert cnn["M"] == 3 and cnn["K"] == 10000 and cnn["k"] is None and cnn["threshold"] is None
    assert cnn["n_mosaics"] == 12 and kmeans["n_mosaics"] == 12 and gs["split"] == "test"  # data: every method


@pytest.mark.parametrize("high", [3, 2**16 - 1, 2**16, 2**24 - 1])
def test_label_maps_round_trip_losslessly(high):
    labels = np.random.default_rng(high).integers(0, high + 1, size=(7, 9))
    labels[0, 0] = high  # 16-bit greyscale up to 65,535, 24-bit RGB above
    decoded = label_maps.decode(label_maps.encode(labels))
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, labels)
    for bad in (-1, 2**24):
        labels[0, 1] = bad
        with pytest.raises(ValueError, match="labels must lie"):
            label_maps.encode(labels)
