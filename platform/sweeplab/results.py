"""Results: a Parquet dataset per sweep, ``<storage>/<sweep>/results/{trials,evaluations}.parquet``.

Each trial leaves a *fragment* folder ``<sweep>/fragments/<trial_id>/`` (``trial.parquet`` and
``evaluations.parquet`` written by the trial's rank 0; ``status.json`` written by the driver when the trial ends).
:func:`consolidate` rebuilds both tables from the fragments, so it is idempotent: a retried or resumed trial
overwrites its own fragment and a table never holds a trial twice. Every file is written to a temporary name in the
same folder and renamed into place (``os.replace`` is atomic on POSIX), so a crash never leaves a half-written
table. Only the driver calls :func:`consolidate`. The schema is documented in the README ("Results").
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import sweeplab

TABLES = ("trials", "evaluations")
# Columns of the trials table before the task's config and metric columns, in order.
TRIAL_COLUMNS = ("sweep", "task", "trial_id", "status", "error", "params", "gmacs", "gmacs_convention",
                 "input_shape", "train_seconds", "device", "num_workers", "seed", "code_version", "started_at",
                 "ended_at")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_table(path: Path, frame: pd.DataFrame) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def fragment_dir(sweep_dir: Path, trial_id: str) -> Path:
    return Path(sweep_dir) / "fragments" / trial_id


def write_fragment(sweep_dir: Path, trial_id: str, trial_row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Called by a trial's rank 0 when it finishes (evaluations first: the trial row marks completion)."""
    where = fragment_dir(sweep_dir, trial_id)
    atomic_write_table(where / "evaluations.parquet", pd.DataFrame(rows))
    atomic_write_table(where / "trial.parquet", pd.DataFrame([trial_row]))


def write_status(sweep_dir: Path, trial_id: str, status: str, config: dict[str, Any], error: str | None = None,
                 last_metrics: dict[str, Any] | None = None) -> None:
    """Called by the driver when a trial ends: completed, failed or stopped (early, by the scheduler)."""
    doc = {"trial_id": trial_id, "status": status, "error": error, "config": config,
           "last_metrics": {k: v for k, v in (last_metrics or {}).items() if isinstance(v, (int, float, str))}}
    atomic_write_bytes(fragment_dir(sweep_dir, trial_id) / "status.json",
                       json.dumps(doc, default=str, indent=1).encode())


def read_status(sweep_dir: Path, trial_id: str) -> dict | None:
    path = fragment_dir(sweep_dir, trial_id) / "status.json"
    return json.loads(path.read_text()) if path.exists() else None


def completed_trial(sweep_dir: Path, trial_id: str) -> dict | None:
    """The finished trial's row (dict) when its fragment is complete, else None."""
    path = fragment_dir(sweep_dir, trial_id) / "trial.parquet"
    return pq.read_table(path).to_pylist()[0] if path.exists() else None


def consolidate(sweep_dir: Path, sweep: str, task: str) -> dict[str, int]:
    """Rebuild ``results/trials.parquet`` and ``results/evaluations.parquet`` from the fragments."""
    sweep_dir = Path(sweep_dir)
    trials, evals = [], []
    frag_root = sweep_dir / "fragments"
    for frag in sorted(frag_root.iterdir()) if frag_root.exists() else []:
        status = read_status(sweep_dir, frag.name)
        row = completed_trial(sweep_dir, frag.name)
        if row is not None:
            if status and status["status"] == "failed":  # finished evaluating, then failed while reporting
                row.update(status="failed", error=status["error"])
            trials.append(row)
            evals.append(pq.read_table(frag / "evaluations.parquet").to_pandas())
        elif status is not None:
            trials.append({"sweep": sweep, "task": task, "trial_id": frag.name, "status": status["status"],
                           "error": status["error"], **status["config"], **status["last_metrics"]})
    trials_df = pd.DataFrame(trials)
    if not trials_df.empty:
        first = [c for c in TRIAL_COLUMNS if c in trials_df.columns]
        trials_df = trials_df[first + [c for c in trials_df.columns if c not in first]]
    evals_df = pd.concat([e for e in evals if not e.empty], ignore_index=True) if any(
        not e.empty for e in evals) else pd.DataFrame(columns=["sweep", "task", "trial_id"])
    out = sweep_dir / "results"
    atomic_write_table(out / "trials.parquet", trials_df)
    atomic_write_table(out / "evaluations.parquet", evals_df)
    return {"trials": len(trials_df), "evaluations": len(evals_df)}


