"""What the papers' trials cost on a GPU, and how many trials one GPU runs at once through sweeplab's Ray path.

1. Probes: for each paper spec in ``sweeps/`` (not the smoke ones), its first planned trial is trained in this
   process on the device (CUDA when there is one) at the spec's shapes for ``--probe-seconds`` after its first
   report, then stopped. From its reports: seconds per report, the projected seconds of a whole trial (elapsed over
   the fraction of training done, from the ``progress`` the tasks report), the share of training spent waiting for
   data, peak GPU and host memory (the compute columns of :mod:`sweeplab.compute`), and the projected GPU-hours of
   the spec (projected trial seconds x planned trials x GPUs per trial). A spec that cannot load here (a dataset
   folder it needs, a ``from_trials`` sweep it starts from) is listed with the reason.
2. Packing: the segmentation sweep of the first GPU run (9 trials, M in 1..3 x lr in {0.05, 0.1, 0.2}, T 300,
   K 10,000, 4 embedded mosaics of 320, 2 CPUs a trial) through the real Ray path (the run service, light trials)
   with N = 1, 2, 4, 8 trials per GPU (``gpus: 1/N``): trials per hour and the GPU's busy fraction over the whole
   sweep, from launch to the end (NVML utilisation through ``nvidia-ml-py``, sampled every 250 ms).

``--dtype bfloat16`` probes under autocast (run it beside the float32 run for the speed-up). The full run fits in
7 minutes of an H200. ``--smoke`` runs on the CPU in under a minute: each task's ``tiny`` config probed for a
second, and the packing run with N = 1, 2 over 2 tiny trials on a Ray that declares one logical GPU (no NVML: the
busy fraction is n/a). Usage:
    .venv/bin/python bench/gpu.py [--probe-seconds 15] [--packing 1,2,4,8] [--dtype bfloat16]
    .venv/bin/python bench/gpu.py --smoke
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"probe_seconds": 1.0, "packing": "1,2"}


class _Enough(Exception):
    """Ends a probe's training."""


def _probe_context(seconds: float, dtype: str):
    from sweeplab.context import LocalContext

    class Probe(LocalContext):
        """A trial's context that stops its training ``seconds`` after the first report, keeping the reports'
        times and progress."""
        def report(self, metrics, checkpoint=None):
            super().report(metrics)  # no checkpoint is written
            now = time.perf_counter()
            self.marks.append((now, metrics.get("progress")))
            if now - self.marks[0][0] >= seconds and len(self.marks) > 1:
                raise _Enough
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    ctx = Probe(trial_id="probe", seed=0, device=device, verbose=False, dtype=dtype)
    ctx.marks = []
    return ctx


def probe(task, values: dict, seconds: float, dtype: str) -> dict:
    """Train ``task`` at ``values`` for ``seconds`` after its first report (see the module docstring)."""
    from sweeplab import config as C
    cfg = C.build(task.config, values)
    ctx = _probe_context(seconds, dtype)
    meter = ctx.start_meter()
    data = task.load_data(cfg)
    try:
        task.train(cfg, data, ctx)
    except _Enough:
        pass
    cols = ctx.compute()
    meter.close()
    (t0, p0), (t1, p1) = ctx.marks[0], ctx.marks[-1]
    done = (p1 - p0) if isinstance(p0, (int, float)) and isinstance(p1, (int, float)) else None
    return {"per_report": (t1 - t0) / max(len(ctx.marks) - 1, 1),
            "trial_s": (t1 - t0) / done if done and done > 0 else None,
            "data_wait": cols.get("data_wait_fraction"), "gpu_mb": cols.get("gpu_peak_mb"),
            "host_mb": cols.get("host_peak_mb")}


def paper_specs() -> list[Path]:
    return sorted(p for p in (ROOT / "sweeps").glob("*.yaml")
                  if not p.stem.endswith(("-smoke", "-demo", "-eval")) and p.stem != "segmentation-demo")


