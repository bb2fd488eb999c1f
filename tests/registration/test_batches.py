"""Training batches of the registration task: the byte-bounded cache of decoded images (what it holds, what it
drops, and the reads it saves a training run), and the ranks' shares of a global batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeplab.config import build
from sweeplab.context import LocalContext
from sweeplab.tasks.registration import data, train
from sweeplab.tasks.registration.config import RegistrationConfig

SHAPE = (16, 16, 16)
VOLUME_BYTES = 16 ** 3 * 4  # one float32 image


def test_the_cache_holds_at_most_its_bytes_dropping_the_least_recently_used():
    cache, loads = data.VolumeCache(2 * VOLUME_BYTES), []

    def load(k):
        def read():
            loads.append(k)
            return np.full(SHAPE, k, np.float32)
        return read
    for k in (0, 1, 0, 2):  # 0 used again before 2 arrives: 1 is the least recently used, dropped for 2
        assert cache.get(k, load(k))[0, 0, 0] == k
        assert cache.nbytes <= 2 * VOLUME_BYTES and cache.nbytes == len(cache) * VOLUME_BYTES
    assert loads == [0, 1, 2] and len(cache) == 2
    cache.get(0, load(0))
    cache.get(1, load(1))  # dropped before: read again, dropping 2
    assert loads == [0, 1, 2, 1]
    cache.get(0, load(0))
    assert loads == [0, 1, 2, 1]
    small = data.VolumeCache(VOLUME_BYTES - 1)  # a volume above the bound is returned, not held
    small.get(0, load(0))
    assert len(small) == 0 and small.nbytes == 0 and loads[-1] == 0


@pytest.mark.parametrize("cache_mb, decodes", [(1.0, 3), (0.0, 2 * 2 * 6)])
def test_training_decodes_each_image_once_while_the_cache_holds_it(cache_mb, decodes):
    reads = []

    def subject(k: int) -> data.Subject:
        image = np.random.default_rng(k).random(SHAPE).astype(np.float32)

        def make():
            reads.append(k)
            return image, np.zeros(SHAPE, np.int32)
        return data.Subject(f"s{k}", SHAPE, make=make)
    ds = data.RegistrationData([subject(k) for k in range(3)], [], {}, {})
    cfg = build(RegistrationConfig, {"model": "voxelmorph", "volume_shape": SHAPE, "iterations": 6, "batch_size": 2,
                                     "report_every": 6, "cache_mb": cache_mb})
    ctx = LocalContext(verbose=False, device=torch.device("cpu"))
    ctx.start_meter()
    train.train(cfg, ds, ctx)
    assert len(reads) == decodes and set(reads) == {0, 1, 2}  # 6 iterations x 2 pairs: every subject drawn
    assert ctx.data_wait_seconds > 0


def test_the_ranks_shares_make_up_the_iterations_global_batch():
    cfg = build(RegistrationConfig, {"batch_size": 4, "volume_shape": SHAPE})
    pairs = data.ordered_pairs(5)

    class Rank:
        seed = 7

        def __init__(self, rank: int, world_size: int):
            self.rank, self.world_size = rank, world_size
    for it in (0, 3):
        moving, fixed = train.rank_pairs(cfg, Rank(0, 1), pairs, it)
        assert len(moving) == len(fixed) == 4 and all(m != f for m, f in zip(moving, fixed))
        for world in (2, 4):
            shares = [train.rank_pairs(cfg, Rank(r, world), pairs, it) for r in range(world)]
            assert all(len(m) == 4 // world for m, _ in shares)
            assert [k for m, _ in shares for k in m] == moving and [k for _, f in shares for k in f] == fixed
    assert train.rank_pairs(cfg, Rank(0, 1), pairs, 0) != train.rank_pairs(cfg, Rank(0, 1), pairs, 1)
