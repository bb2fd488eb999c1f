"""SQL over a sweep's two tables (DuckDB views ``trials`` and ``evaluations``): ``sweeplab results --sql`` and the
conditions by which a spec picks an earlier sweep's trial (``from_trials``), on a connection that reads those
tables and nothing else (:data:`SEALED`). DuckDB is imported inside the functions (deferred: a heavy import only
queries need)."""
from __future__ import annotations

from typing import Callable

import pandas as pd

from . import results

# What a results connection may not do once its tables are registered (DuckDB settings, the last one locking them):
# no file or network access (read_csv, COPY ... TO, ATTACH, INSTALL), no extension loaded or installed.
SEALED = (("enable_external_access", "false"), ("autoinstall_known_extensions", "false"),
          ("autoload_known_extensions", "false"), ("allow_community_extensions", "false"),
          ("lock_configuration", "true"))


class QueryError(ValueError):
    """A results query that is not exactly one SELECT, or that DuckDB refused or failed (the message says why)."""


def connect(target, note: Callable[[str], None] | None = None):
    """A DuckDB connection over the sweep's two tables (views ``trials`` and ``evaluations``), sealed
    (:data:`SEALED`): it reads those tables and nothing else. The files are read through pyarrow datasets registered
    with DuckDB, so the same query runs on a local folder and on S3 without any DuckDB extension; DuckDB pushes
    column selections and filters down into the scan. SQL names are case-insensitive: of two columns that differ
    only in case (segmentation's ``K`` superpixels and ``k`` clusters), DuckDB renames the later one (``k_1``);
    ``note`` is told each such name."""
    import duckdb  # deferred: a heavy import only queries need
    con = duckdb.connect()
    renamed: dict[str, str] = {}
    for name in results.TABLES:
        compacted, parts = results.table_dataset(target, name)
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
    for key, value in SEALED:
        con.execute(f"SET {key} = {value}")
    for column, sql_name in sorted(renamed.items()) if note is not None else ():
        note(f"note: column {column} is {sql_name} in SQL (SQL names are case-insensitive and another column "
             "differs from it only in case)")
    return con


def _run(what: str, fn):
    """``fn()``, with DuckDB's errors (parser, binder, permission) as a :class:`QueryError` led by ``what``."""
    import duckdb
    try:
        return fn()
    except duckdb.Error as exc:
        raise QueryError(f"{what}: {exc}") from None


def query(target, sql: str | None = None, note: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run one SELECT statement over the two tables (:func:`connect`); anything else is a :class:`QueryError`
    (several statements, COPY, ATTACH, INSTALL, PIVOT, EXPLAIN, ...), checked before any table is opened."""
    import duckdb
    sql = sql or "SELECT * FROM trials"
    kinds = [s.type.name for s in _run("the query does not parse", lambda: duckdb.extract_statements(sql))]
    if kinds != ["SELECT"]:
        raise QueryError("a results query is exactly one SELECT statement (it reads the trials and evaluations "
                         f"tables and nothing else); this one holds {', '.join(kinds) or 'none'}")
    con = connect(target, note)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:  # a corrupt table file, named, or the query's own failure
        raise results.named_corruption(target, QueryError(f"the query failed: {exc}")) from None


def pick_trials(target, where: str | None, order_by: str | None, limit: int) -> list[str]:
    """The ids of at most ``limit`` completed trials for which the SQL expression ``where`` holds, in the order of
    ``order_by`` (ORDER BY terms). Each is parsed on its own as an expression over ``trials`` (never pasted into a
    statement) and runs on a sealed connection (:func:`connect`); a :class:`QueryError` says why one does not."""
    import duckdb
    rel = connect(target).table("trials").filter("status = 'completed'")
    if where:
        rel = _run(f"`where` is not an expression over the trials table ({where!r})",
                   lambda: rel.filter(duckdb.SQLExpression(where)))
    if order_by:
        rel = _run(f"`order_by` is not a list of ORDER BY terms over the trials table ({order_by!r})",
                   lambda: rel.order(order_by))
    return [row[0] for row in _run("the selection failed", lambda: rel.project("trial_id").limit(limit).fetchall())]
