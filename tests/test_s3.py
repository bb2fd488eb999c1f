"""Sweeps on object storage (``storage: s3://bucket/prefix``) against a real S3 server: moto's, started on
127.0.0.1 by the conftest's ``s3_server``, so Ray workers and CLI subprocesses use it as they would MinIO or AWS.

Covered: the storage primitives (atomic writes, the conditional put, a filesystem that pickles without
credentials); a missing bucket or a dead endpoint refused before anything starts; a ``--local`` sweep with
``status``, ``results --sql`` (DuckDB over the bucket), ``plot`` and ``resume``; an embedded-Ray sweep (Tune's
state and Train's checkpoints in the bucket, a retry from a checkpoint, ``Tuner.restore`` from the bucket); and a
submitted sweep on the local multi-node cluster whose worker nodes see none of the driver's temporary files and
have no AWS variables of their own, killed mid-sweep and resumed with nothing rerun and nothing duplicated.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import pickle
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from sweeplab import artifacts, cli, results, sql, store
from sweeplab import task as T
from sweeplab.spec import parse
from sweeplab.storage import StorageError, check_bucket, location
from tests.conftest import TOY, free_port, run_cli, wait_for

ROOT = Path(__file__).parents[1]
CHAOS = ROOT / "tests" / "plugins" / "sweeplab_chaos"
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
       "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    """This process pointed at the test server; yields a fresh ``s3://sweeps/<prefix>`` for the test."""
    for key in AWS:
        monkeypatch.delenv(key, raising=False)
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    return f"s3://sweeps/{request.node.name}-{uuid.uuid4().hex[:6]}"


def _objects(uri: str) -> dict[str, bytes]:
    loc = location(uri)
    return {f.path[len(loc.path) + 1:]: f.read_bytes() for f in loc.walk_files()}


def _chaos_env(s3_server: dict) -> dict[str, str]:
    """The environment of a CLI subprocess that runs the chaos task on the test server."""
    env = {k: v for k, v in os.environ.items() if k not in AWS}
    return {**env, **s3_server, "SWEEPLAB_TASK_MODULES": "sweeplab_chaos",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(CHAOS.parent), env.get("PYTHONPATH")]))}


def _chaos_spec(where: Path, name: str, storage: str, markers: Path, config: dict, **extra) -> Path:
    raw = {"name": name, "task": "chaos", "config": {"marker_dir": str(markers), **config}, "metric": "loss",
           "mode": "min", "storage": storage, **extra}
    markers.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _attempts(markers: Path, trial_id: str) -> list[dict]:
    record = markers / f"{trial_id}.jsonl"
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


# ---------------------------------------------------------------- storage


def test_storage_primitives_on_s3(s3):
    root = location(s3)
    assert root.is_s3 and str(root / "a.txt") == f"{s3}/a.txt" and root.local_path is None
    (root / "d/a.txt").write_text("one")
    assert (root / "d/a.txt").read_text() == "one" and (root / "d").exists() and not (root / "d").is_file()
    assert [f.name for f in (root / "d").files()] == ["a.txt"] and [f.name for f in root.folders()] == ["d"]
    with pytest.raises(FileNotFoundError):
        (root / "d/missing").read_bytes()
    (root / "d/missing").delete()  # nothing to delete is not an error
    # a stream becomes visible whole when its block ends, and not at all when the block fails
    with (root / "big.bin").open_output() as sink:
        sink.write(b"x" * 100_000)
        assert not (root / "big.bin").exists()
    assert (root / "big.bin").read_bytes() == b"x" * 100_000
    with pytest.raises(RuntimeError), (root / "broken.bin").open_output() as sink:
        sink.write(b"half")
        raise RuntimeError("the writer died")
    assert not (root / "broken.bin").exists()
    # the conditional put the sweep lock is built on: of two creators exactly one wins
    lock = root / "driver.lock"
    assert lock.create_exclusive(b"first") and not lock.create_exclusive(b"second")
    assert lock.read_bytes() == b"first"
    lock.delete()
    assert not lock.exists() and lock.create_exclusive(b"third")


