"""The tagging task through the platform: describe, the Table II specs, smoke sweeps in-process and on an embedded
Ray (with the cost of the model trained), the authors' training protocol."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from sweeplab import cli, results, store
from sweeplab.plan import grid_points
from sweeplab.spec import load

SWEEPS = Path(__file__).parents[2] / "sweeps"


def _tables(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, evaluations) of a finished sweep, trials in trial-id order."""
    trials, evaluations = results.read(sweep_dir)
    return trials.sort_values("trial_id", ignore_index=True), evaluations


def _trained_cost(row, n_tags: int) -> tuple[int, float]:
    """Parameters (counted here) and GMACs of the model of a trials-table row built for ``n_tags`` outputs."""
    from sweeplab.config import build
    from sweeplab.cost import model_cost
    from sweeplab.task import get_task
    from sweeplab.tasks.tagging.config import TaggingConfig
    from sweeplab.tasks.tagging.models import build_model
    cfg = build(TaggingConfig, {k: getattr(row, k) for k in ("model", "sample_rate", "n_mels", "hop_factor")}
                | {"n_tags": n_tags})
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(cfg).parameters())
    return params, model_cost(get_task("tagging"), cfg).gmacs


def _assert_cost_of_the_trained_model(trials: pd.DataFrame, n_tags: int) -> None:
    """``params``/``gmacs`` of every trial are those of the model trained (one output per tag of the data: 12 on
    the embedded set), not of the 50-tag reference model that ``describe`` shows."""
    for row in trials.itertuples():
        (params, gmacs), (params_50, gmacs_50) = _trained_cost(row, n_tags), _trained_cost(row, 50)
        assert row.params == params < params_50 and math.isclose(row.gmacs, gmacs) and gmacs < gmacs_50


