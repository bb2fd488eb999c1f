"""A registered task's trial run data-parallel over CPU processes, as on a Ray Train worker group but without Ray.

:func:`run_distributed` spawns ``world_size`` processes joined by a gloo process group (rendezvous through a
file), and each runs :func:`sweeplab.trial.run_trial` with a :class:`DistContext`: the
:class:`~sweeplab.task.TrialContext` of a Ray Train worker on the CPU (``prepare_model`` wraps in
``DistributedDataParallel`` when ``world_size > 1``, ``all_gather`` is ``dist.all_gather_object``), reports (and,
on request, checkpoints) kept in memory, artifacts only named, log lines kept quiet. Each rank writes under its own
folder of a temporary directory (only rank 0 writes the trial's results), ``HOME`` pointing there too so that
nothing lands in the user's caches.

What each rank gives back (a dict per rank, in rank order):

* ``params``: per model passed through ``prepare_model`` (in that order), its parameters right after
  ``task.train`` returned, flattened into one vector: the same on every rank when gradients are averaged;
  ``buffers`` likewise, its floating-point buffers (BatchNorm statistics are each rank's own unless the task
  shares them).
* ``samples``: per training step, the batch size the step trained on: a step ends at an optimiser step that
  followed training forwards (any optimiser; a second optimiser stepping in the same iteration starts no new
  step), and its batch size is the largest first dimension of the first tensor input of a forward call through a
  prepared model in training mode with gradients enabled. A GAN step that passes its batch once through the
  generator and twice through the discriminator thus counts the batch once.
* ``forwards``: per step, every such forward call as ``(model index, batch size)``, for tasks whose steps the
  summary ``samples`` does not describe.
* ``reports`` (the metrics of every ``ctx.report``), ``checkpoint`` (the last one reported, copied when it was
  reported, with ``checkpoints=True``; else None: copying a large model's every checkpoint takes seconds),
  ``final`` (what ``run_trial`` returned: rank 0's final metrics, ``{}`` elsewhere), ``evaluation`` (rank 0's
  :class:`~sweeplab.task.Evaluation`, else None), ``artifacts`` (names saved), ``log`` (the lines logged).

A child that raises makes :func:`run_distributed` raise :class:`DistributedTrialError` with that child's
traceback; the other ranks (which may be waiting in a collective) are killed.

The ranks are forked from a ``forkserver`` that imported this module, so each starts with torch, the registered
tasks and ``torch._dynamo`` (which the first optimiser imports) already loaded: a few seconds less per rank and
call. The server itself never runs torch code, so the forked ranks start without thread pools.
"""
from __future__ import annotations

import dataclasses
import importlib
import io
import multiprocessing
import os
import queue as queue_module
import shutil
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch._dynamo  # noqa: F401 - imported by the first optimiser: here once, in the fork server
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_post_hook

from sweeplab.context import ContextBase
from sweeplab.task import DTYPES
from sweeplab.task import get_task, list_tasks
from sweeplab.trial import run_trial

list_tasks()  # imports the task packages, likewise once in the fork server
_MP = multiprocessing.get_context("forkserver")
_MP.set_forkserver_preload([__name__])  # only if it can be imported from the working directory, else a no-op


class DistributedTrialError(RuntimeError):
    """A rank of a :func:`run_distributed` trial failed (the message holds its traceback), or died, or timed out."""


def run_distributed(task_name: str, overrides: dict[str, Any], world_size: int = 2, timeout: float = 180,
                    dtype: str = "float32", seed: int = 0, checkpoints: bool = False) -> list[dict[str, Any]]:
    """Run the trial of ``task_name`` with the config ``overrides`` over ``world_size`` CPU processes; returns each
    rank's record (see the module docstring) in rank order. The task must be registered in this process (its
    module is imported in each child, which registers it there). ``checkpoints``: keep the checkpoints reported
    (each rank's last is returned; ``load_checkpoint`` gives it back), else drop them."""
    module = get_task(task_name).config.__module__
    root = Path(tempfile.mkdtemp(prefix="sweeplab-dist-"))
    results = _MP.Queue()
    args = (world_size, f"file://{root / 'rendezvous'}", module, task_name, dict(overrides), str(root),
            (dtype, seed, checkpoints), timeout, results)
    procs = [_MP.Process(target=_rank_main, args=(rank, *args), daemon=True, name=f"{task_name}-rank{rank}")
             for rank in range(world_size)]
    try:
        for p in procs:
            p.start()
        return _collect(procs, results, task_name, time.monotonic() + timeout, timeout)
    finally:
        for p in (p for p in procs if p.pid is not None):
            if p.is_alive():
                p.kill()
            p.join()
        shutil.rmtree(root, ignore_errors=True)


