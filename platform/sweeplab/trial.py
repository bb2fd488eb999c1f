"""One trial, the same code path in-process (``--local``), in a Tune trial, and on each Ray Train worker."""
from __future__ import annotations

import datetime as dt
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import config as C
from . import results
from .cost import model_cost
from .task import Task, TrialContext

SEED_KEY = "_seed"  # the trial's seed travels with its config under this key (not a task config name)
FINAL_KEY = "final_report"  # set to 1 in the last report of a trial that completed its evaluation


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    values = {k: v for k, v in params.items() if not k.startswith("_")}
    return values, int(params.get(SEED_KEY, 0))


def final_metrics(cfg_fields: set[str], metrics: dict[str, Any]) -> dict[str, Any]:
    """Metric names that collide with a config name or a core column get a ``metric_`` prefix."""
    taken = cfg_fields | set(results.TRIAL_COLUMNS)
    return {(f"metric_{k}" if k in taken else k): v for k, v in metrics.items()}


def finite_number(v: Any) -> bool:
    """A metric value Tune and the Ray metrics can take: an int or float that is not NaN or infinite."""
    return isinstance(v, (int, float)) and math.isfinite(v)


def final_report(task: Task, row: dict[str, Any]) -> dict[str, Any]:
    """The last report of a trial that already completed, rebuilt from its trial row: what :func:`run_trial`
    reported (its metrics, params, GMACs and training time), so a resumed sweep can report the trial again instead
    of running it again."""
    taken = set(C.fields(task.config)) | set(results.TRIAL_COLUMNS)
    report = {k: v for k, v in row.items() if k not in taken and finite_number(v)}
    report.update({k: row[k] for k in ("params", "gmacs", "train_seconds") if finite_number(row.get(k))})
    return {**report, FINAL_KEY: 1}


def run_trial(task: Task, values: dict[str, Any], ctx: TrialContext, *, sweep: str, sweep_dir: Path,
              code_version: str) -> dict[str, Any]:
    """Build the config, train, evaluate on rank 0, write the trial's fragment, report the final metrics."""
    cfg = C.build(task.config, values)
    seed_everything(ctx.seed + ctx.rank)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    data = task.load_data(cfg)
    state = task.train(cfg, data, ctx)
    train_seconds = time.perf_counter() - t0
    final: dict[str, Any] = {}
    if ctx.rank == 0:
        evaluation = task.evaluate(cfg, state, data, ctx)
        cost = model_cost(task, cfg)
        metrics = final_metrics(set(C.fields(task.config)), evaluation.metrics)
        row = {"sweep": sweep, "task": task.name, "trial_id": ctx.trial_id, "status": "completed", "error": None,
               "params": cost.params, "gmacs": cost.gmacs, "gmacs_convention": cost.convention,
               "input_shape": "x".join(map(str, cost.input_shape)), "train_seconds": train_seconds,
               "device": str(ctx.device), "num_workers": ctx.world_size, "seed": ctx.seed,
               "code_version": code_version, "started_at": started,
               "ended_at": dt.datetime.now(dt.timezone.utc), **C.scalar_columns(cfg), **metrics}
        rows = [{"sweep": sweep, "task": task.name, "trial_id": ctx.trial_id, **r} for r in evaluation.rows]
        results.write_fragment(sweep_dir, ctx.trial_id, row, rows)
        final = {k: v for k, v in metrics.items() if finite_number(v)}
        final.update(params=cost.params, gmacs=cost.gmacs, train_seconds=train_seconds)
    ctx.report({**final, FINAL_KEY: 1})
    return final