def test_filesystem_pickles_without_credentials(s3, monkeypatch):
    """Ray pickles the filesystem into tuner.pkl (in the bucket) and into every worker: the pickle carries no key,
    and whoever unpickles it builds the filesystem from their own AWS variables."""
    import pyarrow.fs as pafs
    import ray.cloudpickle
    fs = location(s3).fs
    for blob in (pickle.dumps(fs), ray.cloudpickle.dumps(fs)):
        assert os.environ["AWS_SECRET_ACCESS_KEY"].encode() not in blob
        assert os.environ["AWS_ENDPOINT_URL"].split("//")[1].encode() not in blob
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4")
    rebuilt = pickle.loads(pickle.dumps(fs))
    assert pafs.S3FileSystem.__reduce__(rebuilt)[1][0]["endpoint_override"] == "127.0.0.1:4"


def test_missing_bucket_or_dead_endpoint_is_refused_before_anything_starts(s3, tmp_path, toy_spec, monkeypatch,
                                                                           capsys):
    assert check_bucket(location(s3)) is None
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump({**toy_spec, "storage": "s3://no-such-bucket/sweeps"}))
    assert cli.main(["run", str(spec), "--local"]) == 1
    err = capsys.readouterr().err
    assert "bucket 'no-such-bucket' does not exist at http://127.0.0.1:" in err
    spec.write_text(yaml.safe_dump({**toy_spec, "storage": s3}))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    assert cli.main(["run", str(spec)]) == 1  # before Ray starts
    assert "cannot reach bucket 'sweeps'" in capsys.readouterr().err and time.monotonic() - start < 30
    with pytest.raises(StorageError):
        location(s3).exists()
    assert cli.main(["status", f"{s3}/toy-sweep"]) == 1 and "cannot reach" in capsys.readouterr().err
    assert cli.main(["results", f"{s3}/toy-sweep"]) == 1 and "cannot reach" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [spec]


# ---------------------------------------------------------------- a --local sweep


