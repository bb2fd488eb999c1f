"""The context's collectives shared by the local and Ray contexts: ``unwrap`` and ``all_reduce`` (one rank, and
two CPU ranks over gloo, as a data-parallel Ray Train trial on CPUs has)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sweeplab.context import LocalContext, all_reduce, unwrap

from .conftest import free_port


def test_one_rank_leaves_the_tensor_and_the_model_as_they_are():
    ctx, t, model = LocalContext(verbose=False), torch.tensor([1.0, 4.0]), torch.nn.Linear(2, 1)
    assert ctx.all_reduce(t, "sum") is t and t.tolist() == [1.0, 4.0]
    assert ctx.unwrap(model) is model and ctx.unwrap(None) is None
    with pytest.raises(ValueError, match="op 'median' is not one of"):
        ctx.all_reduce(t, "median")


def _rank(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 1))
        got = {op: all_reduce(torch.tensor([rank + 1.0, 10.0 * rank]), 2, op).tolist() for op in ("mean", "sum", "max")}
        out.put((rank, got, type(unwrap(model)).__name__))
        dist.barrier()  # neither rank tears the group down while the other still uses it (gloo aborts then)
    finally:
        dist.destroy_process_group()


def test_two_ranks_reduce_over_the_process_group():
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    results = {rank: (got, name) for rank, got, name in (out.get() for _ in range(2))}
    assert sorted(results) == [0, 1]
    for got, name in results.values():
        assert got == {"mean": [1.5, 5.0], "sum": [3.0, 10.0], "max": [2.0, 10.0]} and name == "Linear"
