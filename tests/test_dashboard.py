"""``sweeplab dashboard``: the sweep's study in optuna-dashboard, read through the server's JSON API (not documented:
optuna-dashboard's version range is pinned) for a finished sweep (grid with an ``include`` row, a conditional
parameter, multi-objective, a failed trial) and for one still running (a new report shows within the refresh)."""
from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from sweeplab import cli, progress, store
from sweeplab.local import LocalBackend
from sweeplab.lock import DriverLock
from sweeplab.service import run_sweep
from sweeplab.spec import parse

pytest.importorskip("optuna_dashboard")


def _get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def served():
    """Start the dashboard of a sweep in a thread (any free port); yields a function sweep -> base URL."""
    from sweeplab import dashboard
    servers = []

    def start(sweep, every=0.2):
        ready = threading.Event()
        thread = threading.Thread(target=dashboard.serve, args=(sweep,), daemon=True, kwargs=dict(
            port=0, every=every, say=lambda m: None, ready=lambda s: (servers.append(s), ready.set())))
        thread.start()
        assert ready.wait(60)
        return f"http://127.0.0.1:{servers[-1].server_port}"
    yield start
    for server in servers:
        server.shutdown()


def _trials(base):
    study = _get(base, "/api/studies")["study_summaries"][0]
    return study, _get(base, f"/api/studies/{study['study_id']}")["trials"]


def test_a_finished_sweep_as_a_study(toy_spec, served, monkeypatch):
    import dataclasses
    from pathlib import Path
    from sweeplab import task as T
    from tests.conftest import TOY
    monkeypatch.setitem(T._REGISTRY, "toy", dataclasses.replace(
        TOY, plot=lambda trials, evaluations, out, sweep: Path(out).write_bytes(b"\x89PNG toy")))
    spec = parse({**toy_spec, "retries": 0,
                  "search": {"algorithm": "grid", "space": {"lr": [0.01, 0.05]},
                             "include": [{"lr": 0.2, "optimizer": "adam"}, {"lr": 0.3, "fail": True}]}})
    run_sweep(spec, LocalBackend(), say=lambda m: None)
    assert cli.main(["plot", str(spec.sweep_dir)]) == 0
    base = served(spec.sweep_dir)
    detail = _get(base, "/api/studies/0")
    assert [a["filename"] for a in detail["artifacts"]] == ["toy.png"]  # the task's figure, on the study page
    assert str(spec.sweep_dir) in detail["note"]["body"]
    study, trials = _trials(base)
    assert study["study_name"] == "toy-sweep" and study["directions"] == ["minimize"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]  # the plan's order
    by_number = {t["number"]: t for t in trials}
    assert [by_number[i]["state"] for i in range(4)] == ["Complete", "Complete", "Complete", "Fail"]
    params = {i: {p["name"]: p["param_external_value"] for p in by_number[i]["params"]} for i in range(4)}
    assert params[0] == {"lr": "0.01", "optimizer": "sgd", "momentum": "0.0", "fail": "False"}
    assert params[2] == {"lr": "0.2", "optimizer": "adam", "fail": "False"}  # momentum does not apply to adam
    rows = {r["trial_id"]: r for r in store.trial_rows(spec.sweep_dir).values()}
    attrs = {a["key"]: a["value"] for a in by_number[0]["user_attrs"]}
    row = rows[attrs["trial_id"]]
    assert by_number[0]["values"] == [pytest.approx(row["loss"])]
    assert attrs["params"] == str(row["params"]) and attrs["sweeplab_status"] == "completed"
    assert "host_peak_mb" in attrs and attrs["dtype"] == "float32"
    failed = {a["key"]: a["value"] for a in by_number[3]["user_attrs"]}
    assert failed["error"] == "RuntimeError: toy trial asked to fail"
    assert [v["value"] for v in by_number[0]["intermediate_values"]] == pytest.approx(
        [r["loss"] for r in progress.read_reports(spec.sweep_dir, attrs["trial_id"]) if "loss" in r])
    best = _get(base, f"/api/studies/{study['study_id']}")["best_trials"]
    assert [t["number"] for t in best] == [min(range(3), key=lambda i: by_number[i]["values"][0])]


def test_a_multi_objective_sweep_shows_its_pareto_front(toy_spec, served):
    spec = parse({**toy_spec, "metric": ["loss", "lr_times_two"], "mode": ["min", "max"],
                  "search": {"algorithm": "nsga2", "space": {"lr": {"uniform": [0.01, 0.5]}}, "num_samples": 3}})
    run_sweep(spec, LocalBackend(), say=lambda m: None)
    study, trials = _trials(served(spec.sweep_dir))
    assert study["directions"] == ["minimize", "maximize"] and len(trials) == 3
    assert all(t["state"] == "Complete" and len(t["values"]) == 2 for t in trials)
    front = _get(served(spec.sweep_dir), f"/api/studies/{study['study_id']}")["best_trials"]
    values = [t["values"] for t in trials]
    dominated = [v for v in values if any(o[0] <= v[0] and o[1] >= v[1] and o != v for o in values)]
    assert sorted(t["values"] for t in front) == sorted(v for v in values if v not in dominated)


def test_a_running_sweep_shows_new_reports_within_the_refresh(toy_spec, served, capsys):
    spec = parse(toy_spec)
    sweep = spec.sweep_dir
    store.write_sweep_info(spec, __import__("sweeplab.plan", fromlist=["Plan"]).Plan.of(spec))
    from sweeplab.dashboard import build_study
    started = build_study(sweep)  # a sweep that has run no trial yet: its planned trials wait
    assert [t.state.name for t in started.get_all_trials(0)] == ["WAITING", "WAITING"]
    with DriverLock(sweep):  # a live driver: its trial is running
        record = progress.Progress(sweep, "t0", {"lr": 0.01}, 1, 0).started()
        record.report({"step": 0, "loss": 2.0})
        record.flush()
        base = served(sweep)
        _, trials = _trials(base)
        assert [t["state"] for t in trials] == ["Running", "Waiting"]  # the second planned trial not started
        record.report({"step": 1, "loss": 1.5})
        record.flush()
        t0, seen = time.monotonic(), None
        while time.monotonic() - t0 < 15:
            trials = _trials(base)[1]
            if len(trials[0]["intermediate_values"]) == 2:
                seen = time.monotonic() - t0
                break
            time.sleep(0.1)
        assert seen is not None, trials[0]["intermediate_values"]
    print(f"report -> dashboard: {seen:.2f} s")


def test_the_command_refuses_what_is_not_a_sweep(tmp_path, capsys):
    assert cli.main(["dashboard", str(tmp_path / "none")]) == 1
    assert "no sweep under" in capsys.readouterr().err
