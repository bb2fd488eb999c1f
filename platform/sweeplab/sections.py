"""The checks of a spec's sections, for :func:`sweeplab.spec.parse`: each takes the raw section and the parser's list
of problems, appends every problem it finds (so a spec's problems come all at once) and returns the typed value.
"""
from __future__ import annotations

import math
from typing import Any

from . import config as C
from .plan import DISTRIBUTIONS, Distribution
from .schema import CORE_METRICS, metric_column
from .task import Task

ASHA_DEFAULTS = {"time_attr": "training_iteration", "max_t": 100, "grace_period": 1, "reduction_factor": 4}


def final_metrics(task: Task) -> list[str]:
    """The task's final metrics by the names trials report them under (their column names)."""
    return [metric_column(task, m) for m in task.metrics]


def metric_names(task: Task) -> list[str]:
    """The names a spec may optimise: the task's final metrics, then the core's."""
    return final_metrics(task) + list(CORE_METRICS)


def check_scheduler(sched: dict, task: Task | None, metrics: list, modes: list, problems: list) -> dict:
    """The scheduler section, typed, ASHA's defaults filled in (the one place they are set)."""
    kind = sched.get("type", "fifo")
    if kind not in ("fifo", "asha"):
        problems.append(f"scheduler.type: {kind!r} is not 'fifo' or 'asha'")
        return {"type": kind}
    if kind == "fifo":
        problems += [f"scheduler.{k}: only scheduler.type asha uses it" for k in sched if k != "type"]
        return {"type": kind}
    out = {"type": kind, **ASHA_DEFAULTS}
    for key in ("max_t", "grace_period"):
        out[key] = number(sched.get(key, out[key]), f"scheduler.{key}", int, 1, problems)
    out["reduction_factor"] = number(sched.get("reduction_factor", out["reduction_factor"]),
                                      "scheduler.reduction_factor", float, 1, problems, strict=True)
    if out["grace_period"] > out["max_t"]:
        problems.append(f"scheduler.grace_period: {out['grace_period']} is above max_t {out['max_t']}")
    reports = ["training_iteration", *(task.reports if task else ())]
    out["time_attr"] = sched.get("time_attr", out["time_attr"])
    if task is not None and out["time_attr"] not in reports:
        problems.append(f"scheduler.time_attr: {out['time_attr']!r} is not reported by task {task.name!r} "
                        f"(valid: {', '.join(reports)})")
    if "mode" in sched:
        out["mode"] = sched["mode"]
        if out["mode"] not in ("min", "max"):
            problems.append(f"scheduler.mode: {out['mode']!r} is not 'min' or 'max'")
    if "metric" in sched:
        out["metric"] = sched["metric"]
        valid = [*task.reports, *final_metrics(task)] if task else []
        if task is not None and out["metric"] not in valid:
            problems.append(f"scheduler.metric: {out['metric']!r} is not a report nor a final metric of task "
                            f"{task.name!r} (valid: {', '.join(dict.fromkeys(valid))})")
        if "mode" not in sched:
            if out["metric"] in metrics and len(modes) == len(metrics):
                out["mode"] = modes[metrics.index(out["metric"])]
            else:
                problems.append(f"scheduler.metric {out['metric']!r} needs scheduler.mode (min or max)")
    elif len(metrics) > 1:
        problems.append("scheduler: asha with several metrics needs scheduler.metric and scheduler.mode")
    return out


def mapping(raw: dict, key: str, valid: set, problems: list) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a mapping")
        return {}
    problems += [f"{key}: unknown key {k!r} (valid: {', '.join(sorted(valid))})" for k in value if k not in valid]
    return value


def as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def number(value, name, kind, low, problems, strict=False):
    """``value`` as ``kind``, at least ``low`` (above it when ``strict``), or ``low`` with a problem recorded."""
    not_int = kind is int and isinstance(value, (int, float)) and not float(value).is_integer()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not_int:
        problems.append(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        return low
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{name}: expected a finite number, got {value!r}")
        return low
    if value < low or (strict and value == low):
        problems.append(f"{name}: {value!r} must be above {low}" if strict else
                        f"{name}: {value!r} is below the minimum {low}")
        return low
    return kind(value)


def check_values(infos: dict, values: dict, where: str, problems: list) -> dict:
    out = {}
    for key, value in values.items():
        if key not in infos:
            problems.append(f"{where}: {key!r} is not a config name of this task (valid: {', '.join(infos)})")
            continue
        try:
            out[key] = C.coerce(infos[key], value)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return out


def check_space(infos: dict, space: Any, algorithm: str, problems: list) -> dict:
    if not isinstance(space, dict):
        problems.append("search.space: must be a mapping of config names to values or distributions")
        return {}
    out = {}
    for key, dim in space.items():
        where = f"search.space.{key}"
        if key not in infos:
            problems.append(f"{where}: {key!r} is not a config name of this task (valid: {', '.join(infos)})")
            continue
        if isinstance(dim, list):
            if not dim:
                problems.append(f"{where}: empty list")
                continue
            good = []
            for v in dim:
                try:
                    good.append(C.coerce(infos[key], v))
                except ValueError as exc:
                    problems.append(f"{where}: {exc}")
            out[key] = good if algorithm == "grid" else Distribution("choice", tuple(good))
        elif isinstance(dim, dict) and len(dim) == 1:
            kind, args = next(iter(dim.items()))
            if kind not in DISTRIBUTIONS:
                problems.append(f"{where}: {kind!r} is not one of {list(DISTRIBUTIONS)}")
                continue
            if algorithm == "grid":
                problems.append(f"{where}: a {kind} distribution needs search.algorithm random, tpe or nsga2 "
                                "(grid takes a list of values)")
                continue
            args = as_list(args)
            if kind != "choice" and (len(args) != 2 or not all(isinstance(a, (int, float)) for a in args)
                                     or args[0] >= args[1]):
                problems.append(f"{where}: {kind} takes [low, high] with low < high, got {args!r}")
                continue
            if kind == "loguniform" and args[0] <= 0:
                problems.append(f"{where}: loguniform needs low > 0, got {args[0]!r}")
                continue
            if kind in ("uniform", "loguniform") and infos[key].type is int:
                problems.append(f"{where}: {key} is an integer: use randint (a {kind} draws fractions)")
                continue
            try:
                bounds = args if kind == "choice" else [args[0], args[1] - 1 if kind == "randint" else args[1]]
                coerced = [C.coerce(infos[key], a) for a in bounds]
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            out[key] = Distribution(kind, tuple(coerced) if kind == "choice" else tuple(args))
        else:
            problems.append(f"{where}: expected a list of values or one of {list(DISTRIBUTIONS)}, got {dim!r}")
    return out
