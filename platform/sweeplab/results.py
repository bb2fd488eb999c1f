"""Results: two Parquet datasets per sweep, ``<sweep>/results/trials/`` and ``<sweep>/results/evaluations/``.

The tables' files (paths in :mod:`sweeplab.layout`): ``results/<table>/part-<trial_id>.parquet``, one per finished
trial, and ``results/<table>/compacted-<generation>.parquet``, the earlier parts merged by :func:`compact`.

Recording a trial's end writes one small file whatever the size of the sweep: finishing trial 10,000 costs what
finishing trial 10 does. Each table is the newest ``compacted-*`` file plus the parts, a part replacing the rows
of its trial in the compacted file; a retried or resumed trial rewrites its own part, so no trial appears twice.
:func:`compact` (run at the end of every sweep, and by ``sweeplab compact``) merges the parts into a new
compacted file, then deletes what it merged: a reader between the two steps still sees each trial once. Every file
is written whole or not at all (:meth:`Location.write_bytes`). After compaction each table folder holds one
file, which DuckDB, pandas and pyarrow read directly. Sweeps written by the earlier layout
(``results/trials.parquet``) are read as they are and converted when resumed.

Who writes which part, and when, is :mod:`sweeplab.store`'s; column types come from :mod:`sweeplab.schema`.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from . import layout as L
from . import schema as S
from .storage import Location, StorageError, location

TABLES = L.TABLES


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


# ---------------------------------------------------------------- compaction


def table_files(sweep: Location, table: str) -> tuple[Location | None, list[Location]]:
    """(the newest compacted file or None, the parts) of one table."""
    files = L.table_dir(location(sweep), table).files(".parquet")
    compacted = [f for f in files if f.name.startswith(L.COMPACTED)]
    return (max(compacted, key=L.generation) if compacted else None,
            [f for f in files if f.name.startswith(L.PART)])


def _conform(tbl: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table with exactly ``schema``'s columns (missing ones null): parts written by another code version."""
    if tbl.schema == schema:
        return tbl
    cols = [tbl.column(f.name).cast(f.type) if f.name in tbl.column_names else pa.nulls(len(tbl), f.type)
            for f in schema]
    return pa.table(cols, schema=schema)


class CorruptFile(StorageError):
    """A table file that is not readable Parquet; the message names it. Nothing is deleted or rewritten (a
    compaction that meets one merges nothing)."""


def named_corruption(target, exc: Exception) -> Exception:
    """The :class:`CorruptFile` among the sweep's table files, after reading them failed with ``exc``; else
    ``exc``. Only a failed read pays for opening every file."""
    sweep = sweep_location(target)
    for f in (f for name in TABLES for f in L.table_dir(sweep, name).files(".parquet")):
        try:
            pq.read_schema(f.path, filesystem=f.fs)
        except (pa.ArrowInvalid, OSError) as bad:  # pyarrow's message, less the path it starts with
            return CorruptFile(f"{f} is not a readable Parquet file: {str(bad).split(chr(39) + ': ')[-1]} Move it "
                               f"out of {f.parent} to use the rest of the table (nothing was changed).")
    return exc


def _naming_corrupt_files(fn):
    """``fn(target, ...)``, a reader of the sweep's tables, raising :class:`CorruptFile` for a corrupt one."""
    @functools.wraps(fn)
    def reader(target, *args, **kwargs):
        try:
            return fn(target, *args, **kwargs)
        except (pa.ArrowInvalid, OSError) as exc:
            if isinstance(exc, (StorageError, FileNotFoundError)):
                raise
            raise named_corruption(target, exc) from None
    return reader


ROW_GROUP = 65536  # rows per row group of a compacted file: few row groups, so queries over it are fast


@_naming_corrupt_files
def compact(sweep: str | Path | Location, task=None) -> dict[str, int]:
    """Merge each table's parts into a new compacted file, then delete what was merged; returns the row counts.
    Only one process may compact a sweep at a time: the sweep's driver at its end, or ``sweeplab compact`` under
    the sweep lock. Rows are streamed in row groups of :data:`ROW_GROUP`, so memory stays bounded; the schema is
    the ``task``'s (:func:`sweeplab.store.compact` passes the sweep's), or else the union of the parts' own
    schemas."""
    sweep = location(sweep)
    _migrate_legacy(sweep)
    declared = {"trials": S.trials_schema(task), "evaluations": S.evaluations_schema(task)} if task else None
    counts = {}
    for name in TABLES:
        compacted, parts = table_files(sweep, name)
        old = pq.ParquetFile(compacted.path, filesystem=compacted.fs) if compacted else None
        if not parts:
            counts[name] = old.metadata.num_rows if old else 0
            continue
        replaced = pa.array(sorted(L.part_trial_id(p) for p in parts))
        schemas = [declared[name]] if declared else [pq.read_schema(p.path, filesystem=p.fs) for p in parts]
        if old is not None:
            schemas.insert(0, old.schema_arrow)
        target = pa.unify_schemas(schemas, promote_options="permissive")
        out = L.compacted(sweep, name, L.generation(compacted) + 1 if compacted else 0)
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
        legacy = L.legacy_table(sweep, name)
        if legacy.is_file():
            L.compacted(sweep, name, 0).write_bytes(legacy.read_bytes())
            legacy.delete()


