"""In-process :class:`~sweeplab.task.TrialContext` (``sweeplab run --local`` and tests), and what every context
shares (:class:`ContextBase`).

The Ray implementations (``sweeplab.ray_light.LightContext`` in a Tune trial's own actor,
``sweeplab.ray_train.RayTrainContext`` on each Ray Train worker) have the same surface; task code cannot tell
them apart.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.distributed as dist

from .compute import Meter
from .task import DTYPES

_OPS = {"mean": "SUM", "sum": "SUM", "max": "MAX"}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a data-parallel wrapper (``DistributedDataParallel``, ``DataParallel``), else ``model``:
    what a task saves, evaluates or reads attributes of after :meth:`~sweeplab.task.TrialContext.prepare_model`."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def all_reduce(tensor: torch.Tensor, world_size: int, op: str = "mean") -> torch.Tensor:
    """Reduce ``tensor`` in place over the ``world_size`` ranks of a trial (``op``: mean, sum or max) and return it;
    with one rank (or no process group) it is returned unchanged."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op {op!r} is not one of {list(_OPS)}")
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, _OPS[op]))
        if op == "mean":
            tensor /= world_size
    return tensor


class ContextBase:
    """What every :class:`~sweeplab.task.TrialContext` shares: :meth:`unwrap`, :meth:`all_reduce`,
    :meth:`autocast`, the data-wait clock and the trial's compute meter (:mod:`sweeplab.compute`). A context class
    sets ``device``, ``world_size`` and ``rank``; ``dtype``, ``gpus_held`` (all the trial's ranks together) and
    ``ray_version`` (the runner's Ray; None in this process) default to float32, none and None."""

    world_size: int
    rank: int
    device: torch.device
    dtype: torch.dtype = torch.float32
    gpus_held: float = 0.0
    cpus: int = 1
    data_wait_seconds: float = 0.0
    meter: Meter | None = None
    ray_version: str | None = None

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model)

    def all_reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        return all_reduce(tensor, self.world_size, op)

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @contextlib.contextmanager
    def data_wait(self):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.data_wait_seconds += time.perf_counter() - t0

    def timed(self, iterable: Iterable) -> Iterator:
        it = iter(iterable)
        while True:
            with self.data_wait():
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item

    def start_meter(self) -> Meter:
        """Start the trial attempt's clock and memory peaks (:class:`sweeplab.compute.Meter`), data wait at 0."""
        self.data_wait_seconds = 0.0
        self.meter = Meter(self.device, self.gpus_held if self.rank == 0 else 0.0, self.dtype, self.ray_version)
        return self.meter

    def compute(self, train_s: float | None = None) -> dict[str, Any]:
        """The compute columns now (empty before :meth:`start_meter`)."""
        return {} if self.meter is None else self.meter.columns(self.data_wait_seconds, train_s)

    def with_compute(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """A report's metrics with rank 0's compute columns (what a failed or stopped trial's row keeps)."""
        return {**self.compute(), **metrics} if self.rank == 0 else dict(metrics)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class LocalContext(ContextBase):
    """Runs a trial in this process: one rank, checkpoints under ``trial_dir`` (when given); it holds the GPU
    when it runs on one."""

    rank = 0
    world_size = 1

    def __init__(self, trial_id: str = "local", seed: int = 0, device: torch.device | None = None,
                 trial_dir: str | os.PathLike | None = None,
                 on_report: Callable[[dict[str, float]], None] | None = None, verbose: bool = True,
                 sources: dict[str, Any] | None = None,
                 saver: Callable[[str, dict[str, Any]], None] | None = None, dtype: str = "float32"):
        self.trial_id = trial_id
        self.dtype = DTYPES[dtype]
        self.seed = seed
        self.sources = dict(sources or {})
        self._saver = saver
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.device = device or default_device()
        self.gpus_held = 1.0 if self.device.type == "cuda" else 0.0
        self.cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.trial_dir = Path(trial_dir) if trial_dir else None
        self.reports: list[dict[str, float]] = []
        self._on_report = on_report
        self._verbose = verbose
        self._last_print = 0.0

    @property
    def _ckpt_path(self) -> Path | None:
        return self.trial_dir / "checkpoint.pt" if self.trial_dir else None

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        shown, metrics = metrics, self.with_compute(metrics)  # the task's metrics are what the line shows
        self.reports.append(dict(metrics))
        if checkpoint is not None and self._ckpt_path is not None:
            self._ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._ckpt_path.with_suffix(".tmp")
            torch.save(checkpoint, tmp)
            os.replace(tmp, self._ckpt_path)
        if self._on_report:
            self._on_report(metrics)
        now = time.monotonic()
        if self._verbose and now - self._last_print > 2.0:  # at most one line every 2 s
            self._last_print = now
            self.log(" ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self._ckpt_path
        if path is None or not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=False)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]

    def save_artifact(self, name: str, payload: dict[str, Any]) -> None:
        """Into the sweep's storage when the runner gave a saver; else kept in :attr:`artifacts` (a context made by
        hand, in a notebook or a test)."""
        if self._saver is None:
            self.artifacts[name] = payload
        else:
            self._saver(name, payload)

    def log(self, message: str) -> None:
        if self._verbose:
            print(f"[{self.trial_id}] {message}", file=sys.stderr, flush=True)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
