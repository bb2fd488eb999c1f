"""Sweep specs: YAML files in ``sweeps/``, validated in full before anything starts.

A spec names a task, fixed config values, a search space over the task's config names, the metric(s) to
optimise, the scheduler, the resources of one trial, and where results go. Every problem (unknown keys, names that
are not in the task's config, bad types or ranges) is collected and reported at once in a :class:`SpecError`.
The full format is documented in the README ("Sweep specs").
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml

from . import config as C
from .schema import metric_column
from .storage import Location, location
from .task import Task, get_task

ALGORITHMS = ("grid", "random", "tpe", "nsga2")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
TOP_KEYS = {"name", "task", "description", "config", "search", "metric", "mode", "scheduler", "resources",
            "max_concurrent", "retries", "seed", "storage", "from_trials"}
SEARCH_KEYS = {"algorithm", "space", "include", "num_samples"}
SCHEDULER_KEYS = {"type", "metric", "mode", "time_attr", "max_t", "grace_period", "reduction_factor"}
ASHA_DEFAULTS = {"time_attr": "training_iteration", "max_t": 100, "grace_period": 1, "reduction_factor": 4}
CORE_METRICS = ("params", "gmacs", "train_seconds")  # what every completed trial reports besides its task's metrics
RESOURCE_KEYS = {"cpus", "gpus", "workers"}


class SpecError(ValueError):
    """A spec that cannot run; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A random search dimension: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{randint: [lo, hi]}``
    (hi exclusive, like Tune), or ``{choice: [a, b, ...]}``."""
    kind: str
    args: tuple


@dataclasses.dataclass
class Spec:
    name: str
    task: Task
    config: dict[str, Any]                 # fixed config values (validated)
    algorithm: str
    space: dict[str, Any]                  # name -> list of values (grid) or Distribution
    include: list[dict[str, Any]]          # extra trials (grid only)
    num_samples: int
    metrics: list[str]
    modes: list[str]
    scheduler: dict[str, Any]
    cpus: float
    gpus: float
    workers: int
    max_concurrent: int | None
    retries: int
    seed: int
    storage: str                           # an absolute local folder or an s3:// URI
    source: str = "<spec>"
    from_trials: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> <sweep>/<trial_id>

    @property
    def sweep_dir(self) -> Location:
        return location(self.storage) / self.name

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1


def load(path: str | Path, overrides: list[str] = ()) -> Spec:
    """Read, override (``key=value``; dotted for nested spec keys) and validate a spec file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), [f"spec file not found: {path}"])
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise SpecError(str(path), ["the spec must be a mapping of keys to values"])
    raw.setdefault("name", path.stem)
    return parse(raw, overrides, source=str(path))


def apply_overrides(raw: dict, overrides: list[str], task: Task | None) -> list[str]:
    """``--set`` values: a spec key path (``resources.gpus=0.5``, ``config.lr=1e-3``) or a bare task config name
    (``train_dir=/data/imagenet``), which goes into ``config``. Values are parsed as YAML. A fixed config value
    replaces a searched one of the same name, and a searched value a fixed one: the last word is the --set's.
    Without a task (unknown or broken: already reported) bare names are taken as config names."""
    problems = []
    names = C.fields(task.config) if task else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"--set {item!r}: expected key=value")
            continue
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as exc:
            problems.append(f"--set {item!r}: the value is not valid YAML ({_yaml_problem(exc)})")
            continue
        parts = key.split(".")
        if len(parts) == 1 and parts[0] not in TOP_KEYS:
            if task is not None and parts[0] not in names:
                problems.append(f"--set {key}: not a spec key nor a config name of task {task.name!r}")
                continue
            parts = ["config", parts[0]]
        if len(parts) == 2 and parts[0] == "config":
            _section(raw, "search", "space").pop(parts[1], None)
        elif len(parts) == 3 and parts[:2] == ["search", "space"]:
            _section(raw, "config").pop(parts[2], None)
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                problems.append(f"--set {key}: {p!r} is not a mapping")
                break
        else:
            node[parts[-1]] = value
    return problems


