"""A task for the cluster tests: cheap, slow on demand, and able to fail on purpose.

It is found through ``SWEEPLAB_TASK_MODULES=sweeplab_chaos`` with ``tests/plugins`` on ``PYTHONPATH`` (the cluster
fixture starts every node with both). Each training step sleeps ``step_seconds``, reports ``loss``/``progress`` and
checkpoints; ``loss`` falls with the steps and is lowest near ``x = 0.3``, so ASHA has something to rank. With
``marker_dir`` set, every attempt of a trial appends a line to ``<marker_dir>/<trial_id>.jsonl`` (the step it
started from, the Ray node it ran on), which is how the tests see retries, resumes and node moves;
``fail_attempts`` makes the first attempts of a trial raise at step ``fail_at_step``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sweeplab.config import param
from sweeplab.task import Evaluation, Task, register_task


@dataclass(frozen=True)
class ChaosConfig:
    x: float = param(0.5, "the searched value; the loss is lowest at 0.3", low=0.0, high=1.0)
    steps: int = param(4, "training steps (one report and checkpoint each)", low=1)
    step_seconds: float = param(0.2, "sleep per step", low=0.0)
    fail_attempts: int = param(0, "the first this-many attempts of each trial raise", low=0)
    fail_at_step: int = param(1, "the step at which a failing attempt raises", low=0)
    marker_dir: str = param("", "folder for the per-attempt record (empty: none)")
    tags: tuple[str, ...] = param(("a", "b"), "labels, unused (a tuple value for the tables' tests)")
    verbose: bool = param(False, "log every step")


def _loss(cfg, step: int) -> float:
    return (cfg.x - 0.3) ** 2 + 1.0 / (step + 1)


def _node_id() -> str:
    try:
        import ray
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    except Exception:  # noqa: BLE001 - outside Ray
        return "local"


def _train(cfg, data, ctx):
    ckpt = ctx.load_checkpoint()
    start = ckpt["step"] if ckpt else 0
    attempt = 0
    if cfg.marker_dir and ctx.rank == 0:
        record = Path(cfg.marker_dir) / f"{ctx.trial_id}.jsonl"
        attempt = len(record.read_text().splitlines()) if record.exists() else 0
        with record.open("a") as fh:
            fh.write(json.dumps({"start_step": start, "node": _node_id(), "pid": os.getpid()}) + "\n")
    attempt = ctx.all_gather(attempt)[0]  # with several workers, every rank fails (or not) as rank 0 does
    for step in range(start, cfg.steps):
        if attempt < cfg.fail_attempts and step == cfg.fail_at_step:
            raise RuntimeError(f"chaos: attempt {attempt} of trial {ctx.trial_id} fails on purpose")
        time.sleep(cfg.step_seconds)
        if cfg.verbose:
            ctx.log(f"step {step}")
        ctx.report({"step": step, "loss": _loss(cfg, step), "progress": (step + 1) / cfg.steps},
                   checkpoint={"step": step + 1})
    return cfg.steps


def _evaluate(cfg, steps, data, ctx):
    return Evaluation({"loss": _loss(cfg, steps - 1)}, [{"step": s, "loss": _loss(cfg, s)} for s in range(steps)])


CHAOS = register_task(Task(
    name="chaos", config=ChaosConfig, build_model=lambda cfg: torch.nn.Linear(2, 1),
    input_shape=lambda cfg: (1, 2), load_data=lambda cfg: None, train=_train, evaluate=_evaluate,
    metrics={"loss": float}, eval_columns={"step": int, "loss": float}, reports=("step", "loss", "progress"),
    summary=("loss",), tiny={"step_seconds": 0.0}))
