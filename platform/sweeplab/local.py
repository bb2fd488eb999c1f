"""``sweeplab run SPEC --local``: the whole sweep in this process, no Ray, so ``pdb`` and prints just work.

Same trials, same task code, same files and tables as a Ray sweep. Trials run one after another; a trial that
raises is retried up to ``retries`` times from its last checkpoint, then recorded as failed. Running it again
(``sweeplab resume SPEC --local``) skips the trials that already completed.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any, Iterator

from . import artifacts, store
from . import layout as L
from .context import LocalContext
from .plan import planned_trials, seeded_grid, split_params
from .schema import TrialState
from .search import optuna_sampler, suggest
from .spec import Spec
from .trial import full_config, run_trial



def _trials(spec: Spec) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(trial_id, params (config values and seed), tell) for each trial; ``tell(metrics)`` feeds an Optuna study (None for grid)."""
    if spec.algorithm == "grid":
        for i, params in enumerate(seeded_grid(spec)):
            yield f"local_{i:05d}", params, None
        return
    import optuna  # deferred: only samplers need it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna_sampler(spec),
                                directions=["maximize" if m == "max" else "minimize" for m in spec.modes])
    for i in range(spec.num_samples):
        trial = study.ask()
        params = suggest(spec, trial)  # define-by-run: only the fields that apply to this trial, and its seed

        def tell(metrics, trial=trial):
            values = [metrics.get(m) for m in spec.metrics]
            if any(v is None for v in values):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, values if spec.multi_objective else values[0])
        yield f"local_{i:05d}", {**spec.config, **params}, tell


def _checkpoints(sweep) -> Path:
    """Where --local trials keep their checkpoints: in the sweep folder, or a local scratch folder for a sweep on
    object storage (a --local retry happens in the same process, so they need not outlive it there)."""
    local = L.local_checkpoints(sweep).local_path
    if local is not None:
        return local
    scratch = tempfile.mkdtemp(prefix="sweeplab-local-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return Path(scratch)


class LocalBackend:
    """:class:`sweeplab.service.Backend` running every trial in this process."""
    name = "local"

    def start(self) -> None:
        pass

    def run(self, spec: Spec, code_version: str, resume: bool) -> dict[str, int]:
        return run_local(spec, code_version)


def run_local(spec: Spec, code_version: str) -> dict[str, int]:
    sweep = spec.sweep_dir
    counts = {"completed": 0, "failed": 0, "skipped": 0}
    total = planned_trials(spec)
    scratch = _checkpoints(sweep)
    sources = artifacts.open_sources(spec.from_trials)
    for n, (trial_id, params, tell) in enumerate(_trials(spec), start=1):
        values, seed = split_params(params)
        done = store.completed_trial(sweep, trial_id)
        if done is not None and done.get("status") == TrialState.COMPLETED:
            counts["skipped"] += 1
            print(f"[{n}/{total}] {trial_id}: already completed, skipped", flush=True)
            # the driver may have died before recording it (its row may be only in an earlier layout's fragment)
            store.record_trial(sweep, spec.task, sweep_name=spec.name, trial_id=trial_id,
                               status=TrialState.COMPLETED, values=values, seed=seed)
            if tell:
                tell(done)
            continue
        shown = ", ".join(f"{k}={values[k]}" for k in sorted(spec.space) if k in values) or "defaults"
        print(f"[{n}/{total}] {trial_id}: {shown}", flush=True)
        final, error = None, None
        progress = store.Progress(sweep, trial_id, values, seed).started()  # reports reach status as on Ray
        for attempt in range(spec.retries + 1):
            ctx = LocalContext(trial_id=trial_id, seed=seed, trial_dir=scratch / trial_id, sources=sources,
                               saver=artifacts.Saver(str(sweep), spec.task.name, spec.name, trial_id,
                                                     full_config(spec.task, values)),
                               on_report=progress.report)
            try:
                final = run_trial(spec.task, values, ctx, sweep=spec.name, sweep_dir=sweep,
                                  code_version=code_version, started_from=spec.from_trials)
                break
            except Exception:  # noqa: BLE001 - a failing trial must not stop the sweep
                error = traceback.format_exc()
                print(f"[{trial_id}] attempt {attempt + 1}/{spec.retries + 1} failed:\n{error}", flush=True)
        status = TrialState.COMPLETED if final is not None else TrialState.FAILED
        counts[str(status)] += 1
        progress.flush(status)
        store.record_trial(sweep, spec.task, sweep_name=spec.name, trial_id=trial_id, status=status,
                           values=values, seed=seed, error=None if final is not None else error,
                           last_metrics=ctx.reports[-1] if ctx.reports else None,
                           started_from=spec.from_trials)
        if tell:
            tell(final or {})
    counts.update(store.compact(sweep))
    return counts
