"""The columns of the two results tables, derived from a task's declarations: the one source of the schema.

``trials`` = the core columns below, one column per config field (its type from the config dataclass: tuples as
comma-joined strings), then one column per metric the task declares (``Task.metrics``). ``evaluations`` = the key
columns, then the task's declared evaluation columns (``Task.eval_columns``). Every file written for a sweep has
the full schema of its table, whatever the trial's status, so Parquet readers given many parts see one schema.
The README's column table is checked against :data:`TRIAL_COLUMNS` by a test.
"""
from __future__ import annotations

import datetime as dt
import enum
import re
import typing
from typing import Any

import pyarrow as pa

from . import config as C

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string(), tuple: pa.string(),
          dt.datetime: _TIMESTAMP}

KEYS = ("sweep", "task", "trial_id")
# (name, type, meaning): the core columns of ``trials``, in order, before the config and metric columns.
TRIAL_COLUMNS: tuple[tuple[str, type, str], ...] = (
    ("sweep", str, "sweep name"),
    ("task", str, "task name"),
    ("trial_id", str, "Tune trial id (`local_NNNNN` with `--local`)"),
    ("status", str, "`completed`, `failed` (after its retries) or `stopped` (early, by the scheduler)"),
    ("error", str, "failed trials: the cause on the first line (the exception and its message), then the last "
                   "attempt's traceback, plain text"),
    ("params", int, "number of parameters of the model the trial trains (its inference path)"),
    ("gmacs", float, "multiply-accumulates of one forward pass on the reference input, in 1e9"),
    ("gmacs_convention", str, "how `gmacs` was counted (torch `FlopCounterMode` FLOPs / 2; conv, linear, matmul)"),
    ("input_shape", str, "the reference input, e.g. `1x1x512x768` (several inputs joined by `+`)"),
    ("components", str, "JSON: parameters and GMACs of each network, for tasks made of several"),
    ("train_seconds", float, "data loading + training time of the trial (evaluation excluded)"),
    ("device", str, "where it ran (`cpu`, `cuda:0`)"),
    ("num_workers", int, "data-parallel workers"),
    ("dtype", str, "compute precision: `float32` (the default, the papers') or `bfloat16` (spec key `dtype`)"),
    ("gpus", float, "GPUs the trial held, all its workers together (0 on CPU; a fraction when sharing one)"),
    ("gpu_name", str, "the GPU's name (null on CPU)"),
    ("gpu_seconds", float, "wall time of the trial's last attempt x `gpus` (null without GPUs)"),
    ("gpu_peak_mb", float, "peak GPU memory allocated by torch, MiB, summed over the trial's processes (null on CPU)"),
    ("host_peak_mb", float, "peak resident host memory of the trial's processes, MiB, summed over its workers"),
    ("data_wait_fraction", float, "share of the training wall time spent waiting for data"),
    ("torch_version", str, "torch version the trial ran on"),
    ("cuda_version", str, "CUDA version of that torch build (null for a CPU build)"),
    ("ray_version", str, "Ray version (null with `--local`)"),
    ("seed", int, "the trial's seed, derived from the spec's seed and the trial's number"),
    ("point", int, "the trial's index in the sweep's plan: its grid point (repeats and extensions appended) or its "
                   "sampler draw; `sweep.json` keeps the plan"),
    ("started_from", str, "JSON: the trials whose artifacts this trial started from (`from_trials`), by name"),
    ("code_version", str, "sweeplab version + git commit (`.dirty` with local changes)"),
    ("started_at", dt.datetime, "when the trial's last attempt started (completed trials)"),
    ("ended_at", dt.datetime, "when it finished evaluating (completed trials)"),
)
CORE_NAMES = tuple(name for name, _, _ in TRIAL_COLUMNS)
COMPUTE_COLUMNS = ("dtype", "gpus", "gpu_name", "gpu_seconds", "gpu_peak_mb", "host_peak_mb", "data_wait_fraction",
                   "torch_version", "cuda_version", "ray_version")  # measured by sweeplab.compute, every status
CORE_METRICS = ("params", "gmacs", "train_seconds")  # what every completed trial reports besides its task's metrics


