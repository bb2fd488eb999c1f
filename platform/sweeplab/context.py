"""In-process :class:`~sweeplab.task.TrialContext` (``sweeplab run --local`` and tests).

The Ray implementation (``sweeplab.ray_runner.RayTrainContext``) has the same surface; task code cannot tell them
apart. :func:`unwrap` and :func:`all_reduce` are shared by both.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

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


class Collectives:
    """:meth:`unwrap` and :meth:`all_reduce` of a :class:`~sweeplab.task.TrialContext`, for a context class that
    has ``world_size``."""

    world_size: int

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model)

    def all_reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        return all_reduce(tensor, self.world_size, op)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class LocalContext(Collectives):
    """Runs a trial in this process: one rank, checkpoints under ``trial_dir`` (when given)."""

    rank = 0
    world_size = 1

    def __init__(self, trial_id: str = "local", seed: int = 0, device: torch.device | None = None,
                 trial_dir: str | os.PathLike | None = None,
                 on_report: Callable[[dict[str, float]], None] | None = None, verbose: bool = True,
                 sources: dict[str, Any] | None = None,
                 saver: Callable[[str, dict[str, Any]], None] | None = None):
        self.trial_id = trial_id
        self.seed = seed
        self.sources = dict(sources or {})
        self._saver = saver
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.device = device or default_device()
        self.trial_dir = Path(trial_dir) if trial_dir else None
        self.reports: list[dict[str, float]] = []
        self._on_report = on_report
        self._verbose = verbose
        self._last_print = 0.0

    @property
    def _ckpt_path(self) -> Path | None:
        return self.trial_dir / "checkpoint.pt" if self.trial_dir else None

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
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
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
            self.log(shown)

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
