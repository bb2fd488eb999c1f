"""What the command line prints: a sweep's status, its trials table, a task's config fields (text only; the commands
in :mod:`sweeplab.cli` fetch what they show)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from . import config as C
from .schema import CORE_METRICS, error_cause


def status(st: dict[str, Any]) -> str:
    """``sweeplab status``: the counts, GPU-hours (spent, projected, budget) and why the budget stopped the sweep,
    the best trial per metric, one line per trial, then each failed trial's cause."""
    lines = []
    c = st["counts"]
    interrupted = f", {c['interrupted']} interrupted (no live driver: `sweeplab resume` continues them)" \
        if c["interrupted"] else ""
    lines.append(f"sweep {st['name']} (task {st['task']}): {c['running']} running, {c['completed']} completed, "
                 f"{c['stopped']} stopped early, {c['failed']} failed{interrupted}, {c['pending']} not started "
                 f"({st['planned_trials']} planned)")
    if (gpu := st.get("gpu_hours")) and (gpu["spent"] or gpu["budget"] is not None):
        projected = "" if gpu["projected"] is None else \
            f", {gpu['projected']:.3g} projected for the {st['planned_trials']} planned trials"
        budget = "" if gpu["budget"] is None else f" (budget {gpu['budget']:g})"
        lines.append(f"GPU-hours: {gpu['spent']:.3g} spent{projected}{budget}")
    if st.get("budget_stop") and not st.get("driver_alive") and c["pending"]:
        lines.append(f"stopped: {st['budget_stop']}")
    for metric, b in st["best"].items():
        shown = ", ".join(f"{k}={v}" for k, v in b["config"].items())
        lines.append(f"best {metric} ({b['mode']}): {b['value']:.6g}  trial {b['trial_id']}"
                     + (f"  ({shown})" if shown else ""))
    if not st["best"]:
        lines.append("best: no completed trial yet")
    rows = []
    for t in st["trials"]:
        m = t["metrics"]
        progress = m.get("progress")
        rows.append((t["trial_id"], t["status"], "" if progress is None else f"{100 * progress:.0f}%",
                     *(f"{m[k]:.6g}" if isinstance(m.get(k), (int, float)) else "" for k in st["metrics"]),
                     ", ".join(f"{k}={t['config'].get(k)}" for k in st["space"])))
    if rows:
        head = ("trial", "status", "progress", *st["metrics"], "config")
        widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head) - 1)]
        for r in (head, *rows):
            lines.append("  ".join(str(r[i]).ljust(widths[i]) for i in range(len(widths))) + "  " + str(r[-1]))
    lines += [f"{t['trial_id']} failed: {error_cause(t['error'])}" for t in st["trials"]
              if t["status"] == "failed" and t.get("error")]
    return "\n".join(lines)


def varying_fields(trials: pd.DataFrame, task) -> list[str]:
    """The config fields whose values differ between the trials: what tells them apart."""
    return [c for c in C.fields(task.config) if c in trials.columns and trials[c].nunique(dropna=False) > 1]


def trials_table(trials: pd.DataFrame, task) -> str:
    """The end-of-run table: each trial's state, the config fields that vary, the task's summary metrics and cost."""
    if trials.empty:
        return ""
    cfg_cols = varying_fields(trials, task)
    metric_cols = [c for c in dict.fromkeys((*task.summary, *CORE_METRICS)) if c in trials.columns]
    table = trials[["trial_id", "status", *cfg_cols, *metric_cols]]
    if "error" in trials.columns and trials["error"].notna().any():  # each failed trial's cause, last
        table = table.assign(error=[error_cause(e) if isinstance(e, str) else "" for e in trials["error"]])
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format,
                           "display.max_colwidth", 100):
        return table.to_string(index=False)


def fields(task, cfg) -> str:
    """``sweeplab describe``: every config field, its type, value, valid values, condition and meaning."""
    rows = [("name", "type", "value", "valid", "applies when", "meaning")]
    for f in C.fields(task.config).values():
        rows.append((f.name, getattr(f.type, "__name__", str(f.type)), repr(getattr(cfg, f.name)), f.rule(),
                     f.condition(), f.doc))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows)
