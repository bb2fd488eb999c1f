"""A sweep's GPU-hour budget (spec key ``budget: {gpu_hours: N}``).

Spent is the ``gpu_seconds`` (wall time x GPUs held) of every finished trial in the ``trials`` table plus what
the running trials have reported so far. Once it reaches the budget the sweep starts no new trial: the running
ones finish, the driver ends, and ``sweeplab status`` says why
(:func:`sweeplab.store.budget_stop`). The budget is not part of the
fingerprint: ``sweeplab resume`` with a larger one runs the rest. A retried trial's row counts its last attempt.
"""
from __future__ import annotations

from typing import Any

from . import layout as L
from . import store
from .storage import Location, location


class Budget:
    """What the sweep at ``sweep`` has spent against ``gpu_hours`` (see the module docstring)."""

    def __init__(self, sweep: Location, gpu_hours: float):
        self.sweep, self.gpu_hours = location(sweep), float(gpu_hours)
        self.ended = {tid: (store.gpu_seconds(row) or 0.0) for tid, row in store.trial_rows(self.sweep).items()}
        self.running: dict[str, float] = {}

    @classmethod
    def of(cls, spec) -> "Budget | None":
        hours = spec.budget.get("gpu_hours")
        return None if hours is None else cls(spec.sweep_dir, hours)

    def report(self, trial_id: str, metrics: dict[str, Any]) -> None:
        """A running trial's report (its ``gpu_seconds`` so far)."""
        self.running[trial_id] = (store.gpu_seconds(metrics) or 0.0)

    def end(self, trial_id: str, row: dict[str, Any]) -> None:
        """A trial's row (any finished state)."""
        self.running.pop(trial_id, None)
        self.ended[trial_id] = (store.gpu_seconds(row) or 0.0)

    @property
    def spent_hours(self) -> float:
        return (sum(self.ended.values()) + sum(self.running.values())) / 3600

    @property
    def exhausted(self) -> bool:
        return self.spent_hours >= self.gpu_hours

    def record_stop(self) -> str:
        """Keep why the sweep stopped starting trials (for ``status``); returns it."""
        text = (f"GPU budget spent: {self.spent_hours:.3g} of {self.gpu_hours:g} GPU-hours (budget.gpu_hours); "
                "no new trial was started. Raise the budget and `sweeplab resume` to run the rest")
        L.budget_spent(self.sweep).write_text(text)
        return text


def clear(sweep: Location) -> None:
    """Forget the last driver's budget stop (a new driver checks the budget again)."""
    L.budget_spent(location(sweep)).delete()
