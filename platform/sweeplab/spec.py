"""Sweep specs: YAML files in ``sweeps/``, validated in full before anything starts.

A spec names a task, fixed config values, a search space over the task's config names, the metric(s) to
optimise, the scheduler, the resources of one trial, and where results go. Every problem (unknown keys, names that
are not in the task's config, bad types or ranges) is collected and reported at once in a :class:`SpecError`.
The full format is documented in the README ("Sweep specs").
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from . import config as C
from .plan import check_points, plan_problem, trial_points
from .specfile import SpecFileError, read_chain
from .sections import as_list, check_scheduler, check_space, check_values, mapping, metric_names, number
from .storage import Location, location, storage_problem
from .task import DTYPES, Task, get_task

ALGORITHMS = ("grid", "random", "tpe", "nsga2")
TOP_KEYS = {"name", "task", "description", "config", "search", "metric", "mode", "scheduler", "resources",
            "max_concurrent", "retries", "seed", "storage", "from_trials", "checkpoints", "dtype", "budget"}
SEARCH_KEYS = {"algorithm", "space", "include", "num_samples"}
MAX_NAME = 200  # bytes of a sweep name: a folder name (most filesystems allow 255) with room for suffixes
SCHEDULER_KEYS = {"type", "metric", "mode", "time_attr", "max_t", "grace_period", "reduction_factor"}
RESOURCE_KEYS = {"cpus", "gpus", "workers"}
CHECKPOINT_KEYS = {"keep", "keep_after_completion"}
BUDGET_KEYS = {"gpu_hours"}


class SpecError(ValueError):
    """A spec that cannot run; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


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
    checkpoints: dict[str, Any]            # retention: keep (the last N per trial), keep_after_completion
    seed: int
    storage: str                           # an absolute local folder or an s3:// URI
    dtype: str = "float32"                 # compute precision: float32 (the papers') or bfloat16 (autocast)
    budget: dict[str, float] = dataclasses.field(default_factory=dict)  # gpu_hours: stop starting trials once spent
    source: str = "<spec>"
    document: dict[str, Any] = dataclasses.field(default_factory=dict)  # the mapping parsed, before --set
    files: tuple[str, ...] = ()            # the spec file, then the files it extends (load)
    overrides: tuple[str, ...] = ()        # the --set items it was read with (a resume hint repeats them)
    storage_text: str = "results"          # ``storage`` as written (after --set), before it was made absolute
    sources: dict[str, Any] = dataclasses.field(default_factory=dict)  # from_trials as written: name -> reference
    from_trials: dict[str, str] = dataclasses.field(default_factory=dict)  # resolved: name -> <sweep>/<trial_id>

    @property
    def sweep_dir(self) -> Location:
        return location(self.storage) / self.name

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1