def _describe(capsys, *sets):
    assert cli.main(["describe", "tagging", "--set", *sets, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_describe_gmacs_follow_the_input(capsys):
    base = _describe(capsys, "model=vgg", "n_mels=48")
    assert base["input_shape"] == [1, 1, 48, 1366] and base["params"] > 0
    fewer_mels = _describe(capsys, "model=vgg", "n_mels=24")
    longer_hop = _describe(capsys, "model=vgg", "n_mels=48", "hop_factor=2")
    faster_rate = _describe(capsys, "model=vgg", "n_mels=48", "sample_rate=16000")
    assert fewer_mels["gmacs"] < base["gmacs"] and longer_hop["gmacs"] < base["gmacs"] < faster_rate["gmacs"]
    assert longer_hop["input_shape"] == [1, 1, 48, 683] and faster_rate["input_shape"] == [1, 1, 48, 1820]
    assert fewer_mels["params"] == base["params"]  # the same layers, smaller maps
    musicnn = _describe(capsys, "model=musicnn", "n_mels=96", "sample_rate=16000")
    assert musicnn["input_shape"] == [1, 1, 96, 187]  # one 3 s patch


def test_table_ii_grid_and_table_iv():
    grid = load(SWEEPS / "tagging-mel-grid.yaml")
    points = grid_points(grid)
    configs = {(p["sample_rate"], p["n_mels"], p["hop_factor"], p["log"]) for p in points}
    assert len(configs) == 88 and len(points) == 88 * 3  # Table II, three repetitions (Figure 1)
    assert {c[1] for c in configs if c[2] > 1} == {128, 96, 48}
    musicnn = load(SWEEPS / "tagging-musicnn.yaml")
    assert len(grid_points(musicnn)) == 6 * 3 and musicnn.config["log"] == "dB"
    pareto = load(SWEEPS / "tagging-pareto.yaml")
    assert pareto.metrics == ["roc_auc", "gmacs"] and pareto.modes == ["max", "min"]


def test_paper_specs_run_the_authors_protocol_and_smoke_specs_stay_fast():
    """Figure 1 and Table IV came from the authors' scripts: the paper specs run protocol=authors; their smoke
    versions train a few early-stopping epochs; epoch_limit (the task's tiny size) caps either protocol."""
    import dataclasses

    from sweeplab.task import get_task
    from sweeplab.tasks.tagging.config import TaggingConfig
    for name in ("tagging-mel-grid", "tagging-musicnn", "tagging-pareto"):
        assert load(SWEEPS / f"{name}.yaml").config["protocol"] == "authors", name
        assert load(SWEEPS / f"{name}-smoke.yaml").config["protocol"] == "early-stopping", name
    musicnn = TaggingConfig(model="musicnn", protocol="authors")
    assert musicnn.schedule().epochs == 720 and dataclasses.replace(musicnn, epoch_limit=1).schedule() == \
        dataclasses.replace(musicnn.schedule(), epochs=1)  # the same decay and last weights, one pass
    assert TaggingConfig(epochs=5, epoch_limit=3).schedule().epochs == 3
    assert TaggingConfig(epochs=2, epoch_limit=3).schedule().epochs == 2
    assert get_task("tagging").tiny["epoch_limit"] == 1


def test_local_smoke_sweeps_share_features_and_plot(tmp_path, sweeplab_cli):
    store = tmp_path / "features"
    common = [f"storage={tmp_path}", f"feature_dir={store}", "n_clips=40", "epochs=1"]
    sweeplab_cli(["run", str(SWEEPS / "tagging-mel-grid-smoke.yaml"), "--local", "--set", *common], tmp_path)
    sweeplab_cli(["run", str(SWEEPS / "tagging-musicnn-smoke.yaml"), "--local", "--set", *common], tmp_path)
    vgg, evals = _tables(tmp_path / "tagging-mel-grid-smoke")
    assert len(vgg) == 3 and set(vgg.status) == {"completed"}
    assert vgg.roc_auc.between(0, 1).all() and (vgg.gmacs > 0).all()
    assert vgg.set_index("hop_factor").gmacs.loc[10] < vgg[vgg.n_mels == 48].set_index("hop_factor").gmacs.loc[5]
    assert set(evals.columns) >= {"trial_id", "tag", "roc_auc", "pr_auc", "n_positive"}
    assert len(evals) == 3 * evals.tag.nunique()  # one row per trial x tag
    musicnn = _tables(tmp_path / "tagging-musicnn-smoke")[0]
    assert musicnn.model.tolist() == ["musicnn"] and musicnn.status.tolist() == ["completed"]
    assert evals.tag.nunique() == 12  # the embedded set's tags
    _assert_cost_of_the_trained_model(pd.concat([vgg, musicnn]), n_tags=12)
    # one power-mel base per (sample rate, mel count), shared by both sweeps whatever the hop and log
    assert len(list(store.rglob("*.npy"))) > 0
    sweeplab_cli(["plot", str(tmp_path / "tagging-mel-grid-smoke"), "--out", str(tmp_path / "fig1.png")], tmp_path)
    assert (tmp_path / "fig1.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory):
    """One feature store for the tiny trials of this module (their features are computed once)."""
    return tmp_path_factory.mktemp("features")


def _tiny(feature_dir, **values):
    """A tiny tagging config (8 mel bands, hop x10, 2 clips a split of 20 embedded ones), its data and a quiet
    local context."""
    from sweeplab.config import build
    from sweeplab.context import LocalContext
    from sweeplab.tasks.tagging.config import TaggingConfig
    from sweeplab.tasks.tagging.data import load_data
    cfg = build(TaggingConfig, {"n_mels": 8, "hop_factor": 10, "n_clips": 20, "n_clips_limit": 2,
                                "feature_dir": str(feature_dir), **values})
    return cfg, load_data(cfg), LocalContext(trial_dir=None, device=torch.device("cpu"), verbose=False)


def test_authors_protocol_vgg_runs_every_epoch_and_keeps_the_last_weights(tiny_features, monkeypatch):
    """protocol=authors: VGG-CNN trains the authors' batch for all their epochs whatever ``patience`` says (here 3
    epochs instead of 13, for time) and returns the weights of the last one; the fields it replaces are null."""
    from sweeplab.config import scalar_columns
    from sweeplab.tasks.tagging import config as tag_config
    from sweeplab.tasks.tagging import train as tag_train
    cfg, data, ctx = _tiny(tiny_features, protocol="authors", patience=1, epochs=50, batch_size=2)
    assert cfg.schedule() == tag_config.Schedule(epochs=13, batch_size=64, patience=0, lr=cfg.lr, keep_best=False)
    assert {k: scalar_columns(cfg)[k] for k in ("epochs", "patience", "batch_size")} == dict.fromkeys(
        ("epochs", "patience", "batch_size"))
    monkeypatch.setitem(tag_config.AUTHORS, "vgg", {**tag_config.AUTHORS["vgg"], "epochs": 3})
    weights = []  # the model of each epoch's checkpoint

    def report(metrics, checkpoint=None):
        ctx.reports.append(metrics)
        weights.append({k: v.clone() for k, v in checkpoint["model"].items()})
    ctx.report = report
    net, _ = tag_train.train(cfg, data, ctx)
    val = [r["val_roc_auc"] for r in ctx.reports]
    assert max(val[1:]) <= val[0]  # no epoch after the first improved: patience=1 would have stopped at 2
    assert [r["epoch"] for r in ctx.reports] == [1, 2, 3] and ctx.reports[-1]["progress"] == 1.0
    assert {r["lr"] for r in ctx.reports} == {cfg.lr}  # no decay for VGG-CNN
    final = net.state_dict()
    assert all(torch.equal(final[k], v) for k, v in weights[-1].items())  # the last epoch's weights...
    assert not all(torch.equal(final[k], v) for k, v in weights[0].items())  # ...not the best (the first) epoch's


def test_authors_protocol_musicnn_decays_the_learning_rate_and_resumes_it(tiny_features):
    """MUSICNN under protocol=authors: lr x 0.1 every 100 of 720 passes; a trial resumed from its checkpoint at
    pass 719 trains that last pass at 1e-3 x 0.1^7 (the loop sets the rate from the pass index)."""
    from sweeplab.tasks.tagging import train as tag_train
    from sweeplab.tasks.tagging.models import build_model
    cfg, data, ctx = _tiny(tiny_features, model="musicnn", protocol="authors", lr=1e-3)
    sched = cfg.schedule()
    assert sched.epochs == 720 and not sched.keep_best
    expected = {0: 1e-3, 99: 1e-3, 100: 1e-4, 199: 1e-4, 250: 1e-5, 719: 1e-10}
    assert all(math.isclose(sched.lr_at(p), lr, rel_tol=1e-9) for p, lr in expected.items())
    net = build_model(tag_train.trained_config(cfg, data))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)  # a checkpoint's optimiser keeps the initial rate
    ctx.load_checkpoint = lambda: {"model": net.state_dict(), "opt": opt.state_dict(),
                                   "state": {"epoch": 719, "best_auc": -1.0, "best": None, "bad_epochs": 0}}
    tag_train.train(cfg, data, ctx)
    (report,) = ctx.reports
    assert report["epoch"] == 720 and report["progress"] == 1.0
    assert math.isclose(report["lr"], 1e-10, rel_tol=1e-9)


@pytest.mark.ray
def test_ray_smoke_sweep(tmp_path, sweeplab_cli):
    """A tagging smoke spec on the embedded Ray, not --local: two trials of the multi-objective TPE search (ROC-AUC
    vs GMACs through Tune) of cheap VGG-CNNs (48 mel bands, hop x5 or x10, one epoch on 20 clips) complete with
    finite metrics, one evaluation row per tag and the cost of the 12-tag model trained; Tune's progress table
    (in the driver's log file) names the searched fields."""
    proc = sweeplab_cli(["run", SWEEPS / "tagging-pareto-smoke.yaml", "--set", f"storage={tmp_path}",
                         f"feature_dir={tmp_path / 'features'}", "n_clips=20", "search.num_samples=2",
                         "search.space.n_mels=[48]", "search.space.hop_factor=[5, 10]"], tmp_path)
    trials, evals = _tables(tmp_path / "tagging-pareto-smoke")
    assert trials.status.tolist() == ["completed"] * 2 and set(trials.hop_factor) <= {5, 10}
    assert trials[["roc_auc", "pr_auc", "gmacs", "train_seconds"]].map(math.isfinite).all().all()
    assert len(evals) == 2 * 12 and set(evals.trial_id) == set(trials.trial_id)
    _assert_cost_of_the_trained_model(trials, n_tags=12)
    log = proc.stdout.split("Ray's and Tune's output: ", 1)[1].split(" (--verbose", 1)[0]  # Tune's table is there
    header = next(line for line in Path(log).read_text().splitlines() if "Trial name" in line).split()
    assert {"n_mels", "hop_factor", "log"} <= set(header) and not any(c.startswith("_") for c in header[3:])


def test_mtat_layout_sweep_with_real_mp3s(tmp_path, sweeplab_cli):
    """A sweep on a MagnaTagATune-layout folder (real mp3s, tab-separated csv, folders 0..f); an empty mp3, as
    the real archive has, is left out with a warning."""
    from sweeplab.tasks.tagging.data import synth_dataset
    from sweeplab.tasks.tagging.testing import FixtureClip, write_mtat_fixture
    synth = synth_dataset(30)
    folders = {"train": "0123456789ab", "valid": "c", "test": "def"}
    clips = []
    for split, members in synth.splits.items():
        for i, clip in enumerate(members):
            tags = [t for t, y in zip(synth.tags, clip.labels) if y]
            clips.append(FixtureClip(f"{folders[split][i % len(folders[split])]}/clip-{clip.clip_id}.mp3",
                                     clip.load(16000), 16000, tags))
    root = write_mtat_fixture(tmp_path / "mtat", clips, tags=synth.tags)
    (root / clips[0].mp3_path).write_bytes(b"")  # an empty file, like the few in the real archive
    proc = sweeplab_cli(["run", SWEEPS / "tagging-mel-grid-smoke.yaml", "--local", "--set", f"storage={tmp_path}",
                         f"feature_dir={tmp_path / 'features'}", f"data_dir={root}", "epochs=1", "search.include=[]",
                         "search.space.hop_factor=[10]"], tmp_path)
    assert "1 empty mp3 file(s) left out" in proc.stderr
    trials = _tables(tmp_path / "tagging-mel-grid-smoke")[0]
    assert trials.status.tolist() == ["completed"] and 0 <= trials.roc_auc.iloc[0] <= 1
    store = tmp_path / "features"
    assert store.is_dir() and any(p.name.startswith("mtat-") for p in store.iterdir())


def test_declarations_cover_what_evaluate_returns(tmp_path):
    """``metrics``/``eval_columns``/``reports`` are exactly what a tiny trial returns and reports, with matching
    types; ``trained_config`` gives the model trained (one output per tag of the data) for the cost."""
    import dataclasses

    from sweeplab.config import build, scalar_columns
    from sweeplab.context import LocalContext
    from sweeplab.cost import model_cost
    from sweeplab.task import get_task
    from sweeplab.tasks.tagging import train as tag_train
    from sweeplab.tasks.tagging.config import TaggingConfig
    from sweeplab.tasks.tagging.data import load_data
    from sweeplab.trial import check_declared
    task = get_task("tagging")
    cfg = build(TaggingConfig, {"n_mels": 48, "hop_factor": 10, "n_clips": 20, "epochs": 1, "batch_size": 8,
                                "feature_dir": str(tmp_path / "features")})
    data = load_data(cfg)
    ctx = LocalContext(trial_dir=tmp_path / "trial", device=torch.device("cpu"), verbose=False)
    ev = tag_train.evaluate(cfg, tag_train.train(cfg, data, ctx), data, ctx)
    check_declared(task, ev.metrics, ev.rows)
    assert set(ev.metrics) == set(task.metrics)
    assert all(isinstance(v, task.metrics[k]) for k, v in ev.metrics.items())
    assert {k for r in ev.rows for k in r} == set(task.eval_columns) and len(ev.rows) == len(data.tags)
    for row in ev.rows:
        for key, value in row.items():
            assert value is None or isinstance(value, task.eval_columns[key]), (key, value)
    assert set(task.reports) == {k for r in ctx.reports for k in r}
    trained = task.trained_config(cfg, data)
    assert len(data.tags) < cfg.n_tags and trained == dataclasses.replace(cfg, n_tags=len(data.tags))
    assert model_cost(task, trained).params < model_cost(task, cfg).params  # a smaller output layer
    # both models read every field: none is conditional
    for model in ("vgg", "musicnn"):
        assert None not in scalar_columns(build(TaggingConfig, {"model": model})).values()


def test_every_rank_trains_an_equal_share_of_each_batch():
    """:func:`epoch_batches`: full batches, then the rest trimmed to a multiple of the workers, kept when it gives
    every rank two clips (the models' BatchNorms). Over two ranks (tests/dist_harness.py), 13 training clips in
    batches of 8 make steps of 4 + 4 and 2 + 2 clips, and the ranks end with the same weights, the same
    BatchNorm statistics (averaged before each validation) and the same reported loss."""
    from sweeplab.tasks.tagging.train import MIN_SHARE, epoch_batches
    from tests.dist_harness import run_distributed
    assert MIN_SHARE == 2
    assert epoch_batches(14, 4, 1) == [(0, 4), (4, 8), (8, 12), (12, 14)]
    assert epoch_batches(13, 8, 2) == [(0, 8), (8, 12)]  # 5 left: 4 kept
    assert epoch_batches(14, 4, 2) == [(0, 4), (4, 8), (8, 12)]  # 2 left: one clip a rank is too few
    assert epoch_batches(3, 4, 1) == [(0, 3)] and epoch_batches(1, 4, 1) == []
    ranks = run_distributed("tagging", {"n_mels": 8, "hop_factor": 10, "n_clips": 20, "n_clips_limit": 13,
                                        "batch_size": 8, "epochs": 1})
    assert [r["samples"] for r in ranks] == [[4, 2]] * 2
    for key in ("params", "buffers"):
        (a,), (b,) = (r[key] for r in ranks)
        torch.testing.assert_close(a, b)
    losses = [[report["loss"] for report in r["reports"] if "loss" in report] for r in ranks]
    assert len(losses[0]) == 1 and losses[0] == losses[1]
