"""Multi-worker trials on Ray: a trial with ``workers > 1`` runs the task under Ray Train.

Per trial, Tune runs :func:`make_train_trainable`'s ``_driver``, which starts a ``TorchTrainer`` (Ray Train V2:
``num_workers`` data-parallel workers, each with the spec's CPUs/GPUs) whose workers run
:func:`sweeplab.trial.run_trial`; metrics reach Tune through ``TuneReportCallback``. The Train run is named after
the Tune trial id, under ``<sweep>/train/``, so a retried or resumed trial finds its checkpoints again. The process
group is NCCL when every rank holds at least one whole GPU, else gloo: whether fractional ranks share a device is
only known once Ray places them, and NCCL refuses two ranks on one device.

Sweeps started before light trials (:mod:`sweeplab.ray_light`) ran every trial this way; their Tune experiments
are resumed this way too (:func:`sweeplab.ray_runner.build_tuner`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from . import artifacts
from . import layout as L
from .context import ContextBase
from .task import DTYPES
from .plan import Plan
from .search import tune_grid, tune_trial_params, tune_trial_point
from .spec import Spec
from .storage import location, ray_storage
from .trial import completed_report, full_config, run_trial

NAME = "_driver"  # the Tune trainable's name (Tuner.restore checks it): a sweep's Tune experiment says its kind
CKPT = "state.pt"  # the file a Ray checkpoint's folder holds
# The Tune trial itself only waits on its TorchTrainer; the Train workers hold the real resources. Tune refuses an
# empty request, so the driver asks for 1 MiB of memory and no CPU (a CPU here would starve the workers), plus a
# sliver of the head node's own resource: drivers stay on the head, so losing a worker node (a preempted GPU machine)
# costs only the Train workers on it, which the retried trial restarts from their checkpoint elsewhere.
_DRIVER_BUNDLE = {"CPU": 0, "memory": 2**20, "node:__internal_head__": 0.001}


def trial_device(trial_id: str, device: torch.device) -> torch.device:
    """``device``, or the CPU on a node that declares GPUs it does not have (``cluster/local-cluster.sh
    --worker-gpus``): Ray placed the trial by its GPU request, and it runs on the CPU (the trials table records
    device "cpu")."""
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"[{trial_id}] warning: this node has no CUDA device although Ray gave the trial a GPU; "
              "running on the CPU", flush=True)
        return torch.device("cpu")
    return device


def save_state(checkpoint: dict[str, Any], report: Any, metrics: dict[str, Any], checkpoint_cls: Any) -> None:
    """``report(metrics, checkpoint=...)`` with ``checkpoint`` saved as a Ray checkpoint folder holding
    :data:`CKPT`."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(checkpoint, Path(tmp) / CKPT)
        report(metrics, checkpoint=checkpoint_cls.from_directory(tmp))


def load_state(ckpt: Any) -> dict[str, Any] | None:
    """The state a Ray checkpoint (or None) holds."""
    if ckpt is None:
        return None
    with ckpt.as_directory() as where:
        return torch.load(Path(where) / CKPT, map_location="cpu", weights_only=False)


class RayTrainContext(ContextBase):
    """:class:`~sweeplab.task.TrialContext` on a Ray Train worker; rank 0 accounts for the GPUs of all ranks."""

    def __init__(self, trial_id: str, seed: int, sources: dict[str, Any] | None = None, saver=None,
                 dtype: str = "float32", cpus: int = 1, gpus: float = 0.0):
        import ray.train
        import ray.train.torch
        tc = ray.train.get_context()
        self.trial_id, self.seed = trial_id, seed
        self.sources, self._saver = dict(sources or {}), saver
        self.rank, self.world_size = tc.get_world_rank(), tc.get_world_size()
        self.device = trial_device(trial_id, ray.train.torch.get_device())
        self.dtype, self.cpus, self.gpus_held = DTYPES[dtype], max(1, int(cpus)), gpus * self.world_size
        self.ray_version = ray.__version__

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        import ray.train
        metrics = self.with_compute(metrics)
        if checkpoint is None or self.rank != 0:
            ray.train.report(metrics)
        else:
            save_state(checkpoint, ray.train.report, metrics, ray.train.Checkpoint)

    def load_checkpoint(self) -> dict[str, Any] | None:
        import ray.train
        return load_state(ray.train.get_checkpoint())

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
        dist.all_gather_object(out, obj)  # Ray Train set up the process group
        return out

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(f"[{self.trial_id}] {message}", flush=True)

    def save_artifact(self, name: str, payload: dict[str, Any]) -> None:
        if self.rank == 0:
            self._saver(name, payload)


