"""Compute in every row, the spec keys dtype and budget, and what a task declares about data parallelism.

CPU trials have null GPU columns (not zero) on every status; the spec refuses a dtype, a number of workers or a
global batch the task cannot run before anything starts; a GPU-hour budget stops starting trials (the status says
why, with GPU-hours spent and projected), and a resume with a larger budget runs the rest."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from sweeplab import render, results, store
from sweeplab import task as T
from sweeplab.context import LocalContext
from sweeplab.fingerprint import fingerprint
from sweeplab.local import LocalBackend, run_local
from sweeplab.service import run_sweep
from sweeplab.spec import SpecError, parse
from tests.conftest import TOY


def test_cpu_rows_hold_the_compute_columns_with_null_gpu_columns_for_every_status(toy_spec):
    toy_spec["search"] = {"algorithm": "grid", "space": {}, "include": [{"lr": 0.05}, {"fail": True}]}
    spec = parse({**toy_spec, "retries": 0})
    run_local(spec, "test")
    trials = results.read(spec.sweep_dir)[0].set_index("fail")
    assert set(trials.status) == {"completed", "failed"}
    for _, row in trials.iterrows():
        assert row["dtype"] == "float32" and row.gpus == 0.0 and row.torch_version == torch.__version__
        for column in ("gpu_name", "gpu_seconds", "gpu_peak_mb", "ray_version"):
            assert pd.isna(row[column]), column  # null, not zero: no GPU, no Ray
        assert row.host_peak_mb > 10  # this process's peak since the trial started (torch alone holds more)
    assert 0.0 <= trials.loc[False].data_wait_fraction <= 1.0


def test_spec_refuses_what_the_task_cannot_run_and_budget_is_not_in_the_fingerprint(toy_spec):
    solo = T.register_task(dataclasses.replace(TOY, name="toy-solo", parallel="none",
                                               bfloat16="its loss needs float32"))
    batched = T.register_task(dataclasses.replace(TOY, name="toy-batch", batch_field="width"))
    try:
        with pytest.raises(SpecError) as err:
            parse({**toy_spec, "task": solo.name, "resources": {"workers": 2}, "dtype": "bfloat16"})
        assert "runs on one worker" in str(err.value) and "its loss needs float32" in str(err.value)
        with pytest.raises(SpecError, match="dtype: 'float16' is not one of"):
            parse({**toy_spec, "dtype": "float16"})
        uneven = {**toy_spec, "task": batched.name, "resources": {"workers": 2},
                  "search": {"algorithm": "grid", "space": {"width": [4, 5, 7]}}}
        with pytest.raises(SpecError, match="config.width 5, 7 does not split evenly over 2 workers"):
            parse(uneven)
        parse({**uneven, "search": {"algorithm": "grid", "space": {"width": [4, 6]}}})  # multiples of 2: runs
        with pytest.raises(SpecError, match="budget"):
            parse({**toy_spec, "budget": {"gpu_hours": -1}})
        with pytest.raises(SpecError, match="budget"):
            parse({**toy_spec, "budget": {"hours": 1}})
    finally:
        for name in (solo.name, batched.name):
            T._REGISTRY.pop(name, None)
    with pytest.raises(ValueError, match="parallel 'model' is not one of"):
        T.register_task(dataclasses.replace(TOY, name="toy-bad", parallel="model"))
    with pytest.raises(ValueError, match="batch_field 'nope' must be a config field"):
        T.register_task(dataclasses.replace(TOY, name="toy-bad", batch_field="nope"))
    base = parse(toy_spec)
    assert fingerprint(parse({**toy_spec, "budget": {"gpu_hours": 3}})) == fingerprint(base)  # may change
    assert fingerprint(parse({**toy_spec, "dtype": "bfloat16"})) != fingerprint(base)  # what trials compute


def test_budget_stops_starting_trials_and_a_larger_one_on_resume_runs_the_rest(toy_spec, monkeypatch):
    start_meter = LocalContext.start_meter

    def holding_one_gpu(self):  # as on a machine with a GPU: gpu_seconds is the trial's wall time
        self.gpus_held = 1.0
        return start_meter(self)
    monkeypatch.setattr(LocalContext, "start_meter", holding_one_gpu)
    toy_spec["search"]["space"]["lr"] = [0.01, 0.02, 0.03]
    said: list[str] = []
    spec = parse({**toy_spec, "budget": {"gpu_hours": 1e-9}})  # spent by the first trial
    run_sweep(spec, LocalBackend(), say=said.append)
    trials = results.read(spec.sweep_dir)[0]
    assert len(trials) == 1 and trials.gpus.iloc[0] == 1.0 and trials.gpu_seconds.iloc[0] > 0
    st = store.sweep_status(spec.sweep_dir)
    assert st["counts"]["pending"] == 2 and st["budget_stop"].startswith("GPU budget spent")
    gpu = st["gpu_hours"]
    assert gpu["spent"] == pytest.approx(trials.gpu_seconds.sum() / 3600) and gpu["budget"] == 1e-9
    assert gpu["projected"] == pytest.approx(trials.gpu_seconds.mean() * 3 / 3600)
    text = render.status(st)
    assert "GPU-hours:" in text and "projected for the 3 planned trials" in text and "stopped: GPU budget" in text
    assert any(line.startswith("stopped: GPU budget spent") for line in said)
    run_sweep(parse({**toy_spec, "budget": {"gpu_hours": 1.0}}), LocalBackend(), resume=True, say=said.append)
    st = store.sweep_status(spec.sweep_dir)
    assert st["counts"]["completed"] == 3 and st["budget_stop"] is None
    assert st["gpu_hours"]["spent"] == pytest.approx(results.read(spec.sweep_dir)[0].gpu_seconds.sum() / 3600)