def _section(raw: dict, *path: str) -> dict:
    """The mapping at ``path`` in a raw spec, or an empty dict when it is absent or not a mapping."""
    node = raw
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line of a YAML error: what the parser expected and where (column in the value)."""
    what = "; ".join(filter(None, (getattr(exc, "context", None), getattr(exc, "problem", None)))) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    return f"{what} at column {mark.column + 1}" if mark is not None else what


def parse(raw: dict, overrides: list[str] = (), source: str = "<spec>") -> Spec:
    raw = copy.deepcopy(raw)
    problems: list[str] = []
    task = None
    try:
        task = get_task(str(raw.get("task")))
    except (KeyError, ImportError) as exc:
        problems.append(exc.args[0] if raw.get("task") else "missing key 'task'")
    problems += apply_overrides(raw, list(overrides), task)
    problems += [f"unknown key {k!r} (valid: {', '.join(sorted(TOP_KEYS))})" for k in raw if k not in TOP_KEYS]

    search = _mapping(raw, "search", SEARCH_KEYS, problems)
    sched = _mapping(raw, "scheduler", SCHEDULER_KEYS, problems)
    res = _mapping(raw, "resources", RESOURCE_KEYS, problems)

    algorithm = search.get("algorithm", "grid")
    if algorithm not in ALGORITHMS:
        problems.append(f"search.algorithm: {algorithm!r} is not one of {list(ALGORITHMS)}")
    metrics = _as_list(raw.get("metric", []))
    modes = _as_list(raw.get("mode", ["max"] * len(metrics)))
    if not metrics:
        problems.append("missing key 'metric' (the metric to optimise, or a list for multi-objective)")
    if metrics and len(modes) != len(metrics):
        problems.append(f"mode: {len(modes)} mode(s) for {len(metrics)} metric(s)")
    problems += [f"mode: {m!r} is not 'min' or 'max'" for m in modes if m not in ("min", "max")]
    if len(metrics) > 1 and algorithm not in ("tpe", "nsga2"):
        problems.append("several metrics (multi-objective) need search.algorithm tpe or nsga2")
    if task is not None and (bad := [m for m in metrics if m not in metric_names(task)]):
        problems += [f"metric: {m!r} is not a metric of task {task.name!r} (valid: {', '.join(metric_names(task))})"
                     for m in bad]

    fixed, space, include = {}, {}, []
    if task is not None:
        infos = C.fields(task.config)
        fixed_raw = raw.get("config") or {}
        if not isinstance(fixed_raw, dict):
            problems.append("config: must be a mapping of config names to values")
            fixed_raw = {}
        fixed = _check_values(infos, fixed_raw, "config", problems)
        space = _check_space(infos, search.get("space") or {}, algorithm, problems)
        for i, point in enumerate(search.get("include") or []):
            if not isinstance(point, dict):
                problems.append(f"search.include[{i}]: must be a mapping of config names to values")
                continue
            include.append(_check_values(infos, point, f"search.include[{i}]", problems))
        if include and algorithm != "grid":
            problems.append("search.include: extra trials are supported with search.algorithm grid only")
        problems += [f"search.space.{k}: {k} is also fixed in config (keep one of the two)" for k in space
                     if k in fixed]
    scheduler = _check_scheduler(sched, task, metrics, modes, problems)

    num_samples = _number(search.get("num_samples", 1), "search.num_samples", int, 1, problems)
    cpus = _number(res.get("cpus", 1), "resources.cpus", float, 0, problems)
    gpus = _number(res.get("gpus", 0), "resources.gpus", float, 0, problems)
    workers = _number(res.get("workers", 1), "resources.workers", int, 1, problems)
    if gpus and gpus > 1 and not float(gpus).is_integer():
        problems.append(f"resources.gpus: {gpus} — fractions are for sharing one GPU (use a value below 1)")
    max_conc = raw.get("max_concurrent")
    max_conc = None if max_conc is None else _number(max_conc, "max_concurrent", int, 1, problems)
    retries = _number(raw.get("retries", 0), "retries", int, 0, problems)
    seed = _number(raw.get("seed", 0), "seed", int, 0, problems)
    storage = str(raw.get("storage", "results"))
    if "://" in storage and not storage.startswith("s3://"):
        problems.append(f"storage: {storage!r} — use a folder every node shares or an s3:// URI")
    elif storage.startswith("s3://") and not storage[len("s3://"):].strip("/"):
        problems.append(f"storage: {storage!r} names no bucket (s3://bucket/prefix)")
    elif "://" not in storage:
        storage = Path(storage).expanduser().resolve().as_posix()
    name = str(raw.get("name") or "")
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        problems.append(f"name: {name!r} must be a non-empty folder name without slashes or spaces")
    spec = Spec(name=name, task=task, config=fixed, algorithm=algorithm, space=space, include=include,
                num_samples=num_samples, metrics=metrics, modes=modes, scheduler=scheduler, cpus=cpus, gpus=gpus,
                workers=workers, max_concurrent=max_conc, retries=retries, seed=seed, storage=storage.rstrip("/"),
                source=source)
    if task is not None:  # the config's cross-field checks, on every trial the search can produce
        from .search import check_points, trial_points
        problems += check_points(spec)
        if "from_trials" in raw or task.sources:  # the earlier trials this sweep starts from (sweeplab.artifacts)
            from .artifacts import resolve
            points = []
            for point in trial_points(spec):
                try:
                    points.append(C.to_dict(C.build(task.config, point)))
                except ValueError:
                    pass  # reported above
            spec.from_trials, more = resolve(raw.get("from_trials"), task, points)
            problems += more
    if problems:
        raise SpecError(source, problems)
    return spec


def final_metrics(task: Task) -> list[str]:
    """The task's final metrics by the names trials report them under (their column names)."""
    return [metric_column(task, m) for m in task.metrics]


