"""Spec validation before anything starts: cross-field checks on every trial a search can produce, metric and
scheduler names, empty lists, --set values, and tasks whose package is broken."""
import dataclasses
import os
import sys

import pytest
import yaml

from sweeplab import cli
from sweeplab.spec import SpecError, parse
from sweeplab.task import register_task
from tests.conftest import TOY, run_cli

# a task whose metric `lr` collides with a config name: its column (and the name a spec optimises) is `metric_lr`
COLLIDING = register_task(dataclasses.replace(TOY, name="toy_colliding", metrics={"lr": float}))


def _problems(raw, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as err:
        parse(raw, list(overrides))
    return err.value.problems


@pytest.fixture
def compression_spec(tmp_path):
    return {"name": "c", "task": "compression", "metric": "psnr", "mode": "max", "storage": str(tmp_path),
            "search": {"algorithm": "grid", "space": {}}}


# ---------------------------------------------------------------- cross-field checks on every trial


def test_every_grid_point_is_checked_and_each_problem_reported_once(compression_spec):
    compression_spec["search"]["space"] = {"crop_size": [128, 100], "gamma": [1.0, 2.0]}
    compression_spec["search"]["include"] = [{"test_crop": 40}]
    assert _problems(compression_spec) == [
        "search: crop_size: 100 is not a multiple of 16 (the encoder downsamples by 16) (in the trial with "
        "crop_size=100, gamma=1.0)",
        "search: test_crop: 40 is not a multiple of 16 (in the trial with test_crop=40)"]


def test_a_problem_every_trial_has_is_a_config_problem(compression_spec):
    compression_spec["config"] = {"test_crop": 40}
    compression_spec["search"]["space"] = {"gamma": [1.0, 2.0]}
    assert _problems(compression_spec) == ["config: test_crop: 40 is not a multiple of 16"]


@pytest.mark.parametrize("algorithm", ["random", "tpe"])
def test_sampled_choices_and_range_bounds_are_checked(compression_spec, algorithm):
    compression_spec["search"] = {"algorithm": algorithm, "num_samples": 3, "space": {
        "crop_size": [128, 136], "test_crop": {"randint": [16, 41]}, "gamma": {"loguniform": [1.0, 10.0]}}}
    problems = _problems(compression_spec)
    assert problems == [
        "search: crop_size: 136 is not a multiple of 16 (the encoder downsamples by 16) (in the trial with "
        "crop_size=136)",
        "search: test_crop: 40 is not a multiple of 16 (in the trial with test_crop=40)"]  # randint's high is 41
    compression_spec["search"]["space"]["test_crop"] = {"randint": [16, 33]}  # 16 and 32: both fine
    compression_spec["search"]["space"]["crop_size"] = [128]
    assert parse(compression_spec).space["test_crop"].args == (16, 33)


def test_a_float_range_on_an_integer_field_is_refused(toy_spec):
    toy_spec["search"] = {"algorithm": "random", "space": {"steps": {"uniform": [1, 5]}}}
    assert _problems(toy_spec) == ["search.space.steps: steps is an integer: use randint (a uniform draws "
                                   "fractions)"]


def test_cross_field_checks_run_beside_other_problems(compression_spec):
    compression_spec["search"]["space"] = {"crop_size": [100]}
    compression_spec["metric"] = "psrn"
    problems = _problems(compression_spec)
    assert len(problems) == 2 and problems[1].startswith("config: crop_size: 100 is not a multiple of 16")


# ---------------------------------------------------------------- metric and scheduler names


def test_metric_must_be_declared_by_the_task(compression_spec):
    compression_spec["metric"] = "psrn"
    assert _problems(compression_spec) == [
        "metric: 'psrn' is not a metric of task 'compression' (valid: psnr, bpp, bpp_coded, rate_gap_bpp, "
        "mean_rate_gap_bpp, params, gmacs, train_seconds)"]
    compression_spec.update(metric=["psnr", "gmacs"], mode=["max", "min"])
    compression_spec["search"] = {"algorithm": "nsga2", "space": {"m": [16, 32]}}
    assert parse(compression_spec).metrics == ["psnr", "gmacs"]


def test_metric_names_are_column_names(toy_spec):
    toy_spec["task"] = "toy_colliding"
    assert parse({**toy_spec, "metric": "metric_lr"}).metrics == ["metric_lr"]
    assert _problems({**toy_spec, "metric": "lr"}) == [
        "metric: 'lr' is not a metric of task 'toy_colliding' (valid: metric_lr, params, gmacs, train_seconds)"]


def test_scheduler_fields_are_typed_and_named(toy_spec):
    toy_spec["scheduler"] = {"type": "asha", "max_t": "abc", "grace_period": 0, "reduction_factor": 1,
                             "time_attr": "epoch", "metric": "accuracy", "mode": "up"}
    assert _problems(toy_spec) == [
        "scheduler.max_t: expected an integer, got 'abc'",
        "scheduler.grace_period: 0 is below the minimum 1",
        "scheduler.reduction_factor: 1 must be above 1",
        "scheduler.time_attr: 'epoch' is not reported by task 'toy' (valid: training_iteration, step, loss)",
        "scheduler.mode: 'up' is not 'min' or 'max'",
        "scheduler.metric: 'accuracy' is not a report nor a final metric of task 'toy' (valid: step, loss, "
        "lr_times_two)"]
    toy_spec["scheduler"] = {"type": "asha", "max_t": 10, "grace_period": 20}
    assert _problems(toy_spec) == ["scheduler.grace_period: 20 is above max_t 10"]
    toy_spec["scheduler"] = {"type": "fifo", "max_t": 10}
    assert _problems(toy_spec) == ["scheduler.max_t: only scheduler.type asha uses it"]


def test_scheduler_defaults_and_modes_are_filled_in(toy_spec):
    toy_spec["scheduler"] = {"type": "asha", "time_attr": "step", "max_t": 5.0}
    assert parse(toy_spec).scheduler == {"type": "asha", "time_attr": "step", "max_t": 5, "grace_period": 1,
                                         "reduction_factor": 4.0}
    toy_spec["scheduler"] = {"type": "asha", "metric": "loss"}  # the spec's metric: its mode
    assert parse(toy_spec).scheduler["mode"] == "min"
    toy_spec["scheduler"] = {"type": "asha", "metric": "step"}
    assert _problems(toy_spec) == ["scheduler.metric 'step' needs scheduler.mode (min or max)"]


# ---------------------------------------------------------------- empty lists


def test_empty_lists_are_refused(compression_spec):
    compression_spec["config"] = {"betas": [], "jpeg_qualities": []}
    assert _problems(compression_spec) == ["config: betas: empty list (give at least one value)",
                                           "config: jpeg_qualities: empty list (give at least one value)"]


# ---------------------------------------------------------------- --set values


def test_set_with_broken_yaml_is_a_spec_error(toy_spec, tmp_path, capsys):
    assert _problems(toy_spec, ["lr=[1,", "steps=3"]) == [
        "--set 'lr=[1,': the value is not valid YAML (while parsing a flow node; expected the node content, but "
        "found '<stream end>' at column 4)"]
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(path), "--local", "--set", "lr=[1,"]) == 2
    err = capsys.readouterr().err
    assert "--set 'lr=[1,': the value is not valid YAML" in err and "Traceback" not in err
    assert cli.main(["describe", "toy", "--set", "lr={a"]) == 2
    assert "--set 'lr={a': the value is not valid YAML" in capsys.readouterr().err