def write_sweep_info(spec, planned: int) -> None:
    """``<sweep>/sweep.json``: what ``sweeplab status`` needs beside the fragments (the objective, the number of
    trials planned). Written by the driver when the sweep starts or resumes."""
    doc = {"name": spec.name, "task": spec.task.name, "metrics": spec.metrics, "modes": spec.modes,
           "planned_trials": planned, "space": sorted(spec.space), "source": spec.source}
    atomic_write_bytes(Path(spec.sweep_dir) / "sweep.json", json.dumps(doc, indent=1).encode())


STATES = ("running", "completed", "stopped", "failed")


def sweep_status(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep as its storage shows it now: counts per state, every trial's last metrics, the best so far per
    metric (over completed trials). Reads only files, so it works while the sweep runs, from any machine that
    sees the storage."""
    sweep_dir = Path(sweep_dir)
    info_path = sweep_dir / "sweep.json"
    if not info_path.exists():
        raise FileNotFoundError(f"no sweep under {sweep_dir} (expected {info_path}; has the sweep started?)")
    info = json.loads(info_path.read_text())
    trials = []
    frag_root = sweep_dir / "fragments"
    for frag in sorted(frag_root.iterdir()) if frag_root.exists() else []:
        status, row = read_status(sweep_dir, frag.name), completed_trial(sweep_dir, frag.name)
        if status is None and row is None:
            continue
        state = status["status"] if status else "running"  # rank 0 wrote its results, the driver not yet
        metrics = dict(status["last_metrics"]) if status else {}
        if row is not None:
            metrics.update({k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in metrics})
        if state == "completed":
            metrics["progress"] = 1.0
        trials.append({"trial_id": frag.name, "status": state, "config": status["config"] if status else {},
                       "metrics": metrics, "error": status.get("error") if status else None})
    counts = {s: sum(t["status"] == s for t in trials) for s in STATES}
    best = {}
    for metric, mode in zip(info["metrics"], info["modes"]):
        scored = [t for t in trials if t["status"] == "completed" and isinstance(t["metrics"].get(metric),
                                                                                 (int, float))]
        if scored:
            pick = (min if mode == "min" else max)(scored, key=lambda t: t["metrics"][metric])
            best[metric] = {"value": pick["metrics"][metric], "mode": mode, "trial_id": pick["trial_id"],
                            "config": {k: pick["config"].get(k) for k in info["space"]}}
    pending = max(info["planned_trials"] - len(trials), 0)
    return {**info, "counts": {**counts, "pending": pending}, "best": best, "trials": trials}


def results_dir(spec_or_dir: str | Path) -> Path:
    """Accepts a spec file, a sweep folder or its ``results`` folder."""
    path = Path(spec_or_dir)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        from .spec import load
        path = load(path).sweep_dir
    for cand in (path / "results", path):
        if (cand / "trials.parquet").exists():
            return cand
    raise FileNotFoundError(f"no results under {path} (expected {path / 'results' / 'trials.parquet'}; "
                            "has the sweep run?)")


def read(spec_or_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    where = results_dir(spec_or_dir)
    return tuple(pd.read_parquet(where / f"{t}.parquet") for t in TABLES)  # type: ignore[return-value]


def query(spec_or_dir: str | Path, sql: str | None = None) -> pd.DataFrame:
    """Run SQL over the two tables (DuckDB views ``trials`` and ``evaluations``)."""
    import duckdb
    where = results_dir(spec_or_dir)
    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{(where / f'{t}.parquet').as_posix()}')")
    return con.execute(sql or "SELECT * FROM trials").df()


def code_version() -> str:
    """Package version plus the git commit of the checkout (``+dirty`` with uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"{sweeplab.__version__}+{sha}{'.dirty' if dirty else ''}" if sha else sweeplab.__version__
