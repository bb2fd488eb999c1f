"""Iterations per second of Algorithm 1 (Kanezaki 2018): our ``segment`` against the authors' way of running it.

Both sides run the same per-image loop on the same photo (scikit-image's ``astronaut``, centre-cropped to the
BSDS500 size 321 x 481 by default), the same network (M components, p = q = 100), the same seeded weights, the
same SLIC superpixels (K = 10000, compactness 100) and the same number of iterations, on the CPU, in one run:

* ours: ``tasks/segmentation/method.py:segment``: labels stay on the device, one ``bincount`` refines them;
* authors: ``authors_loop_segment``: the loop of the authors' ``demo.py``: labels copied to numpy every
  iteration and refined by a Python loop over the superpixels.

The first ``--warmup`` iterations of each side are not timed; iterations per second come from the median duration
of the others (and their mean, also printed). Prints iterations per second of both, their ratio,
whether the two label maps agree, and a breakdown of one iteration (the network's forward, loss, backward and SGD
step with each side's loss layout, and each side's refinement) so that one can see what dominates. The full run
takes a few minutes on 2 cores (about 3 s per iteration at M = 3); ``--smoke`` runs the same steps on a 48x64 crop
with M = 1, K = 100 and 4 iterations, in seconds, which proves the code runs and says nothing about the speed-up.
Usage:
    .venv/bin/python bench/segmentation.py [--M 3] [--iterations 20] [--warmup 2] [--size 321x481] [--K 10000]
    .venv/bin/python bench/segmentation.py --smoke
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data
from skimage.transform import resize

from sweeplab.tasks.segmentation.config import SegmentationConfig
from sweeplab.tasks.segmentation.method import (authors_loop_segment, authors_refine, prepare,
                                                refine_labels, segment, superpixel_members)

SMOKE = {"M": 1, "iterations": 4, "warmup": 1, "size": "48x64", "K": 100}  # --smoke: a tiny crop


def photo(height: int, width: int) -> np.ndarray:
    """``astronaut`` (512 x 512) as float RGB in [0, 1]: centre crop when it fits, else resized."""
    image = data.astronaut().astype(np.float32) / 255.0
    h, w = image.shape[:2]
    if height <= h and width <= w:
        top, left = (h - height) // 2, (w - width) // 2
        return np.ascontiguousarray(image[top:top + height, left:left + width])
    return resize(image, (height, width), anti_aliasing=True).astype(np.float32)


def iterations_per_second(fn, image, cfg, warmup: int) -> tuple[float, float, np.ndarray]:
    """Run ``fn`` (segment or authors_loop_segment); from the ``log`` call after each iteration, the durations of
    iterations warmup+1..T. Returns iterations per second from their median (robust to a busy machine) and from
    their mean, and the labels."""
    stamps: list[float] = []
    labels = fn(image, cfg, "cpu", 0, log=lambda t, n, loss: stamps.append(time.perf_counter()))
    durations = np.diff(stamps[warmup - 1:])
    return 1.0 / float(np.median(durations)), 1.0 / float(np.mean(durations)), labels


def breakdown(image, cfg, repeats: int = 3) -> dict[str, float]:
    """Seconds of one iteration's parts, median of ``repeats`` on one fresh network (its first labels):
    the network step (forward, argmax, loss, backward, SGD) with the loss on (1, q, H, W) as ``segment`` does or
    on (N, q) as ``demo.py`` does, and the refinement of each side (the authors' with its numpy round trip)."""
    _, sp_np, v, model, optimizer = prepare(image, cfg, "cpu", 0)
    n_sp, sp, members = int(sp_np.max()) + 1, torch.from_numpy(sp_np.reshape(-1)), superpixel_members(sp_np)
    times: dict[str, list[float]] = {k: [] for k in ("net_ours", "net_authors", "refine_ours", "refine_authors")}
    for _ in range(repeats):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        y = model(v)
        c = y.argmax(dim=1)
        F.cross_entropy(y, c).backward()
        optimizer.step()
        times["net_ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        optimizer.zero_grad()
        y = model(v)[0].permute(1, 2, 0).reshape(-1, cfg.q)
        c_flat = y.argmax(dim=1)
        F.cross_entropy(y, c_flat).backward()
        optimizer.step()
        times["net_authors"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = refine_labels(c_flat, sp, n_sp, cfg.q)
        times["refine_ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = torch.from_numpy(authors_refine(c_flat.cpu().numpy().copy(), members))
        times["refine_authors"].append(time.perf_counter() - t0)
        assert torch.equal(ours, theirs)
    return {k: float(np.median(x)) for k, x in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--M", type=int, default=3, help="convolutional components (paper: 1..5)")
    ap.add_argument("--iterations", type=int, default=20, help="iterations T of each side")
    ap.add_argument("--warmup", type=int, default=2, help="first iterations not timed")
    ap.add_argument("--size", default="321x481", help="HxW of the image (BSDS500: 321x481)")
    ap.add_argument("--K", type=int, default=10000, help="SLIC superpixels (paper: 10000)")
    ap.add_argument("--smoke", action="store_true", help=f"tiny run {SMOKE}: proves the code runs")
    args = ap.parse_args()
    if args.smoke:  # the smoke values replace the defaults; options given on the command line still win
        ap.set_defaults(**SMOKE)
        args = ap.parse_args()
    if not 1 <= args.warmup < args.iterations:
        ap.error("need 1 <= --warmup < --iterations")
    height, width = (int(s) for s in args.size.lower().split("x"))
    image = photo(height, width)
    cfg = SegmentationConfig(M=args.M, p=100, q=100, T=args.iterations, K=args.K, min_labels=0)
    print(f"image {height}x{width} (astronaut), M={cfg.M}, p=q=100, K={cfg.K}, T={cfg.T} "
          f"(first {args.warmup} not timed), CPU threads {torch.get_num_threads()}")
    ours, ours_mean, labels_ours = iterations_per_second(segment, image, cfg, args.warmup)
    print(f"ours (segment):                 {ours:.3f} it/s median ({1 / ours:.3f} s/it; mean {ours_mean:.3f} it/s)")
    theirs, theirs_mean, labels_theirs = iterations_per_second(authors_loop_segment, image, cfg, args.warmup)
    print(f"authors (authors_loop_segment): {theirs:.3f} it/s median ({1 / theirs:.3f} s/it; "
          f"mean {theirs_mean:.3f} it/s)")
    print(f"ratio ours / authors:           {ours / theirs:.2f}x median, {ours_mean / theirs_mean:.2f}x mean")
    # Same weights and rules, but float sums in another order (the loss on (1, q, H, W) here, on (N, q) there):
    # near-ties of the argmax flip after a few iterations, so the maps drift apart slowly.
    print(f"final labels identical on {100 * np.mean(labels_ours == labels_theirs):.2f}% of pixels; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    parts = breakdown(image, cfg)
    print(f"breakdown of one iteration (s): network forward+loss+backward+SGD ours {parts['net_ours']:.3f}, "
          f"authors {parts['net_authors']:.3f}; refinement ours {parts['refine_ours']:.4f}, "
          f"authors {parts['refine_authors']:.3f} ({parts['refine_authors'] / parts['refine_ours']:.1f}x)")


if __name__ == "__main__":
    main()