def test_local_sweep_status_results_plot_and_resume_on_s3(s3, tmp_path, toy_spec, monkeypatch, capsys):
    def plot(trials, evaluations, out, sweep):  # a PNG, and a table beside it naming the sweep it was given
        Path(out).write_bytes(b"\x89PNG " + str(len(trials)).encode())
        Path(out).with_suffix(".md").write_text(str(sweep))
    monkeypatch.setitem(T._REGISTRY, "toy", dataclasses.replace(TOY, plot=plot))
    monkeypatch.chdir(tmp_path)
    toy_spec["search"]["include"] = [{"fail": True}]
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump({**toy_spec, "storage": s3, "config": {"keep_model": True}}))
    sweep = f"{s3}/toy-sweep"
    assert cli.main(["run", str(spec), "--local"]) == 1  # one trial fails on purpose
    assert f"tables: {sweep}/results (3 trials)" in capsys.readouterr().out
    stored = _objects(sweep)
    assert {"sweep.json", "results/trials/compacted-000000.parquet", "results/evaluations/compacted-000000.parquet",
            "fragments/local_00000/status.json", "artifacts/local_00000/model.pt",
            "artifacts/local_00000/trial.json"} <= set(stored)
    assert not any(k.endswith("trial.parquet") for k in stored)  # a completed row is written once, as its part
    assert not any(k.startswith("local/") for k in stored) and "driver.lock" not in stored  # lock released

    assert cli.main(["status", sweep]) == 0
    out = capsys.readouterr().out
    assert "2 completed, 0 stopped early, 1 failed, 0 not started (3 planned)" in out and "trial local_0000" in out
    # SQL through DuckDB over the bucket (pyarrow datasets, no DuckDB extension)
    assert cli.main(["results", sweep, "--csv", "--sql", "SELECT t.trial_id, count(*) AS n FROM trials t JOIN "
                     "evaluations e USING (trial_id) WHERE t.status = 'completed' GROUP BY 1 ORDER BY 1"]) == 0
    assert capsys.readouterr().out.split() == ["trial_id,n", "local_00000,2", "local_00001,2"]
    before = _objects(sweep)  # a query over a bucket reads its tables and nothing else either
    for statement in (f"COPY (SELECT 1 AS x) TO '{sweep}/results/trials/compacted-000000.parquet'",
                      f"SELECT * FROM read_parquet('{sweep}/results/trials/compacted-000000.parquet')",
                      "INSTALL httpfs", f"SELECT 1 AS x; SELECT * FROM read_csv('{tmp_path / 'toy.yaml'}')"):
        assert cli.main(["results", sweep, "--sql", statement]) == 2, statement
    assert _objects(sweep) == before and "Traceback" not in capsys.readouterr().err
    # a part written after compaction (a trial recorded again) replaces the trial's compacted row: once, and new
    store.record_trial(location(sweep), TOY, sweep_name="toy-sweep", trial_id="local_00002", status="stopped",
                       values={"fail": True}, seed=1)
    rows = sql.query(sweep, "SELECT trial_id, status FROM trials ORDER BY trial_id").values.tolist()
    assert rows == [["local_00000", "completed"], ["local_00001", "completed"], ["local_00002", "stopped"]]
    from sweeplab.dashboard import build_study  # the dashboard's study, read from the bucket
    study_storage = build_study(sweep)
    states = [t.state.name for t in study_storage.get_all_trials(study_storage.get_all_studies()[0]._study_id)]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]

    # a trained model in the bucket, found by SQL over the sweep's table and loaded back (what from_trials does)
    later = parse({"name": "later", "task": "toy", "metric": "loss", "mode": "min", "storage": str(tmp_path),
                   "config": {"width": 4}, "from_trials": {"init": {"sweep": sweep, "where": "lr = 0.05"}}})
    resolved = artifacts.resolve_sources(later).from_trials
    assert resolved == {"init": f"{sweep}/local_00001"}
    assert artifacts.open_sources(resolved)["init"].load("model")["width"] == 4

    assert cli.main(["plot", sweep]) == 0 and f"wrote {sweep}/results/toy.png" in capsys.readouterr().out
    assert location(f"{sweep}/results/toy.png").read_bytes() == b"\x89PNG 3"
    assert location(f"{sweep}/results/toy.md").read_bytes() == sweep.encode()
    assert cli.main(["report", sweep]) == 0  # the report, its twin and the twin's images in the bucket
    assert f"wrote {sweep}/results/report.html and {sweep}/results/report.md" in capsys.readouterr().out
    page = location(f"{sweep}/results/report.html").read_text()
    assert base64.b64encode(b"\x89PNG 3").decode() in page
    assert "2 completed, 1 stopped, 0 failed" in page
    assert location(f"{sweep}/results/report_files/00-toy.png").read_bytes() == b"\x89PNG 3"
    assert "report_files/00-toy.png" in location(f"{sweep}/results/report.md").read_text()

    assert cli.main(["resume", str(spec), "--local"]) == 1  # the failed trial fails again; the others are kept
    out = capsys.readouterr().out
    assert out.count("already completed, skipped") == 2
    trials, evals = results.read(sweep)
    assert sorted(trials.trial_id) == ["local_00000", "local_00001", "local_00002"] and len(evals) == 4
    assert cli.main(["run", str(spec), "--local"]) == 1 and "already holds this sweep" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]  # nothing was written locally


