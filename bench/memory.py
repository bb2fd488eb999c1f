"""Peak memory of a block of code, for the benchmarks (imported as ``memory`` by the scripts in this folder).

A helper module, not a benchmark: it has no ``__main__`` block, which is how ``tests/test_bench.py`` tells the two
apart (every other ``bench/*.py`` is a benchmark, run there with ``--smoke``).

On the CPU: the process's peak resident set size (VmHWM of /proc/self/status, reset through /proc/self/clear_refs
at the block's start; Linux >= 4.0), and its growth over the RSS at the start. On an accelerator:
``torch.accelerator.max_memory_allocated`` (tensors only, the caching allocator's reserve aside), reset at the start,
and its growth over the memory allocated at the start.
"""
from __future__ import annotations


def status(key: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


class Peak:
    """``with Peak() as mem: ...`` then ``mem.peak`` and ``mem.growth`` in bytes (module docstring); ``device``: a
    torch device for an accelerator's memory instead of the process's."""

    def __init__(self, device=None):
        self.accelerator = device is not None and getattr(device, "type", "cpu") != "cpu"
        self.device = device

    def __enter__(self):
        if self.accelerator:
            import torch
            torch.accelerator.synchronize(self.device)
            torch.accelerator.reset_peak_memory_stats(self.device)
            self.start = torch.accelerator.memory_allocated(self.device)
        else:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.start = status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.accelerator:
            import torch
            torch.accelerator.synchronize(self.device)
            self.peak = torch.accelerator.max_memory_allocated(self.device)
        else:
            self.peak = status("VmHWM")
        self.growth = self.peak - self.start

    def __str__(self):
        what = "peak allocated" if self.accelerator else "peak RSS"
        return f"{what} {mib(self.peak)} (+{mib(max(self.growth, 0))} over its start)"
