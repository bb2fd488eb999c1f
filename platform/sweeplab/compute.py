"""What a trial's compute cost: the compute columns of ``trials`` (:data:`sweeplab.schema.COMPUTE_COLUMNS`).

A :class:`Meter` is started at the beginning of each trial attempt. It resets the process's peak host memory
(Linux: ``/proc/self/clear_refs``, since ``ru_maxrss`` only grows, and a reused Ray actor runs many trials) and
torch's peak GPU memory counters (per process: NVML cannot split one device among fractional trials);
:meth:`Meter.close` frees the CUDA cache the trial leaves. Its :meth:`Meter.columns` are what every report of the
trial carries, so a failed or stopped trial's row has them too. Values that do not apply are None (a CPU trial's
GPU columns), never 0.
"""
from __future__ import annotations

import gc
import time
from typing import Any

import torch

try:
    import resource  # POSIX: the fallback for the peak where /proc is missing
except ImportError:
    resource = None

_MB = 2**20


def versions(ray_version: str | None) -> dict[str, str | None]:
    """The software a trial ran on: torch, its CUDA build (None for a CPU build), Ray (the runner's; None with
    ``--local``, even in a process that imported Ray)."""
    return {"torch_version": torch.__version__, "cuda_version": torch.version.cuda, "ray_version": ray_version}


def _reset_host_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass  # elsewhere the peak is the process's since it started


def host_peak_mb() -> float | None:
    """This process's peak resident memory since the last reset, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if resource is None:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """The compute of one trial attempt on one rank (see the module docstring)."""

    def __init__(self, device: torch.device, gpus_held: float, dtype: torch.dtype, ray_version: str | None = None):
        self.device, self.gpus_held, self.dtype = device, float(gpus_held), dtype
        self.cuda = device.type == "cuda" and torch.cuda.is_available()
        if self.cuda:  # what the previous trial left was freed by its close()
            torch.cuda.reset_peak_memory_stats(device)
        _reset_host_peak()
        self.t0 = time.perf_counter()
        self._fixed = {"dtype": str(dtype).removeprefix("torch."), "gpus": self.gpus_held,
                       "gpu_name": torch.cuda.get_device_name(device) if self.cuda else None, **versions(ray_version)}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def columns(self, data_wait_s: float = 0.0, train_s: float | None = None) -> dict[str, Any]:
        """The compute columns now: ``gpu_seconds`` (wall time so far x GPUs held; None without GPUs), peaks,
        versions, and ``data_wait_fraction`` (``data_wait_s`` over ``train_s``, default the wall time so far)."""
        wall = self.elapsed()
        train = wall if train_s is None else train_s
        return {**self._fixed,
                "gpu_seconds": wall * self.gpus_held if self.gpus_held else None,
                "gpu_peak_mb": torch.cuda.max_memory_allocated(self.device) / _MB if self.cuda else None,
                "host_peak_mb": host_peak_mb(),
                "data_wait_fraction": min(1.0, data_wait_s / train) if train > 0 else None}

    def close(self) -> None:
        """Free what the trial left on the device (a reused actor runs the next trial): its tensors' memory back
        to the device. A full garbage collection takes ~0.1 s with torch loaded, so CPU trials skip it (their
        memory returns as their objects go)."""
        if self.cuda:
            gc.collect()
            torch.cuda.empty_cache()


def combine(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """One trial's compute columns from each rank's (rank 0 first): memory peaks summed over the trial's
    processes, the rest rank 0's."""
    out = dict(per_rank[0])
    for key in ("gpu_peak_mb", "host_peak_mb"):
        values = [r.get(key) for r in per_rank]
        out[key] = None if any(v is None for v in values) else sum(values)
    return out