def _fmt(v, spec: str = ".3g", none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def probes(args) -> None:
    from sweeplab.plan import Plan
    from sweeplab.spec import load, planned_configs
    from sweeplab.task import list_tasks
    print(f"probes on {'cuda: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}, "
          f"dtype {args.dtype}, {args.probe_seconds:g} s each")
    head = f"{'spec':34s} {'s/report':>9s} {'trial h':>8s} {'wait':>6s} {'GPU MiB':>8s} {'host MiB':>9s} " \
           f"{'trials':>6s} {'GPU-h':>9s}"
    print(head)
    if args.smoke:  # each task's tiny config, as the contract test runs it
        cases = [(f"{name} (tiny)", task, dict(task.tiny), 1, 0.0) for name, task in sorted(list_tasks().items())
                 if not name.startswith(("toy", "chaos", "bench"))]
    else:
        cases = []
        for path in paper_specs():
            try:
                spec = load(path)
                if spec.from_trials:
                    raise ValueError("starts from an earlier sweep's trials (from_trials)")
                cases.append((path.stem, spec.task, planned_configs(spec)[0], Plan.of(spec).samples,
                              spec.gpus * spec.workers))
            except Exception as exc:  # noqa: BLE001 - listed with its reason
                print(f"{path.stem:34s} not probed: {str(exc).splitlines()[-1][:80]}")
    for name, task, values, trials, gpus in cases:
        try:
            r = probe(task, values, args.probe_seconds, args.dtype)
        except Exception as exc:  # noqa: BLE001 - a dataset the spec needs: listed with its reason
            print(f"{name:34s} not probed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
            continue
        hours = None if r["trial_s"] is None else r["trial_s"] / 3600
        print(f"{name:34s} {r['per_report']:9.3f} {_fmt(hours, '8.3f'):>8s} {_fmt(r['data_wait'], '6.1%'):>6s} "
              f"{_fmt(r['gpu_mb'], '8.0f'):>8s} {_fmt(r['host_mb'], '9.0f'):>9s} {trials:6d} "
              f"{_fmt(None if hours is None else hours * trials * (gpus or 1), '9.2f'):>9s}", flush=True)


class Sampler:
    """The GPU's utilisation every 250 ms through NVML (``nvidia-ml-py``), in a thread; None without NVML."""

    def __init__(self):
        try:
            import pynvml
            pynvml.nvmlInit()
            self.handle, self.nvml = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml
        except Exception:  # noqa: BLE001 - no NVML, no GPU: the busy fraction is n/a
            self.nvml = None
        self.samples: list[int] = []
        self._stop = threading.Event()

    def __enter__(self):
        if self.nvml is not None:
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self):
        while not self._stop.wait(0.25):
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __exit__(self, *exc):
        self._stop.set()

    @property
    def busy(self) -> float | None:
        return sum(s > 0 for s in self.samples) / len(self.samples) if self.samples else None


def packing(args) -> None:
    import ray
    from sweeplab.ray_runner import RayBackend
    from sweeplab.service import run_sweep
    from sweeplab.spec import parse
    gpus = torch.cuda.device_count()
    ray.init(num_cpus=os.cpu_count(), num_gpus=gpus or 1, include_dashboard=True, log_to_driver=False)
    if args.smoke:
        config = {"n_mosaics": 1, "mosaic_size": 32, "T": 2, "p": 8, "q": 8, "K": 50, "keep_label_maps": 0}
        space = {"M": [1], "lr": [0.05, 0.1]}
    else:
        config = {"method": "cnn", "T": 300, "K": 10000, "n_mosaics": 4, "mosaic_size": 320}
        space = {"M": [1, 2, 3], "lr": [0.05, 0.1, 0.2]}
    n_trials = len(space["M"]) * len(space["lr"])
    print(f"\npacking: {n_trials} segmentation trials through the Ray path, {config}"
          f"{'' if gpus else ' (no GPU: one logical GPU, trials on the CPU)'}")
    print(f"{'per GPU':>7s} {'seconds':>8s} {'trials/h':>9s} {'GPU busy':>9s}")
    cpus = 1 if args.smoke else 2
    for n in (int(x) for x in args.packing.split(",")):
        storage = tempfile.mkdtemp(prefix="bench-gpu-")
        try:
            spec = parse({"name": f"pack-{n}", "task": "segmentation", "config": config, "search": {"space": space},
                          "metric": "f_measure", "mode": "max", "resources": {"cpus": cpus, "gpus": 1 / n},
                          "dtype": args.dtype, "max_concurrent": n, "storage": storage})
            t0 = time.perf_counter()
            with Sampler() as sampler:
                counts = run_sweep(spec, RayBackend(), say=lambda message: None).counts
            seconds = time.perf_counter() - t0
        finally:
            shutil.rmtree(storage, ignore_errors=True)
        assert not counts.get("failed"), counts
        print(f"{n:7d} {seconds:8.1f} {n_trials / seconds * 3600:9.1f} {_fmt(sampler.busy, '9.1%'):>9s}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe-seconds", type=float, default=15.0, help="training time of each probe")
    ap.add_argument("--packing", default="1,2,4,8", help="trials per GPU of the packing runs ('' for none)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--no-probes", action="store_true", help="the packing runs only")
    ap.add_argument("--smoke", action="store_true", help=f"CPU run {SMOKE}, tiny configs: proves the paths run")
    args = ap.parse_args()
    if args.smoke:
        ap.set_defaults(**SMOKE)
        args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if not args.no_probes:
        probes(args)
    if args.packing:
        packing(args)
    if args.smoke:
        print("smoke run: tiny configs on the CPU; the figures show that the paths run, not what a GPU does")


if __name__ == "__main__":
    main()
