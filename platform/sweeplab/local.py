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
from typing import Any, Callable, Iterator

from . import artifacts, progress, store
from .budget import Budget
from . import layout as L
from .context import LocalContext, default_device
from .plan import Plan, split_params, trial_index
from .schema import TrialState, error_column
from .search import optuna_sampler, suggest
from .spec import Spec
from .trial import full_config, run_trial



def _trials(spec: Spec, plan: Plan) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(trial_id, params (config values and seed), tell) for each planned trial, trial ``i`` named ``local_<i>``;
    ``tell(metrics)`` feeds an Optuna study (None for a grid). A sampler's study is replayed from the first trial:
    the completed ones are told their stored results, so its suggestions are the same on every resume and the
    draws an extension adds continue from them."""
    if plan.points is not None:
        for i, params in enumerate(plan.seeded(spec.seed)):
            yield f"local_{i:05d}", params, None
        return
    import optuna  # deferred: only samplers need it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna_sampler(spec),
                                directions=["maximize" if m == "max" else "minimize" for m in spec.modes])
    for i in range(plan.samples):
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

    def start(self, spec: Spec, say: Callable[[str], None]) -> None:
        """Nothing to start; says what of the spec's ``resources`` one process does not use."""
        if spec.workers > 1 or spec.gpus:
            say(f"note: --local runs each trial in this process, as one worker on {default_device()} "
                f"(resources: workers {spec.workers}, gpus {spec.gpus:g} apply on Ray only)")

    def run(self, spec: Spec, plan: Plan, code_version: str, resume: bool, extensions: list[dict]) -> dict[str, int]:
        return run_local(spec, code_version, plan)

    def stop(self) -> None:
        pass


def run_local(spec: Spec, code_version: str, plan: Plan | None = None) -> dict[str, int]:
    """Run every trial of ``plan`` (default: the spec's) that has not completed, one after another."""
    plan = plan or Plan.of(spec)
    sweep = spec.sweep_dir
    counts = {"completed": 0, "failed": 0, "skipped": 0}
    total = plan.samples
    scratch = _checkpoints(sweep)
    sources = artifacts.open_sources(spec.from_trials)
    stop, gpu_budget = progress.StopRequest(sweep), Budget.of(spec)
    for n, (trial_id, params, tell) in enumerate(_trials(spec, plan), start=1):
        values, seed = split_params(params)
        point = trial_index(params)
        if stop.requested():
            break
        done = store.completed_trial(sweep, trial_id)
        if done is not None and done.get("status") == TrialState.COMPLETED:
            counts["skipped"] += 1
            print(f"[{n}/{total}] {trial_id}: already completed, skipped", flush=True)
            # the driver may have died before recording it (its row may be only in an earlier layout's fragment)
            store.record_trial(sweep, spec.task, sweep_name=spec.name, trial_id=trial_id,
                               status=TrialState.COMPLETED, values=values, seed=seed, point=point)
            if tell:
                tell(done)
            continue
        if gpu_budget is not None and gpu_budget.exhausted:
            print(gpu_budget.record_stop(), flush=True)
            break
        shown = ", ".join(f"{k}={values[k]}" for k in sorted(spec.space) if k in values) or "defaults"
        print(f"[{n}/{total}] {trial_id}: {shown}", flush=True)
        final, error, interrupted = None, None, False
        record = progress.Progress(sweep, trial_id, values, seed, point).started()  # reports reach status as on Ray

        def on_report(metrics: dict[str, Any]) -> None:
            record.report(metrics)
            if stop.requested():  # the report's checkpoint is saved: the resume continues from it
                raise progress.StopRequested
        for attempt in range(spec.retries + 1):
            ctx = LocalContext(trial_id=trial_id, seed=seed, trial_dir=scratch / trial_id, sources=sources,
                               saver=artifacts.Saver(str(sweep), spec.task.name, spec.name, trial_id,
                                                     full_config(spec.task, values)),
                               on_report=on_report, dtype=spec.dtype)
            try:
                final = run_trial(spec.task, values, ctx, sweep=spec.name, sweep_dir=sweep,
                                  code_version=code_version, started_from=spec.from_trials, point=point)
                break
            except progress.StopRequested:
                interrupted = True
                break
            except Exception:  # noqa: BLE001 - a failing trial must not stop the sweep
                error = error_column(traceback.format_exc())  # its cause first: the line printed, then the log
                print(f"[{trial_id}] attempt {attempt + 1}/{spec.retries + 1} failed: {error}", flush=True)
        if interrupted:
            record.flush()
            print(f"[{trial_id}] stopped on request at its last checkpoint", flush=True)
            break
        status = TrialState.COMPLETED if final is not None else TrialState.FAILED
        counts[str(status)] += 1
        record.flush(status)
        row = store.record_trial(sweep, spec.task, sweep_name=spec.name, trial_id=trial_id, status=status,
                                 values=values, seed=seed, error=None if final is not None else error,
                                 last_metrics={**ctx.compute(), **(ctx.reports[-1] if ctx.reports else {})},
                                 started_from=spec.from_trials, point=point)
        if gpu_budget is not None:
            gpu_budget.end(trial_id, row)
        if status == TrialState.COMPLETED and not spec.checkpoints["keep_after_completion"]:
            shutil.rmtree(scratch / trial_id, ignore_errors=True)
        if tell:
            tell(final or {})
    counts.update(store.compact(sweep))
    return counts
