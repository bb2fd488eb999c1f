"""``sweeplab run SPEC --local``: the whole sweep in this process, no Ray, so ``pdb`` and prints just work.

Same trials, same task code, same fragments and tables as a Ray sweep. Trials run one after another; a trial that
raises is retried up to ``retries`` times from its last checkpoint, then recorded as failed. Running it again
(``sweeplab resume SPEC --local``) skips the trials that already completed.
"""
from __future__ import annotations

import traceback
from typing import Any, Iterator

from . import results
from .context import LocalContext
from .search import grid_points, optuna_sampler, optuna_space, planned_trials
from .spec import Spec
from .trial import SEED_KEY, run_trial, split_params


def _trials(spec: Spec) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(trial_id, params, tell) for each trial; ``tell(metrics)`` feeds an Optuna study (None for grid)."""
    if spec.algorithm == "grid":
        for i, params in enumerate(grid_points(spec)):
            yield f"local_{i:05d}", params, None
        return
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna_sampler(spec),
                                directions=["maximize" if m == "max" else "minimize" for m in spec.modes])
    dists = optuna_space(spec)
    for i in range(spec.num_samples):
        trial = study.ask(dists)

        def tell(metrics, trial=trial):
            values = [metrics.get(m) for m in spec.metrics]
            if any(v is None for v in values):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, values if spec.multi_objective else values[0])
        yield f"local_{i:05d}", {**spec.config, **trial.params, SEED_KEY: spec.seed}, tell


def run_local(spec: Spec, code_version: str) -> dict[str, int]:
    sweep_dir = spec.sweep_dir
    counts = {"completed": 0, "failed": 0, "skipped": 0}
    total = planned_trials(spec)
    for n, (trial_id, params, tell) in enumerate(_trials(spec), start=1):
        values, seed = split_params(params)
        done = results.completed_trial(sweep_dir, trial_id)
        if done is not None and done.get("status") == "completed":
            counts["skipped"] += 1
            print(f"[{n}/{total}] {trial_id}: already completed, skipped", flush=True)
            if tell:
                tell(done)
            continue
        shown = ", ".join(f"{k}={values[k]}" for k in sorted(spec.space) if k in values) or "defaults"
        print(f"[{n}/{total}] {trial_id}: {shown}", flush=True)
        final, error = None, None
        results.write_status(sweep_dir, trial_id, "running", values)
        for attempt in range(spec.retries + 1):
            ctx = LocalContext(trial_id=trial_id, seed=seed, trial_dir=sweep_dir / "local" / trial_id)
            try:
                final = run_trial(spec.task, values, ctx, sweep=spec.name, sweep_dir=sweep_dir,
                                  code_version=code_version)
                break
            except Exception:  # noqa: BLE001 - a failing trial must not stop the sweep
                error = traceback.format_exc()
                print(f"[{trial_id}] attempt {attempt + 1}/{spec.retries + 1} failed:\n{error}", flush=True)
        status = "completed" if final is not None else "failed"
        counts[status] += 1
        results.write_status(sweep_dir, trial_id, status, values, None if final is not None else error,
                             ctx.reports[-1] if ctx.reports else None)
        if tell:
            tell(final or {})
        results.consolidate(sweep_dir, spec.name, spec.task.name)
    counts.update(results.consolidate(sweep_dir, spec.name, spec.task.name))
    return counts