def test_submitted_job_carries_the_endpoint_and_region_but_keys_only_when_asked(s3, tmp_path, toy_spec,
                                                                                 monkeypatch):
    from sweeplab.spec import load
    from sweeplab.submit import SubmitError, build_job
    monkeypatch.setenv("SWEEPLAB_TASK_MODULES", "")
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump({**toy_spec, "storage": s3}))

    def env_vars(*env: str, storage: str = s3) -> dict[str, str]:
        stage = Path(tempfile.mkdtemp(dir=tmp_path))
        sets = [f"storage={storage}"]
        return build_job(load(spec, sets), sets, stage, resume=False, py_modules=[],
                         env=list(env))["runtime_env"]["env_vars"]
    here = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")}
    assert env_vars() == {"RAY_TRAIN_V2_ENABLED": "1", **here}  # no key unless asked
    assert env_vars("AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION=eu-west-1") == {
        "RAY_TRAIN_V2_ENABLED": "1", **here, "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_DEFAULT_REGION": "eu-west-1"}
    assert env_vars(storage="/mnt/sweeps") == {"RAY_TRAIN_V2_ENABLED": "1"}  # a shared folder needs none
    with pytest.raises(SubmitError, match="KEY=VALUE, or the name of a variable set here"):
        env_vars("NOT_SET_ANYWHERE_HERE")


# ---------------------------------------------------------------- an embedded Ray


@pytest.mark.ray
def test_embedded_ray_sweep_on_s3_retries_from_a_checkpoint_and_resumes(s3_server, s3, tmp_path):
    """`sweeplab run` without --address (an embedded Ray), the S3 group's multi-worker test (two gloo ranks per
    trial, Ray Train): Tune's experiment state and Train's checkpoints land in the bucket; a trial that fails once
    is retried from its checkpoint there; `sweeplab resume` restores the finished sweep from the bucket
    (Tuner.restore with the filesystem) and runs nothing again."""
    markers = tmp_path / "markers"
    spec = _chaos_spec(tmp_path, "embedded", s3, markers, {"steps": 3, "step_seconds": 0.1}, retries=1,
                       resources={"cpus": 1, "workers": 2},
                       search={"algorithm": "grid", "space": {"x": [0.1]},
                               "include": [{"x": 0.7, "fail_attempts": 1, "fail_at_step": 1}]})
    env = _chaos_env(s3_server)
    proc = run_cli(["run", spec], tmp_path, env=env, timeout=600)
    sweep = f"{s3}/embedded"
    trials = results.read(sweep)[0].set_index("x").sort_index()
    assert list(trials.index) == [0.1, 0.7] and set(trials.status) == {"completed"} and "tables:" in proc.stdout
    assert (trials.num_workers == 2).all()
    retried = [a["start_step"] for a in _attempts(markers, trials.loc[0.7, "trial_id"])]
    assert retried == [0, 1]  # the retry went on from the checkpoint of step 1, read back from the bucket
    stored = _objects(sweep)
    assert "tuner.pkl" in stored and any(k.startswith("experiment_state-") for k in stored)
    for tid in trials.trial_id:
        assert any(k.startswith(f"train/{tid}/checkpoint_") and k.endswith("/state.pt") for k in stored), tid
    secret = s3_server["AWS_SECRET_ACCESS_KEY"].encode()
    assert not [k for k, blob in stored.items() if secret in blob]  # no credentials in the bucket
    assert not (tmp_path / "embedded").exists() and not (tmp_path / "results").exists()

    run_cli(["resume", spec], tmp_path, env=env, timeout=600)
    again = results.read(sweep)[0]
    assert sorted(again.trial_id) == sorted(trials.trial_id) and set(again.status) == {"completed"}
    assert [len(_attempts(markers, t)) for t in trials.trial_id] == [1, 2]  # nothing ran again
    assert len(results.read(sweep)[1]) == 3 + 3


# ---------------------------------------------------------------- the multi-node cluster


@pytest.fixture(scope="module")
def private_cluster():
    """The local cluster, each worker node in its own mount namespace with a private /tmp (it sees none of the
    driver's temporary files), and no AWS variable on any node: only a submitted job's env reaches the store."""
    from tests.test_cluster import local_cluster
    env = {k: v for k, v in os.environ.items() if k not in AWS}
    with local_cluster(env, "--private-tmp") as c:
        yield c


