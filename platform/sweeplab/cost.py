"""Model cost: parameter count and GMACs for a task's reference input.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no data): it counts the
FLOPs of convolutions (2D/3D, transposed included), linear layers and matrix products, and we report
MACs = FLOPs / 2, including the convolutions inside a normalisation (GDN's 1x1 channel mixing). Element-wise work
(activations, batch-norm statistics and scaling, GDN's square root and division) is not counted; that convention
is stored with every figure (column ``gmacs_convention``). 1 GMAC = 1e9 multiply-accumulates.

A model may take several inputs (``input_shape`` gives a tuple of shapes: ``model(*inputs)``), and a task made of
several networks lists them in ``Task.components``; each is counted the same way.
"""
from __future__ import annotations

import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

CONVENTION = "torch FlopCounterMode FLOPs/2: conv, linear, matmul; elementwise ops not counted; forward pass"


@dataclasses.dataclass(frozen=True)
class Cost:
    params: int
    gmacs: float
    input_shape: tuple[tuple[int, ...], ...]  # one shape per input
    convention: str = CONVENTION
    components: dict[str, dict] = dataclasses.field(default_factory=dict)  # name -> params, gmacs, input_shape

    @property
    def shape_text(self) -> str:
        return "+".join("x".join(map(str, s)) for s in self.input_shape)


def shapes(shape) -> tuple[tuple[int, ...], ...]:
    """One shape ``(1, 3, 64, 64)`` or several ``((1, 1, 8, 8, 8), (1, 1, 8, 8, 8))`` -> a tuple of shapes."""
    shape = tuple(shape)
    return tuple(tuple(s) for s in shape) if shape and isinstance(shape[0], (tuple, list)) else (shape,)


def count(build, shape) -> tuple[int, float, tuple[tuple[int, ...], ...]]:
    """(parameters, GMACs, input shapes) of the module ``build()`` makes, on the meta device."""
    inputs = shapes(shape)
    with torch.device("meta"):
        model = build()
    if model is None:  # a method without a learned model (e.g. a codec anchor)
        return 0, 0.0, inputs
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    xs = [torch.empty(s, device="meta") for s in inputs]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*xs)
    return params, counter.get_total_flops() / 2 / 1e9, inputs


def model_cost(task, cfg) -> Cost:
    """The inference path's cost (``build_model`` at ``input_shape``) and each component's."""
    params, gmacs, inputs = count(lambda: task.build_model(cfg), task.input_shape(cfg))
    parts = {}
    for name, (build, shape) in (task.components(cfg) if task.components else {}).items():
        p, g, s = count(build, shape)
        parts[name] = {"params": p, "gmacs": g, "input_shape": "+".join("x".join(map(str, x)) for x in s)}
    return Cost(params, gmacs, inputs, components=parts)
