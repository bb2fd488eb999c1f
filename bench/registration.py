"""One training iteration of ULAE-net and of VoxelMorph, and our multi-window NCC against MONAI's, in one run.

* Training iteration (Shu et al., MICCAI 2021, eq. 5): forward on (M, F), L = MultiWindowNCC((11, 9, 7),
  gamma 0.5, squared)(F, M o phi) + lambda * smoothness(phi) with lambda = 1, backward, one Adam step (lr 1e-4), on
  one pair (batch 1, the paper's) of smooth random volumes of ``--size`` (default 64x80x64, which fits a laptop;
  the paper's is ``--size 160 192 160 --device cuda``). Models: ULAE-net (shared decoder, the paper's) and
  VoxelMorph (vm2). The first ``--warmup`` iterations are not timed; seconds are the median of the next
  ``--repeats``. Each model runs in a fresh Python process (this script with ``--model``), so that memory freed by
  one and kept by the allocator does not hide the other's. Peak memory (``bench/memory.py``) during the timed and
  untimed iterations: the process's peak RSS on the CPU, the accelerator's peak allocated memory otherwise, and its
  growth over what the model, the optimiser and the inputs already held before them.
* NCC: ``MultiWindowNCC`` (three separable box filters per moment, the five moments in one grouped convolution per
  axis) against the sum over the same windows with the same weights gamma^(i-1) of MONAI's
  ``LocalNormalizedCrossCorrelationLoss(kernel_type="rectangular")`` (its squared local NCC, already negated, so
  the sums compare directly), on the same two volumes of ``--ncc-size`` (default the paper's 160x192x160, which
  fits on the CPU): forward and backward (gradient with respect to the warped
  volume) seconds, median of ``--repeats``, their ratio, and the largest difference of the loss and of the gradient.

The full run takes a few minutes on 2 cores (mostly MONAI's side of the NCC); ``--smoke`` runs the same steps on
32^3 volumes, one timed iteration each, in seconds, which proves the code runs and says nothing about the paper's
sizes. Usage:
    .venv/bin/python bench/registration.py [--size 64 80 64] [--ncc-size 160 192 160] [--device cpu]
        [--repeats 3] [--warmup 1]
    .venv/bin/python bench/registration.py --smoke
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import LocalNormalizedCrossCorrelationLoss

from memory import Peak  # bench/memory.py
from sweeplab.tasks.registration.losses import MultiWindowNCC, smoothness
from sweeplab.tasks.registration.networks import ULAENet, VoxelMorph

WINDOWS, GAMMA, LAMBDA = (11, 9, 7), 0.5, 1.0
MODELS = {"ulae": ("ULAE-net (shared)", ULAENet), "voxelmorph": ("VoxelMorph (vm2)", VoxelMorph)}
SMOKE = {"size": (32, 32, 32), "ncc_size": (32, 32, 32), "repeats": 1, "warmup": 0}  # --smoke (ULAE: >= 32)


def volumes(size, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A moving and a fixed volume in [0, 1]: seeded uniform noise smoothed by two 5^3 box filters."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        x = torch.rand(1, 1, *size, generator=g)
        x = F.avg_pool3d(F.avg_pool3d(x, 5, 1, 2), 5, 1, 2)
        out.append(((x - x.min()) / (x.max() - x.min())).to(device))
    return out[0], out[1]


def _sync(device: torch.device) -> None:
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def train_iteration(name: str, model: torch.nn.Module, size, device, repeats: int, warmup: int) -> None:
    moving, fixed = volumes(size, device)
    sim, opt = MultiWindowNCC(WINDOWS, GAMMA, squared=True), torch.optim.Adam(model.parameters(), lr=1e-4)
    durations = []
    with Peak(device) as peak:
        for i in range(warmup + repeats):
            _sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = model(moving, fixed)
            loss = sim(fixed, out["warped"]) + LAMBDA * smoothness(out["flow"])
            loss.backward()
            opt.step()
            _sync(device)
            if i >= warmup:
                durations.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    print(f"{name:<22} {params:>9,} params  {np.median(durations):7.3f} s/iteration median "
          f"(min {min(durations):.3f}, max {max(durations):.3f})  {peak}", flush=True)


def ncc_against_monai(size, device, repeats: int) -> None:
    fixed, moving = volumes(size, device)
    ours = MultiWindowNCC(WINDOWS, GAMMA, squared=True)
    monai = [LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=w, kernel_type="rectangular").to(device)
             for w in WINDOWS]

    def theirs(f, m):
        return sum(GAMMA ** i * loss(m, f) for i, loss in enumerate(monai))  # each is -mean(squared local NCC)

    results = {}
    for label, fn in (("ours", ours), ("monai", theirs)):
        times, value, grad = [], None, None
        for _ in range(repeats + 1):  # the first call is a warm-up
            m = moving.clone().requires_grad_()
            _sync(device)
            t0 = time.perf_counter()
            value = fn(fixed, m)
            value.backward()
            _sync(device)
            times.append(time.perf_counter() - t0)
            grad = m.grad
        results[label] = (float(np.median(times[1:])), value.detach(), grad)
    (t_o, v_o, g_o), (t_m, v_m, g_m) = results["ours"], results["monai"]
    print(f"multi-window NCC {WINDOWS}, gamma {GAMMA}, squared, {'x'.join(map(str, size))}, forward+backward: "
          f"ours {t_o:.4f} s, MONAI (sum of 3 LocalNormalizedCrossCorrelationLoss) {t_m:.4f} s, "
          f"MONAI / ours {t_m / t_o:.2f}x")
    print(f"  loss ours {float(v_o):.8f}, MONAI {float(v_m):.8f}, |difference| {abs(float(v_o - v_m)):.2e}; "
          f"largest gradient difference {float((g_o - g_m).abs().max()):.2e} "
          f"(largest gradient {float(g_o.abs().max()):.2e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=3, default=(64, 80, 64), help="volume sides, multiples of 16 "
                    "(paper: 160 192 160)")
    ap.add_argument("--ncc-size", type=int, nargs=3, default=(160, 192, 160), help="volume sides of the NCC "
                    "comparison")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    ap.add_argument("--repeats", type=int, default=3, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--model", choices=sorted(MODELS), help="only this model's training iteration (in this process)")
    ap.add_argument("--smoke", action="store_true", help=f"tiny run {SMOKE}: proves the code runs")
    args = ap.parse_args()
    if args.smoke:  # the smoke values replace the defaults; options given on the command line still win
        ap.set_defaults(**SMOKE)
        args = ap.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        ap.error("need --repeats >= 1 and --warmup >= 0")
    size, device = tuple(args.size), torch.device(args.device)
    if args.model:
        torch.manual_seed(0)
        name, cls = MODELS[args.model]
        train_iteration(name, cls(size).to(device), size, device, args.repeats, args.warmup)
        return
    print(f"size {'x'.join(map(str, size))}, device {device}, CPU threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; one iteration = forward, eq. 5 "
          f"(windows {WINDOWS}, lambda {LAMBDA}), backward, Adam step", flush=True)
    common = ["--size", *map(str, size), "--device", args.device, "--repeats", str(args.repeats),
              "--warmup", str(args.warmup)]
    for model in MODELS:
        subprocess.run([sys.executable, __file__, *common, "--model", model], check=True)
    ncc_against_monai(tuple(args.ncc_size), device, args.repeats)


if __name__ == "__main__":
    main()
