"""Light trials: a trial with one worker runs in its Tune trial's own actor, as Ray Tune's examples do.

The Tune trainable (``sweeplab_trial``) asks for the trial's CPUs and GPUs and runs
:func:`sweeplab.trial.run_trial` in that actor, with no Ray Train worker group: no controller, no worker actor, no
process group to build per trial. Tune reuses the actors (``reuse_actors=True``): a slot pays for its imports and
CUDA start-up once. What a reused actor could carry from one trial to the next is reset per trial: the seeds
(:func:`sweeplab.trial.seed_everything`), torch's thread count, the CUDA cache and the peaks of GPU and host memory
(:class:`sweeplab.compute.Meter`). Checkpoints are Tune's (the trial's folder in the Tune experiment, at most
``checkpoints.keep`` of them), so a retried trial restarts from its latest, as a multi-worker trial
(:mod:`sweeplab.ray_train`) does from its Train run's.
"""
from __future__ import annotations

from typing import Any

import torch

from .context import ContextBase
from .task import DTYPES
from .plan import Plan
from .ray_train import load_state, payload, run_payload, save_state, trial_device, trial_payload
from .search import tune_grid
from .spec import Spec
from .trial import completed_report

NAME = "sweeplab_trial"  # the Tune trainable's name (Tuner.restore checks it): a sweep's Tune experiment says its kind


class LightContext(ContextBase):
    """:class:`~sweeplab.task.TrialContext` in a Tune trial's own actor: one rank, the trial's GPUs its own."""
    rank, world_size = 0, 1

    def __init__(self, trial_id: str, seed: int, sources: dict[str, Any], saver, dtype: str, cpus: int,
                 gpus: float):
        self.trial_id, self.seed, self.sources, self._saver = trial_id, seed, dict(sources), saver
        self.device = trial_device(trial_id, torch.device("cuda", 0) if gpus else torch.device("cpu"))
        self.dtype, self.cpus, self.gpus_held = DTYPES[dtype], max(1, int(cpus)), float(gpus)
        import ray
        self.ray_version = ray.__version__

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        import ray.tune
        metrics = self.with_compute(metrics)
        if checkpoint is None:
            ray.tune.report(metrics)
        else:
            save_state(checkpoint, ray.tune.report, metrics, ray.tune.Checkpoint)

    def load_checkpoint(self) -> dict[str, Any] | None:
        import ray.tune
        return load_state(ray.tune.get_checkpoint())

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]

    def log(self, message: str) -> None:
        print(f"[{self.trial_id}] {message}", flush=True)

    def save_artifact(self, name: str, payload: dict[str, Any]) -> None:
        self._saver(name, payload)


def make_light_trainable(spec: Spec, plan: Plan, code_version: str):
    """The Tune trainable of a one-worker trial, asking for the trial's CPUs and GPUs."""
    from ray import tune
    common, grid = payload(spec, code_version), tune_grid(spec, plan)
    threads = max(1, int(spec.cpus))

    def sweeplab_trial(params: dict[str, Any]) -> None:
        import ray.tune
        trial_id = ray.tune.get_context().get_trial_id()
        if (done := completed_report(common["task"], common["sweep_dir"], trial_id)) is not None:
            ray.tune.report(done)
            return
        torch.set_num_threads(threads)
        run_payload(LightContext, trial_payload(common, grid, params, trial_id))

    assert sweeplab_trial.__name__ == NAME
    return tune.with_resources(sweeplab_trial, {"CPU": spec.cpus, **({"GPU": spec.gpus} if spec.gpus else {})})