def load(path: str | Path, overrides: list[str] = ()) -> Spec:
    """Read (with the specs it ``extends`` merged in: :mod:`sweeplab.specfile`), override (``key=value``; dotted
    for nested spec keys) and validate a spec file. The name defaults to this file's stem, never a base's."""
    path = Path(path)
    try:
        raw, files = read_chain(path)
    except SpecFileError as exc:
        raise SpecError(str(path), exc.problems) from None
    raw.setdefault("name", path.stem)
    return dataclasses.replace(parse(raw, overrides, source=str(path)), files=tuple(map(str, files)))


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
        if parts[0] == "task":  # the spec was read as its task's (its config names, its defaults)
            problems.append(f"--set {key}: a spec's task cannot be overridden; write a spec for the other task "
                            "(`extends:` this one keeps the rest)")
            continue
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
    document, raw = raw, copy.deepcopy(raw)
    problems: list[str] = []
    task = None
    try:
        task = get_task(str(raw.get("task")))
    except (KeyError, ImportError) as exc:
        problems.append(exc.args[0] if raw.get("task") else "missing key 'task'")
    problems += apply_overrides(raw, list(overrides), task)
    problems += [f"unknown key {k!r} (valid: {', '.join(sorted(TOP_KEYS))})" for k in raw if k not in TOP_KEYS]

    search = mapping(raw, "search", SEARCH_KEYS, problems)
    sched = mapping(raw, "scheduler", SCHEDULER_KEYS, problems)
    res = mapping(raw, "resources", RESOURCE_KEYS, problems)

    algorithm = search.get("algorithm", "grid")
    if algorithm not in ALGORITHMS:
        problems.append(f"search.algorithm: {algorithm!r} is not one of {list(ALGORITHMS)}")
    metrics = as_list(raw.get("metric", []))
    modes = as_list(raw.get("mode", ["max"] * len(metrics)))
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

    fixed, space, include, refused = {}, {}, [], False
    if task is not None:
        infos = C.fields(task.config)
        fixed_raw = raw.get("config") or {}
        if not isinstance(fixed_raw, dict):
            problems.append("config: must be a mapping of config names to values")
            fixed_raw = {}
        before = len(problems)
        fixed = check_values(infos, fixed_raw, "config", problems)
        refused = len(problems) > before  # a value dropped: the cross-field checks would judge its default
        space = check_space(infos, search.get("space") or {}, algorithm, problems)
        for i, point in enumerate(search.get("include") or []):
            if not isinstance(point, dict):
                problems.append(f"search.include[{i}]: must be a mapping of config names to values")
                continue
            include.append(check_values(infos, point, f"search.include[{i}]", problems))
        if include and algorithm != "grid":
            problems.append("search.include: extra trials are supported with search.algorithm grid only")
        problems += [f"search.space.{k}: {k} is also fixed in config (keep one of the two)" for k in space
                     if k in fixed]
    scheduler = check_scheduler(sched, task, metrics, modes, problems)

    num_samples = number(search.get("num_samples", 1), "search.num_samples", int, 1, problems)
    cpus = number(res.get("cpus", 1), "resources.cpus", float, 0, problems)
    gpus = number(res.get("gpus", 0), "resources.gpus", float, 0, problems)
    workers = number(res.get("workers", 1), "resources.workers", int, 1, problems)
    if gpus and gpus > 1 and not float(gpus).is_integer():
        problems.append(f"resources.gpus: {gpus} — fractions are for sharing one GPU (use a value below 1)")
    max_conc = raw.get("max_concurrent")
    max_conc = None if max_conc is None else number(max_conc, "max_concurrent", int, 1, problems)
    retries = number(raw.get("retries", 0), "retries", int, 0, problems)
    ckpt = mapping(raw, "checkpoints", CHECKPOINT_KEYS, problems)
    keep_after = ckpt.get("keep_after_completion", True)
    if not isinstance(keep_after, bool):
        problems.append(f"checkpoints.keep_after_completion: expected true or false, got {keep_after!r}")
    checkpoints = {"keep": number(ckpt.get("keep", 2), "checkpoints.keep", int, 1, problems),
                   "keep_after_completion": keep_after is not False}
    seed = number(raw.get("seed", 0), "seed", int, 0, problems)
    dtype = str(raw.get("dtype", "float32"))
    if dtype not in DTYPES:
        problems.append(f"dtype: {dtype!r} is not one of {list(DTYPES)}")
    elif dtype == "bfloat16" and task is not None and task.bfloat16:
        problems.append(f"dtype: task {task.name!r} does not run under bfloat16: {task.bfloat16}")
    budget = {k: number(v, f"budget.{k}", float, 0, problems)
              for k, v in mapping(raw, "budget", BUDGET_KEYS, problems).items()}
    if task is not None and workers and workers > 1:
        problems += _check_workers(task, workers)
    storage = storage_text = str(raw.get("storage", "results"))
    if (problem := storage_problem(storage)) is not None:
        problems.append(f"storage: {problem}")
    elif "://" not in storage:
        storage = Path(storage).expanduser().resolve().as_posix()
    name = str(raw.get("name") or "")
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        problems.append(f"name: {name!r} must be a non-empty folder name without slashes or spaces")
    elif len(name.encode()) > MAX_NAME:
        problems.append(f"name: {len(name.encode())} bytes, longer than the {MAX_NAME} a sweep folder's name may be")
    spec = Spec(name=name, task=task, config=fixed, algorithm=algorithm, space=space, include=include,
                num_samples=num_samples, metrics=metrics, modes=modes, scheduler=scheduler, cpus=cpus, gpus=gpus,
                workers=workers, max_concurrent=max_conc, retries=retries, checkpoints=checkpoints, seed=seed,
                storage=storage.rstrip("/"), source=source, document=document, storage_text=storage_text,
                dtype=dtype, budget=budget, overrides=tuple(overrides))
    if task is not None:  # the config's cross-field checks, on every trial the search can produce
        if (too_big := plan_problem(spec)) is not None:  # counted: the checks below build every distinct point
            problems.append(too_big)
        elif not refused:
            problems += check_points(spec)
            if task.batch_fields and isinstance(workers, int) and workers > 1:
                problems += _check_batch(spec)
        spec.sources = _check_sources(raw.get("from_trials"), task, spec, problems, points=too_big is None)
    if problems:
        raise SpecError(source, problems)
    return spec


