"""The sweep's records: what is written about the sweep and each trial, by whom and in which order.

Read as Optuna documents its storages, every fact has one writer (paths in :mod:`sweeplab.layout`):

* ``sweep.json`` (:func:`write_sweep_info`): the driver, when the sweep starts, resumes or is extended: the
  resolved spec and its fingerprint, the planned trials, and the runner (``local`` or ``ray``) whose trial ids the
  sweep holds.
* ``fragments/<id>/status.json`` (:func:`write_status`): the driver only. ``running`` when the trial starts, then
  rewritten with its last metrics as it reports (every few seconds at most), then once with the state it ended in
  (:func:`record_trial`).
* ``fragments/<id>/trial.parquet`` and ``results/evaluations/part-<id>.parquet`` (:func:`write_trial_result`):
  the trial's rank 0, once its evaluation is done: the evaluation rows first, then the completed row, which
  marks the trial as done for a retry or a resume.
* ``results/trials/part-<id>.parquet`` (:func:`record_trial`): the driver, when the trial ends (any state), then
  ``status.json`` with that state: a ``status.json`` in a finished state means the part is there
  (:func:`recorded`).

A driver that dies between two of these steps leaves a state the next driver completes (a completed row with no
part is recorded on resume) and ``sweeplab status`` explains (a trial last seen running in a sweep whose driver
holds no live lock is ``interrupted``). Trial states are :class:`sweeplab.schema.TrialState`.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import sweeplab

from . import config as C
from . import layout as L
from . import results
from . import schema as S
from .lock import driver_alive
from .plan import Plan
from .storage import Location, StorageError, location
from .task import get_task

State = S.TrialState


def trial_row(task, *, sweep: str, trial_id: str, status: str, values: dict[str, Any], seed: int | None,
              error: str | None = None, metrics: dict[str, Any] | None = None, run: dict[str, Any] | None = None,
              started_from: dict[str, str] | None = None) -> dict[str, Any]:
    """The row of one trial in ``trials``, for every finished state.

    ``values``: the trial's config values (defaults fill the rest; fields that do not apply are null);
    ``metrics``: what the task reported (final metrics of a completed trial, the last report of a failed or
    stopped one): only the metrics the task declares are kept, so Tune's bookkeeping (``hostname``, ``pid``, ...)
    never becomes a column; ``run``: the core columns a finished trial knows (params, gmacs, device, times...).
    """
    if status not in State.finished():
        raise ValueError(f"status {status!r} is not one of {[str(s) for s in State.finished()]}")
    cfg = C.build(task.config, values)
    row: dict[str, Any] = {"sweep": sweep, "task": task.name, "trial_id": trial_id, "status": str(status),
                           "error": error, "seed": seed,
                           "started_from": json.dumps(started_from, sort_keys=True) if started_from else None}
    row.update({k: v for k, v in (run or {}).items() if k in S.CORE_NAMES})
    row.update(C.scalar_columns(cfg))
    for name in task.metrics:
        if metrics and name in metrics:
            row[S.metric_column(task, name)] = metrics[name]
    return row


def write_trial_result(sweep: Location, task, trial_id: str, row: dict[str, Any],
                       evaluation_rows: list[dict[str, Any]]) -> None:
    """Called by a trial's rank 0 when it finished evaluating: its evaluation part first, then its completed row
    as its part of ``trials`` (which marks the trial as done for a retry, a resume and every reader)."""
    sweep = location(sweep)
    results.write_table(L.part(sweep, "evaluations", trial_id), S.table(evaluation_rows, S.evaluation_types(task)))
    results.write_table(L.part(sweep, "trials", trial_id), S.table([row], S.trial_types(task)))


def write_status(sweep: Location, trial_id: str, status: str, config: dict[str, Any], error: str | None = None,
                 last_metrics: dict[str, Any] | None = None, seed: int | None = None, point: int | None = None) -> None:
    """``status.json``: the trial's state as the driver sees it (running with its last metrics, then how it
    ended), and its planned identity (``point``: its index in the plan, with its config and seed); what
    ``sweeplab status`` reads while the sweep runs."""
    doc = {"trial_id": trial_id, "status": str(status), "error": error, "config": config, "seed": seed, "point": point,
           "last_metrics": {k: v for k, v in (last_metrics or {}).items()
                            if isinstance(v, (int, float, str)) and not isinstance(v, bool)}}
    L.status_file(location(sweep), trial_id).write_text(json.dumps(doc, default=str, indent=1))


def read_status(sweep: Location, trial_id: str) -> dict | None:
    """The trial's ``status.json`` (None without one). A read torn by a store that is not atomic under a
    concurrent write (moto's server) is retried; a file that stays unreadable is named."""
    file = L.status_file(location(sweep), trial_id)
    for attempt in range(3):
        try:
            return json.loads(file.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            if attempt == 2:
                raise StorageError(f"{file} is not valid JSON ({exc}); delete it to let status go on without it, "
                                   "or resume the sweep to rewrite it") from None
            time.sleep(0.2)


def trial_rows(sweep: Location, trial_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The rows of the ``trials`` table (of ``trial_ids`` only, when given) by trial id: every finished trial's
    state, as every reader sees it."""
    sweep = location(sweep)
    if not results.has_results(sweep):
        return {}
    return {r["trial_id"]: r for r in results.read_arrow(sweep, "trials", trial_ids).to_pylist()}


def completed_trial(sweep: Location, trial_id: str) -> dict | None:
    """The trial's row when it completed (its rank 0 wrote it), else None. A sweep written by the earlier layout
    may hold it only in ``fragments/<id>/trial.parquet``, where rank 0 wrote it then."""
    sweep = location(sweep)
    row = results.read_trial(sweep, trial_id)
    if row is None:
        try:
            row = results.read_table(L.legacy_completed_row(sweep, trial_id)).to_pylist()[0]
        except FileNotFoundError:
            return None
    return row if row["status"] == State.COMPLETED else None


def record_trial(sweep: Location, task, *, sweep_name: str, trial_id: str, status: str, values: dict[str, Any],
                 seed: int | None, error: str | None = None, last_metrics: dict[str, Any] | None = None,
                 started_from: dict[str, str] | None = None, point: int | None = None) -> dict[str, Any]:
    """Called by the driver when a trial ends: the trial's row in ``trials`` when its rank 0 did not write it
    (failed, stopped, or a completion found only in the earlier layout's fragment), then its ``status.json``.
    Costs the same at any sweep size. Returns the row."""
    sweep = location(sweep)
    error = S.error_column(error)  # its cause first, plain text
    done = completed_trial(sweep, trial_id)
    written = done is not None and L.part(sweep, "trials", trial_id).exists()
    if done is not None and status in (State.COMPLETED, State.FAILED):
        # rank 0 wrote the completed row; a trial that then failed (while reporting) keeps its results
        row = {**done, "status": str(status), "error": error if status == State.FAILED else None}
        written = written and status == State.COMPLETED
    else:
        if status == State.COMPLETED:  # Tune says completed but rank 0 never wrote its row: it cannot be trusted
            status, error = State.FAILED, error or "the trial ended without writing its results"
        compute = {k: v for k, v in (last_metrics or {}).items() if k in S.COMPUTE_COLUMNS}  # its last report's
        row = trial_row(task, sweep=sweep_name, trial_id=trial_id, status=status, values=values, seed=seed,
                        error=error, metrics=last_metrics, started_from=started_from, run={"point": point, **compute})
        written = False
    if not written:
        results.write_table(L.part(sweep, "trials", trial_id), S.table([row], S.trial_types(task)))
    write_status(sweep, trial_id, row["status"], values, row["error"], last_metrics, seed, point)  # after the row
    return row


def compact(sweep: Location) -> dict[str, int]:
    """:func:`sweeplab.results.compact` with the schemas of the sweep's task (named in ``sweep.json``; the parts'
    own schemas when the task cannot be imported here)."""
    sweep = location(sweep)
    info = read_sweep_info(sweep)
    try:
        task = get_task(info["task"]) if info else None
    except KeyError:
        task = None
    return results.compact(sweep, task)


# ---------------------------------------------------------------- the sweep as a whole


def write_sweep_info(spec, plan: Plan, fingerprint: dict | None = None, runner: str | None = None,
                     extensions: list[dict] = ()) -> None:
    """``sweep.json``: what ``sweeplab status`` and ``compact`` need beside the fragments (the objective, the
    number of trials planned), the resolved spec a resume is checked against, the plan (every trial's point, so
    an extension keeps each trial's index and seed), each extension so far, and the runner whose trials the
    sweep holds. Written by the driver when the sweep starts, resumes or is extended."""
    doc = {"name": spec.name, "task": spec.task.name, "metrics": spec.metrics, "modes": spec.modes,
           "planned_trials": plan.samples, "space": sorted(spec.space), "source": spec.source,
           "resolved": fingerprint, "runner": runner, "extensions": list(extensions), "plan": plan.to_json(),
           "budget": dict(spec.budget)}
    L.sweep_info(location(spec.sweep_dir)).write_text(json.dumps(doc, indent=1, default=str))


def budget_stop(sweep: Location) -> str | None:
    """Why the sweep's last driver stopped starting trials for its GPU budget (:mod:`sweeplab.budget`), or None."""
    try:
        return L.budget_spent(location(sweep)).read_text()
    except FileNotFoundError:
        return None


def read_sweep_info(sweep: Location) -> dict | None:
    try:
        return json.loads(L.sweep_info(location(sweep)).read_text())
    except FileNotFoundError:
        return None


def sweep_runner(sweep: Location) -> str | None:
    """``local`` or ``ray``: the runner whose trial ids the sweep holds (None for a sweep that has not started).
    Sweeps written before ``sweep.json`` recorded it are told apart by Ray Tune's experiment file."""
    sweep = location(sweep)
    info = read_sweep_info(sweep)
    if info and info.get("runner"):
        return info["runner"]
    if L.tune_state(sweep).exists():
        return "ray"
    return "local" if L.fragments(sweep).exists() else None


def sweep_status(target, rows: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The sweep as its storage shows it now: counts per state, every trial's last metrics, the best so far per
    metric (over completed trials); ``rows``: :func:`trial_rows`, when the caller has read them. Reads only
    files, so it works while the sweep runs, from any machine that sees the storage. A finished trial's state comes
    from the ``trials`` table, what ``results`` reads, so the two agree; a trial running (a first attempt, or the
    retry of a failed one) is ``interrupted`` when no live driver holds the sweep's lock."""
    sweep = location(target)
    info = read_sweep_info(sweep)
    if info is None:
        raise FileNotFoundError(f"no sweep under {sweep} (expected {L.sweep_info(sweep)}; has the sweep started?)")
    alive = driver_alive(sweep)
    rows = trial_rows(sweep) if rows is None else rows
    trials = []
    for trial_id in sorted(set(rows) | {f.name for f in L.fragments(sweep).folders()}):
        status, row = read_status(sweep, trial_id), rows.get(trial_id)
        if row is not None and (row["status"] == State.COMPLETED or not status or status["status"] != State.RUNNING):
            state = State(row["status"])  # the table holds every finished trial's state
        elif status is not None and status["status"] == State.RUNNING:  # a first attempt, or a retry of a row
            state = State.RUNNING if alive else State.INTERRUPTED
        elif status is not None:
            state = State(status["status"])
        else:
            continue
        metrics = dict(status["last_metrics"]) if status else {}
        if row is not None:
            metrics.update({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                            and (k not in metrics or k in S.COMPUTE_COLUMNS and state == row["status"])
                            and v is not None})  # a finished trial's compute is its row's
        if state == State.COMPLETED:
            metrics["progress"] = 1.0
        config = status["config"] if status else {k: row.get(k) for k in info["space"]}
        error = row["error"] if row is not None and state == row["status"] else (status or {}).get("error")
        point = (status or {}).get("point", (row or {}).get("point"))  # its index in the plan
        trials.append({"trial_id": trial_id, "status": str(state), "config": config, "metrics": metrics,
                       "error": error, "point": point})
    counts = {str(s): sum(t["status"] == s for t in trials) for s in State}
    best = {}
    for metric, mode in zip(info["metrics"], info["modes"]):
        scored = [t for t in trials if t["status"] == State.COMPLETED and isinstance(t["metrics"].get(metric),
                                                                                     (int, float))]
        if scored:
            pick = (min if mode == "min" else max)(scored, key=lambda t: t["metrics"][metric])
            best[metric] = {"value": pick["metrics"][metric], "mode": mode, "trial_id": pick["trial_id"],
                            "config": {k: pick["config"].get(k) for k in info["space"]}}
    pending = max(info["planned_trials"] - len(trials), 0)
    return {**info, "driver_alive": alive, "counts": {**counts, "pending": pending}, "best": best,
            "trials": trials, "gpu_hours": _gpu_hours(trials, info), "budget_stop": budget_stop(sweep)}


def gpu_seconds(values: dict[str, Any]) -> float | None:
    """The ``gpu_seconds`` of a row or report (None when it has none: a trial without GPUs)."""
    v = values.get("gpu_seconds")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _gpu_hours(trials: list[dict[str, Any]], info: dict) -> dict[str, float | None]:
    """GPU-hours spent (finished trials and the running ones so far), the projection for every planned trial
    (the mean of the finished trials with GPUs, times the plan; None before one), and the budget."""
    spent = sum(gpu_seconds(t["metrics"]) or 0.0 for t in trials) / 3600
    finished = [s for t in trials if t["status"] in State.finished() and (s := gpu_seconds(t["metrics"])) is not None]
    projected = sum(finished) / len(finished) * info["planned_trials"] / 3600 if finished else None
    return {"spent": spent, "projected": projected, "budget": (info.get("budget") or {}).get("gpu_hours")}


def code_version() -> str:
    """Package version plus the git commit of the checkout (``+dirty`` with uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"{sweeplab.__version__}+{sha}{'.dirty' if dirty else ''}" if sha else sweeplab.__version__


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
