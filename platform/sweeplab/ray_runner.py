"""Running a sweep on Ray: Tune schedules trials, each trial runs the task under Ray Train.

Per trial, Tune runs :func:`_driver`, which starts a ``TorchTrainer`` (Ray Train V2: ``num_workers`` data-parallel
workers, each with the spec's CPUs/GPUs) whose workers run :func:`sweeplab.trial.run_trial`; metrics reach Tune
through ``TuneReportCallback``. The Train run is named after the Tune trial id, under ``<sweep>/train/``, so a
retried or resumed trial finds its checkpoints again. Each trial's rank 0 writes its evaluation rows to storage;
the sweep's driver process keeps each trial's records (:mod:`sweeplab.ray_records`) and compacts the tables when
the sweep ends; each extension of the sweep is a Tune experiment of its own (:func:`build_tuner`). Storage is a
shared folder or an ``s3://`` prefix: the core builds the filesystem (:mod:`sweeplab.storage`) and hands it to Tune
and Train.

Ray is imported inside the functions that use it (deferred: a heavy import that ``--local`` sweeps and the other
commands never need).
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from . import artifacts, progress, store
from .context import Collectives
from . import layout as L
from .plan import Plan
from .schema import TrialState
from .ray_cluster import init_ray
from .ray_records import results_callback
from .search import tune_grid, tune_search, tune_trial_params, tune_trial_point, warm_study
from .service import SweepError
from .spec import Spec
from .storage import Location, location
from .trial import final_report, full_config, run_trial

_CKPT = "state.pt"
# The Tune trial itself only waits on its TorchTrainer; the Train workers hold the real resources. Tune refuses an
# empty request, so the driver asks for 1 MiB of memory and no CPU (a CPU here would starve the workers), plus a
# sliver of the head node's own resource: drivers stay on the head, so losing a worker node (a preempted GPU machine)
# costs only the Train workers on it, which the retried trial restarts from their checkpoint elsewhere.
_DRIVER_BUNDLE = {"CPU": 0, "memory": 2**20, "node:__internal_head__": 0.001}


class RayTrainContext(Collectives):
    """:class:`~sweeplab.task.TrialContext` on a Ray Train worker (``unwrap`` and ``all_reduce`` shared with the
    local context)."""

    def __init__(self, trial_id: str, seed: int, sources: dict[str, Any] | None = None, saver=None):
        import ray.train
        import ray.train.torch
        tc = ray.train.get_context()
        self.trial_id, self.seed = trial_id, seed
        self.sources, self._saver = dict(sources or {}), saver
        self.rank, self.world_size = tc.get_world_rank(), tc.get_world_size()
        self.device = ray.train.torch.get_device()
        if self.device.type == "cuda" and not torch.cuda.is_available():
            # A node that declares GPUs it does not have (cluster/local-cluster.sh --worker-gpus): Ray placed the
            # trial by its GPU request, and it runs on the CPU; the trials table records device "cpu".
            print(f"[{trial_id}] warning: this node has no CUDA device although Ray gave the trial a GPU; "
                  "running on the CPU", flush=True)
            self.device = torch.device("cpu")

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        import ray.train
        if checkpoint is None or self.rank != 0:
            ray.train.report(dict(metrics))
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(checkpoint, Path(tmp) / _CKPT)
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def load_checkpoint(self) -> dict[str, Any] | None:
        import ray.train
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as where:
            return torch.load(Path(where) / _CKPT, map_location="cpu", weights_only=False)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch
        if self.device.type == "cpu":
            model = model.to(self.device)
            return torch.nn.parallel.DistributedDataParallel(model) if self.world_size > 1 else model
        return ray.train.torch.prepare_model(model)

    def all_gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)  # Ray Train set up the process group (gloo on CPU, NCCL on GPU)
        return out

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(f"[{self.trial_id}] {message}", flush=True)

    def save_artifact(self, name: str, payload: dict[str, Any]) -> None:
        if self.rank == 0:
            self._saver(name, payload)


def _worker(payload: dict[str, Any]) -> None:
    task, values = payload["task"], payload["values"]
    saver = artifacts.Saver(payload["sweep_dir"], task.name, payload["sweep"], payload["trial_id"],
                            full_config(task, values))
    ctx = RayTrainContext(payload["trial_id"], payload["seed"], artifacts.open_sources(payload["from_trials"]),
                          saver)
    run_trial(task, values, ctx, sweep=payload["sweep"], sweep_dir=payload["sweep_dir"],
              code_version=payload["code_version"], started_from=payload["from_trials"], point=payload["point"])


def storage_args(loc: Location) -> dict[str, Any]:
    """``storage_path`` (and ``storage_filesystem`` for object storage) of a Tune or Train run config."""
    return {"storage_path": loc.path, "storage_filesystem": loc.fs} if loc.is_s3 else {"storage_path": loc.path}


def _make_driver(spec: Spec, plan: Plan, code_version: str):
    task, sweep, sweep_dir = spec.task, spec.name, str(spec.sweep_dir)
    from_trials = dict(spec.from_trials)
    workers, cpus, gpus, keep = spec.workers, spec.cpus, spec.gpus, spec.checkpoints["keep"]
    grid = tune_grid(spec, plan)

    def _driver(params: dict[str, Any]) -> None:
        import ray.train
        import ray.tune
        from ray.train.torch import TorchConfig, TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback
        trial_id = ray.tune.get_context().get_trial_id()
        loc = location(sweep_dir)
        done = store.completed_trial(loc, trial_id)
        if done is not None and done.get("status") == TrialState.COMPLETED:
            # A resumed sweep whose experiment state was saved before this trial ended (Tune saves it every few
            # seconds, not at each trial's end): its results are already in storage, so report them, don't rerun.
            print(f"[{trial_id}] already completed (its results are in storage): not run again", flush=True)
            ray.tune.report(final_report(task, done))
            return
        values, seed = tune_trial_params(params, grid)
        point = tune_trial_point(params, grid)
        resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        # NCCL for GPU trials when this torch build has it (the nodes share one image); a CPU-only build, as on a
        # local cluster with logical GPUs, falls back to gloo.
        backend = "nccl" if gpus and dist.is_available() and dist.is_nccl_available() else "gloo"
        trainer = TorchTrainer(
            _worker,
            torch_config=TorchConfig(backend=backend),
            train_loop_config={"task": task, "values": values, "seed": seed, "trial_id": trial_id, "sweep": sweep,
                               "sweep_dir": sweep_dir, "code_version": code_version, "from_trials": from_trials,
                               "point": point},
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(name=trial_id, **storage_args(L.train_runs(loc)),
                                           callbacks=[TuneReportCallback()],
                                           checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep)),
        )
        trainer.fit()

    return _driver


def _scheduler(spec: Spec):
    if spec.scheduler["type"] != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler
    s = spec.scheduler  # every ASHA setting filled in by the parser (spec.ASHA_DEFAULTS)
    metric, mode = s.get("metric", spec.metrics[0]), s.get("mode", spec.modes[0])
    if not spec.multi_objective and (metric, mode) == (spec.metrics[0], spec.modes[0]):
        metric = mode = None  # Tune refuses a scheduler that repeats the TuneConfig's metric and mode
    return ASHAScheduler(metric=metric, mode=mode, time_attr=s["time_attr"], max_t=s["max_t"],
                         grace_period=s["grace_period"], reduction_factor=s["reduction_factor"])


def _max_concurrent(spec: Spec) -> int:
    import ray
    if spec.max_concurrent:
        return spec.max_concurrent
    avail = ray.cluster_resources()
    per_trial = [avail.get("CPU", 1) / max(spec.cpus * spec.workers, 1e-9)]
    if spec.gpus:
        per_trial.append(avail.get("GPU", 0) / (spec.gpus * spec.workers))
    return max(1, math.floor(min(per_trial)))


def build_tuner(spec: Spec, plan: Plan, code_version: str, part: int = 0, first: int = 0,
                stop: int | None = None):
    """The Tune experiment of the sweep's trials ``first`` to ``stop - 1``: part 0 (the sweep's own, in its folder)
    or the ``part``-th extension (``sweeplab resume --extend``: Ray's ``Tuner.restore`` cannot add trials, so each
    extension is an experiment of its own). Restored when Tune saved it, so a resume continues it."""
    from ray import tune
    stop = plan.samples if stop is None else stop
    trainable = tune.with_resources(_make_driver(spec, plan, code_version),
                                    tune.PlacementGroupFactory([_DRIVER_BUNDLE]))
    study = None
    if plan.points is None and part > 0:  # a sampler told the finished trials: TPE continues from them
        study = warm_study(spec, sorted(store.trial_rows(spec.sweep_dir).values(), key=lambda r: r["trial_id"]))
    param_space, search_alg = tune_search(spec, plan, _max_concurrent(spec), first=first, study=study)
    where = L.tune_experiment(spec.sweep_dir, part)
    if L.tune_state(where).exists():  # without it Tune never saved the experiment: start it afresh
        restore = {"path": where.path, "storage_filesystem": where.fs} if where.is_s3 else {"path": where.path}
        tuner = tune.Tuner.restore(**restore, trainable=trainable, resume_errored=True, param_space=param_space)
        # The restored RunConfig holds the callback pickled (by value) when the sweep started, whose code calls the
        # core as it was then; this code's callback records the trials instead (Tuner.restore takes no callbacks,
        # so the restored run config is updated in place).
        tuner._local_tuner.get_run_config().callbacks = [results_callback(spec, plan)]
        return tuner
    multi = spec.multi_objective
    tune_config = tune.TuneConfig(
        search_alg=search_alg, scheduler=_scheduler(spec), num_samples=stop - first,
        metric=None if multi else spec.metrics[0], mode=None if multi else spec.modes[0])
    run_config = tune.RunConfig(name=where.name, **storage_args(where.parent),
                                failure_config=tune.FailureConfig(max_failures=spec.retries),
                                callbacks=[results_callback(spec, plan)], verbose=1)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def run_ray(spec: Spec, code_version: str, plan: Plan | None = None, extensions: list[dict] = ()) -> dict[str, int]:
    """Run (or continue) the sweep's Tune experiments in order: its own, then one per extension (each
    ``{"first": trial index, ...}`` as :mod:`sweeplab.service` records it); then compact the tables."""
    # The sweep's objective is reported once, after evaluation; intermediate reports carry training metrics only.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    plan = plan or Plan.of(spec)
    bounds = [0, *(e["first"] for e in extensions), plan.samples]
    failed, stop = 0, progress.StopRequest(spec.sweep_dir)
    for part in range(len(bounds) - 1):
        if stop.file.exists():
            break
        if bounds[part + 1] > bounds[part]:
            grid = build_tuner(spec, plan, code_version, part, bounds[part], bounds[part + 1]).fit()
            failed += sum(1 for r in grid if r.error is not None)
    counts = store.compact(spec.sweep_dir)
    counts["failed"] = failed
    return counts


class RayBackend:
    """:class:`sweeplab.service.Backend` running trials on Ray Tune: an embedded local Ray, or the cluster at
    ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``)."""
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    def start(self) -> None:
        if (problem := init_ray(self.address)) is not None:
            raise SweepError(problem)

    def run(self, spec: Spec, plan: Plan, code_version: str, resume: bool, extensions: list[dict]) -> dict[str, int]:
        return run_ray(spec, code_version, plan, extensions)


