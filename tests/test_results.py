"""The results layer: one row builder for every status, typed parts, compaction, the earlier layout, SQL."""
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sweeplab import cli, results, sql, store
from sweeplab import schema as S
from sweeplab.storage import location
from tests.conftest import TOY

TUNE_JUNK = {"hostname": "node-1", "pid": 4242, "node_ip": "10.0.0.1", "date": "2026-12-01", "done": False,
             "time_this_iter_s": 0.1, "training_iteration": 3}


def _complete(sweep, trial_id, lr, value):
    """What a trial's rank 0 writes (its row and evaluation rows), then what the driver records."""
    row = store.trial_row(TOY, sweep="s", trial_id=trial_id, status="completed", values={"lr": lr}, seed=7,
                            metrics={"loss": value, "lr_times_two": 2 * lr}, run={"params": 21, "gmacs": 1e-7})
    evals = [{"sweep": "s", "task": "toy", "trial_id": trial_id, "size": s, "value": value * s} for s in (1, 2)]
    store.write_trial_result(sweep, TOY, trial_id, row, evals)
    return store.record_trial(sweep, TOY, sweep_name="s", trial_id=trial_id, status="completed",
                                values={"lr": lr}, seed=7, last_metrics=TUNE_JUNK)


def _fail(sweep, trial_id, status="failed"):
    return store.record_trial(sweep, TOY, sweep_name="s", trial_id=trial_id, status=status,
                                values={"lr": 3.0, "sizes": (4, 5), "fail": True, "optimizer": "adam"}, seed=9,
                                error="boom" if status == "failed" else None,
                                last_metrics={**TUNE_JUNK, "loss": 9.0, "step": 2})


def test_every_status_has_the_same_typed_schema(tmp_path):
    sweep = location(tmp_path)
    _complete(sweep, "t0", 0.1, 1.0)
    _fail(sweep, "t1")
    _fail(sweep, "t2", "stopped")
    parts = {p.name: pq.read_schema(p.path) for p in (sweep / "results" / "trials").files()}
    assert len(parts) == 3 and len({str(s) for s in parts.values()}) == 1  # identical column types
    schema = next(iter(parts.values()))
    assert schema == S.trials_schema(TOY)
    types = {f.name: f.type for f in schema}
    assert types["lr"] == pa.float64() and types["steps"] == pa.int64() and types["fail"] == pa.bool_()
    assert types["optimizer"] == pa.string() and types["sizes"] == pa.string()
    assert not TUNE_JUNK.keys() & set(schema.names)  # Tune's bookkeeping never becomes a column
    trials, _ = results.read(tmp_path)
    by_id = trials.set_index("trial_id")
    assert by_id.loc["t1", "status"] == "failed" and by_id.loc["t1", "error"] == "boom"
    assert by_id.loc["t1", "steps"] == 5 and by_id.loc["t1", "sizes"] == "4,5"  # defaults the spec did not name
    assert by_id.loc["t1", "loss"] == 9.0 and pd.isna(by_id.loc["t1", "lr_times_two"])  # only what it reported
    assert by_id.loc["t2", "status"] == "stopped" and by_id.loc["t0", "lr_times_two"] == pytest.approx(0.2)
    # a field that does not apply is null, not its default: momentum is an SGD setting
    assert by_id.loc["t0", "momentum"] == 0.0 and pd.isna(by_id.loc["t1", "momentum"])
    assert by_id.loc["t0", "seed"] == 7 and by_id.loc["t1", "seed"] == 9


def test_compaction_is_atomic_and_never_duplicates(tmp_path):
    sweep = location(tmp_path)
    for i in range(3):
        _complete(sweep, f"t{i}", 0.1 * (i + 1), float(i))
    _fail(sweep, "t3")
    assert results.compact(sweep) == {"trials": 4, "evaluations": 6}
    for table in results.TABLES:  # one file per table after compaction, read directly by pandas
        files = (sweep / "results" / table).files()
        assert [f.name for f in files] == ["compacted-000000.parquet"]
    assert len(pd.read_parquet(tmp_path / "results" / "trials")) == 4
    assert results.read_trial(sweep, "t2")["loss"] == 2.0 and results.read_trial(sweep, "t9") is None
    assert store.completed_trial(sweep, "t3") is None  # failed, read from the compacted file
    _complete(sweep, "t1", 0.5, 50.0)  # a retried trial after compaction: its new part replaces its old rows
    _complete(sweep, "t3", 0.5, 30.0)  # the failed trial, resumed, completes
    assert results.read_trial(sweep, "t1")["loss"] == 50.0 and store.completed_trial(sweep, "t3")["loss"] == 30.0
    trials, evals = results.read(tmp_path)
    assert sorted(trials.trial_id) == ["t0", "t1", "t2", "t3"] and trials.trial_id.is_unique
    assert trials.set_index("trial_id").loc["t1", "loss"] == 50.0
    assert trials.set_index("trial_id").loc["t3", "status"] == "completed"
    assert len(evals) == 8 and sorted(evals[evals.trial_id == "t1"].value) == [50.0, 100.0]
    statement = "SELECT trial_id, loss FROM trials ORDER BY trial_id"
    assert sql.query(tmp_path, statement).loss.tolist() == [0.0, 50.0, 2.0, 30.0]
    # a reader between the two steps of a compaction (new file written, merged parts not yet deleted)
    real_delete = type(sweep).delete
    type(sweep).delete = lambda self: None
    try:
        results.compact(sweep)
    finally:
        type(sweep).delete = real_delete
    assert len((sweep / "results" / "trials").files()) == 1 + 1 + 2  # both generations and the two parts
    trials, evals = results.read(tmp_path)
    assert len(trials) == 4 and len(evals) == 8
    assert sql.query(tmp_path, "SELECT count(*) n, count(DISTINCT trial_id) d FROM evaluations").n[0] == 8
    assert results.compact(sweep) == {"trials": 4, "evaluations": 8}