def _collect(procs, results, task_name: str, deadline: float, timeout: float) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    while len(out) < len(procs):
        try:
            rank, error, blob = results.get(timeout=0.5)
        except queue_module.Empty:
            dead = [f"rank {r} (exit code {p.exitcode})" for r, p in enumerate(procs)
                    if r not in out and p.exitcode is not None]
            if dead:
                raise DistributedTrialError(f"task {task_name!r}: {', '.join(dead)} died without a result") from None
            if time.monotonic() > deadline:
                waiting = [r for r in range(len(procs)) if r not in out]
                raise DistributedTrialError(f"task {task_name!r}: ranks {waiting} gave no result within {timeout:g} s"
                                            ) from None
            continue
        if error is not None:
            raise DistributedTrialError(f"rank {rank} of a {len(procs)}-rank trial of task {task_name!r} failed:\n"
                                        f"{error}")
        out[rank] = torch.load(io.BytesIO(blob), weights_only=False)
    return [out[r] for r in range(len(procs))]


def _rank_main(rank: int, world_size: int, init_method: str, module: str, task_name: str,
               overrides: dict[str, Any], root: str, options: tuple, timeout: float, results) -> None:
    try:
        torch.set_num_threads(1)  # the ranks share the machine's cores
        os.environ["HOME"] = str(Path(root) / "home")
        importlib.import_module(module)  # registers the task (a test plugin is not found by discovery)
        task = get_task(task_name)
        dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout))
        ctx = DistContext(rank, world_size, *options)
        record = ctx.record_trial(task, overrides, Path(root) / f"rank{rank}")
        buffer = io.BytesIO()
        torch.save(record, buffer)  # by value: a queued tensor would be shared memory the exiting child frees
        results.put((rank, None, buffer.getvalue()))
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent, with its traceback
        results.put((rank, traceback.format_exc(), None))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class DistContext(ContextBase):
    """The :class:`~sweeplab.task.TrialContext` of one rank of a CPU process group (see the module docstring)."""

    def __init__(self, rank: int, world_size: int, dtype: str = "float32", seed: int = 0, checkpoints: bool = False):
        self.rank, self.world_size, self.seed, self.checkpoints = rank, world_size, seed, checkpoints
        self.trial_id, self.device, self.dtype, self.cpus = "dist", torch.device("cpu"), DTYPES[dtype], 1
        self.sources: dict[str, Any] = {}
        self.prepared: list[torch.nn.Module] = []
        self.reports: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.artifacts: list[str] = []
        self.steps: list[list[tuple[int, int]]] = []
        self._pending: list[tuple[int, int]] = []
        self._checkpoint: bytes | None = None

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(model)
        index = len(self.prepared)
        self.prepared.append(model)

        def count(module, args, kwargs):
            if self.unwrap(module).training and torch.is_grad_enabled():
                first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
                if first is not None:
                    self._pending.append((index, first.shape[0] if first.dim() else 1))
        model.register_forward_pre_hook(count, with_kwargs=True)
        return model

    def _step_taken(self, optimizer, args, kwargs) -> None:
        if self._pending:
            self.steps.append(self._pending)
            self._pending = []

    def all_gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        self.reports.append(self.with_compute(metrics))
        if checkpoint is not None and self.checkpoints:  # a copy now: a state dict's tensors are the live parameters
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            self._checkpoint = buffer.getvalue()

    def load_checkpoint(self) -> dict[str, Any] | None:
        if self._checkpoint is None:
            return None
        return torch.load(io.BytesIO(self._checkpoint), map_location="cpu", weights_only=False)

    def log(self, message: str) -> None:
        self.lines.append(message)

    def save_artifact(self, name: str, payload: dict[str, Any]) -> None:
        self.artifacts.append(name)

    def _flat(self, tensors: str) -> list[torch.Tensor]:
        """Per prepared model, its ``parameters`` or floating-point ``buffers`` in one vector."""
        return [torch.cat([t.detach().reshape(-1).float() for t in getattr(self.unwrap(m), tensors)()
                           if t.is_floating_point()] or [torch.zeros(0)]) for m in self.prepared]

    def record_trial(self, task, overrides: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Run the trial (:func:`run_trial`, writing under ``folder``) and return this rank's record."""
        kept: dict[str, Any] = {"evaluation": None}

        def train(cfg, data, ctx):
            state = task.train(cfg, data, ctx)
            kept["params"], kept["buffers"] = self._flat("parameters"), self._flat("buffers")  # before evaluation
            return state

        def evaluate(*args):
            kept["evaluation"] = task.evaluate(*args)
            return kept["evaluation"]
        hook = register_optimizer_step_post_hook(self._step_taken)
        try:
            final = run_trial(dataclasses.replace(task, train=train, evaluate=evaluate), overrides, self,
                              sweep="dist", sweep_dir=str(folder / "sweep"), code_version="test")
        finally:
            hook.remove()
        return {"rank": self.rank, "params": kept["params"], "buffers": kept["buffers"],
                "samples": [max(n for _, n in step) for step in self.steps], "forwards": self.steps,
                "reports": self.reports, "checkpoint": self.load_checkpoint(), "final": final,
                "evaluation": kept["evaluation"], "artifacts": self.artifacts, "log": self.lines}
