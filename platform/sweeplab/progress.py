"""A running trial's records, kept by its driver: its progress (``status.json``, every report in
``reports.jsonl``) and ``sweeplab stop``'s request to stop cleanly. The same on both runners; the order of the
records is :mod:`sweeplab.store`'s.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

from . import layout as L
from .schema import TrialState as State
from .storage import Location, location
from .store import now, write_status

STATUS_EVERY_S = 2.0  # a running trial's status.json and report history are written at most this often


class Progress:
    """The driver's record of one running trial: its ``status.json`` (running, last metrics) and the history of
    every report, ``reports.jsonl`` (one JSON object a line: what the dashboard's learning curves read), both
    written at most every :data:`STATUS_EVERY_S` and when the trial ends (:meth:`flush`). The same on both
    runners."""

    def __init__(self, sweep: Location, trial_id: str, values: dict[str, Any], seed: int | None,
                 point: int | None = None):
        self.sweep, self.trial_id, self.values, self.seed, self.point = location(sweep), trial_id, values, seed, point
        self.pending: list[dict[str, Any]] = []
        self.last: dict[str, Any] = {}
        self.written = -math.inf

    def started(self) -> "Progress":
        write_status(self.sweep, self.trial_id, State.RUNNING, self.values, seed=self.seed, point=self.point)
        self.written = time.monotonic()
        return self

    def report(self, metrics: dict[str, Any]) -> None:
        self.last = dict(metrics)
        self.pending.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))
                             and not isinstance(v, bool) and math.isfinite(v)})
        if time.monotonic() - self.written >= STATUS_EVERY_S:
            self.flush()

    def flush(self, state: State = State.RUNNING) -> None:
        if self.pending:
            L.reports(self.sweep, self.trial_id).append_text("".join(json.dumps(r) + "\n" for r in self.pending))
            self.pending.clear()
        if state == State.RUNNING:
            write_status(self.sweep, self.trial_id, state, self.values, last_metrics=self.last, seed=self.seed,
                         point=self.point)
        self.written = time.monotonic()


class StopRequested(BaseException):
    """Raised in a ``--local`` trial at a report after ``sweeplab stop``: its checkpoint is saved, it is not a
    failure (a BaseException, so a trial's retry loop does not take it for one)."""


class StopRequest:
    """``sweeplab stop``'s request to a sweep's driver: a file in the sweep folder, checked at most every
    :data:`STATUS_EVERY_S`."""

    def __init__(self, sweep: Location):
        self.file = L.stop_request(location(sweep))
        self.checked, self.seen = -math.inf, False

    def ask(self) -> None:
        self.file.write_text(now().isoformat())

    def requested(self) -> bool:
        if not self.seen and time.monotonic() - self.checked >= STATUS_EVERY_S:
            self.checked = time.monotonic()
            self.seen = self.file.exists()
        return self.seen

    def clear(self) -> None:
        self.file.delete()
        self.seen = False


def read_reports(sweep: Location, trial_id: str) -> list[dict[str, Any]]:
    """Every report the trial made, in order, across its attempts (a line cut short by a crash is skipped)."""
    try:
        text = L.reports(location(sweep), trial_id).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
