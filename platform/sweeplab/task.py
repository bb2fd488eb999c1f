"""The task registry and the contract between a task and the core.

A task is one package under ``tasks/<name>/`` whose ``__init__`` calls :func:`register_task`. The core discovers
task packages by walking ``sweeplab.tasks``, so adding a task touches no core file. Task code never imports Ray:
it receives a :class:`TrialContext` that works the same in-process (``--local``), in a Tune trial, and in each
worker of a data-parallel Ray Train group.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import sys
from typing import Any, Callable, Protocol

import torch

import sweeplab.tasks as pkg

from . import config as C
from .paper import Paper, check as check_paper
from .schema import CORE_METRICS, arrow_type


@dataclasses.dataclass
class Evaluation:
    """What a task's evaluation returns.

    ``metrics``: final scalar metrics of the trial (they become columns of the ``trials`` table and Tune's result).
    ``rows``: one dict per evaluation point (e.g. per beta x test image); they become the ``evaluations`` table.
    """
    metrics: dict[str, float]
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class TrialContext(Protocol):
    """What the core hands a task's training loop and evaluation."""
    device: torch.device
    rank: int
    world_size: int
    seed: int
    trial_id: str

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        """Report intermediate metrics (every rank must call it the same number of times).

        ``checkpoint`` is a ``torch.save``-able dict (state dicts, step counter); it is kept so a retried or
        resumed trial restarts from it via :meth:`load_checkpoint`. Only rank 0's checkpoint is kept.
        A ``progress`` metric (the fraction of training done, 0..1) is shown by ``sweeplab status`` and exported
        as the Ray metric ``sweeplab_trial_progress``; ``loss`` likewise.
        """

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint of this trial, or None when it starts fresh."""

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move to the device, and wrap for data parallelism when ``world_size > 1``."""

    def log(self, message: str) -> None:
        """A progress line the user sees (prefixed with the trial id)."""

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` with one rank. Lets a task
        spread independent work (e.g. images) over a trial's workers and collect the results for rank 0."""

    def all_reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        """Reduce ``tensor`` in place over the trial's ranks (``op``: ``mean``, ``sum`` or ``max``) and return it;
        unchanged with one rank. Every rank must call it the same number of times."""

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model inside the data-parallel wrapper :meth:`prepare_model` may have added, else ``model``."""

    sources: dict[str, Any]
    """The trials this trial starts from (spec key ``from_trials``), by name: :class:`sweeplab.artifacts.Source`
    objects with ``config`` and ``load(artifact)``; empty when the sweep names none."""

    cpus: int
    """The CPU cores this rank holds (``resources.cpus`` on Ray; the machine's under ``--local``): what a task's
    data-loader worker processes fit within."""

    dtype: torch.dtype
    """The trial's compute precision (spec key ``dtype``): ``torch.float32`` (the papers', the default) or
    ``torch.bfloat16``, which :meth:`autocast` applies."""

    def autocast(self):
        """A context manager for the forward passes (and losses) of training and evaluation: ``torch.autocast``
        to :attr:`dtype` on the trial's device under ``dtype: bfloat16``, nothing under float32. Parameters,
        optimiser state and checkpoints stay float32."""

    def data_wait(self):
        """A context manager around the code that waits for data (the next batch, a decoded volume): its time is
        the trial's ``data_wait_fraction`` (the share of training wall time spent waiting for data)."""

    def timed(self, iterable):
        """``iterable``'s items, the time spent getting each one counted as :meth:`data_wait`."""

    def save_artifact(self, name: str, payload: dict[str, Any]) -> None:
        """Keep a named artifact (a ``torch.save``-able dict: weights plus what rebuilds the model) beside the
        trial's results, for later sweeps to start from (:mod:`sweeplab.artifacts`). Only rank 0's is kept."""


@dataclasses.dataclass(frozen=True)
class Task:
    """A registered paper.

    name:         registry name used in sweep specs (``task: compression``).
    config:       frozen dataclass made with :func:`sweeplab.config.param` fields.
    build_model:  ``cfg -> torch.nn.Module | None``; the model whose parameters and GMACs are reported
                  (None for methods without one, e.g. a JPEG anchor). For a task of several networks, the
                  inference path.
    input_shape:  ``cfg -> shape``; the reference input (batch included) for cost estimates, or a tuple of
                  shapes when the model takes several inputs (``model(*inputs)``, e.g. a fixed and a moving
                  volume).
    load_data:    ``cfg -> data``; the real dataset when the config names a path, else the embedded default.
    train:        ``(cfg, data, ctx) -> state``; the training loop (calls ``ctx.report`` as it goes).
    evaluate:     ``(cfg, state, data, ctx) -> Evaluation``; runs on rank 0 after training.
    metrics:      ``{name: type}`` of the final metrics ``evaluate`` returns: the metric columns of ``trials``
                  and the names a spec may optimise. Reporting an undeclared metric fails the trial.
    eval_columns: ``{name: type}`` of the columns of ``evaluate``'s rows (the ``evaluations`` table).
    reports:      names of the metrics ``train`` reports as it goes (``loss``, ``progress``...): what a
                  scheduler may act on, besides ``training_iteration``.
    components:   optional ``cfg -> {name: (build, shape)}``: the networks of a task made of several, each
                  with a builder (no argument) and its reference input; their parameters and GMACs are reported
                  beside the inference path's (``describe --json`` ``components``, the ``components`` column).
    trained_config: optional ``(cfg, data) -> cfg``: the config of the model a trial actually trains once its
                  data is known (e.g. the number of tags the data has), for its cost.
    sources:      optional ``{name: sweeplab.artifacts.Needs}``: the earlier trials a sweep of this task may
                  start from (spec key ``from_trials``), checked before anything starts.
    plot:         optional ``(trials: DataFrame, evaluations: DataFrame, out_path, sweep) -> None``; ``sweep`` is
                  the sweep's :class:`~sweeplab.storage.Location`, for a plot that also draws from the sweep's
                  artifacts (example images). It may write more files beside ``out_path`` (same stem). Usually
                  named rather than given: ``"plot:plot_segmentation"`` is the function ``plot_segmentation`` of
                  the module ``plot`` of the task's package, imported on first use (:meth:`draw`), so
                  registering a task does not import matplotlib.
    summary:      optional; metric names the results table shows first.
    tiny:         config overrides that make a trial take a few seconds on one CPU core (small data, a few
                  steps): what the contract test (``tests/test_task_contract.py``) runs every task with.
    parallel:     the data parallelism the task supports over a trial's workers (``resources.workers``):
                  ``"data"`` (each rank trains on its share of every global batch, gradients averaged by
                  :meth:`TrialContext.prepare_model`'s wrapper), ``"split"`` (ranks share out independent work,
                  e.g. images, through :meth:`TrialContext.all_gather`) or ``"none"`` (one worker only). A spec
                  asking for more workers than the task supports is refused at load.
    batch_field:  with ``parallel="data"``, the config field holding the global batch size, or a tuple of them
                  (a task whose networks train on batches of their own): every planned trial's value of each
                  field that applies to it must be a multiple of ``resources.workers`` (checked at load), each
                  rank taking ``batch // world_size``, so the number of workers never changes what a step trains
                  on.
    bfloat16:     None when the task runs under ``dtype: bfloat16`` (:meth:`TrialContext.autocast`); else why it
                  cannot (such a spec is refused at load with this reason).
    paper:        optional :class:`sweeplab.paper.Paper`: the paper's published numbers and the trials that measure
                  each, what ``sweeplab report`` compares the sweep against (checked at registration).
    """
    name: str
    config: type
    build_model: Callable[[Any], torch.nn.Module | None]
    input_shape: Callable[[Any], tuple[int, ...]]
    load_data: Callable[[Any], Any]
    train: Callable[[Any, Any, TrialContext], Any]
    evaluate: Callable[[Any, Any, Any, TrialContext], Evaluation]
    metrics: dict[str, type]
    eval_columns: dict[str, type]
    reports: tuple[str, ...] = ("loss", "progress")
    components: Callable[[Any], dict[str, tuple[Callable[[], torch.nn.Module], tuple]]] | None = None
    trained_config: Callable[[Any, Any], Any] | None = None
    sources: dict[str, Any] | None = None
    plot: str | Callable[..., None] | None = None
    summary: tuple[str, ...] = ()
    tiny: dict[str, Any] = dataclasses.field(default_factory=dict)
    parallel: str = "data"
    batch_field: str | tuple[str, ...] | None = None
    bfloat16: str | None = None
    paper: Paper | None = None

    @property
    def batch_fields(self) -> tuple[str, ...]:
        """:attr:`batch_field` as a tuple (empty when the task declares none)."""
        return (self.batch_field,) if isinstance(self.batch_field, str) else tuple(self.batch_field or ())

    def draw(self, trials, evaluations, out_path, sweep=None) -> None:
        """Draw the task's figures from its tables into ``out_path`` (see :attr:`plot`)."""
        if self.plot is None:
            raise ValueError(f"task {self.name!r} has no plot")
        resolve_plot(self)(trials, evaluations, out_path, sweep)


def resolve_plot(task: Task) -> Callable[..., None]:
    """The function :attr:`Task.plot` names (``"module:function"``, the module relative to the package of the
    task's config), imported now; a callable ``plot`` as it is."""
    if not isinstance(task.plot, str):
        return task.plot
    module, function = _plot_name(task)
    package = sys.modules[task.config.__module__].__package__
    return getattr(importlib.import_module(f".{module}", package) if package else importlib.import_module(module),
                   function)


def _plot_name(task: Task) -> tuple[str, str]:
    module, sep, function = task.plot.partition(":")
    if not (module and sep and function) or ":" in function:
        raise ValueError(f"task {task.name!r}: plot {task.plot!r} is not 'module:function'")
    return module, function


PARALLEL = ("data", "split", "none")  # Task.parallel
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # spec key dtype -> TrialContext.dtype
_REGISTRY: dict[str, Task] = {}
_BROKEN: dict[str, str] = {}  # module name -> why it could not be imported


def register_task(task: Task) -> Task:
    if task.name in _REGISTRY and _REGISTRY[task.name] is not task:
        raise ValueError(f"task {task.name!r} is registered twice")
    if not dataclasses.is_dataclass(task.config):
        raise TypeError(f"task {task.name!r}: config must be a dataclass")
    infos = C.fields(task.config)  # checks the conditions between fields
    if isinstance(task.plot, str):
        _plot_name(task)  # imported on first use (:meth:`Task.draw`)
    if task.parallel not in PARALLEL:
        raise ValueError(f"task {task.name!r}: parallel {task.parallel!r} is not one of {list(PARALLEL)}")
    if task.batch_fields and (task.parallel != "data" or not set(task.batch_fields) <= set(infos)):
        raise ValueError(f"task {task.name!r}: batch_field {task.batch_field!r} must be a config field (or a "
                         "tuple of them) of a task with parallel='data'")
    if unknown := sorted(set(task.tiny) - set(infos)):
        raise ValueError(f"task {task.name!r}: tiny names unknown config keys {unknown}")
    for what, columns in (("metrics", task.metrics), ("eval_columns", task.eval_columns)):
        for col, tp in columns.items():
            try:
                arrow_type(tp)
            except TypeError as exc:
                raise TypeError(f"task {task.name!r}: {what}[{col!r}]: {exc}") from None
    if task.paper is not None:
        try:
            check_paper(task.paper, infos, (*task.metrics, *CORE_METRICS), task.eval_columns)
        except ValueError as exc:
            raise ValueError(f"task {task.name!r}: paper: {exc}") from None
    _REGISTRY[task.name] = task
    return task


class BrokenTask(KeyError):
    """A task whose package failed to import: the other tasks still work."""


TASK_MODULES_ENV = "SWEEPLAB_TASK_MODULES"


def _discover() -> None:
    """Import every task package under ``sweeplab.tasks``, then the modules named (comma-separated) in
    ``$SWEEPLAB_TASK_MODULES``: tasks kept outside this repository, importable on every node (``PYTHONPATH``,
    or ``sweeplab submit --py-module``)."""
    names = [f"{pkg.__name__}.{mod.name}" for mod in pkgutil.iter_modules(pkg.__path__) if mod.ispkg]
    names += list(filter(None, (m.strip() for m in os.environ.get(TASK_MODULES_ENV, "").split(","))))
    for name in names:
        if name in _BROKEN:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - one broken task package must not break the others
            where = f"${TASK_MODULES_ENV} names {name!r}, which" if not name.startswith(pkg.__name__) else name
            _BROKEN[name] = f"{where} cannot be imported: {type(exc).__name__}: {exc}"


def _short(module: str) -> str:
    return module.rpartition(".")[2]


def list_tasks() -> dict[str, Task]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def broken_tasks() -> dict[str, str]:
    """Task packages that failed to import: short name -> the error."""
    _discover()
    return {_short(m): why for m, why in sorted(_BROKEN.items())}


def get_task(name: str) -> Task:
    tasks = list_tasks()
    if name not in tasks:
        broken = broken_tasks()
        if name in broken:
            raise BrokenTask(f"task {name!r} is broken: {broken[name]}")
        raise KeyError(f"unknown task {name!r} (registered: {', '.join(tasks) or 'none'})")
    return tasks[name]