@pytest.mark.parametrize("item", ["lr=0.5", "config.lr=0.5"])
def test_set_fixed_value_replaces_a_searched_one(toy_spec, item):
    spec = parse(toy_spec, [item])
    assert spec.config == {"lr": 0.5} and "lr" not in spec.space


def test_set_searched_value_replaces_a_fixed_one(toy_spec):
    toy_spec["config"] = {"steps": 3}
    spec = parse(toy_spec, ["search.space.steps=[1, 2]"])
    assert "steps" not in spec.config and spec.space["steps"] == [1, 2]


def test_a_value_both_fixed_and_searched_is_refused(toy_spec):
    toy_spec["config"] = {"lr": 0.3}
    assert _problems(toy_spec) == ["search.space.lr: lr is also fixed in config (keep one of the two)"]


# ---------------------------------------------------------------- broken task packages


def test_broken_task_package_is_listed_and_named(tmp_path):
    (tmp_path / "sweeplab_broken_task.py").write_text("raise RuntimeError('no such weights file')\n")
    spec = tmp_path / "broken.yaml"
    spec.write_text(yaml.safe_dump({"task": "sweeplab_broken_task", "metric": "loss", "storage": str(tmp_path),
                                    "config": {"lr": 0.1}}))
    env = {**os.environ, "SWEEPLAB_TASK_MODULES": "sweeplab_broken_task",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    why = ("$SWEEPLAB_TASK_MODULES names 'sweeplab_broken_task', which cannot be imported: RuntimeError: no such "
           "weights file")
    lines = [" ".join(line.split()) for line in run_cli(["tasks"], tmp_path, env=env).stdout.splitlines()]
    working = [line for line in lines if " broken: " not in line]
    assert lines[:len(working)] == working  # the broken ones come last...
    assert {"compression", "segmentation"} <= {line.split()[0] for line in working}  # ...and the others still work
    assert f"sweeplab_broken_task broken: {why}" in lines
    for args in (["run", spec, "--local", "--set", "steps=2"], ["status", spec],
                 ["describe", "sweeplab_broken_task"]):
        err = run_cli(args, tmp_path, rc=2, env=env).stderr
        assert f"task 'sweeplab_broken_task' is broken: {why}" in err and "Traceback" not in err, args
        assert "not a config name" not in err  # the config names of a broken task are not second-guessed
