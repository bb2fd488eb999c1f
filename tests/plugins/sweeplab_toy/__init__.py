"""The tests' toy task: a tiny regression model that trains in milliseconds, with a config holding every kind of
value (float, int, str, bool, tuple, a conditional field), failures on demand and a saved model. Loaded by the
tests' conftest in-process, and through ``SWEEPLAB_TASK_MODULES=sweeplab_toy`` (``tests/plugins`` on
``PYTHONPATH``) by CLI subprocesses and Ray workers (``tests.conftest.PLUGIN_ENV``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sweeplab.artifacts import Needs
from sweeplab.config import param
from sweeplab.task import Evaluation, Task, register_task


@dataclass(frozen=True)
class ToyConfig:
    lr: float = param(0.1, "learning rate", low=0.0, high=10.0)
    steps: int = param(5, "training steps (0: evaluate the model it starts from)", low=0)
    width: int = param(4, "hidden width", low=1)
    optimizer: str = param("sgd", "optimiser", choices=("sgd", "adam"))
    momentum: float = param(0.0, "SGD momentum", low=0.0, high=1.0, when={"optimizer": "sgd"})
    fail: bool = param(False, "raise during training (to test failure handling)")
    sizes: tuple[int, ...] = param((1, 2), "evaluation sizes", low=1)
    keep_model: bool = param(False, "save the trained model as the artifact 'model'")


def _build(cfg):
    return torch.nn.Sequential(torch.nn.Linear(3, cfg.width), torch.nn.ReLU(), torch.nn.Linear(cfg.width, 1))


def _train(cfg, data, ctx):
    if cfg.fail:
        raise RuntimeError("toy trial asked to fail")
    model = ctx.prepare_model(_build(cfg))
    if (init := ctx.sources.get("init")) is not None:  # a trained toy model of an earlier sweep
        model.load_state_dict(init.load("model")["state"])
    start = 0
    if (ckpt := ctx.load_checkpoint()) is not None:
        model.load_state_dict(ckpt["model"])
        start = ckpt["step"]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for step in range(start, cfg.steps):
        with ctx.autocast():
            prediction = model(data[0])
        loss = torch.nn.functional.mse_loss(prediction.float(), data[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctx.report({"step": step, "loss": loss.item()}, checkpoint={"model": model.state_dict(), "step": step + 1})
    if cfg.keep_model:
        ctx.save_artifact("model", {"state": model.state_dict(), "width": cfg.width})
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
                         load_data=_data, train=_train, evaluate=_evaluate,
                         metrics={"loss": float, "lr_times_two": float},
                         eval_columns={"size": int, "value": float, "note": str}, reports=("step", "loss"),
                         sources={"init": Needs(("model",), same=("width",), doc="a trained toy model")},
                         summary=("loss",)))
