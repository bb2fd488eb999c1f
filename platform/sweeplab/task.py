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
from typing import Any, Callable, Protocol

import torch


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


@dataclasses.dataclass(frozen=True)
class Task:
    """A registered paper.

    name:        registry name used in sweep specs (``task: compression``).
    config:      frozen dataclass made with :func:`sweeplab.config.param` fields.
    build_model: ``cfg -> torch.nn.Module | None``; the model whose parameters and GMACs are reported
                 (None for methods without one, e.g. a JPEG anchor).
    input_shape: ``cfg -> tuple[int, ...]``; the reference input (batch included) for cost estimates.
    load_data:   ``cfg -> data``; the real dataset when the config names a path, else the embedded default.
    train:       ``(cfg, data, ctx) -> state``; the training loop (calls ``ctx.report`` as it goes).
    evaluate:    ``(cfg, state, data, ctx) -> Evaluation``; runs on rank 0 after training.
    plot:        optional ``(trials: DataFrame, evaluations: DataFrame, out_path) -> None``.
    summary:     optional; metric names the results table shows first.
    """
    name: str
    config: type
    build_model: Callable[[Any], torch.nn.Module | None]
    input_shape: Callable[[Any], tuple[int, ...]]
    load_data: Callable[[Any], Any]
    train: Callable[[Any, Any, TrialContext], Any]
    evaluate: Callable[[Any, Any, Any, TrialContext], Evaluation]
    plot: Callable[..., None] | None = None
    summary: tuple[str, ...] = ()


_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in _REGISTRY and _REGISTRY[task.name] is not task:
        raise ValueError(f"task {task.name!r} is registered twice")
    if not dataclasses.is_dataclass(task.config):
        raise TypeError(f"task {task.name!r}: config must be a dataclass")
    _REGISTRY[task.name] = task
    return task


TASK_MODULES_ENV = "SWEEPLAB_TASK_MODULES"


def _discover() -> None:
    """Import every task package under ``sweeplab.tasks``, then the modules named (comma-separated) in
    ``$SWEEPLAB_TASK_MODULES``: tasks kept outside this repository, importable on every node (``PYTHONPATH``,
    or ``sweeplab submit --py-module``)."""
    import sweeplab.tasks as pkg
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.ispkg:
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    for name in filter(None, (m.strip() for m in os.environ.get(TASK_MODULES_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"${TASK_MODULES_ENV} names {name!r}, which cannot be imported: {exc}") from exc


def list_tasks() -> dict[str, Task]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_task(name: str) -> Task:
    tasks = list_tasks()
    if name not in tasks:
        raise KeyError(f"unknown task {name!r} (registered: {', '.join(tasks) or 'none'})")
    return tasks[name]