class TrialState(str, enum.Enum):
    """The one list of a trial's states. ``running`` while its driver reports it; then exactly one of the
    finished states, recorded once (``status`` column, ``status.json``). ``interrupted`` is never written: it is
    what ``sweeplab status`` shows for a trial last seen running whose sweep has no live driver (killed or
    stopped), until a resume runs it again."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @classmethod
    def finished(cls) -> tuple["TrialState", ...]:
        """The states a trial ends in (what the ``status`` column holds)."""
        return cls.COMPLETED, cls.FAILED, cls.STOPPED


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colours (Ray's error files carry them)
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failure|Failed)\w*(\(\w+\))?(: .*)?$")


def error_cause(text: str | None) -> str:
    """The one-line cause of a failure from its text (an ``error`` column, a traceback, Ray's error file): the last
    line naming an exception and its message (the one raised last: the cause, under Ray's wrappers)."""
    lines = [line.rstrip() for line in _ANSI.sub("", text or "").splitlines() if line.strip()]
    raised = [line for line in lines if _RAISED.match(line) and not line.startswith("ray.exceptions.")]
    return (raised or lines or ["unknown error"])[-1][:500]


def error_column(text: str | None) -> str | None:
    """A failed trial's ``error``: :func:`error_cause` on the first line, then the full text without terminal
    colours (None stays None; a value already in this form is kept)."""
    if not text:
        return text
    plain = _ANSI.sub("", text).strip()
    cause = error_cause(plain)
    return plain if plain.split("\n", 1)[0] == cause else f"{cause}\n\n{plain}"


def arrow_type(tp: Any) -> pa.DataType:
    """bool, int, float, str (and tuple config fields, as text), datetime; ``list[X]`` for a list of those."""
    if typing.get_origin(tp) is list and len(typing.get_args(tp)) == 1:
        return pa.list_(arrow_type(typing.get_args(tp)[0]))
    if tp not in _ARROW:
        raise TypeError(f"no column type for {tp!r} (use bool, int, float, str or list[...] of them)")
    return _ARROW[tp]


def metric_column(task, name: str) -> str:
    """A metric's column: its name, or ``metric_<name>`` when that collides with a config name or a core column."""
    return f"metric_{name}" if name in C.fields(task.config) or name in CORE_NAMES else name


def trial_types(task) -> dict[str, type]:
    """Column name -> Python type of the ``trials`` table, in order."""
    types = {name: tp for name, tp, _ in TRIAL_COLUMNS}
    types.update({name: info.type for name, info in C.fields(task.config).items()})
    types.update({metric_column(task, name): tp for name, tp in task.metrics.items()})
    return types


def evaluation_types(task) -> dict[str, type]:
    return {**{k: str for k in KEYS}, **dict(task.eval_columns)}


def trials_schema(task) -> pa.Schema:
    return pa.schema([(name, arrow_type(tp)) for name, tp in trial_types(task).items()])


def evaluations_schema(task) -> pa.Schema:
    return pa.schema([(name, arrow_type(tp)) for name, tp in evaluation_types(task).items()])


def cast_value(name: str, tp: type, value: Any) -> Any:
    """A Python value as the column's type (None stays None; NaN floats stay NaN)."""
    if value is None:
        return None
    if typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
            raise ValueError(f"column {name!r}: expected a list, got {value!r}")
        item = typing.get_args(tp)[0]
        return [cast_value(name, item, v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    try:
        if tp is float:
            return float(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            return int(value)
        if tp is bool:
            return bool(value)
        if tp in (str, tuple):
            return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r}: cannot store {value!r} as {tp.__name__}: {exc}") from None
    return value


def table(rows: list[dict[str, Any]], types: dict[str, type]) -> pa.Table:
    """Rows as a table with exactly these columns (missing values null). A key not in ``types`` is an error: the
    declarations are the schema, so an undeclared column is a bug of the task that wrote it."""
    unknown = sorted({k for r in rows for k in r} - set(types))
    if unknown:
        raise ValueError(f"undeclared column(s) {unknown}: declare them in the task's metrics or eval_columns")
    columns = {name: [cast_value(name, tp, r.get(name)) for r in rows] for name, tp in types.items()}
    schema = pa.schema([(name, arrow_type(tp)) for name, tp in types.items()])
    return pa.table(columns, schema=schema)


def readme_table() -> str:
    """The Markdown table of the core columns (the README's copy is checked against it)."""
    names = {bool: "bool", int: "int", float: "float", str: "string", dt.datetime: "timestamp (UTC)"}
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {names[tp]} | {doc} |" for name, tp, doc in TRIAL_COLUMNS]
    return "\n".join(lines)
