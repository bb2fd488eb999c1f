"""Shared fixtures: a tiny in-process task for testing the core without any paper's model."""
from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from sweeplab.config import param
from sweeplab.task import Evaluation, Task, register_task


@dataclass(frozen=True)
class ToyConfig:
    lr: float = param(0.1, "learning rate", low=0.0, high=10.0)
    steps: int = param(5, "training steps", low=1)
    width: int = param(4, "hidden width", low=1)
    optimizer: str = param("sgd", "optimiser", choices=("sgd", "adam"))
    fail: bool = param(False, "raise during training (to test failure handling)")
    sizes: tuple[int, ...] = param((1, 2), "evaluation sizes", low=1)


def _build(cfg):
    return torch.nn.Sequential(torch.nn.Linear(3, cfg.width), torch.nn.ReLU(), torch.nn.Linear(cfg.width, 1))


def _train(cfg, data, ctx):
    if cfg.fail:
        raise RuntimeError("toy trial asked to fail")
    model = ctx.prepare_model(_build(cfg))
    start = 0
    if (ckpt := ctx.load_checkpoint()) is not None:
        model.load_state_dict(ckpt["model"])
        start = ckpt["step"]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for step in range(start, cfg.steps):
        loss = torch.nn.functional.mse_loss(model(data[0]), data[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctx.report({"step": step, "loss": loss.item()}, checkpoint={"model": model.state_dict(), "step": step + 1})
    return model


def _evaluate(cfg, model, data, ctx):
    with torch.no_grad():
        loss = float(torch.nn.functional.mse_loss(model(data[0]), data[1]))
    return Evaluation({"loss": loss, "lr_times_two": 2 * cfg.lr},
                      [{"size": s, "value": loss * s, "note": None if s == 1 else "big"} for s in cfg.sizes])


def _data(cfg):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    return x, x.sum(1, keepdim=True)


TOY = register_task(Task(name="toy", config=ToyConfig, build_model=_build, input_shape=lambda cfg: (8, 3),
                         load_data=_data, train=_train, evaluate=_evaluate, summary=("loss",)))


@pytest.fixture
def toy_spec(tmp_path):
    """A raw toy spec dict writing under tmp_path."""
    return {"name": "toy-sweep", "task": "toy", "search": {"algorithm": "grid", "space": {"lr": [0.01, 0.05]}},
            "metric": "loss", "mode": "min", "storage": str(tmp_path / "results")}


def run_cli(args, cwd, *, rc: int | None = 0, env: dict | None = None, timeout: float = 900):
    """Runs the ``sweeplab`` command in a subprocess, as a user would, asserts its exit code (unless ``rc`` is None)
    and returns the completed process (``stdout``/``stderr`` as text)."""
    proc = subprocess.run([sys.executable, "-m", "sweeplab.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout)
    if rc is not None:
        assert proc.returncode == rc, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture
def sweeplab_cli():
    """:func:`run_cli` with exit code 0."""
    return run_cli


def free_port() -> int:
    """A local TCP port nobody listens on (for an unreachable address, or a cluster's ports)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
