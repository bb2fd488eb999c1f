"""Peak memory and time of one `tagging` training epoch against the number of clips in the feature store.

Ferraro et al. 2020 train on MagnaTagATune (Section VII), whose training split (folders 0-b) alone is about 17 GB
at 16 kHz, 128 bands, hop x1 once derived. The trial must read its mini-batches from the store
(``FeatureStore.get`` returns a lazy ``FeatureView``) so that its memory does not grow with the number of clips.

For each ``--sizes`` N: a store of the real layout (``<feature_dir>/<key>/<sample_rate>/mel<n_mels>.npy`` and
``clips.json``, what ``FeatureStore`` reads) is written straight to a temporary folder, with RANDOM float32 power
values (``np.lib.format.open_memmap``; no audio is synthesised or transformed: the features' values do not change
the memory or the reads) for N training clips and ``--eval-clips`` validation and test clips; only the mel count
trained is written. Then a fresh Python process (this script with ``--child``) runs ONE epoch of the real
``tasks/tagging/train.py:train`` (data loading, one epoch, validation) on it, and measures, with
``bench/memory.py``, its peak RSS during that call (VmHWM, reset at the call's start) and the call's seconds
(building the model, the epoch and its validation pass).

The configuration: VGG-CNN at 12 kHz, 8 mel bands, hop x1, dB (Table II's smallest store: 8 x 1366 float32 per
clip, 700 MB at 16,000 clips). To keep an epoch to minutes on 2 CPU cores, the process is rank 0 of
``--world-size`` W data-parallel ranks (``ctx.world_size = W``, the path a Ray Train worker takes; there are no
other ranks, so gradients are not averaged): mini-batches of 32 W clips, of which this rank reads and trains on
every W-th, i.e. 32 clips per step and N / W clips per epoch, drawn from the whole store by the epoch's random
permutation. The store's pages are in the page cache (just written), as on a node that holds the store.

"before": the same run with every split materialised in memory first (``np.asarray(view)``: what the trial did
when ``FeatureStore.get`` returned whole arrays), at the smallest and the largest size.

Prints per run: clips, store MiB, peak RSS MiB (and its growth over the call's start), seconds per epoch; then the
ratio largest / smallest peak RSS of the lazy runs and whether it is < 1.3. The full run takes several minutes
on 2 cores; ``--smoke`` runs both modes on one store of 64 clips (2 ranks, 8 validation clips), in seconds,
which proves the code runs and says nothing about the target (its ratios compare the one size with itself). Usage:
    .venv/bin/python bench/tagging_memory.py [--sizes 1000,4000,16000] [--world-size 16] [--eval-clips 128]
        [--no-before] [--dir /tmp]
    .venv/bin/python bench/tagging_memory.py --smoke
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from memory import Peak  # bench/memory.py
from sweeplab.tasks.tagging.config import TaggingConfig
from sweeplab.tasks.tagging.data import Clip, TaggingData
from sweeplab.tasks.tagging.features import n_frames

CONFIG = dict(model="vgg", sample_rate=12000, n_mels=8, hop_factor=1, log="dB", epochs=1, patience=0)
PER_RANK_BATCH = 32
N_TAGS = 50
KEY = "bench"
WRITE_CLIPS = 1000  # clips written per chunk
SMOKE = {"sizes": "64", "world_size": 2, "eval_clips": 8}  # --smoke: one tiny store, one step per epoch


def dataset(n_train: int, n_eval: int) -> TaggingData:
    """Clips (ids only: their audio is never loaded) and random 0/1 labels with both classes in every tag."""
    rng = np.random.default_rng(0)
    sizes = {"train": n_train, "valid": n_eval, "test": n_eval}
    labels = {s: (rng.random((n, N_TAGS)) < 0.2).astype(np.float32) for s, n in sizes.items()}
    for y in labels.values():
        y[0], y[1] = 1.0, 0.0
    splits = {s: [Clip(f"{s}-{i}", labels[s][i]) for i in range(n)] for s, n in sizes.items()}
    return TaggingData([f"tag{j}" for j in range(N_TAGS)], splits, labels, KEY)


def write_store(feature_dir: Path, data: TaggingData, cfg: TaggingConfig) -> int:
    """The store folders ``train._features`` asks for (key ``<data.key>-<split>-<n clips>``), random power values;
    returns the bytes written."""
    rng, total = np.random.default_rng(1), 0
    for split, clips in data.splits.items():
        folder = feature_dir / f"{data.key}-{split}-{len(clips)}" / str(cfg.sample_rate)
        folder.mkdir(parents=True)
        path = folder / f"mel{cfg.n_mels}.npy"
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                        shape=(len(clips), cfg.n_mels, n_frames(cfg.sample_rate)))
        for a in range(0, len(clips), WRITE_CLIPS):
            chunk = out[a:a + WRITE_CLIPS]
            chunk[:] = rng.exponential(1e-3, chunk.shape).astype(np.float32)
        out.flush()
        del out
        (folder / "clips.json").write_text(json.dumps([c.clip_id for c in clips]))
        total += path.stat().st_size
    return total


def child(args) -> None:
    """One epoch of train() on the store under ``args.store``; prints one JSON line."""
    import torch
    from sweeplab.context import LocalContext
    from sweeplab.tasks.tagging import train as T

    cfg = TaggingConfig(**CONFIG, batch_size=PER_RANK_BATCH * args.world_size, feature_dir=args.store,
                        n_tags=N_TAGS)
    data = dataset(args.clips, args.eval_clips)
    ctx = LocalContext(seed=0, device=torch.device("cpu"), verbose=False)
    ctx.rank, ctx.world_size = 0, args.world_size  # rank 0 of W (module docstring)
    if args.before:  # the old behaviour: every split in memory
        lazy = T._features
        T._features = lambda *a: {split: np.asarray(view) for split, view in lazy(*a).items()}
    torch.manual_seed(0)
    with Peak() as mem:
        start = time.perf_counter()
        T.train(cfg, data, ctx)
        seconds = time.perf_counter() - start
    assert len(ctx.reports) == 1, ctx.reports
    print(json.dumps({"peak": mem.peak, "growth": mem.growth, "seconds": seconds,
                      "loss": ctx.reports[0]["loss"]}))


def run(args, n: int, before: bool, parent: Path) -> dict:
    root = Path(tempfile.mkdtemp(prefix="tagging-memory-", dir=parent))
    try:
        stored = write_store(root, dataset(n, args.eval_clips), TaggingConfig(**CONFIG))
        cmd = [sys.executable, __file__, "--child", "--clips", str(n), "--store", str(root), "--world-size",
               str(args.world_size), "--eval-clips", str(args.eval_clips), *(["--before"] if before else [])]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root)
    result.update(clips=n, stored=stored, before=before)
    print(f"{'before' if before else 'lazy':>6} {n:>7,} {stored / 2**20:>10.0f} {result['peak'] / 2**20:>14.0f} "
          f"{result['growth'] / 2**20:>8.0f} {result['seconds']:>13.1f}", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,4000,16000", help="training clips in the store, comma-separated")
    ap.add_argument("--world-size", type=int, default=16, help="data-parallel ranks W; this process is rank 0")
    ap.add_argument("--eval-clips", type=int, default=128, help="validation and test clips")
    ap.add_argument("--no-before", action="store_true", help="skip the runs with the splits materialised")
    ap.add_argument("--dir", default=None, help="parent of the temporary store folder (default: the system's)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--clips", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help=f"tiny run {SMOKE}: proves the code runs")
    args = ap.parse_args()
    if args.smoke:  # the smoke values replace the defaults; options given on the command line still win
        ap.set_defaults(**SMOKE)
        args = ap.parse_args()
    if args.child:
        child(args)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    parent = Path(args.dir or tempfile.gettempdir())
    frames = n_frames(CONFIG["sample_rate"], CONFIG["hop_factor"])
    print(f"one epoch of train(): VGG-CNN, {CONFIG['sample_rate']} Hz, {CONFIG['n_mels']} mel, "
          f"hop x{CONFIG['hop_factor']} ({frames} frames), {CONFIG['log']}; rank 0 of {args.world_size}: "
          f"{PER_RANK_BATCH} clips per step, N / {args.world_size} clips per epoch; {args.eval_clips} validation "
          f"clips; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'mode':>6} {'clips':>7} {'store MiB':>10} {'peak RSS MiB':>14} {'growth':>8} {'s per epoch':>13}")
    lazy = [run(args, n, False, parent) for n in sizes]
    before = [] if args.no_before else [run(args, n, True, parent) for n in sorted({sizes[0], sizes[-1]})]
    for mode, runs in (("lazy", lazy), ("before", before)):
        if runs:
            ratio = runs[-1]["peak"] / runs[0]["peak"]
            print(f"peak RSS {runs[-1]['clips']:,} / {runs[0]['clips']:,} clips ({mode}): {ratio:.3f} "
                  f"({'<' if ratio < 1.3 else 'NOT <'} 1.3)")


if __name__ == "__main__":
    main()
