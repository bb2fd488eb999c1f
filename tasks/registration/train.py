"""Training and evaluation of the registration task (Shu et al., MICCAI 2021, Sections 2.4 and 3).

Training (learned models): each iteration draws ``batch_size`` ordered pairs (moving, fixed) of training subjects
at random (all ordered pairs, as the paper's 42 x 41), runs the network on (M, F) and minimises eq. 5,

    L = -sum_i gamma^(i-1) NCC_{w_i}(F, M o phi) + lambda_ * smooth(phi),

on the final warped image and the final composed flow (the authors' code; Section 2.4 constrains the smoothness of
the final flow only), with Adam (lr 1e-4, batch 1). ``batch_size`` is the global batch: the iteration's pairs depend
on the seed and the iteration only (:func:`rank_pairs`), and a trial with several workers gives each rank
batch_size / workers of them (DDP averages the gradients, so a step is the one of the whole batch). Checkpoints every
``checkpoint_every`` iterations and at the end; a retried trial resumes from the last one with the same pairs.
Decoded training images are kept in an LRU cache of at most ``cache_mb`` (``data.VolumeCache``), so a pair of
cached subjects is not read and decoded again, and a dataset larger than the bound is never all held.

The network's forward passes run under ``ctx.autocast()`` (``dtype: bfloat16``; the warps sample in float32,
``layers.warp``); eq. 5 is computed in float32 on the outputs (its local NCC subtracts window sums of squares,
which bfloat16 would cancel to noise).

Evaluation (Section 3, Table 1): every ordered test pair; the moving labels are warped with nearest-neighbour
sampling by the predicted flow (SyN: by its own transform; identity: not at all), then Dice per label against the
fixed labels, and per region group the mean of its labels' Dice; per pair also the percentage of voxels where the
Jacobian determinant of x + phi(x) is not positive (folding) and the seconds the registration took. ``evaluations``
has one row per (trial, pair, label). Trial metrics: ``dice`` = the mean over pairs of the mean over region groups
(Table 1's "Avg." row), ``label_dice`` = the mean over pairs and labels, ``dice_std`` = the standard deviation of the
pairs' ``dice``, ``folding_percent`` and ``seconds_per_pair`` means over pairs.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from sweeplab.api import Evaluation

from . import layers, losses, metrics, networks
from .config import LEARNED
from .data import VolumeCache

REPORTS = ("iteration", "progress", "loss", "similarity", "smoothness")
METRICS = {"dice": float, "label_dice": float, "dice_std": float, "folding_percent": float,
           "seconds_per_pair": float, "pairs": int}
ROWS = {"pair": str, "moving": str, "fixed": str, "label": int, "label_name": str, "group": str, "dice": float,
        "folding_percent": float, "seconds": float}
EXAMPLE = "example"  # the artifact with the middle slices of one test pair, for the plot


def _tensor(volume: np.ndarray, dtype, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(volume, dtype))[None, None].to(device)


def _volume(subject, device) -> tuple[torch.Tensor, torch.Tensor]:
    image, labels = subject.load()
    return _tensor(image, np.float32, device), _tensor(labels, np.int64, device)


def similarity(cfg) -> losses.MultiWindowNCC:
    return losses.MultiWindowNCC(tuple(cfg.windows), gamma=cfg.gamma, squared=cfg.ncc == "squared")


def rank_pairs(cfg, ctx, pairs: list[tuple[int, int]], iteration: int) -> tuple[list[int], list[int]]:
    """(moving subjects, fixed subjects) of this rank's share of the iteration's global batch: ``batch_size``
    ordered pairs drawn by a generator of (seed, iteration), rank r taking pairs r n .. r n + n - 1 with
    n = batch_size / world_size. The global batch depends on the seed and the iteration only."""
    draw = np.random.default_rng([ctx.seed, iteration]).integers(len(pairs), size=cfg.batch_size)
    n = cfg.batch_size // ctx.world_size
    mine = [pairs[k] for k in draw[ctx.rank * n:(ctx.rank + 1) * n]]
    return [m for m, _ in mine], [f for _, f in mine]


def train(cfg, data, ctx):
    """Train ULAE-net or VoxelMorph (module docstring); None for SyN and identity, which need no training."""
    if cfg.model not in LEARNED:
        return None
    net = networks.build(cfg)
    ckpt = ctx.load_checkpoint()
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
    model = ctx.prepare_model(net)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = 0
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
        start = int(ckpt["iteration"])
    sim, pairs = similarity(cfg), data.train_pairs()
    if not pairs:
        raise ValueError("no training pair: the training split needs at least two subjects")
    if cfg.batch_size % ctx.world_size:  # refused at spec load (Task.batch_field); this guards a hand-made context
        raise ValueError(f"batch_size {cfg.batch_size} does not split evenly over {ctx.world_size} workers")
    cache = VolumeCache(int(cfg.cache_mb * 2**20))

    def checkpoint(done: int) -> dict:
        return {"iteration": done, "model": net.state_dict(), "opt": opt.state_dict()}

    for it in range(start, cfg.iterations):
        with ctx.data_wait():
            moving, fixed = (torch.cat([_tensor(cache.get(k, data.train[k].load_image), np.float32, ctx.device)
                                        for k in subjects]) for subjects in rank_pairs(cfg, ctx, pairs, it))
        with ctx.autocast():
            out = model(moving, fixed)
        # eq. 5 in float32 whatever the dtype: local NCC subtracts window sums of squares (var = S_FF - S_F^2 / n),
        # which bfloat16's 8-bit mantissa would cancel to noise
        l_sim = sim(fixed, out["warped"].float())
        l_smooth = losses.smoothness(out["flow"].float())
        loss = l_sim + cfg.lambda_ * l_smooth
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = it + 1
        save = done % cfg.checkpoint_every == 0 or done == cfg.iterations
        if save or done % cfg.report_every == 0:
            ctx.report({"iteration": done, "progress": done / max(cfg.iterations, 1), "loss": float(loss.detach()),
                        "similarity": float(l_sim.detach()), "smoothness": float(l_smooth.detach())},
                       checkpoint=checkpoint(done) if save else None)
    if start >= cfg.iterations:  # nothing left to train (iterations = 0, or resumed at the end)
        ctx.report({"iteration": start, "progress": 1.0}, checkpoint=checkpoint(start))
    return net


def _register(cfg, net, moving, fixed, moving_labels, ctx):
    """(warped labels, flow (1, 3, *size), the network's output or None) of one pair, by the trial's method."""
    if cfg.model == "identity":
        return moving_labels, torch.zeros((1, 3, *moving.shape[2:]), device=moving.device), None
    if cfg.model == "syn":
        from .syn import register_syn
        _, warped_labels, flow = register_syn(fixed[0, 0].cpu().numpy(), moving[0, 0].cpu().numpy(),
                                              moving_labels[0, 0].cpu().numpy(), tuple(cfg.syn_iterations),
                                              ctx.seed, metric=cfg.syn_metric, sampling=cfg.syn_sampling)
        return (torch.as_tensor(np.asarray(warped_labels, np.int64))[None, None],
                torch.as_tensor(np.asarray(flow, np.float32))[None], None)
    with ctx.autocast():
        out = net(moving, fixed)
    flow = out["flow"].float()
    return metrics.warp_labels(moving_labels, flow), flow, out


def evaluate(cfg, net, data, ctx):
    """Every ordered test pair (module docstring); one row per (pair, label)."""
    net = ctx.unwrap(net)
    if net is not None:
        net.eval()
    pairs = data.test_pairs()
    if not pairs:
        raise ValueError("no test pair: the test split needs at least two subjects")
    rows, per_pair = [], []
    with torch.no_grad():
        for n, (i, j) in enumerate(pairs):
            mov, fix = data.test[i], data.test[j]
            moving, moving_labels = _volume(mov, ctx.device)
            fixed, fixed_labels = _volume(fix, ctx.device)
            t0 = time.perf_counter()
            warped_labels, flow, out = _register(cfg, net, moving, fixed, moving_labels, ctx)
            seconds = time.perf_counter() - t0
            fold = float(layers.folding_percent(flow.cpu()))
            per_label = metrics.dice(fixed_labels[0, 0].cpu().numpy(), np.asarray(warped_labels.cpu())[0, 0],
                                     list(data.labels))
            groups = metrics.group_dice(per_label, data.groups)
            finite = [v for v in groups.values() if math.isfinite(v)]
            per_pair.append({"dice": float(np.mean(finite)) if finite else math.nan,
                             "label_dice": float(np.nanmean(list(per_label.values()))), "fold": fold,
                             "seconds": seconds})
            name = f"{mov.name}->{fix.name}"
            rows += [{"pair": name, "moving": mov.name, "fixed": fix.name, "label": int(label),
                      "label_name": data.labels[label], "group": data.groups.get(label, ""),
                      "dice": None if not math.isfinite(d) else float(d), "folding_percent": fold,
                      "seconds": seconds} for label, d in per_label.items()]
            if n == 0:
                _keep_example(cfg, moving, fixed, flow, out, name, ctx)
            ctx.log(f"pair {n + 1}/{len(pairs)} {name}: Dice {per_pair[-1]['dice']:.4f}, folding {fold:.3f}%")
    dices = np.array([p["dice"] for p in per_pair])
    return Evaluation({"dice": float(np.nanmean(dices)), "label_dice": float(np.nanmean([p["label_dice"]
                                                                                          for p in per_pair])),
                       "dice_std": float(np.nanstd(dices)),
                       "folding_percent": float(np.mean([p["fold"] for p in per_pair])),
                       "seconds_per_pair": float(np.mean([p["seconds"] for p in per_pair])), "pairs": len(pairs)},
                      rows)


def _keep_example(cfg, moving, fixed, flow, out, name, ctx) -> None:
    """The middle axial slices of the first test pair, kept as the artifact ``example`` for the plot: the fixed,
    moving and final warped image and the flow's in-plane components; for a learned model also each step's flow
    and warped image (``steps_flow`` (steps, 2, X, Y), ``steps_warped`` (steps, X, Y): M_1, M_2, ..., the last the
    final warp), what Fig. 3 shows and Fig. 4's differences |M_1 - M|, |M_2 - M_1|, |final - M_2| are made of."""
    mid = moving.shape[-1] // 2
    steps = {}
    if out is None:
        warped = layers.SpatialTransformer(tuple(moving.shape[2:]))(moving.cpu(), flow.cpu())
    else:
        warped = out["warped"].float().cpu()
        steps = {"steps_flow": np.stack([f[0, :2, ..., mid].float().cpu().numpy() for f in out["flows"]]),
                 "steps_warped": np.stack([w[0, 0, ..., mid].float().cpu().numpy() for w in out["warped_steps"]])}
    ctx.save_artifact(EXAMPLE, {"pair": name, "method": cfg.model,
                                "fixed": fixed[0, 0, ..., mid].cpu().numpy(),
                                "moving": moving[0, 0, ..., mid].cpu().numpy(),
                                "warped": warped[0, 0, ..., mid].numpy(),
                                "flow": flow[0, :2, ..., mid].cpu().numpy(), **steps})
