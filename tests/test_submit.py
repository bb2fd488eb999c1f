"""`sweeplab submit` and `sweeplab status` without a cluster: addresses, tokens, the job's runtime environment, and
the sweep's status read from storage."""
from __future__ import annotations

import json
import shlex
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sweeplab import cli, results, store
from sweeplab.lock import LOCK_NAME, DriverLock
from sweeplab.plan import Plan
from sweeplab.spec import load
from sweeplab.submit import SubmitError, build_job, check_cluster, dashboard_url, find_token
from tests.conftest import free_port


def test_dashboard_url():
    assert dashboard_url("10.0.0.1:8265") == "http://10.0.0.1:8265"
    assert dashboard_url("https://ray.example.org/") == "https://ray.example.org"
    with pytest.raises(SubmitError, match="Ray Client address"):
        dashboard_url("ray://10.0.0.1:10001")


def test_find_token_in_rays_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert find_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert find_token() == "from-home"
    (tmp_path / "tok").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert find_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert find_token() == "from-env"


class _FakeDashboard(BaseHTTPRequestHandler):
    mode = "token"

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/api/authentication_mode":
            body, code = json.dumps({"authentication_mode": self.mode}).encode(), 200
        elif self.headers.get("Authorization") == "Bearer good":
            body, code = b'{"ray_version": "x"}', 200
        else:
            body, code = b"Forbidden", 403
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_dashboard():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_check_cluster_tokens(fake_dashboard, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    with pytest.raises(SubmitError, match="none was found"):
        check_cluster(fake_dashboard)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "bad")
    with pytest.raises(SubmitError, match="rejected the authentication token"):
        check_cluster(fake_dashboard)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "good")
    assert check_cluster(fake_dashboard) == {"Authorization": "Bearer good"}
    monkeypatch.setattr(_FakeDashboard, "mode", "disabled")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    assert check_cluster(fake_dashboard) == {}


def test_check_cluster_not_a_dashboard(tmp_path):
    port = free_port()
    with pytest.raises(SubmitError, match="cannot reach"):
        check_cluster(f"http://127.0.0.1:{port}", timeout=2)


def test_job_carries_the_spec_the_package_and_the_overrides(tmp_path, toy_spec, monkeypatch):
    monkeypatch.setenv("SWEEPLAB_TASK_MODULES", "")
    toy_spec["storage"] = "/mnt/sweeps"
    spec = tmp_path / "toy sweep.yaml"
    spec.write_text(yaml.safe_dump(toy_spec))
    stage = tmp_path / "stage"
    stage.mkdir()
    sets = ["lr=0.5", "name=a.b", "search.space.width=[1, 2]"]
    job = build_job(load(spec, sets), sets, stage, resume=False, py_modules=[],
                    env=["WANDB_MODE=off"])
    assert shlex.split(job["entrypoint"]) == ["python", "-m", "sweeplab.cli", "run", "toy sweep.yaml", "--address",
                                             "auto", "--set", "lr=0.5", "name=a.b", "search.space.width=[1, 2]"]
    env = job["runtime_env"]
    assert (Path(env["working_dir"]) / "toy sweep.yaml").read_text() == spec.read_text()
    package = Path(env["py_modules"][0])
    assert package.name == "sweeplab" and (package / "cli.py").exists()
    assert (package / "tasks" / "compression" / "__init__.py").exists()  # the tasks travel inside the package
    assert not list(package.rglob("__pycache__"))
    assert env["env_vars"] == {"RAY_TRAIN_V2_ENABLED": "1", "WANDB_MODE": "off"}
    assert job["submission_id"].startswith("sweeplab-a-b-") and job["metadata"]["storage"] == "/mnt/sweeps/a.b"
    assert job["metadata"]["job_name"] == "sweeplab run a.b"
    with pytest.raises(SubmitError, match="KEY=VALUE"):
        build_job(load(spec, []), [], tmp_path / "s2", resume=True, py_modules=[], env=["novalue"])


def test_submit_refuses_bad_input_before_contacting_anyone(tmp_path, toy_spec, capsys):
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump({**toy_spec, "storage": "relative/results"}))
    assert cli.main(["submit", str(spec), "--address", "127.0.0.1:1"]) == 2
    assert "relative path" in capsys.readouterr().err
    assert cli.main(["submit", str(spec), "--address", "127.0.0.1:1", "--set", "mode=sideways"]) == 2
    assert "nothing was submitted" in capsys.readouterr().err
    assert cli.main(["submit", str(spec), "--address", "ray://h:10001", "--set", "storage=/x"]) == 2
    assert cli.main(["submit", str(spec), "--address", "127.0.0.1:1", "--set", "storage=/x"]) == 1
    assert "cannot reach the Ray dashboard" in capsys.readouterr().err


def test_status_counts_and_best_so_far(tmp_path, capsys):
    sweep = tmp_path / "s"
    spec = SimpleNamespace(name="s", task=SimpleNamespace(name="toy"), metrics=["loss"], modes=["min"],
                           sweep_dir=sweep, space={"lr": None}, source="s.yaml", budget={})
    store.write_sweep_info(spec, Plan(None, 5))
    for tid, state, loss in (("t1", "completed", 0.5), ("t2", "completed", 0.2), ("t3", "running", 0.1),
                             ("t4", "failed", None)):
        store.write_status(sweep, tid, state, {"lr": float(tid[1])}, "boom" if state == "failed" else None,
                             {"loss": loss, "progress": 0.5} if loss is not None else {})
    with DriverLock(sweep):  # a live driver: t3 runs
        st = store.sweep_status(sweep)
        assert st["counts"] == {"running": 1, "completed": 2, "stopped": 0, "failed": 1, "interrupted": 0,
                                "pending": 1}
        assert st["best"]["loss"]["trial_id"] == "t2" and st["best"]["loss"]["config"] == {"lr": 2.0}  # t3 runs
        assert cli.main(["status", str(sweep)]) == 0
        out = capsys.readouterr().out
        assert "1 running, 2 completed, 0 stopped early, 1 failed, 1 not started" in out and "trial t2" in out
        assert [line.split()[:3] for line in out.splitlines() if line.startswith("t3")] == [["t3", "running", "50%"]]
    # no live driver (it stopped, or was killed: its lease lapses, or its pid is gone on this host): interrupted
    assert store.sweep_status(sweep)["counts"]["interrupted"] == 1
    assert cli.main(["status", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "0 running, 2 completed, 0 stopped early, 1 failed, 1 interrupted" in out and "sweeplab resume" in out
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("t3")] == [["t3", "interrupted"]]
    lock = sweep / LOCK_NAME  # a lock left by a driver killed on this host: its pid is dead
    lock.write_text(json.dumps({"owner": "x", "host": socket.gethostname(), "pid": 2**22 + 7, "since": "then",
                                "expires_at": time.time() + 60}))
    assert store.sweep_status(sweep)["counts"]["interrupted"] == 1
    assert cli.main(["status", str(tmp_path / "nowhere")]) == 1
    assert "has the sweep started" in capsys.readouterr().err
