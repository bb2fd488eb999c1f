"""Running a sweep on Ray: Tune schedules trials, each trial runs the task under Ray Train.

Per trial, Tune runs :func:`_driver`, which starts a ``TorchTrainer`` (Ray Train V2: ``num_workers`` data-parallel
workers, each with the spec's CPUs/GPUs) whose workers run :func:`sweeplab.trial.run_trial`; metrics reach Tune
through ``TuneReportCallback``. The Train run is named after the Tune trial id, under ``<sweep>/train/``, so a
retried or resumed trial finds its checkpoints again. Each trial's rank 0 writes its evaluation rows to storage;
the sweep's driver process records each trial's row when it ends (:class:`ResultsCallback`: one small file per
trial, see :mod:`sweeplab.results`) and compacts the tables when the sweep ends. Storage is a shared folder or an
``s3://`` prefix: the core builds the filesystem (:mod:`sweeplab.storage`) and hands it to Tune and Train.

Ray is imported inside the functions that use it (deferred: a heavy import that ``--local`` sweeps and the other
commands never need).
"""
from __future__ import annotations

import math
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from . import artifacts, store
from . import layout as L
from .plan import planned_trials
from .schema import TrialState
from .search import tune_grid, tune_search, tune_trial_params
from .service import SweepError
from .spec import Spec
from .storage import Location, location
from .trial import FINAL_KEY, final_report, finite_number, full_config, run_trial

_CKPT = "state.pt"
# The Tune trial itself only waits on its TorchTrainer; the Train workers hold the real resources. Tune refuses an
# empty request, so the driver asks for 1 MiB of memory and no CPU (a CPU here would starve the workers), plus a
# sliver of the head node's own resource: drivers stay on the head, so losing a worker node (a preempted GPU machine)
# costs only the Train workers on it, which the retried trial restarts from their checkpoint elsewhere.
_DRIVER_BUNDLE = {"CPU": 0, "memory": 2**20, "node:__internal_head__": 0.001}


class RayTrainContext:
    """:class:`~sweeplab.task.TrialContext` on a Ray Train worker."""

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
              code_version=payload["code_version"], started_from=payload["from_trials"])


def storage_args(loc: Location) -> dict[str, Any]:
    """``storage_path`` (and ``storage_filesystem`` for object storage) of a Tune or Train run config."""
    return {"storage_path": loc.path, "storage_filesystem": loc.fs} if loc.is_s3 else {"storage_path": loc.path}


