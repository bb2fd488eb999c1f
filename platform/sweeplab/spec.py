"""Sweep specs: YAML files in ``sweeps/``, validated in full before anything starts.

A spec names a task, fixed config values, a search space over the task's config names, the metric(s) to
optimise, the scheduler, the resources of one trial, and where results go. Every problem (unknown keys, names that
are not in the task's config, bad types or ranges) is collected and reported at once in a :class:`SpecError`.
The full format is documented in the README ("Sweep specs").
"""
from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml

from . import config as C
from .task import Task, get_task

ALGORITHMS = ("grid", "random", "tpe", "nsga2")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
TOP_KEYS = {"name", "task", "description", "config", "search", "metric", "mode", "scheduler", "resources",
            "max_concurrent", "retries", "seed", "storage"}
SEARCH_KEYS = {"algorithm", "space", "include", "num_samples"}
SCHEDULER_KEYS = {"type", "metric", "mode", "time_attr", "max_t", "grace_period", "reduction_factor"}
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

    def to_tune(self):
        from ray import tune
        return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint,
                "choice": lambda *v: tune.choice(list(v))}[self.kind](*self.args)

    def to_optuna(self):
        import optuna.distributions as d
        lo, hi = (self.args + (None, None))[:2]
        return {"uniform": lambda: d.FloatDistribution(lo, hi),
                "loguniform": lambda: d.FloatDistribution(lo, hi, log=True),
                "randint": lambda: d.IntDistribution(lo, hi - 1),
                "choice": lambda: d.CategoricalDistribution(list(self.args))}[self.kind]()


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
    storage: Path
    source: str = "<spec>"

    @property
    def sweep_dir(self) -> Path:
        return self.storage / self.name

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
    (``train_dir=/data/imagenet``), which goes into ``config``. Values are parsed as YAML."""
    problems = []
    names = C.fields(task.config) if task else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"--set {item!r}: expected key=value")
            continue
        value = yaml.safe_load(text) if text else ""
        parts = key.split(".")
        if len(parts) == 1 and parts[0] not in TOP_KEYS:
            if parts[0] not in names:
                problems.append(f"--set {key}: not a spec key nor a config name of task "
                                f"{task.name if task else '?'!r}")
                continue
            parts = ["config", parts[0]]
            if isinstance(raw.get("search"), dict) and isinstance(raw["search"].get("space"), dict):
                raw["search"]["space"].pop(key, None)  # a fixed value replaces a searched one
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                problems.append(f"--set {key}: {p!r} is not a mapping")
                break
        else:
            node[parts[-1]] = value
    return problems


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
        if not problems:
            for point in [{}] + include:  # cross-field checks on every trial the grid can produce
                try:
                    C.build(task.config, {**fixed, **{k: v[0] for k, v in space.items() if isinstance(v, list)},
                                          **point})
                except ValueError as exc:
                    problems += [f"config: {p}" for p in str(exc).splitlines()]

    sched_type = sched.get("type", "fifo")
    if sched_type not in ("fifo", "asha"):
        problems.append(f"scheduler.type: {sched_type!r} is not 'fifo' or 'asha'")
    if sched_type == "asha" and len(metrics) > 1 and "metric" not in sched:
        problems.append("scheduler: asha with several metrics needs scheduler.metric and scheduler.mode")

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
    if "://" in storage:
        problems.append(f"storage: {storage!r} — object-store URIs are not supported yet; use a folder every node "
                        "shares (NFS, EFS, a ReadWriteMany volume, or a bucket mounted as a filesystem)")
    name = str(raw.get("name") or "")
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        problems.append(f"name: {name!r} must be a non-empty folder name without slashes or spaces")
    if problems:
        raise SpecError(source, problems)
    return Spec(name=name, task=task, config=fixed, algorithm=algorithm, space=space, include=include,
                num_samples=num_samples, metrics=metrics, modes=modes, scheduler={"type": sched_type, **sched},
                cpus=cpus, gpus=gpus, workers=workers, max_concurrent=max_conc, retries=retries, seed=seed,
                storage=Path(storage).expanduser().resolve(), source=source)


def _mapping(raw: dict, key: str, valid: set, problems: list) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a mapping")
        return {}
    problems += [f"{key}: unknown key {k!r} (valid: {', '.join(sorted(valid))})" for k in value if k not in valid]
    return value


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _number(value, name, kind, low, problems):
    not_int = kind is int and isinstance(value, (int, float)) and not float(value).is_integer()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not_int:
        problems.append(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        return low
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{name}: expected a finite number, got {value!r}")
        return low
    if value < low:
        problems.append(f"{name}: {value!r} is below the minimum {low}")
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