# ---------------------------------------------------------------- reading


def sweep_location(target: str | Path | Location) -> Location:
    """A sweep folder or URI, or its ``results`` folder -> the sweep's location (a spec file is the command
    line's to resolve: :func:`sweeplab.service.sweep_of`)."""
    if isinstance(target, Location):
        return target
    loc = location(target)
    return loc.parent if loc == L.results(loc.parent) and not L.results(loc).exists() else loc


def has_results(sweep: Location) -> bool:
    return bool(L.table_dir(sweep, "trials").files(".parquet")) or L.legacy_table(sweep, "trials").is_file()


def results_dir(target) -> Location:
    """The ``results`` folder of a sweep (FileNotFoundError when the sweep has written no table yet)."""
    sweep = sweep_location(target)
    if not has_results(sweep):
        raise FileNotFoundError(f"no results under {sweep} (expected {L.table_dir(sweep, 'trials')}; "
                                "has the sweep run?)")
    return L.results(sweep)


def table_dataset(target, name: str):
    """(pyarrow dataset of the compacted file or None, pyarrow dataset of the parts or None) of one table."""
    sweep = location(results_dir(target).parent)
    legacy = L.legacy_table(sweep, name)
    if legacy.is_file():
        return ds.dataset(legacy.path, filesystem=legacy.fs, format="parquet"), None
    compacted, parts = table_files(sweep, name)
    mk = (lambda files: ds.dataset([f.path for f in files], filesystem=sweep.fs, format="parquet")
          if files else None)
    return mk([compacted] if compacted else []), mk(parts)


@_naming_corrupt_files
def read_arrow(target, name: str, trial_ids: list[str] | None = None,
               columns: list[str] | None = None) -> pa.Table:
    """One whole table as Arrow: the compacted rows whose trial has no newer part, then the parts. ``trial_ids``
    and ``columns`` narrow the read (pushed down into the scan: a few rows of a 10,000-trial table are cheap)."""
    compacted, parts = table_dataset(target, name)
    if columns is not None and "trial_id" not in columns:
        columns = ["trial_id", *columns]
    where = pc.field("trial_id").isin(trial_ids) if trial_ids is not None else None
    pieces = []
    parts_tbl = parts.to_table(columns=columns, filter=where) if parts is not None else None
    if compacted is not None:
        tbl = compacted.to_table(columns=columns, filter=where)
        if parts_tbl is not None and len(parts_tbl):
            tbl = tbl.filter(pc.invert(pc.is_in(tbl.column("trial_id"), value_set=pc.unique(
                parts_tbl.column("trial_id")))))
        pieces.append(tbl)
    if parts_tbl is not None:
        pieces.append(parts_tbl)
    if not pieces:
        return pa.table({k: pa.array([], pa.string()) for k in S.KEYS})
    return pa.concat_tables(pieces, promote_options="permissive")


@_naming_corrupt_files
def read_trial(target, trial_id: str) -> dict[str, Any] | None:
    """One trial's row of ``trials`` (None without one), as :func:`read_arrow` gives it, from one or two files at
    any sweep size: its part if any (newer than any compacted row), else the newest compacted file, filtered."""
    sweep = sweep_location(target)
    try:
        rows = read_table(L.part(sweep, "trials", trial_id)).to_pylist()
    except FileNotFoundError:
        legacy = L.legacy_table(sweep, "trials")
        source = legacy if legacy.is_file() else table_files(sweep, "trials")[0]
        if source is None:
            return None
        rows = ds.dataset(source.path, filesystem=source.fs, format="parquet").to_table(
            filter=pc.field("trial_id") == trial_id).to_pylist()
    return rows[-1] if rows else None


def read(target) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tuple(read_arrow(target, t).to_pandas() for t in TABLES)  # type: ignore[return-value]
