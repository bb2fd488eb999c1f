"""The driver's side of a Ray sweep: a Tune callback that keeps the store's records of every trial.

It runs in the sweep's driver process only: each trial's progress (``status.json``, every report) as Tune
receives its results, its row when it ends (completed, failed or stopped by the scheduler: one small file, the same
cost at any sweep size, see :mod:`sweeplab.store`), per-trial Ray metrics (``ray_sweeplab_trial_*`` on the
dashboard's Metrics page), and ``sweeplab stop`` requests. Ray is imported inside the functions that use it
(deferred: a heavy import).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Callable

from . import layout as L
from . import progress, store
from .plan import Plan
from .schema import TrialState, error_cause
from .budget import Budget
from .search import close_gate, tune_grid, tune_trial_params, tune_trial_point
from .spec import Spec
from .storage import Location, location
from .trial import FINAL_KEY, finite_number


def results_callback(spec: Spec, plan: Plan, say: Callable[[str], None] = print):
    from ray.tune import Callback

    class ResultsCallback(Callback):
        """See the module docstring. Pickled with the experiment (for ``sweeplab resume``) without its live
        state."""

        def __init__(self, sweep_dir: str, sweep: str, task, objective: str, from_trials: dict[str, str],
                     grid: list[dict[str, Any]] | None, keep_after_completion: bool, gpu_hours: float | None,
                     metrics: list[str], planned: int, say: Callable[[str], None], shown: list[str]):
            self.sweep_uri, self.sweep, self.task, self.objective = sweep_dir, sweep, task, objective
            self.metrics, self.planned, self._say, self._ends = metrics, planned, say, 0
            self.shown = set(shown)  # the config names a start line shows: searched, or set by include rows
            self.from_trials, self.grid, self.keep_after_completion = from_trials, grid, keep_after_completion
            self.gpu_hours = gpu_hours
            self._progress: dict[str, progress.Progress] = {}
            self._stop = None
            self._gauges = None
            self._loc = None
            self._budget: Budget | None = None

        def __getstate__(self):  # pickled with the experiment for `sweeplab resume`; gauges are rebuilt
            return {**self.__dict__, "_gauges": None, "_progress": {}, "_loc": None, "_stop": None, "_budget": None,
                    "_say": print}

        @property
        def budget(self) -> Budget | None:
            if self._budget is None and self.gpu_hours is not None:
                self._budget = Budget(self.sweep_dir, self.gpu_hours)
            return self._budget

        @property
        def sweep_dir(self) -> Location:
            if self._loc is None:
                self._loc = location(self.sweep_uri)
            return self._loc

        def _values(self, trial) -> dict[str, Any]:
            return tune_trial_params(trial.config, self.grid)[0]

        def _seed(self, trial) -> int:
            return tune_trial_params(trial.config, self.grid)[1]

        def _point(self, trial) -> int | None:
            return tune_trial_point(trial.config, self.grid)

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

        def _of(self, trial) -> progress.Progress:
            if trial.trial_id not in self._progress:  # a trial restored by a resume starts again here
                record = progress.Progress(self.sweep_dir, trial.trial_id, self._values(trial), self._seed(trial),
                                           self._point(trial))
                self._progress[trial.trial_id] = record.started()
            return self._progress[trial.trial_id]

        def on_step_begin(self, iteration, trials, **info):
            if self.budget is not None and self.budget.exhausted:
                close_gate(self.sweep_uri)  # no new trial starts; the experiment ends after the running ones
                self._say(self.budget.record_stop())
                self.gpu_hours, self._budget = None, None  # once
            if self._stop is None:
                self._stop = progress.StopRequest(self.sweep_dir)
            elif self._stop.seen:
                return  # asked once already
            if self._stop.requested():
                # `sweeplab stop`: handled as Ctrl-C is, by Tune: it saves the experiment and ends, the running
                # trials keep their last checkpoint, and `sweeplab resume` continues them
                os.kill(os.getpid(), signal.SIGINT)

        def on_trial_start(self, iteration, trials, trial, **info):
            self._progress.pop(trial.trial_id, None)
            self._of(trial)
            shown = ", ".join(f"{k}={v}" for k, v in self._values(trial).items() if k in self.shown) or "defaults"
            self._say(f"[{trial.trial_id}] started: {shown}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._export(trial, result)
            self._of(trial).report(result)
            if self.budget is not None:
                self.budget.report(trial.trial_id, result)

        def _ended(self, trial, status: str, error: str | None = None) -> None:
            last = dict(trial.last_result or {})
            if status == TrialState.COMPLETED and not last.get(FINAL_KEY):
                status = TrialState.STOPPED  # ended without its final report: stopped early by the scheduler
            if (record := self._progress.pop(trial.trial_id, None)) is not None:
                record.flush(status)
            row = store.record_trial(self.sweep_dir, self.task, sweep_name=self.sweep, trial_id=trial.trial_id,
                                     status=status, values=self._values(trial), seed=self._seed(trial), error=error,
                                     last_metrics=last, started_from=self.from_trials, point=self._point(trial))
            self._ends += 1
            self._say(self._end_line(trial.trial_id, row))
            if self.budget is not None:
                self.budget.end(trial.trial_id, row)
            if row["status"] == TrialState.COMPLETED and not self.keep_after_completion:
                L.train_run(self.sweep_dir, trial.trial_id).delete_tree()  # a multi-worker trial's checkpoints
                for folder in Location(trial.storage.storage_filesystem, trial.storage.trial_fs_path).folders():
                    if folder.name.startswith("checkpoint_"):  # a light trial's (Tune's)
                        folder.delete_tree()

        def _end_line(self, trial_id: str, row: dict[str, Any]) -> str:
            """The trial's end on the console: its state, time, the sweep's metrics (a failed trial: its cause
            and where its traceback is) and how many trials have ended."""
            seconds = row.get("train_seconds")
            took = f" in {seconds:.1f} s" if finite_number(seconds) else ""
            ended = f"({self._ends} of {self.planned} ended)"
            if row["status"] == TrialState.FAILED:
                return (f"[{trial_id}] failed: {error_cause(row['error'])} {ended}; traceback: the trials table's "
                        "`error` column")
            shown = ", ".join(f"{m}={row[m]:.4g}" for m in self.metrics if finite_number(row.get(m)))
            return f"[{trial_id}] {row['status']}{took}: {shown or 'no metric'} {ended}"

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._ended(trial, TrialState.COMPLETED)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._ended(trial, TrialState.FAILED, _read(trial.error_file) if trial.error_file else "trial failed")

    return ResultsCallback(str(spec.sweep_dir), spec.name, spec.task, spec.metrics[0], dict(spec.from_trials),
                           tune_grid(spec, plan), spec.checkpoints["keep_after_completion"],
                           spec.budget.get("gpu_hours"), list(spec.metrics), plan.samples, say,
                           sorted(set(spec.space).union(*spec.include)))


def _read(path: str) -> str:
    try:
        return Path(path).read_text()[-4000:]
    except OSError:
        return str(path)
