"""Results: two Parquet datasets per sweep, ``<sweep>/results/trials/`` and ``<sweep>/results/evaluations/``.

Layout (a local folder or an ``s3://`` prefix, see :mod:`sweeplab.storage`)::

    <sweep>/sweep.json                               the resolved spec, its fingerprint, the planned trials
    <sweep>/fragments/<trial_id>/status.json         running / completed / failed / stopped, last metrics (driver)
    <sweep>/fragments/<trial_id>/trial.parquet       the completed trial's row, written by its rank 0
    <sweep>/results/evaluations/part-<trial_id>.parquet  the trial's evaluation rows (rank 0)
    <sweep>/results/trials/part-<trial_id>.parquet       the trial's row, any status (driver, when the trial ends)
    <sweep>/results/<table>/compacted-<generation>.parquet   earlier parts merged by :func:`compact`

Recording a trial's end writes one small file whatever the size of the sweep: finishing trial 10,000 costs what
finishing trial 10 does. Each table is the newest ``compacted-*`` file plus the parts, a part replacing the rows
of its trial in the compacted file; a retried or resumed trial rewrites its own part, so no trial appears twice.
:func:`compact` (run at the end of every sweep, and by ``sweeplab compact``) merges the parts into a new
compacted file, then deletes what it merged: a reader between the two steps still sees each trial once. Every file
is written whole or not at all (:meth:`Location.write_bytes`). After compaction each table folder holds one
file, which DuckDB, pandas and pyarrow read directly. Sweeps written by the earlier layout
(``results/trials.parquet``) are read as they are and converted when resumed.

:func:`trial_row` is the one function that builds a trial's row, for every status; column types come from
:mod:`sweeplab.schema`.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import sweeplab

from . import config as C
from . import schema as S
from .storage import Location, location

TABLES = ("trials", "evaluations")
PART, COMPACTED = "part-", "compacted-"


# ---------------------------------------------------------------- writing


def write_table(loc: Location, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    loc.write_bytes(sink.getvalue().to_pybytes())


def read_table(loc: Location) -> pa.Table:
    try:
        return pq.read_table(loc.path, filesystem=loc.fs)
    except FileNotFoundError:
        raise
    except OSError:
        if not loc.exists():
            raise FileNotFoundError(f"no such file: {loc}") from None
        raise


def fragment_dir(sweep: Location, trial_id: str) -> Location:
    return location(sweep) / "fragments" / trial_id


def part(sweep: Location, table: str, trial_id: str) -> Location:
    return location(sweep) / "results" / table / f"{PART}{trial_id}.parquet"


def trial_row(task, *, sweep: str, trial_id: str, status: str, values: dict[str, Any], seed: int | None,
              error: str | None = None, metrics: dict[str, Any] | None = None, run: dict[str, Any] | None = None,
              started_from: dict[str, str] | None = None) -> dict[str, Any]:
    """The row of one trial in ``trials``, for every status.

    ``values``: the trial's config values (defaults fill the rest; fields that do not apply are null);
    ``metrics``: what the task reported (final metrics of a completed trial, the last report of a failed or
    stopped one): only the metrics the task declares are kept, so Tune's bookkeeping (``hostname``, ``pid``, ...)
    never becomes a column; ``run``: the core columns a finished trial knows (params, gmacs, device, times...).
    """
    if status not in S.STATUSES:
        raise ValueError(f"status {status!r} is not one of {S.STATUSES}")
    cfg = C.build(task.config, values)
    row: dict[str, Any] = {"sweep": sweep, "task": task.name, "trial_id": trial_id, "status": status,
                           "error": error, "seed": seed,
                           "started_from": json.dumps(started_from, sort_keys=True) if started_from else None}
    row.update({k: v for k, v in (run or {}).items() if k in S.CORE_NAMES})
    row.update(C.scalar_columns(cfg))
    for name in task.metrics:
        if metrics and name in metrics:
            row[S.metric_column(task, name)] = metrics[name]
    return row


def write_trial_result(sweep: Location, task, trial_id: str, row: dict[str, Any],
                       evaluation_rows: list[dict[str, Any]]) -> None:
    """Called by a trial's rank 0 when it finished evaluating: its evaluation part first, then its completed row
    (the fragment's ``trial.parquet``, which marks the trial as done for a retry or a resume)."""
    write_table(part(sweep, "evaluations", trial_id), S.table(evaluation_rows, S.evaluation_types(task)))
    write_table(fragment_dir(sweep, trial_id) / "trial.parquet", S.table([row], S.trial_types(task)))


def write_status(sweep: Location, trial_id: str, status: str, config: dict[str, Any], error: str | None = None,
                 last_metrics: dict[str, Any] | None = None, seed: int | None = None) -> None:
    """``status.json``: the trial's state as the driver sees it (running with its last metrics, then how it
    ended); what ``sweeplab status`` reads while the sweep runs."""
    doc = {"trial_id": trial_id, "status": status, "error": error, "config": config, "seed": seed,
           "last_metrics": {k: v for k, v in (last_metrics or {}).items()
                            if isinstance(v, (int, float, str)) and not isinstance(v, bool)}}
    (fragment_dir(sweep, trial_id) / "status.json").write_text(json.dumps(doc, default=str, indent=1))


def read_status(sweep: Location, trial_id: str) -> dict | None:
    path = fragment_dir(sweep, trial_id) / "status.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def completed_trial(sweep: Location, trial_id: str) -> dict | None:
    """The finished trial's row (dict) when rank 0 wrote it, else None."""
    path = fragment_dir(sweep, trial_id) / "trial.parquet"
    try:
        return read_table(path).to_pylist()[0]
    except FileNotFoundError:
        return None


def record_trial(sweep: Location, task, *, sweep_name: str, trial_id: str, status: str, values: dict[str, Any],
                 seed: int | None, error: str | None = None, last_metrics: dict[str, Any] | None = None,
                 started_from: dict[str, str] | None = None) -> dict[str, Any]:
    """Called by the driver when a trial ends: its ``status.json`` and its part of ``trials`` (one row, built by
    :func:`trial_row`). Costs the same at any sweep size. Returns the row."""
    done = completed_trial(sweep, trial_id)
    if done is not None and status in ("completed", "failed"):
        # rank 0 wrote the completed row; a trial that then failed (while reporting) keeps its results
        row = {**done, "status": status, "error": error if status == "failed" else None}
    else:
        if status == "completed":  # Tune says completed but rank 0 never wrote its row: it cannot be trusted
            status, error = "failed", error or "the trial ended without writing its results"
        row = trial_row(task, sweep=sweep_name, trial_id=trial_id, status=status, values=values, seed=seed,
                        error=error, metrics=last_metrics, started_from=started_from)
    write_table(part(sweep, "trials", trial_id), S.table([row], S.trial_types(task)))
    write_status(sweep, trial_id, row["status"], values, row["error"], last_metrics, seed)  # after: see recorded()
    return row


def recorded(sweep: Location, trial_id: str) -> bool:
    """Whether the driver recorded the trial's end (its ``status.json`` is written after its part)."""
    status = read_status(sweep, trial_id)
    return status is not None and status["status"] in S.STATUSES


# ---------------------------------------------------------------- compaction


def _generation(loc: Location) -> int:
    return int(loc.name[len(COMPACTED):].split(".")[0])


def table_files(sweep: Location, table: str) -> tuple[Location | None, list[Location]]:
    """(the newest compacted file or None, the parts) of one table."""
    files = (location(sweep) / "results" / table).files(".parquet")
    compacted = [f for f in files if f.name.startswith(COMPACTED)]
    return (max(compacted, key=_generation) if compacted else None,
            [f for f in files if f.name.startswith(PART)])


def _part_trial_id(loc: Location) -> str:
    return loc.name[len(PART):-len(".parquet")]


def _conform(tbl: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table with exactly ``schema``'s columns (missing ones null): parts written by another code version."""
    if tbl.schema == schema:
        return tbl
    cols = [tbl.column(f.name).cast(f.type) if f.name in tbl.column_names else pa.nulls(len(tbl), f.type)
            for f in schema]
    return pa.table(cols, schema=schema)


ROW_GROUP = 65536  # rows per row group of a compacted file: few row groups, so queries over it are fast


def _task_schemas(sweep: Location) -> dict[str, pa.Schema] | None:
    """The tables' schemas from the sweep's task (named in ``sweep.json``), or None when it cannot be had."""
    from .task import get_task
    info = read_sweep_info(sweep)
    try:
        task = get_task(info["task"]) if info else None
    except KeyError:
        return None
    return {"trials": S.trials_schema(task), "evaluations": S.evaluations_schema(task)} if task else None


def compact(sweep: str | Path | Location) -> dict[str, int]:
    """Merge each table's parts into a new compacted file, then delete what was merged; returns the row counts.
    Only one process may compact a sweep at a time: the sweep's driver at its end, or ``sweeplab compact`` under
    the sweep lock. Rows are streamed in row groups of :data:`ROW_GROUP`, so memory stays bounded; the schema is
    the task's (or, when the task cannot be imported, the union of the parts' own schemas)."""
    sweep = location(sweep)
    _migrate_legacy(sweep)
    declared = _task_schemas(sweep)
    counts = {}
    for name in TABLES:
        compacted, parts = table_files(sweep, name)
        old = pq.ParquetFile(compacted.path, filesystem=compacted.fs) if compacted else None
        if not parts:
            counts[name] = old.metadata.num_rows if old else 0
            continue
        replaced = pa.array(sorted(_part_trial_id(p) for p in parts))
        schemas = [declared[name]] if declared else [pq.read_schema(p.path, filesystem=p.fs) for p in parts]
        if old is not None:
            schemas.insert(0, old.schema_arrow)
        target = pa.unify_schemas(schemas, promote_options="permissive")
        gen = _generation(compacted) + 1 if compacted else 0
        out = location(sweep) / "results" / name / f"{COMPACTED}{gen:06d}.parquet"
        pending: list[pa.Table] = []
        rows = 0
        with out.open_output() as sink, pq.ParquetWriter(sink, target) as writer:
            def add(tbl: pa.Table, force: bool = False) -> None:
                nonlocal rows
                if len(tbl):
                    pending.append(_conform(tbl, target))
                    rows += len(tbl)
                if pending and (force or sum(len(t) for t in pending) >= ROW_GROUP):
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
                    pending.clear()

            if old is not None:
                for batch in old.iter_batches(batch_size=ROW_GROUP):
                    add(pa.Table.from_batches([batch]).filter(
                        pc.invert(pc.is_in(batch.column("trial_id"), value_set=replaced))))
            for p in parts:
                add(pq.ParquetFile(p.path, filesystem=p.fs).read())
            add(pa.table({}), force=True)
        if compacted is not None:
            compacted.delete()
        for p in parts:
            p.delete()
        counts[name] = rows
    return counts


def _migrate_legacy(sweep: Location) -> None:
    """A sweep of the earlier layout (``results/trials.parquet``): its tables become generation 0 of the new one."""
    for name in TABLES:
        legacy = sweep / "results" / f"{name}.parquet"
        if legacy.is_file():
            (sweep / "results" / name / f"{COMPACTED}{0:06d}.parquet").write_bytes(legacy.read_bytes())
            legacy.delete()


# ---------------------------------------------------------------- reading


def sweep_location(target: str | Path | Location) -> Location:
    """A spec file, a sweep folder or URI, or its ``results`` folder -> the sweep's location."""
    if isinstance(target, Location):
        return target
    text = str(target)
    if not text.startswith("s3://") and Path(text).is_file() and Path(text).suffix in (".yaml", ".yml"):
        from .spec import load
        return load(text).sweep_dir
    loc = location(target)
    return loc.parent if loc.name == "results" and not (loc / "results").exists() else loc


def has_results(sweep: Location) -> bool:
    res = sweep / "results"
    return bool((res / "trials").files(".parquet")) or (res / "trials.parquet").is_file()


def results_dir(target) -> Location:
    """The ``results`` folder of a sweep (FileNotFoundError when the sweep has written no table yet)."""
    sweep = sweep_location(target)
    if not has_results(sweep):
        raise FileNotFoundError(f"no results under {sweep} (expected {sweep / 'results' / 'trials'}; "
                                "has the sweep run?)")
    return sweep / "results"


def table_dataset(target, name: str):
    """(pyarrow dataset of the compacted file or None, pyarrow dataset of the parts or None) of one table."""
    import pyarrow.dataset as ds
    sweep = location(results_dir(target).parent)
    legacy = sweep / "results" / f"{name}.parquet"
    if legacy.is_file():
        return ds.dataset(legacy.path, filesystem=legacy.fs, format="parquet"), None
    compacted, parts = table_files(sweep, name)
    mk = (lambda files: ds.dataset([f.path for f in files], filesystem=sweep.fs, format="parquet")
          if files else None)
    return mk([compacted] if compacted else []), mk(parts)


def read_arrow(target, name: str) -> pa.Table:
    """One whole table as Arrow: the compacted rows whose trial has no newer part, then the parts."""
    compacted, parts = table_dataset(target, name)
    pieces = []
    parts_tbl = parts.to_table() if parts is not None else None
    if compacted is not None:
        tbl = compacted.to_table()
        if parts_tbl is not None and len(parts_tbl):
            tbl = tbl.filter(pc.invert(pc.is_in(tbl.column("trial_id"), value_set=pc.unique(
                parts_tbl.column("trial_id")))))
        pieces.append(tbl)
    if parts_tbl is not None:
        pieces.append(parts_tbl)
    if not pieces:
        return pa.table({k: pa.array([], pa.string()) for k in S.KEYS})
    return pa.concat_tables(pieces, promote_options="permissive")


def read(target) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tuple(read_arrow(target, t).to_pandas() for t in TABLES)  # type: ignore[return-value]


def query(target, sql: str | None = None, note: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run SQL over the two tables (DuckDB views ``trials`` and ``evaluations``). The files are read through
    pyarrow datasets registered with DuckDB, so the same query runs on a local folder and on S3 without any DuckDB
    extension; DuckDB pushes column selections and filters down into the scan. SQL names are case-insensitive:
    of two columns that differ only in case (segmentation's ``K`` superpixels and ``k`` clusters), DuckDB renames
    the later one (``k_1``); ``note`` is told each such name."""
    import duckdb
    con = duckdb.connect()
    renamed: dict[str, str] = {}
    for name in TABLES:
        compacted, parts = table_dataset(target, name)
        selects = []
        if parts is not None:
            con.register(f"_{name}_parts", parts)
            selects.append(f"SELECT * FROM _{name}_parts")
        if compacted is not None:
            con.register(f"_{name}_compacted", compacted)
            where = f" WHERE trial_id NOT IN (SELECT trial_id FROM _{name}_parts)" if parts is not None else ""
            selects.append(f"SELECT * FROM _{name}_compacted{where}")
        for dataset, view in ((parts, f"_{name}_parts"), (compacted, f"_{name}_compacted")):
            if dataset is not None:
                sql_names = [row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()]
                renamed.update({f"{name}.{a}": b for a, b in zip(dataset.schema.names, sql_names) if a != b})
        body = " UNION ALL BY NAME ".join(selects) or "SELECT NULL::VARCHAR AS trial_id WHERE false"
        con.execute(f"CREATE VIEW {name} AS {body}")
    for column, sql_name in sorted(renamed.items()) if note is not None else ():
        note(f"note: column {column} is {sql_name} in SQL (SQL names are case-insensitive and another column "
             "differs from it only in case)")
    return con.execute(sql or "SELECT * FROM trials").df()


# ---------------------------------------------------------------- the sweep as a whole


def write_sweep_info(spec, planned: int, fingerprint: dict | None = None) -> None:
    """``<sweep>/sweep.json``: what ``sweeplab status`` and ``compact`` need beside the fragments (the objective,
    the number of trials planned), and the resolved spec a resume is checked against. Written by the driver when
    the sweep starts or resumes."""
    doc = {"name": spec.name, "task": spec.task.name, "metrics": spec.metrics, "modes": spec.modes,
           "planned_trials": planned, "space": sorted(spec.space), "source": spec.source,
           "resolved": fingerprint}
    (location(spec.sweep_dir) / "sweep.json").write_text(json.dumps(doc, indent=1, default=str))


def read_sweep_info(sweep: Location) -> dict | None:
    try:
        return json.loads((location(sweep) / "sweep.json").read_text())
    except FileNotFoundError:
        return None


STATES = ("running", "completed", "stopped", "failed")


def sweep_status(target) -> dict[str, Any]:
    """The sweep as its storage shows it now: counts per state, every trial's last metrics, the best so far per
    metric (over completed trials). Reads only files, so it works while the sweep runs, from any machine that
    sees the storage."""
    sweep = location(target)
    info = read_sweep_info(sweep)
    if info is None:
        raise FileNotFoundError(f"no sweep under {sweep} (expected {sweep / 'sweep.json'}; has the sweep started?)")
    trials = []
    for frag in (sweep / "fragments").folders():
        status, row = read_status(sweep, frag.name), completed_trial(sweep, frag.name)
        if status is None and row is None:
            continue
        state = status["status"] if status else "running"  # rank 0 wrote its results, the driver not yet
        metrics = dict(status["last_metrics"]) if status else {}
        if row is not None:
            metrics.update({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                            and k not in metrics and v is not None})
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


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
