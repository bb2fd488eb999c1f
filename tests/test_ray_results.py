"""The tables after every way a trial can end, on both runners: completed, failed, stopped by ASHA (Ray only: the
local runner has no scheduler), over a config holding tuple, bool, str, int and float values."""
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sweeplab import progress, results, store
from sweeplab import schema as S
from sweeplab.local import run_local
from sweeplab.spec import parse
from sweeplab.task import get_task
from tests.conftest import PLUGIN_ENV


def _chaos_spec(tmp_path, **extra):
    """x = 0.3 completes first; x = 0.9 is worse at ASHA's first rung (stopped on Ray, completed locally);
    x = 0.31 with fail_attempts 1 and no retry fails at step 1. One trial at a time, so the order is fixed."""
    return {"name": "ends", "task": "chaos", "metric": "loss", "mode": "min", "storage": str(tmp_path / "results"),
            "config": {"steps": 3, "step_seconds": 0.0, "tags": ["p", "q"], "verbose": True},
            "search": {"algorithm": "grid", "space": {"x": [0.3, 0.9]},
                       "include": [{"x": 0.31, "fail_attempts": 1}]},
            "max_concurrent": 1, "retries": 0, **extra}


def _check_tables(sweep, statuses):
    task = get_task("chaos")
    for table, schema in (("trials", S.trials_schema(task)), ("evaluations", S.evaluations_schema(task))):
        files = (sweep / "results" / table).files()
        assert len(files) == 1  # compacted at the end of the sweep
        assert pq.read_schema(files[0].path) == schema  # the declared types, whatever the trials' statuses
    trials, evals = results.read(sweep)
    by_x = trials.set_index("x")
    assert {x: by_x.loc[x, "status"] for x in by_x.index} == statuses
    for x in by_x.index:  # every config value on every row, defaults included, with its type
        row = by_x.loc[x]
        assert row.tags == "p,q" and bool(row.verbose)
        assert row.steps == 3 and row.step_seconds == 0.0 and row.marker_dir == ""
    failed = by_x.loc[0.31]
    cause = f"RuntimeError: chaos: attempt 0 of trial {failed.trial_id} fails on purpose"
    assert failed.error.split("\n")[0] == cause and 'File "' in failed.error and failed.fail_attempts == 1
    assert "\x1b[" not in failed.error  # plain text: Ray's error file carries terminal colours
    assert failed.loss == pytest.approx((0.31 - 0.3) ** 2 + 1.0)  # its last report (step 0), a declared metric
    assert not {"hostname", "pid", "node_ip", "date", "step", "progress"} & set(trials.columns)
    assert set(evals.trial_id) == set(trials[trials.status == "completed"].trial_id)
    return trials


def test_local_completed_and_failed_trials_share_one_schema(tmp_path):
    spec = parse(_chaos_spec(tmp_path))
    run_local(spec, "test")
    _check_tables(spec.sweep_dir, {0.3: "completed", 0.9: "completed", 0.31: "failed"})


@pytest.mark.ray
def test_ray_completed_stopped_and_failed_trials_share_one_schema(tmp_path, sweeplab_cli):
    raw = _chaos_spec(tmp_path, scheduler={"type": "asha", "metric": "loss", "mode": "min", "max_t": 10,
                                           "grace_period": 1, "reduction_factor": 2})
    path = tmp_path / "ends.yaml"
    path.write_text(yaml.safe_dump(raw))
    logs = tmp_path / "logs"
    proc = sweeplab_cli(["run", path], tmp_path, rc=1, env={**PLUGIN_ENV, "SWEEPLAB_LOG_DIR": str(logs)})  # 1: failed
    sweep = parse(raw).sweep_dir
    # the console holds sweeplab's own lines; Ray's and Tune's go to the log file it names
    (log,) = logs.iterdir()
    assert f"Ray's and Tune's output: {log}" in proc.stdout and len(proc.stdout.splitlines()) < 30, proc.stdout
    assert "Trial name" not in proc.stdout and "Trial name" in log.read_text()  # Tune's table
    assert sum(line.startswith("[") and "started:" in line and "x=" in line for line in proc.stdout.splitlines()) == 3
    trials = _check_tables(sweep, {0.3: "completed", 0.9: "stopped", 0.31: "failed"})
    failed = trials.set_index("x").loc[0.31].trial_id
    cause = f"RuntimeError: chaos: attempt 0 of trial {failed} fails on purpose"
    assert f"[{failed}] failed: {cause}" in proc.stdout  # its end line, and the cause in the final table
    assert any(line.strip().startswith(failed) and line.rstrip().endswith(cause) for line in proc.stdout.splitlines())
    status = sweeplab_cli(["status", path], tmp_path, env=PLUGIN_ENV).stdout
    assert f"{failed} failed: {cause}" in status
    stopped = trials.set_index("x").loc[0.9]
    assert pd.isna(stopped.error) and stopped.loss == pytest.approx(0.36 + 1.0)  # its rung-1 report
    assert pa.types.is_int64(pq.read_schema((sweep / "results" / "trials").files()[0].path).field("seed").type)
    best = trials.set_index("x").loc[0.3].trial_id  # every report of a Ray trial is kept, as on --local
    assert [r["loss"] for r in progress.read_reports(sweep, best) if "loss" in r][:2] == pytest.approx([1.0, 0.5])
    # its trial ids are Tune's: --local would run every trial again under its own ids, so it is refused
    proc = sweeplab_cli(["resume", path, "--local"], tmp_path, rc=1, env=PLUGIN_ENV)
    assert "was run on Ray" in proc.stderr and "without --local" in proc.stderr
    assert len(results.read(sweep)[0]) == 3