def _make_driver(spec: Spec, code_version: str):
    task, sweep, sweep_dir = spec.task, spec.name, str(spec.sweep_dir)
    from_trials = dict(spec.from_trials)
    workers, cpus, gpus = spec.workers, spec.cpus, spec.gpus
    grid = tune_grid(spec)

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
        resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        # NCCL for GPU trials when this torch build has it (the nodes share one image); a CPU-only build, as on a
        # local cluster with logical GPUs, falls back to gloo.
        backend = "nccl" if gpus and dist.is_available() and dist.is_nccl_available() else "gloo"
        trainer = TorchTrainer(
            _worker,
            torch_config=TorchConfig(backend=backend),
            train_loop_config={"task": task, "values": values, "seed": seed, "trial_id": trial_id, "sweep": sweep,
                               "sweep_dir": sweep_dir, "code_version": code_version, "from_trials": from_trials},
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(name=trial_id, **storage_args(L.train_runs(loc)),
                                           callbacks=[TuneReportCallback()],
                                           checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        )
        trainer.fit()

    return _driver


def _results_callback(spec: Spec):
    from ray.tune import Callback

    class ResultsCallback(Callback):
        """Runs in the sweep's driver process only. Keeps each trial's ``status.json`` current (running with its last
        metrics), records each trial's row when it ends (completed, failed or stopped: one small file, the same cost
        at any sweep size), and exports per-trial Ray metrics (``ray_sweeplab_trial_*`` on the dashboard's Metrics
        page)."""

        def __init__(self, sweep_dir: str, sweep: str, task, objective: str, from_trials: dict[str, str],
                     grid: list[dict[str, Any]] | None):
            self.sweep_uri, self.sweep, self.task, self.objective = sweep_dir, sweep, task, objective
            self.from_trials, self.grid = from_trials, grid
            self._progress: dict[str, store.Progress] = {}
            self._gauges = None
            self._loc = None

        def __getstate__(self):  # pickled with the experiment for `sweeplab resume`; gauges are rebuilt
            return {**self.__dict__, "_gauges": None, "_progress": {}, "_loc": None}

        @property
        def sweep_dir(self) -> Location:
            if self._loc is None:
                self._loc = location(self.sweep_uri)
            return self._loc

        def _values(self, trial) -> dict[str, Any]:
            return tune_trial_params(trial.config, self.grid)[0]

        def _seed(self, trial) -> int:
            return tune_trial_params(trial.config, self.grid)[1]

        def _export(self, trial, result: dict[str, Any]) -> None:
            if self._gauges is None:
                from ray.util.metrics import Gauge
                keys = ("sweep", "trial_id")
                self._gauges = {
                    "progress": Gauge("sweeplab_trial_progress", "fraction of the trial's training done", keys),
                    "loss": Gauge("sweeplab_trial_loss", "the trial's last reported training loss", keys),
                    "objective": Gauge("sweeplab_trial_objective", "the trial's last value of the sweep's "
                                       "first metric", keys),
                    "iteration": Gauge("sweeplab_trial_reports", "reports received from the trial", keys)}
            tags = {"sweep": self.sweep, "trial_id": trial.trial_id}
            for name, key in (("progress", "progress"), ("loss", "loss"), ("objective", self.objective),
                              ("iteration", "training_iteration")):
                value = result.get(key)
                if finite_number(value):
                    self._gauges[name].set(float(value), tags=tags)

        def _of(self, trial) -> store.Progress:
            if trial.trial_id not in self._progress:  # a trial restored by a resume starts again here
                self._progress[trial.trial_id] = store.Progress(self.sweep_dir, trial.trial_id, self._values(trial),
                                                                self._seed(trial)).started()
            return self._progress[trial.trial_id]

        def on_trial_start(self, iteration, trials, trial, **info):
            self._progress.pop(trial.trial_id, None)
            self._of(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._export(trial, result)
            self._of(trial).report(result)

        def _ended(self, trial, status: str, error: str | None = None) -> None:
            last = dict(trial.last_result or {})
            if status == TrialState.COMPLETED and not last.get(FINAL_KEY):
                status = TrialState.STOPPED  # ended without its final report: stopped early by the scheduler
            if (progress := self._progress.pop(trial.trial_id, None)) is not None:
                progress.flush(status)
            store.record_trial(self.sweep_dir, self.task, sweep_name=self.sweep, trial_id=trial.trial_id,
                               status=status, values=self._values(trial), seed=self._seed(trial), error=error,
                               last_metrics=last, started_from=self.from_trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._ended(trial, TrialState.COMPLETED)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._ended(trial, TrialState.FAILED, _read(trial.error_file) if trial.error_file else "trial failed")

    return ResultsCallback(str(spec.sweep_dir), spec.name, spec.task, spec.metrics[0], dict(spec.from_trials),
                           tune_grid(spec))


def _read(path: str) -> str:
    try:
        return Path(path).read_text()[-4000:]
    except OSError:
        return str(path)


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


def build_tuner(spec: Spec, code_version: str, resume: bool = False):
    from ray import tune
    trainable = tune.with_resources(_make_driver(spec, code_version), tune.PlacementGroupFactory([_DRIVER_BUNDLE]))
    param_space, search_alg = tune_search(spec, _max_concurrent(spec))
    sweep = spec.sweep_dir
    if resume and L.tune_state(sweep).exists():  # without it Tune never saved the experiment: start it afresh
        restore = {"path": sweep.path, "storage_filesystem": sweep.fs} if sweep.is_s3 else {"path": sweep.path}
        return tune.Tuner.restore(**restore, trainable=trainable, resume_errored=True, param_space=param_space)
    multi = spec.multi_objective
    tune_config = tune.TuneConfig(
        search_alg=search_alg, scheduler=_scheduler(spec),
        num_samples=planned_trials(spec),
        metric=None if multi else spec.metrics[0], mode=None if multi else spec.modes[0])
    run_config = tune.RunConfig(name=spec.name, **storage_args(sweep.parent),
                                failure_config=tune.FailureConfig(max_failures=spec.retries),
                                callbacks=[_results_callback(spec)], verbose=1)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def run_ray(spec: Spec, code_version: str, resume: bool = False) -> dict[str, int]:
    # The sweep's objective is reported once, after evaluation; intermediate reports carry training metrics only.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    tuner = build_tuner(spec, code_version, resume)
    grid = tuner.fit()
    counts = store.compact(spec.sweep_dir)
    counts["failed"] = sum(1 for r in grid if r.error is not None)
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

    def run(self, spec: Spec, code_version: str, resume: bool) -> dict[str, int]:
        return run_ray(spec, code_version, resume)


def _reachable(address: str, timeout: float = 5.0) -> str | None:
    """None when ``host:port`` (or ``ray://host:port``) accepts a TCP connection, else the reason. Ray itself would
    retry an unreachable address for minutes; ``auto`` is left to Ray (it fails at once without a cluster)."""
    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return None
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


TOKEN_HELP = ("put the cluster's token in ~/.ray/auth_token, or export RAY_AUTH_TOKEN=<token> "
              "(or RAY_AUTH_TOKEN_PATH=<file>); on the head node `ray get-auth-token` prints it")


def init_ray(address: str | None) -> str | None:
    """Connect to the cluster at ``address``, or start an embedded local Ray; None, or why it failed."""
    import ray  # deferred: Ray is heavy, and --local never needs it
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if address and (reason := _reachable(address)):
        return f"cannot reach the Ray cluster at {address!r}: {reason}"
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # With the dashboard: it is where a user watches the sweep, and Ray Train's placement-group cleaner
            # asks its state API whether a trial's Train controller still lives. Without it, a trial ASHA stops
            # keeps its resources and the sweep waits forever for them.
            ray.init(include_dashboard=True, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        return f"cannot connect to the Ray cluster at {address!r}: {exc}"
    except Exception as exc:  # noqa: BLE001 - ray.exceptions.AuthenticationError: a missing or wrong token
        if "Authentication" not in type(exc).__name__:
            raise
        return f"the Ray cluster at {address!r} refused the connection: {exc}\n{TOKEN_HELP}"
    return None
