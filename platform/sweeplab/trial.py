"""One trial, the same code path in-process (``--local``), in a Tune trial, and on each Ray Train worker."""
from __future__ import annotations

import json
import math
import random
import time
from typing import Any

import numpy as np
import torch

from . import config as C
from . import store
from . import schema as S
from .compute import combine
from .cost import model_cost
from .storage import location
from .task import Task, TrialContext

FINAL_KEY = "final_report"  # set to 1 in the last report of a trial that completed its evaluation


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def full_config(task: Task, values: dict[str, Any]) -> dict[str, Any]:
    """Every config value of a trial (defaults filled in), JSON-able: what its artifacts are described by."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in C.to_dict(C.build(task.config, values)).items()}


def finite_number(v: Any) -> bool:
    """A metric value Tune and the Ray metrics can take: an int or float that is not NaN or infinite."""
    return isinstance(v, (int, float)) and math.isfinite(v)


def _reported(task: Task, row: dict[str, Any]) -> dict[str, Any]:
    """What a completed trial reports to Tune: its finite metrics (by column name), params, GMACs, time."""
    report = {S.metric_column(task, m): row.get(S.metric_column(task, m)) for m in task.metrics}
    report.update({k: row.get(k) for k in S.CORE_METRICS})
    return {k: v for k, v in report.items() if finite_number(v)}


def final_report(task: Task, row: dict[str, Any]) -> dict[str, Any]:
    """The last report of a trial that already completed, rebuilt from its trial row, so a resumed sweep can
    report the trial again instead of running it again."""
    return {**_reported(task, row), FINAL_KEY: 1}


def completed_report(task: Task, sweep, trial_id: str) -> dict[str, Any] | None:
    """The final report of a trial that already completed (its results are in storage), else None: a resumed
    sweep whose experiment state was saved before the trial ended (Tune saves it every few seconds, not at each
    trial's end) reports it again instead of running it again."""
    done = store.completed_trial(location(sweep), trial_id)
    if done is None:
        return None
    print(f"[{trial_id}] already completed (its results are in storage): not run again", flush=True)
    return final_report(task, done)


def check_declared(task: Task, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """A task must report only what it declares (the declarations are the tables' schema)."""
    problems = []
    if extra := sorted(set(metrics) - set(task.metrics)):
        problems.append(f"metrics {extra} (declared: {sorted(task.metrics)})")
    if extra := sorted({k for r in rows for k in r} - set(task.eval_columns)):
        problems.append(f"evaluation columns {extra} (declared: {sorted(task.eval_columns)})")
    if problems:
        raise ValueError(f"task {task.name!r} returned undeclared " + " and ".join(problems))


def run_trial(task: Task, values: dict[str, Any], ctx: TrialContext, *, sweep: str, sweep_dir, code_version: str,
              started_from: dict[str, str] | None = None, point: int | None = None) -> dict[str, Any]:
    """Build the config, train, evaluate on rank 0, write the trial's results, report the final metrics.
    ``point``: the trial's index in the sweep's plan (its ``point`` column)."""
    cfg = C.build(task.config, values)
    seed_everything(ctx.seed + ctx.rank)
    started = store.now()
    meter = ctx.start_meter()
    t0 = time.perf_counter()
    with ctx.data_wait():  # data loaded before training is data the trial waited for
        data = task.load_data(cfg)
    state = task.train(cfg, data, ctx)
    train_seconds = time.perf_counter() - t0
    compute = ctx.all_gather(ctx.compute(train_seconds))  # every rank's peaks, for rank 0's row
    final: dict[str, Any] = {}
    if ctx.rank == 0:
        evaluation = task.evaluate(cfg, state, data, ctx)
        check_declared(task, evaluation.metrics, evaluation.rows)
        cost = model_cost(task, task.trained_config(cfg, data) if task.trained_config else cfg)
        run = {"params": cost.params, "gmacs": cost.gmacs, "gmacs_convention": cost.convention,
               "input_shape": cost.shape_text, "components": json.dumps(cost.components) if cost.components
               else None, "train_seconds": train_seconds, "device": str(ctx.device), "num_workers": ctx.world_size,
               "code_version": code_version, "started_at": started, "ended_at": store.now(), "point": point,
               **combine(compute), "gpu_seconds": meter.elapsed() * meter.gpus_held or None}
        row = store.trial_row(task, sweep=sweep, trial_id=ctx.trial_id, status="completed", values=values,
                                seed=ctx.seed, metrics=evaluation.metrics, run=run, started_from=started_from)
        rows = [{"sweep": sweep, "task": task.name, "trial_id": ctx.trial_id, **r} for r in evaluation.rows]
        store.write_trial_result(location(sweep_dir), task, ctx.trial_id, row, rows)
        final = _reported(task, row)
    ctx.report({**final, FINAL_KEY: 1})
    meter.close()
    return final
