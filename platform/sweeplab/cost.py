"""Model cost: parameter count and GMACs for a task's reference input.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no data): it counts the
FLOPs of convolutions (2D/3D, transposed included), linear layers and matrix products, and we report
MACs = FLOPs / 2. Element-wise work (activations, normalisation, GDN's square root) is not counted; that convention
is stored with every figure (column ``gmacs_convention``). 1 GMAC = 1e9 multiply-accumulates.
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
    input_shape: tuple[int, ...]
    convention: str = CONVENTION


def model_cost(task, cfg) -> Cost:
    shape = tuple(task.input_shape(cfg))
    with torch.device("meta"):
        model = task.build_model(cfg)
    if model is None:  # a method without a learned model (e.g. a codec anchor)
        return Cost(0, 0.0, shape)
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    x = torch.empty(shape, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return Cost(params, counter.get_total_flops() / 2 / 1e9, shape)
