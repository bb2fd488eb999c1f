"""Every benchmark in ``bench/`` runs in its smoke mode, so that benchmarks cannot rot.

A benchmark is a ``bench/*.py`` file with an ``if __name__ == "__main__":`` block; a file without one
(``bench/memory.py``) is a helper module the benchmarks import. Benchmarks are found by that rule, so a new one is
run here without being listed, and one without ``--smoke`` fails (argparse exits with 2 on an unknown option).
Each runs as ``python bench/<name>.py --smoke`` from the repository root (the same code path as its full run, at
tiny sizes: seconds, except the overhead benchmark's embedded Ray) and must exit with 0 and print its figures.
Smoke runs check no speed target: their sizes are too small for one.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
MAIN_BLOCK = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)
FIGURE = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")  # a decimal number: a timing, a ratio, a size
NOT_FINITE = re.compile(r"\b(nan|inf)\b", re.IGNORECASE)
RAY = {"overhead", "gpu"}  # benchmarks that start an embedded Ray
TIMEOUT_S = {"overhead": 300}  # seconds; the others get DEFAULT_TIMEOUT_S
DEFAULT_TIMEOUT_S = 180


def benchmarks() -> list[str]:
    """The benchmarks' names (file stems), by the module docstring's rule."""
    return sorted(p.stem for p in BENCH.glob("*.py") if MAIN_BLOCK.search(p.read_text()))


def test_benchmarks_are_found_and_declare_smoke():
    found = benchmarks()
    assert "memory" not in found  # the helper module
    assert {"overhead", "gpu", "results", "features", "registration", "segmentation", "tagging_memory"} <= set(found)
    for name in found:
        assert "--smoke" in (BENCH / f"{name}.py").read_text(), f"bench/{name}.py has no --smoke mode"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.ray) if n in RAY else n for n in benchmarks()])
def test_smoke(name):
    proc = subprocess.run([sys.executable, f"bench/{name}.py", "--smoke"], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S.get(name, DEFAULT_TIMEOUT_S))
    out = proc.stdout
    assert proc.returncode == 0, f"bench/{name}.py --smoke exited with {proc.returncode}\n{out[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    figures = [float(x) for x in FIGURE.findall(out)]
    assert any(x > 0 for x in figures), f"bench/{name}.py --smoke printed no figure:\n{out[-3000:]}"
    assert not NOT_FINITE.search(out), f"bench/{name}.py --smoke printed a value that is not finite:\n{out[-3000:]}"
