"""A paper's published results, declared as data beside a task's code, and how a sweep's trials map onto them.

A task names its paper in :attr:`sweeplab.task.Task.paper`: a :class:`Paper` holding one :class:`Published` per
number the paper prints in its text or tables (never one read off a figure). Each number says which trials
measure it (``where``: config values), what it is (``metric``: a metric of the task, a core column such as
``params`` or ``gmacs``, or with ``rows`` a column of the ``evaluations`` table averaged over a trial's rows), and
how the paper picked it (``best``: the best configuration of those that match; else every matching trial is a
repeat of the row). :func:`compare` puts the sweep's value beside each published one; ``sweeplab report``
(:mod:`sweeplab.report`) renders the result.

The data a trial ran on is named by :attr:`Paper.data` (from the trial's config) in the words of
:attr:`Published.data`. A trial on one of the paper's datasets only measures rows of that dataset; a trial on
other data (the embedded default a smoke sweep uses) measures every row whose config it matches unless trials on
the row's own data measure it, and the row says that the data differ, so a difference on such a row is read as a
check of the pipeline, not of the paper.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import pandas as pd

_ROW_KEYS = ("table", "row", "metric", "published", "sweep", "spread", "n", "configurations", "difference",
             "paper_data", "sweep_data", "trials", "condition", "best", "note")


@dataclasses.dataclass(frozen=True)
class Published:
    """One number a paper publishes.

    table:  where the paper prints it ("Table 1", "Section 3").
    row:    the row's label as the paper names it ("VM, FL").
    metric: the sweep's measure of it: a metric of the task, ``params``/``gmacs``, or (with ``rows``) a column of
            the task's evaluation rows.
    value:  the published number, in the paper's unit (None: the paper prints this row only in a figure).
    where:  config field -> value, or a tuple of the values allowed (a tuple config field's value is written as a
            list, ``windows: [11, 9, 7]``): the trials that measure this row.
    rows:   evaluation column -> value: a trial's measure is the mean of ``metric`` over its evaluation rows with
            these values (e.g. one region group).
    best:   ``max`` or ``min``: the paper reports the best configuration among those matching (the sweep's value is
            the best configuration's mean); empty: every matching trial is a repeat (mean and spread over them).
    scale:  the sweep's value times ``scale`` is in the paper's unit (100 for a percentage, 1e-9 for GMACs of a
            count of MACs).
    data:   the dataset the paper measured it on.
    note:   what the report says beside the row (e.g. that sweeplab does not implement this baseline).
    """
    table: str
    row: str
    metric: str
    value: float | None
    where: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rows: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    best: str = ""
    scale: float = 1.0
    data: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Paper:
    """A task's paper: its reference, its published numbers and how to name the data a trial ran on.

    title:   the reference, as a reader cites it.
    results: the published numbers, in the paper's order (empty when its text gives none).
    data:    ``config -> name`` of the data a trial ran on, in the words of :attr:`Published.data`.
    note:    what the report says about the comparison as a whole (why a table is missing, what differs).
    """
    title: str
    results: tuple[Published, ...] = ()
    data: Callable[[Mapping[str, Any]], str] | None = None
    note: str = ""


def check(paper: Paper, config_fields, metrics, eval_columns) -> None:
    """Raise ValueError naming each declaration that does not fit the task (unknown fields, metrics, columns)."""
    problems = []
    for p in paper.results:
        what = f"{p.table}, {p.row}"
        if unknown := sorted(set(p.where) - set(config_fields)):
            problems.append(f"{what}: where names unknown config fields {unknown}")
        if unknown := sorted(set(p.rows) - set(eval_columns)):
            problems.append(f"{what}: rows names unknown evaluation columns {unknown}")
        if p.metric not in (eval_columns if p.rows else metrics):
            problems.append(f"{what}: metric {p.metric!r} is not one of {sorted(eval_columns if p.rows else metrics)}")
        if p.best not in ("", "max", "min"):
            problems.append(f"{what}: best {p.best!r} is not '', 'max' or 'min'")
    if problems:
        raise ValueError("; ".join(problems))


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, tuple):  # the values allowed
        return any(_same(value, w) for w in wanted)
    if isinstance(wanted, list):  # a tuple config field, stored as text ("11,9,7")
        wanted = ",".join(map(str, wanted))
    if missing(value):
        return False
    if isinstance(wanted, bool) or isinstance(value, bool):
        return bool(value) == bool(wanted)
    if isinstance(wanted, (int, float)) and isinstance(value, (int, float)):
        return math.isclose(value, wanted, rel_tol=1e-9)
    return str(value) == str(wanted)


def missing(value: Any) -> bool:
    return value is None or isinstance(value, float) and math.isnan(value)


def _matches(trial: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    return all(_same(trial.get(key), wanted) for key, wanted in where.items())


def condition(p: Published) -> str:
    """The row's trials as a reader would select them (``model = 'ulae' AND windows = '11,9,7'``)."""
    if any(wanted == () for wanted in p.where.values()):
        return "none (sweeplab cannot run it)"
    parts = [f"{key} IN ({', '.join(map(_sql, wanted))})" if isinstance(wanted, tuple) else f"{key} = {_sql(wanted)}"
             for key, wanted in p.where.items()]
    return " AND ".join(parts) or "every completed trial"


def _sql(value: Any) -> str:
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def compare(paper: Paper, trials: pd.DataFrame, evaluations: pd.DataFrame, config_fields,
            column: Callable[[str], str] = lambda name: name) -> list[dict[str, Any]]:
    """One dict per published number (keys :data:`_ROW_KEYS`): the published value, the sweep's (mean over the
    matching completed trials, or the best configuration's mean), its spread (sample standard deviation over the
    repeats; None for one), the number of trials and configurations, the difference (sweep x scale - published),
    the data each ran on, and the trial ids it comes from. ``column`` maps a metric to its ``trials`` column."""
    done = trials[trials["status"] == "completed"] if len(trials) else trials
    records = [(t, paper.data(t) if paper.data else "") for t in done.to_dict("records")]  # each with its data
    datasets = {p.data for p in paper.results if p.data}
    by_trial = evaluations.groupby("trial_id") if len(evaluations) else None
    out = []
    for p in paper.results:
        picked = []
        for t, on in records:
            if not _matches(t, p.where) or (on in datasets and p.data and on != p.data):
                continue
            value = _measure(p, t, by_trial, column)
            if value is not None:
                picked.append((t, value, on))
        if any(on == p.data for _, _, on in picked):  # the paper's own data, when some trials ran on it
            picked = [x for x in picked if x[2] == p.data]
        out.append(_row(p, [(t, v) for t, v, _ in picked], {on for _, _, on in picked}, config_fields))
    return out


def _measure(p: Published, trial: Mapping[str, Any], by_trial, column) -> float | None:
    if p.rows:
        if by_trial is None or trial["trial_id"] not in by_trial.groups:
            return None
        rows = by_trial.get_group(trial["trial_id"])
        mask = pd.Series(True, index=rows.index)
        for key, wanted in p.rows.items():
            mask &= rows[key].map(lambda v, w=wanted: _same(v, w))
        values = pd.to_numeric(rows.loc[mask, p.metric], errors="coerce").dropna()
        return float(values.mean()) if len(values) else None
    value = trial.get(column(p.metric))
    return None if missing(value) else float(value)


def _row(p: Published, picked: list, sweep_data: set, config_fields) -> dict[str, Any]:
    groups: dict[tuple, list] = {}
    for t, value in picked:
        groups.setdefault(tuple(str(t.get(f)) for f in config_fields), []).append((t, value))
    chosen = list(picked)
    if p.best and groups:
        pick = max if p.best == "max" else min
        chosen = pick(groups.values(), key=lambda g: sum(v for _, v in g) / len(g))
    values = [v * p.scale for _, v in chosen]
    mean = sum(values) / len(values) if values else None
    spread = pd.Series(values).std() if len(values) > 1 else None
    return {"table": p.table, "row": p.row, "metric": p.metric, "published": p.value, "sweep": mean,
            "spread": spread, "n": len(values), "configurations": len(groups),
            "difference": None if mean is None or p.value is None else mean - p.value,
            "paper_data": p.data, "sweep_data": ", ".join(sorted(d for d in sweep_data if d)),
            "trials": [t["trial_id"] for t, _ in chosen], "condition": condition(p), "best": p.best, "note": p.note}