def _check_workers(task: Task, workers: int) -> list[str]:
    """``resources.workers`` against the data parallelism the task supports (:attr:`Task.parallel`)."""
    if task.parallel == "none":
        return [f"resources.workers: {workers} — task {task.name!r} runs on one worker (it supports no data "
                "parallelism); use workers: 1 and more trials at once instead"]
    return []


def _check_batch(spec: Spec) -> list[str]:
    """Every planned trial's global batches (:attr:`Task.batch_field`, those that apply to it) split evenly over
    the workers."""
    workers, problems = spec.workers, []
    planned = [(cfg, C.active(spec.task.config, cfg)) for cfg in planned_configs(spec)]
    for field in spec.task.batch_fields:
        bad = sorted({cfg[field] for cfg, applies in planned
                      if applies[field] and isinstance(cfg[field], int) and cfg[field] % workers})
        if bad:
            problems.append(f"resources.workers: {workers} — config.{field} {', '.join(map(str, bad))} does not "
                            f"split evenly over {workers} workers (each rank trains on {field} / workers of every "
                            f"batch): use a multiple of {workers}")
    return problems


def _check_sources(raw: Any, task: Task, spec: Spec, problems: list, points: bool = True) -> dict[str, Any]:
    """``from_trials`` as written, checked without reading anything: the names the task declares
    (``Task.sources``), each a ``<sweep>/<trial_id>`` text or a ``{sweep, where, order_by}`` mapping, and (with
    ``points``: a plan small enough to walk) every source some planned trial requires. Finding the trials and
    their artifacts is a later step (:func:`sweeplab.artifacts.resolve_sources`)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append("from_trials: must be a mapping of source names to a trial or {sweep, where, order_by}")
        return {}
    needs = task.sources or {}
    out = {}
    for name, ref in raw.items():
        if name not in needs:
            problems.append(f"from_trials.{name}: task {task.name!r} uses no source {name!r}"
                            f" (it uses: {', '.join(needs) or 'none'})")
        elif isinstance(ref, dict) and (set(ref) - {"sweep", "where", "order_by"} or "sweep" not in ref):
            problems.append(f"from_trials.{name}: a mapping takes sweep (required), where and order_by; "
                            f"got {sorted(ref)}")
        elif not isinstance(ref, (dict, str)):
            problems.append(f"from_trials.{name}: expected <sweep>/<trial_id> or {{sweep, where, order_by}}, "
                            f"got {ref!r}")
        else:
            out[name] = ref
    required = [name for name, need in needs.items() if points and name not in raw and any(
        need.required(values) for values in planned_configs(spec))]
    problems += [f"from_trials.{name}: required ({needs[name].doc or ', '.join(needs[name].artifacts)}) but not "
                 "given" for name in required]
    return out


def planned_configs(spec: Spec) -> list[dict[str, Any]]:
    """The full config (defaults filled in) of each distinct point :func:`sweeplab.plan.trial_points` gives; points
    whose config does not build are left out (they are reported as problems of their own)."""
    out = []
    for point in trial_points(spec):
        try:
            out.append(C.to_dict(C.build(spec.task.config, point)))
        except ValueError:
            pass
    return out
