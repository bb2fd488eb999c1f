"""The registration task through the platform: describe's cost, training resumed from a checkpoint, a tiny smoke
sweep in-process (ULAE-net beats the initial alignment; the tables, the Table 1-like Markdown and the figure) and one
on an embedded Ray; the paper-setting specs validate on fixtures of the real layouts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sweeplab import cli, results
from sweeplab.config import build
from sweeplab.context import LocalContext
from sweeplab.plan import grid_points
from sweeplab.spec import SpecError, load
from sweeplab.tasks.registration import data, testing, train
from sweeplab.tasks.registration.config import RegistrationConfig
from tests.conftest import run_cli

SWEEPS = Path(__file__).parents[2] / "sweeps"
TINY = ["volume_shape=[32,48,32]", "n_subjects=5", "n_test_subjects=2", "deformation=10"]


def test_describe_gives_the_cost_at_the_paper_size(capsys):
    assert cli.main(["describe", "registration", "--set", "model=ulae", "--json"]) == 0
    ulae = json.loads(capsys.readouterr().out)
    assert ulae["params"] == 789_561 and ulae["input_shape"] == [[1, 1, 160, 192, 160], [1, 1, 160, 192, 160]]
    assert ulae["gmacs"] == pytest.approx(182.1, abs=0.1)
    assert cli.main(["describe", "registration", "--set", "model=voxelmorph", "--json"]) == 0
    vm = json.loads(capsys.readouterr().out)
    assert vm["params"] == 300_547 and vm["gmacs"] == pytest.approx(161.7, abs=0.1)  # the paper's VM: 164.74G
    assert cli.main(["describe", "registration", "--set", "model=syn", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 0


def test_training_resumes_from_its_checkpoint_with_the_same_pairs(tmp_path):
    cfg = build(RegistrationConfig, {"model": "voxelmorph", "volume_shape": (16, 16, 16), "iterations": 4,
                                     "checkpoint_every": 2, "report_every": 1, "n_subjects": 4,
                                     "n_test_subjects": 2})
    ds = data.load_data(cfg)
    torch.manual_seed(0)
    whole = train.train(cfg, ds, LocalContext(trial_dir=tmp_path / "whole", verbose=False))
    torch.manual_seed(0)
    half = build(RegistrationConfig, {**{k: getattr(cfg, k) for k in ("model", "volume_shape", "n_subjects",
                                                                      "n_test_subjects")},
                                      "iterations": 2, "checkpoint_every": 2, "report_every": 1})
    train.train(half, ds, LocalContext(trial_dir=tmp_path / "split", verbose=False))
    ctx = LocalContext(trial_dir=tmp_path / "split", verbose=False)  # the retried trial finds the checkpoint at 2
    resumed = train.train(cfg, ds, ctx)
    assert [r["iteration"] for r in ctx.reports] == [3, 4]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_smoke_sweep_ulae_beats_the_initial_alignment(tmp_path, sweeplab_cli):
    spec = SWEEPS / "registration-table1-smoke.yaml"
    sweeplab_cli(["run", spec, "--local", "--set", f"storage={tmp_path}", *TINY, "iterations=100",
                  "search.space.model=[ulae, identity]", "search.include=[]"], tmp_path)
    sweep = tmp_path / "registration-table1-smoke"
    trials, evaluations = results.read(sweep)
    trials = trials.set_index("model")
    assert set(trials.status) == {"completed"}
    assert trials.dice["ulae"] > trials.dice["identity"] + 0.01
    assert trials.params["ulae"] == 789_561 and trials.folding_percent["identity"] == 0.0
    # one row per (trial, pair, label): 2 test pairs x 4 tissue labels, with the label's region group
    ulae_rows = evaluations[evaluations.trial_id == trials.trial_id["ulae"]]
    assert len(ulae_rows) == 2 * 4 and set(ulae_rows.group) == {"LWm", "LGm", "RWm", "RGm"}
    assert ulae_rows.groupby("pair").folding_percent.nunique().eq(1).all() and (ulae_rows.seconds > 0).all()
    per_pair = ulae_rows.groupby("pair").dice.mean()  # each group is one label here
    assert trials.dice["ulae"] == pytest.approx(per_pair.mean())
    sweeplab_cli(["plot", sweep], tmp_path)
    table = (sweep / "results" / "registration.md").read_text()
    assert "| method | LGm | LWm | RGm | RWm | avg. |" in table and "789.56K" in table
    assert (sweep / "results" / "registration.png").stat().st_size > 10_000


@pytest.mark.ray
def test_ray_smoke_sweep(tmp_path, sweeplab_cli):
    spec = SWEEPS / "registration-windows-lambda-smoke.yaml"
    sweeplab_cli(["run", spec, "--set", f"storage={tmp_path}", *TINY, "iterations=3", "report_every=1",
                  "n_test_pairs=1", "search.space.windows=[[9], [11, 9, 7]]", "search.space.lambda_=[1.0]"],
                 tmp_path)
    trials, evaluations = results.read(tmp_path / "registration-windows-lambda-smoke")
    assert sorted(trials.windows) == ["11,9,7", "9"] and set(trials.status) == {"completed"}
    assert len(evaluations) == 2 * 4 and np.isfinite(trials.dice).all()


def test_paper_specs_take_the_real_layouts(tmp_path):
    root = testing.write_mindboggle_fixture(tmp_path / "mindboggle")
    for name in ("registration-table1", "registration-ablation", "registration-windows-lambda"):
        spec = load(SWEEPS / f"{name}.yaml", [f"data_dir={root}"])
        assert spec.config["dataset"] == "mindboggle" and spec.config["volume_shape"] == (160, 192, 160)
    rows = [(p["model"], p.get("uncoupled"), p.get("accumulative"), tuple(p["windows"]))
            for p in grid_points(load(SWEEPS / "registration-ablation.yaml", [f"data_dir={root}"]))]
    assert rows == [("voxelmorph", None, None, (9,)), ("ulae", False, True, (9,)), ("ulae", True, True, (9,)),
                    ("ulae", True, True, (11, 9, 7)), ("ulae", False, False, (9,))]
    ixi = testing.write_ixi_fixture(tmp_path / "ixi")
    assert load(SWEEPS / "registration-table1.yaml", ["dataset=ixi", f"data_dir={ixi}"]).config["dataset"] == "ixi"
    with pytest.raises(SpecError, match="data_dir: dataset 'mindboggle' needs its root folder"):
        load(SWEEPS / "registration-table1.yaml")


def test_a_corrupt_volume_fails_its_trial_with_the_file_named_and_the_tables_stay_whole(tmp_path):
    root = testing.write_folder_fixture(tmp_path / "data", train=3, test=2, shape=(16, 16, 16))
    (root / "s4_labels.nii.gz").write_bytes(b"\x1f\x8b truncated")
    spec = SWEEPS / "registration-table1-smoke.yaml"
    proc = run_cli(["run", spec, "--local", "--set", f"storage={tmp_path}", "dataset=folder", f"data_dir={root}",
                    "volume_shape=[16,16,16]", "search.space.model=[identity]", "search.include=[]"], tmp_path, rc=1)
    assert "s4_labels.nii.gz" in proc.stdout + proc.stderr
    trials, evaluations = results.read(tmp_path / "registration-table1-smoke")
    assert list(trials.status) == ["failed"] and "cannot read volume" in trials.error.iloc[0]
    assert "s4_labels.nii.gz" in trials.error.iloc[0] and trials.model.iloc[0] == "identity" and evaluations.empty