def metric_names(task: Task) -> list[str]:
    """The names a spec may optimise: the task's final metrics, then the core's."""
    return final_metrics(task) + list(CORE_METRICS)


def _check_scheduler(sched: dict, task: Task | None, metrics: list, modes: list, problems: list) -> dict:
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
        out[key] = _number(sched.get(key, out[key]), f"scheduler.{key}", int, 1, problems)
    out["reduction_factor"] = _number(sched.get("reduction_factor", out["reduction_factor"]),
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


def resolved(spec: Spec) -> dict[str, Any]:
    """What a sweep's trials depend on, as canonical JSON data (sorted keys, tuples as lists): ``sweeplab resume``
    refuses a spec whose resolved form differs from the stored one. Resources, ``max_concurrent``, ``retries`` and
    ``storage`` may change between a run and its resume."""
    doc = {"task": spec.task.name, "config": spec.config, "algorithm": spec.algorithm,
           "space": {k: v if isinstance(v, list) else {v.kind: list(v.args)} for k, v in spec.space.items()},
           "include": spec.include, "num_samples": spec.num_samples, "metrics": spec.metrics, "modes": spec.modes,
           "scheduler": spec.scheduler, "seed": spec.seed}
    if spec.from_trials:  # absent when empty: older sweeps' fingerprints stay valid
        doc["from_trials"] = spec.from_trials
    return json.loads(_canonical(doc))


def fingerprint(spec: Spec) -> str:
    """sha256 of the canonical JSON of :func:`resolved`."""
    return hashlib.sha256(_canonical(resolved(spec)).encode()).hexdigest()


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=list)


_UNSET = object()


def changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for each key of two :func:`resolved` documents that differs (one level into mappings:
    ``config.lr: 0.1 -> 0.2``)."""
    def show(v):
        return "(unset)" if v is _UNSET else json.dumps(v, sort_keys=True)

    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, _UNSET), new.get(key, _UNSET)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}: {show(a.get(k, _UNSET))} -> {show(b.get(k, _UNSET))}"
                    for k in sorted(a.keys() | b.keys()) if a.get(k, _UNSET) != b.get(k, _UNSET)]
        else:
            out.append(f"{key}: {show(a)} -> {show(b)}")
    return out


def _mapping(raw: dict, key: str, valid: set, problems: list) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a mapping")
        return {}
    problems += [f"{key}: unknown key {k!r} (valid: {', '.join(sorted(valid))})" for k in value if k not in valid]
    return value


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _number(value, name, kind, low, problems, strict=False):
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


def _check_values(infos: dict, values: dict, where: str, problems: list) -> dict:
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


def _check_space(infos: dict, space: Any, algorithm: str, problems: list) -> dict:
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
            args = _as_list(args)
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