def payload(spec: Spec, code_version: str) -> dict[str, Any]:
    """What every trial of the sweep is run with (a trainable's closure)."""
    return {"task": spec.task, "sweep": spec.name, "sweep_dir": str(spec.sweep_dir), "code_version": code_version,
            "from_trials": dict(spec.from_trials), "dtype": spec.dtype, "cpus": spec.cpus, "gpus": spec.gpus}


def trial_payload(common: dict[str, Any], grid, params: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """:func:`payload` plus the Tune trial's own: its id, config values, seed and planned point."""
    values, seed = tune_trial_params(params, grid)
    return {**common, "trial_id": trial_id, "values": values, "seed": seed, "point": tune_trial_point(params, grid)}


def run_payload(context_cls: type, p: dict[str, Any]) -> None:
    """Run the trial of :func:`trial_payload` ``p`` in this process with a ``context_cls`` context."""
    task = p["task"]
    saver = artifacts.Saver(p["sweep_dir"], task.name, p["sweep"], p["trial_id"], full_config(task, p["values"]))
    ctx = context_cls(p["trial_id"], p["seed"], artifacts.open_sources(p["from_trials"]), saver, p["dtype"],
                      p["cpus"], p["gpus"])
    run_trial(task, p["values"], ctx, sweep=p["sweep"], sweep_dir=p["sweep_dir"], code_version=p["code_version"],
              started_from=p["from_trials"], point=p["point"])


def _worker(p: dict[str, Any]) -> None:
    run_payload(RayTrainContext, p)


def backend(gpus: float) -> str:
    """The process group of a trial whose ranks hold ``gpus`` each: NCCL with whole GPUs (when this torch build
    has it; a CPU-only build, as on a local cluster with logical GPUs, has not), else gloo."""
    return "nccl" if gpus >= 1 and dist.is_available() and dist.is_nccl_available() else "gloo"


def make_train_trainable(spec: Spec, plan: Plan, code_version: str):
    """The Tune trainable of a multi-worker trial (with its resource request)."""
    from ray import tune
    common, grid = payload(spec, code_version), tune_grid(spec, plan)
    workers, cpus, gpus, keep, retries = spec.workers, spec.cpus, spec.gpus, spec.checkpoints["keep"], spec.retries

    def _driver(params: dict[str, Any]) -> None:
        import ray.train
        import ray.tune
        from ray.train.torch import TorchConfig, TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback
        trial_id = ray.tune.get_context().get_trial_id()
        if (done := completed_report(common["task"], common["sweep_dir"], trial_id)) is not None:
            ray.tune.report(done)
            return
        resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        trainer = TorchTrainer(
            _worker,
            torch_config=TorchConfig(backend=backend(gpus)),
            train_loop_config=trial_payload(common, grid, params, trial_id),
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(name=trial_id, **ray_storage(L.train_runs(location(common["sweep_dir"]))),
                                           callbacks=[TuneReportCallback()],
                                           # a worker error ends the Train run (Tune retries the trial, `retries`
                                           # times, from its checkpoint); so does a worker group that cannot be
                                           # started more than `retries` times (Train's default: forever)
                                           failure_config=ray.train.FailureConfig(
                                               max_failures=0, controller_failure_limit=retries),
                                           checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep)),
        )
        trainer.fit()

    assert _driver.__name__ == NAME
    return tune.with_resources(_driver, tune.PlacementGroupFactory([_DRIVER_BUNDLE]))
