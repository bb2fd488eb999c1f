"""Both kinds of Ray trial in this process, on an embedded Ray that declares one logical GPU (the trials run on the
CPU, as on a node that declares GPUs it lacks): light trials share a reused actor and hold their fraction of the
GPU; fractional multi-worker trials run (two gloo ranks on one GPU's halves: NCCL would refuse them); a GPU-hour
budget stops starting trials on Ray, the status says why, and a resume with a larger one runs the rest; each Tune
experiment is resumed with the kind of trials it started with."""
from __future__ import annotations

import os

import pytest

from sweeplab import layout as L
from sweeplab import progress, ray_light, ray_runner, ray_train, results, store
from sweeplab.ray_runner import RayBackend
from sweeplab.service import run_sweep
from sweeplab.spec import parse
from tests.conftest import PLUGIN_ENV

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_one_gpu():
    import ray
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "SWEEPLAB_TASK_MODULES")}
    os.environ.update({k: PLUGIN_ENV[k] for k in saved})  # the workers import the toy task
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=True, log_to_driver=False)
    yield
    ray.shutdown()
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _spec(toy_spec, **extra):
    return parse({**toy_spec, "max_concurrent": 1, **extra})


def test_light_trials_share_a_reused_actor_and_hold_their_gpu_fraction(ray_one_gpu, toy_spec):
    spec = _spec(toy_spec, resources={"cpus": 1, "gpus": 0.5})
    run_sweep(spec, RayBackend(), say=lambda message: None)
    trials = results.read(spec.sweep_dir)[0]
    assert len(trials) == 2 and set(trials.status) == {"completed"} and (trials.num_workers == 1).all()
    assert (trials.gpus == 0.5).all() and (trials.gpu_seconds > 0).all() and (trials.device == "cpu").all()
    assert trials.gpu_name.isna().all() and trials.gpu_peak_mb.isna().all() and trials.ray_version.notna().all()
    pids = {progress.read_reports(spec.sweep_dir, t)[0]["pid"] for t in trials.trial_id}
    assert len(pids) == 1  # the second trial ran in the first one's actor
    assert ray_runner._stored_kind(L.tune_experiment(spec.sweep_dir, 0)) == ray_light.NAME


def test_fractional_multi_worker_trials_run_and_a_budget_stops_the_sweep_until_resumed(ray_one_gpu, toy_spec):
    resources = {"cpus": 1, "gpus": 0.5, "workers": 2}
    spec = _spec(toy_spec, resources=resources, budget={"gpu_hours": 1e-9})  # spent by the first trial
    said: list[str] = []
    run_sweep(spec, RayBackend(), say=said.append)
    trials = results.read(spec.sweep_dir)[0]
    assert len(trials) == 1 and trials.status.iloc[0] == "completed" and trials.num_workers.iloc[0] == 2
    assert trials.gpus.iloc[0] == 1.0 and trials.gpu_seconds.iloc[0] > 0  # two ranks x 0.5
    st = store.sweep_status(spec.sweep_dir)
    assert st["counts"]["pending"] == 1 and st["budget_stop"].startswith("GPU budget spent")
    assert any(line.startswith("stopped: GPU budget spent") for line in said)
    assert ray_runner._stored_kind(L.tune_experiment(spec.sweep_dir, 0)) == ray_train.NAME
    run_sweep(_spec(toy_spec, resources=resources, budget={"gpu_hours": 1.0}), RayBackend(), resume=True,
              say=lambda message: None)
    trials = results.read(spec.sweep_dir)[0]
    assert len(trials) == 2 and set(trials.status) == {"completed"} and (trials.num_workers == 2).all()
    assert store.sweep_status(spec.sweep_dir)["budget_stop"] is None


def test_a_trial_the_cluster_cannot_hold_is_refused_before_it_starts(ray_one_gpu, toy_spec):
    from sweeplab.service import SweepError
    for resources in ({"cpus": 1, "gpus": 2}, {"cpus": 1, "gpus": 0.5, "workers": 3}, {"cpus": 3}):
        spec = _spec(toy_spec, name=f"too-big-{len(resources)}", resources=resources)
        with pytest.raises(SweepError, match="no trial could ever start on this machine") as err:
            run_sweep(spec, RayBackend(), say=lambda message: None)  # waited forever before
        assert err.value.code == 2 and not results.has_results(spec.sweep_dir)
        assert not L.sweep_info(spec.sweep_dir).exists()
