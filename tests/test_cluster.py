"""The cluster path end to end, on a multi-node Ray started by ``cluster/local-cluster.sh`` (a head with no CPUs
and two worker nodes of 1 CPU and 1 logical GPU each), with the ``chaos`` task of ``tests/plugins``: a sweep
submitted as a job, a failing trial retried, a killed job resumed, ASHA stopping trials, a worker node lost."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
import yaml

from sweeplab import cli
from sweeplab.store import sweep_status
from tests.conftest import free_port, run_cli, wait_for

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "cluster" / "local-cluster.sh"
CHAOS = ROOT / "tests" / "plugins" / "sweeplab_chaos"

pytestmark = [pytest.mark.ray, pytest.mark.cluster]


@dataclass
class Cluster:
    dir: Path
    address: str        # GCS, for `sweeplab run --address`
    dashboard: str      # HTTP, for `sweeplab submit --address`
    metrics_ports: list[int]
    env: dict[str, str]

    def cli(self, *args, rc: int | None = 0, env: dict | None = None, timeout: float = 600):
        return run_cli(args, ROOT, rc=rc, env=env or self.env, timeout=timeout)

    def script(self, *args):
        return subprocess.run([str(SCRIPT), *map(str, args), "--dir", str(self.dir)], env=self.env, text=True,
                              capture_output=True, timeout=300, check=True)

    def state(self, kind: str, *flags: str) -> list[dict]:
        """``ray list KIND`` as JSON, in a subprocess: it needs the cluster's ``RAY_AUTH_MODE=token``, which this
        process does not have."""
        proc = subprocess.run([str(Path(sys.executable).parent / "ray"), "list", kind, "--address", self.dashboard,
                               "--format", "json", "--limit", "1000", *flags], env=self.env, text=True,
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout)

    def client(self):
        from ray.job_submission import JobSubmissionClient
        from sweeplab.submit import check_cluster
        return JobSubmissionClient(self.dashboard, headers=check_cluster(self.dashboard))


@contextlib.contextmanager
def local_cluster(env: dict[str, str] | None = None, *start_flags) -> Iterator[Cluster]:
    """A head and two worker nodes (1 CPU, 1 logical GPU each) started by ``local-cluster.sh`` with ``env`` (this
    process's by default) plus the chaos task and fast node-failure detection; ``start_flags`` go to its ``start``
    (``--private-tmp``)."""
    where = Path(tempfile.mkdtemp(prefix="slc", dir="/tmp"))  # short: Ray's socket paths live under it
    base = os.environ if env is None else env
    env = {**base, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(CHAOS.parent), base.get("PYTHONPATH")])),
           "SWEEPLAB_TASK_MODULES": "sweeplab_chaos", "RAY_AUTH_MODE": "token",
           # notice a killed node within seconds instead of Ray's default of about half a minute
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
           "RAY_health_check_failure_threshold": "3"}
    port, dash = free_port(), free_port()
    c = Cluster(where, f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", [], env)
    try:
        c.script("start", "--workers", 2, "--worker-cpus", 1, "--worker-gpus", 1, "--port", port,
                 "--dashboard-port", dash, *start_flags)
        values = dict(line.split("=", 1) for line in (where / "cluster.env").read_text().split())
        c.metrics_ports = [int(p) for p in values["SWEEPLAB_METRICS_PORTS"].split(",")]
        assert values["RAY_ADDRESS"] == c.address and values["SWEEPLAB_DASHBOARD"] == c.dashboard
        yield c
    finally:
        subprocess.run([str(SCRIPT), "stop", "--dir", str(where)], env=env, capture_output=True, timeout=120)
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as c:
        yield c


def _spec(tmp_path: Path, name: str, space: dict, config: dict, **extra) -> Path:
    raw = {"name": name, "task": "chaos", "search": {"algorithm": "grid", "space": space},
           "config": {"marker_dir": str(tmp_path / "markers"), **config}, "metric": "loss", "mode": "min",
           "storage": str(tmp_path / "sweeps"), **extra}
    (tmp_path / "markers").mkdir(exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _attempts(tmp_path: Path, trial_id: str) -> list[dict]:
    record = tmp_path / "markers" / f"{trial_id}.jsonl"
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def _trials(tmp_path: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "sweeps" / name / "results" / "trials")


def _status(tmp_path: Path, name: str) -> dict | None:
    try:
        return sweep_status(tmp_path / "sweeps" / name)
    except FileNotFoundError:
        return None


def test_submitted_sweep_killed_mid_run_is_resumed_by_submit_wait(cluster, tmp_path):
    """A sweep submitted as a job (`sweeplab submit`), watched through `sweeplab status` and the Ray metrics, is
    killed mid-sweep and finished by `sweeplab submit --resume --wait`: the job succeeds, the completed trial is
    not rerun, the interrupted one goes on from its checkpoint, a trial that raised once was retried from its
    checkpoint, and the tables hold every trial once."""
    name = "interrupted"
    spec = _spec(tmp_path, name, {}, {"steps": 2, "step_seconds": 1.0}, max_concurrent=2, retries=1,
                 search={"algorithm": "grid", "space": {"x": [0.1]},
                         "include": [{"x": 0.5, "steps": 12}, {"x": 0.7, "fail_attempts": 1, "fail_at_step": 1}]})
    proc = cluster.cli("submit", spec, "--address", cluster.dashboard, "--py-module", CHAOS)
    job_id = proc.stdout.split("submitted job ", 1)[1].split()[0]
    assert job_id.startswith(f"sweeplab-{name}-") and f"{cluster.dashboard}/#/jobs/{job_id}" in proc.stdout
    client = cluster.client()
    info = client.get_job_info(job_id)
    assert info.metadata["job_name"] == f"sweeplab run {name}" and info.metadata["task"] == "chaos"

    def mid_sweep():  # the short trial completed, the long one a quarter done
        st = _status(tmp_path, name)
        return st if st and st["counts"]["completed"] >= 1 and any(
            t["status"] == "running" and t["config"].get("x") == 0.5 and t["metrics"].get("progress", 0) >= 0.25
            for t in st["trials"]) else None

    before = wait_for(mid_sweep, 400, "one trial completed and the long one a quarter done")
    # the Ray metrics of the running sweep, on a node's Prometheus endpoint
    wait_for(lambda: any('ray_sweeplab_trial_progress{' in text and f'sweep="{name}"' in text
                          for text in map(_scrape, cluster.metrics_ports)), 60, "the sweep's metrics", every=2)
    client.stop_job(job_id)
    wait_for(lambda: str(client.get_job_status(job_id)).endswith("STOPPED"), 60, "the job to stop")
    done_before = {t["trial_id"] for t in before["trials"] if t["status"] == "completed"}
    assert 1 <= len(done_before) < 3

    proc = cluster.cli("submit", spec, "--address", cluster.dashboard, "--py-module", CHAOS, "--resume", "--wait")
    resumed_id = proc.stdout.split("submitted job ", 1)[1].split()[0]
    assert f"job {resumed_id}: SUCCEEDED" in proc.stdout
    assert client.get_job_info(resumed_id).metadata["job_name"] == f"sweeplab resume {name}"
    trials = _trials(tmp_path, name).set_index("x").sort_index()
    assert len(trials) == 3 and trials.trial_id.is_unique and set(trials.status) == {"completed"}
    for tid in done_before:
        assert len(_attempts(tmp_path, tid)) == 1, f"completed trial {tid} ran again"
    long_run = _attempts(tmp_path, trials.loc[0.5, "trial_id"])
    assert len(long_run) >= 2 and long_run[-1]["start_step"] >= 3  # went on from a checkpoint after the kill
    retried = [a["start_step"] for a in _attempts(tmp_path, trials.loc[0.7, "trial_id"])]
    assert retried[:2] == [0, 1] and min(retried[1:]) >= 1  # the retry started from the checkpoint of step 1
    evals = pd.read_parquet(tmp_path / f"sweeps/{name}/results/evaluations")
    assert len(evals) == 2 + 12 + 2 and set(evals.trial_id) == set(trials.trial_id)  # one row per step
    out = cluster.cli("status", tmp_path / f"sweeps/{name}").stdout
    best = trials.loc[trials.loss.idxmin()]
    assert "3 completed" in out and "0 failed" in out and f"trial {best.trial_id}" in out


def _scrape(port: int) -> str:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_asha_stops_trials_and_frees_their_gpus_for_the_next(cluster, tmp_path):
    """Four trials of one logical GPU each on two GPUs: the last ones start only when trials ASHA stops give their
    GPU (their Tune and Train placement groups) back; none is left behind when the sweep ends."""
    name = "asha"
    spec = _spec(tmp_path, name, {"x": [0.3, 0.35, 0.8, 0.9]}, {"steps": 6, "step_seconds": 0.5},
                 resources={"gpus": 1, "cpus": 1}, max_concurrent=2,
                 scheduler={"type": "asha", "max_t": 100, "grace_period": 1, "reduction_factor": 2})
    cluster.cli("run", spec, "--address", cluster.address, timeout=900)
    trials = _trials(tmp_path, name)
    assert len(trials) == 4 and trials.trial_id.is_unique
    assert set(trials.status) <= {"completed", "stopped"} and (trials.status == "stopped").sum() >= 1
    assert (trials[trials.status == "completed"].device == "cpu").all()  # logical GPUs, run on the CPU
    live = [pg for pg in cluster.state("placement-groups") if pg["state"] != "REMOVED"]
    assert live == []


def test_multi_worker_trial_with_fractional_gpus_spans_two_nodes(cluster, tmp_path):
    """The cluster group's multi-worker test: a trial of two ranks at half a GPU each (gloo: NCCL refuses two
    ranks on one device, and Ray may place them on one) runs over the two worker nodes (one CPU each) and is
    recorded once with its workers and the GPUs it held; light trials (the other tests) hold their GPU alone."""
    name = "multi"
    spec = _spec(tmp_path, name, {"x": [0.3]}, {"steps": 2, "step_seconds": 0.2},
                 resources={"gpus": 0.5, "cpus": 1, "workers": 2})
    cluster.cli("run", spec, "--address", cluster.address, timeout=600)
    trial = _trials(tmp_path, name).iloc[0]
    assert trial.status == "completed" and trial.num_workers == 2 and trial.gpus == 1.0 and trial.device == "cpu"
    assert trial.gpu_seconds > 0 and pd.isna(trial.gpu_peak_mb)  # GPUs held (logical), none used


def test_bad_input_is_refused_before_anything_is_submitted(cluster, tmp_path, toy_spec, monkeypatch, capsys):
    # `sweeplab submit` in this process (with the conftest's toy task): each refusal comes before any submission
    toy_spec["storage"] = str(tmp_path / "sweeps")
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump(toy_spec))
    jobs_before = len(cluster.client().list_jobs())

    def submit(*args: str, rc: int) -> str:
        assert cli.main(["submit", str(spec), *args]) == rc
        return capsys.readouterr().err

    err = submit("--address", f"http://127.0.0.1:{free_port()}", rc=1)
    assert "cannot reach the Ray dashboard" in err and "nothing was submitted" in err
    err = submit("--address", cluster.dashboard, "--set", "search.algorithm=bayes", rc=2)
    assert "search.algorithm" in err and "nothing was submitted" in err
    assert "relative path" in submit("--address", cluster.dashboard, "--set", "storage=results", rc=2)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert "rejected the authentication token" in submit("--address", cluster.dashboard, rc=1)
    no_token = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": ""}
    for key, value in no_token.items():
        monkeypatch.setenv(key, value)
    assert "requires an authentication token and none was found" in submit("--address", cluster.dashboard, rc=1)
    monkeypatch.undo()
    assert len(cluster.client().list_jobs()) == jobs_before
    # `sweeplab run` without the token: Ray's own connection refuses, and the CLI says why
    chaos = _spec(tmp_path, "refused", {"x": [0.1]}, {"steps": 1})
    run_no_token = cluster.cli("run", chaos, "--address", cluster.address, rc=1, env={**cluster.env, **no_token})
    assert "refused the connection" in run_no_token.stderr or "token" in run_no_token.stderr.lower()
    assert not (tmp_path / "sweeps" / "refused" / "results").exists()


def test_worker_node_lost_mid_trial_and_a_trial_failing_past_its_retries(cluster, tmp_path):
    """A worker node SIGKILLed mid-trial: the trial is retried on the other node from its last checkpoint and
    completes. In the same sweep a trial that raises every time is recorded as failed after its retries, the other
    trials complete, and `sweeplab run` exits 1."""
    name = "node-loss"
    spec = _spec(tmp_path, name, {}, {"steps": 10, "step_seconds": 1.0}, retries=2,
                 search={"algorithm": "grid", "space": {"x": [0.3]},
                         "include": [{"x": 0.9, "steps": 1, "fail_attempts": 5, "fail_at_step": 0}]})
    proc = subprocess.Popen([sys.executable, "-m", "sweeplab.cli", "run", str(spec), "--address", cluster.address],
                            cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def running():
            st = _status(tmp_path, name)
            return st and next((t for t in st["trials"] if t["config"].get("x") == 0.3
                                and t["metrics"].get("progress", 0) >= 0.3), None)
        trial = wait_for(running, 300, "the trial to checkpoint a third of its steps")
        first = _attempts(tmp_path, trial["trial_id"])[0]
        node = next(n for n in cluster.state("nodes", "--detail") if n["node_id"] == first["node"])
        index = next(k.rsplit("_", 1)[1] for k in node["resources_total"] if k.startswith("sweeplab_worker_"))
        cluster.script("kill-worker", index)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 1 and "tables:" in out, out[-4000:]
    trials = _trials(tmp_path, name).set_index("x")
    assert len(trials) == 2 and trials.loc[0.3, "status"] == "completed"
    attempts = _attempts(tmp_path, trial["trial_id"])
    assert len(attempts) == 2 and attempts[1]["node"] != first["node"] and attempts[1]["start_step"] >= 3
    assert trials.loc[0.9, "status"] == "failed" and "fails on purpose" in trials.loc[0.9, "error"]
    assert len(_attempts(tmp_path, trials.loc[0.9, "trial_id"])) == 3  # the first try and two retries
    assert "1 failed" in cluster.cli("status", tmp_path / f"sweeps/{name}").stdout
