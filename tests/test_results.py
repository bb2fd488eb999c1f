import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweeplab import cli, results


def _frag(sweep_dir, trial_id, value):
    row = {"sweep": "s", "task": "toy", "trial_id": trial_id, "status": "completed", "lr": value, "loss": value}
    results.write_fragment(sweep_dir, trial_id, row, [{"trial_id": trial_id, "size": 1, "value": value}])


def test_consolidate_is_idempotent_and_never_duplicates(tmp_path):
    _frag(tmp_path, "t0", 1.0)
    _frag(tmp_path, "t1", 2.0)
    results.write_status(tmp_path, "t2", "failed", {"lr": 3.0}, error="boom", last_metrics={"loss": 9.0})
    assert results.consolidate(tmp_path, "s", "toy") == {"trials": 3, "evaluations": 2}
    _frag(tmp_path, "t1", 5.0)  # a retried trial overwrites its own fragment
    results.consolidate(tmp_path, "s", "toy")
    trials, evals = results.read(tmp_path)
    assert sorted(trials.trial_id) == ["t0", "t1", "t2"]
    assert trials.set_index("trial_id").loc["t1", "loss"] == 5.0
    failed = trials.set_index("trial_id").loc["t2"]
    assert failed.status == "failed" and failed.error == "boom" and failed.lr == 3.0 and failed.loss == 9.0
    assert len(evals) == 2 and sorted(evals.value) == [1.0, 5.0]
    assert list(trials.columns[:4]) == ["sweep", "task", "trial_id", "status"]


def test_atomic_write_keeps_old_table_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    results.atomic_write_table(path, pd.DataFrame({"a": [1, 2]}))

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        results.atomic_write_table(path, pd.DataFrame({"a": [3]}))
    assert pq.read_table(path).column("a").to_pylist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temporary file left behind


def test_query_and_cli_results(tmp_path, capsys):
    _frag(tmp_path, "t0", 1.0)
    _frag(tmp_path, "t1", 2.0)
    results.consolidate(tmp_path, "s", "toy")
    frame = results.query(tmp_path, "SELECT trial_id, loss FROM trials WHERE loss > 1.5")
    assert frame.to_dict("records") == [{"trial_id": "t1", "loss": 2.0}]
    assert cli.main(["results", str(tmp_path), "--sql", "SELECT count(*) AS n FROM evaluations"]) == 0
    assert capsys.readouterr().out.split() == ["n", "2"]
    assert cli.main(["results", str(tmp_path), "--sql", "SELEC nonsense"]) == 2
    assert cli.main(["results", str(tmp_path / "missing")]) == 1
    assert "no results under" in capsys.readouterr().err