@pytest.mark.ray
@pytest.mark.cluster
def test_submitted_sweep_on_s3_with_private_worker_nodes_killed_and_resumed(private_cluster, s3_server, s3,
                                                                              tmp_path):
    """`sweeplab submit` of an s3:// sweep to nodes that share no folder with the driver: the job carries the
    endpoint and region (forwarded) and the keys (`--env KEY`). Stopped mid-sweep and finished by
    `submit --resume --wait`: the completed trial is not rerun, the interrupted one goes on from its checkpoint
    in the bucket, and the tables hold each trial once."""
    c = private_cluster
    hidden = tmp_path / "driver-only"
    hidden.write_text("on the driver's machine")
    raylets = subprocess.run(["pgrep", "-f", f"raylet.*{c.dir}/ray-w"], capture_output=True, text=True).stdout.split()
    namespaces = {os.readlink(f"/proc/{pid}/ns/mnt") for pid in raylets}
    assert len(raylets) == 2 and len(namespaces) == 2 and os.readlink("/proc/self/ns/mnt") not in namespaces
    for raylet in raylets:
        assert not Path(f"/proc/{raylet}/root{hidden}").exists()  # the file as the worker node sees it
    # the chaos task's record of attempts must reach the test from the worker nodes: /var/tmp stays shared
    markers = Path(tempfile.mkdtemp(prefix="sweeplab-markers-", dir="/var/tmp"))
    name = "private"
    spec = _chaos_spec(tmp_path, name, s3, markers, {"steps": 2, "step_seconds": 1.0}, max_concurrent=2,
                       search={"algorithm": "grid", "space": {"x": [0.1]}, "include": [{"x": 0.5, "steps": 12}]})
    env = {**c.env, **s3_server}
    sweep = f"{s3}/{name}"
    submit = ["submit", spec, "--address", c.dashboard, "--py-module", CHAOS, "--env", "AWS_ACCESS_KEY_ID",
              "--env", "AWS_SECRET_ACCESS_KEY"]
    try:
        job_id = c.cli(*submit, env=env).stdout.split("submitted job ", 1)[1].split()[0]
        client = c.client()
        assert {k: client.get_job_info(job_id).runtime_env["env_vars"].get(k) for k in s3_server} == s3_server

        def mid_sweep():
            try:
                st = store.sweep_status(sweep)
            except FileNotFoundError:
                return None
            return st if st["counts"]["completed"] >= 1 and any(
                t["status"] == "running" and t["metrics"].get("progress", 0) >= 0.25 for t in st["trials"]) else None
        before = wait_for(mid_sweep, 400, "one trial completed and the long one a quarter done")
        client.stop_job(job_id)
        wait_for(lambda: str(client.get_job_status(job_id)).endswith("STOPPED"), 60, "the job to stop")
        done_before = {t["trial_id"] for t in before["trials"] if t["status"] == "completed"}

        proc = c.cli(*submit, "--resume", "--wait", env=env)
        assert "SUCCEEDED" in proc.stdout.rsplit("job ", 1)[-1], proc.stdout[-4000:]
        trials, evals = results.read(sweep)
        trials = trials.set_index("x").sort_index()
        assert list(trials.index) == [0.1, 0.5] and set(trials.status) == {"completed"}
        assert trials.trial_id.is_unique and len(evals) == 2 + 12 and set(evals.trial_id) == set(trials.trial_id)
        for tid in done_before:
            assert len(_attempts(markers, tid)) == 1, f"completed trial {tid} ran again"
        long_run = _attempts(markers, trials.loc[0.5, "trial_id"])
        assert len(long_run) == 2 and long_run[1]["start_step"] >= 3  # from its checkpoint in the bucket
        head = {n["node_id"] for n in c.state("nodes", "--detail") if n["is_head_node"]}
        assert not head & {a["node"] for t in trials.trial_id for a in _attempts(markers, t)}  # ran on workers
        out = c.cli("status", sweep, env=env).stdout
        assert "2 completed" in out and "0 failed" in out
    finally:
        subprocess.run(["rm", "-rf", str(markers)], check=False)