def test_earlier_layout_is_read_and_converted(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    pd.DataFrame({"sweep": ["s"], "task": ["toy"], "trial_id": ["old0"], "status": ["completed"],
                  "loss": [1.5]}).to_parquet(res / "trials.parquet")
    pd.DataFrame({"sweep": ["s"], "task": ["toy"], "trial_id": ["old0"], "size": [1], "value": [1.5]}).to_parquet(
        res / "evaluations.parquet")
    assert results.read(tmp_path)[0].loss.tolist() == [1.5]
    assert results.read_trial(tmp_path, "old0")["loss"] == 1.5 and results.read_trial(tmp_path, "t1") is None
    assert sql.query(tmp_path, "SELECT count(*) n FROM evaluations").n[0] == 1
    _complete(location(tmp_path), "t1", 0.1, 2.0)  # the sweep resumed with this version
    results.compact(tmp_path)
    assert not (res / "trials.parquet").exists()
    trials, evals = results.read(tmp_path)
    assert sorted(trials.trial_id) == ["old0", "t1"] and len(evals) == 3


def test_undeclared_columns_are_refused():
    with pytest.raises(ValueError, match="undeclared column.*psnr"):
        S.table([{"trial_id": "t", "psnr": 1.0}], S.evaluation_types(TOY))


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = location(tmp_path / "t.parquet")
    results.write_table(path, pa.table({"a": [1, 2]}))

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        results.write_table(path, pa.table({"a": [3]}))
    assert pq.read_table(path.path).column("a").to_pylist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temporary file left behind


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_are_created_as_the_umask_says(tmp_path, toy_spec, umask):
    from sweeplab.local import run_local
    from sweeplab.lock import DriverLock
    from sweeplab.spec import parse
    old = os.umask(umask)
    try:
        spec = parse({**toy_spec, "storage": str(tmp_path)})
        run_local(spec, "test")
        with DriverLock(spec.sweep_dir):  # the lock file too
            files = [f for f in Path(spec.sweep_dir.path).rglob("*") if f.is_file()]
            assert "driver.lock" in {f.name for f in files}
            assert location(tmp_path / "x").create_exclusive(b"1")
            files.append(tmp_path / "x")
            modes = {str(f.relative_to(tmp_path)): oct(f.stat().st_mode & 0o777) for f in files}
    finally:
        os.umask(old)
    assert len(modes) > 5 and set(modes.values()) == {oct(0o666 & ~umask)}, modes


def test_query_and_cli_results(tmp_path, capsys):
    _complete(location(tmp_path), "t0", 0.1, 1.0)
    _complete(location(tmp_path), "t1", 0.2, 2.0)
    frame = sql.query(tmp_path, "SELECT trial_id, loss FROM trials WHERE loss > 1.5")
    assert frame.to_dict("records") == [{"trial_id": "t1", "loss": 2.0}]
    assert cli.main(["results", str(tmp_path), "--sql", "SELECT count(*) AS n FROM evaluations"]) == 0
    assert capsys.readouterr().out.split() == ["n", "4"]
    assert cli.main(["results", str(tmp_path / "results"), "--sql", "SELECT count(*) AS n FROM trials"]) == 0
    assert capsys.readouterr().out.split() == ["n", "2"]
    assert cli.main(["results", str(tmp_path), "--sql", "SELEC nonsense"]) == 2
    assert cli.main(["results", str(tmp_path / "missing")]) == 1
    assert "no results under" in capsys.readouterr().err


def test_a_results_query_reads_the_two_tables_and_nothing_else(tmp_path, capsys):
    sweep = location(tmp_path)
    _complete(sweep, "t0", 0.1, 1.0)
    results.compact(sweep)
    table = tmp_path / "results" / "trials" / "compacted-000000.parquet"
    before = table.read_bytes()
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n42\n")
    listing = sorted(str(p) for p in tmp_path.rglob("*"))
    refused = {  # each exit 2, nothing written, nothing read but the tables
        f"COPY (SELECT 1 AS x) TO '{table}'": "exactly one SELECT",
        f"COPY (SELECT 1 AS x) TO '{tmp_path / 'out.csv'}'": "exactly one SELECT",
        f"SELECT * FROM read_csv('{secret}')": "Permission",
        f"SELECT * FROM '{secret}'": "Permission",
        f"ATTACH '{tmp_path / 'x.db'}'": "exactly one SELECT",
        "SELECT 1; SELECT 2": "exactly one SELECT",
        "INSTALL httpfs": "exactly one SELECT",
        "LOAD httpfs": "exactly one SELECT",
        "SELECT * FROM (SELECT 1) t, (SELECT load_extension('httpfs'))": "",
        "EXPLAIN SELECT * FROM trials": "exactly one SELECT",
        "PIVOT trials ON status USING count(*)": "exactly one SELECT",
        "SET enable_external_access = true": "exactly one SELECT",
    }
    for statement, message in refused.items():
        assert cli.main(["results", str(tmp_path), "--sql", statement]) == 2, statement
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (statement, err)
    assert table.read_bytes() == before and sorted(str(p) for p in tmp_path.rglob("*")) == listing
    with pytest.raises(sql.QueryError, match="Permission"):  # a subquery inside one SELECT cannot read files
        sql.query(tmp_path, f"SELECT (SELECT count(*) FROM read_csv('{secret}')) AS n FROM trials")
    assert sql.query(tmp_path, "SELECT count(*) AS n FROM trials WHERE trial_id IN "
                         "(SELECT trial_id FROM evaluations)").n[0] == 1  # subqueries over the tables still run


def test_a_picking_condition_is_one_expression_over_the_trials_table(tmp_path):
    sweep = location(tmp_path)
    for i, lr in enumerate((0.1, 0.2, 0.3)):
        _complete(sweep, f"t{i}", lr, float(i))
    assert sql.pick_trials(tmp_path, "loss > 0.5", "loss DESC", 2) == ["t2", "t1"]
    assert sql.pick_trials(tmp_path, "loss < (SELECT max(loss) FROM trials)", "trial_id", 5) == ["t0", "t1"]
    out = tmp_path / "out.csv"
    for where, order_by in ((f"1=1); COPY (SELECT 1) TO '{out}' --", None), ("1=1; SELECT 1", None),
                            (f"lr IN (SELECT x FROM read_csv('{out}'))", None), ("loss > 0) OR (1=1", None),
                            (None, f"loss; COPY (SELECT 1) TO '{out}'"), (None, "loss LIMIT 1")):
        with pytest.raises(sql.QueryError):
            sql.pick_trials(tmp_path, where, order_by, 2)
    assert not out.exists()


def test_readme_documents_every_core_column():
    from pathlib import Path
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert S.readme_table() in readme


def test_cli_compact_merges_the_parts_under_the_sweep_lock(tmp_path, capsys, monkeypatch):
    from sweeplab.lock import DriverLock
    _complete(location(tmp_path), "t0", 0.1, 1.0)
    _fail(location(tmp_path), "t1")
    with DriverLock(tmp_path):  # a driver is still writing parts: compaction waits for it, then gives up
        monkeypatch.setenv("SWEEPLAB_LOCK_TTL_S", "1")
        assert cli.main(["compact", str(tmp_path)]) == 1
        monkeypatch.delenv("SWEEPLAB_LOCK_TTL_S")
    assert "driver" in capsys.readouterr().err and len((location(tmp_path) / "results" / "trials").files()) == 2
    assert cli.main(["compact", str(tmp_path)]) == 0
    assert "2 trials, 2 evaluation rows" in capsys.readouterr().out
    assert [f.name for f in (location(tmp_path) / "results" / "trials").files()] == ["compacted-000000.parquet"]


def test_columns_differing_only_in_case_are_named_in_sql(tmp_path, capsys):
    """SQL names are case-insensitive: of segmentation's K (superpixels) and k (clusters), DuckDB renames the
    later; `sweeplab results` says which name to use, and both columns keep their own values."""
    res = tmp_path / "results"
    res.mkdir()
    pd.DataFrame({"trial_id": ["a", "b"], "K": [500, None], "k": [None, 4]}).to_parquet(res / "trials.parquet")
    pd.DataFrame({"trial_id": ["a"], "value": [1.0]}).to_parquet(res / "evaluations.parquet")
    assert cli.main(["results", str(tmp_path), "--csv", "--sql", "SELECT trial_id, K, k_1 FROM trials"]) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["trial_id,K,k_1", "a,500.0,", "b,,4.0"]
    assert "column trials.k is k_1 in SQL" in err
