"""Shared fixtures: the toy task (``tests/plugins/sweeplab_toy``) for testing the core without any paper's model,
the environment that makes the test plugins importable in CLI subprocesses and Ray workers, CLI helpers."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))
import sweeplab_chaos  # noqa: E402,F401 - registers the chaos task in this process
from sweeplab_toy import TOY, ToyConfig  # noqa: E402,F401 - registers the toy task in this process

# Drivers' Ray and Tune output (sweeplab.ray_cluster.log_file) under a temporary folder, not the user's ~/.cache
os.environ.setdefault("SWEEPLAB_LOG_DIR", tempfile.mkdtemp(prefix="sweeplab-test-logs-"))
# For subprocesses (the CLI, an embedded Ray's workers): the test plugins on the path, the toy and chaos tasks
# registered.
PLUGIN_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS),
                                                                        os.environ.get("PYTHONPATH")])),
              "SWEEPLAB_TASK_MODULES": ",".join(filter(None, ["sweeplab_toy", "sweeplab_chaos",
                                                               os.environ.get("SWEEPLAB_TASK_MODULES")]))}


@pytest.fixture
def toy_spec(tmp_path):
    """A raw toy spec dict writing under tmp_path."""
    return {"name": "toy-sweep", "task": "toy", "search": {"algorithm": "grid", "space": {"lr": [0.01, 0.05]}},
            "metric": "loss", "mode": "min", "storage": str(tmp_path / "results")}


def run_cli(args, cwd, *, rc: int | None = 0, env: dict | None = None, timeout: float = 900):
    """Runs the ``sweeplab`` command in a subprocess, as a user would, asserts its exit code (unless ``rc`` is None)
    and returns the completed process (``stdout``/``stderr`` as text)."""
    proc = subprocess.run([sys.executable, "-m", "sweeplab.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout)
    if rc is not None:
        assert proc.returncode == rc, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture
def sweeplab_cli():
    """:func:`run_cli` with exit code 0."""
    return run_cli


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    """``predicate()``'s first true value, polled every ``every`` s; AssertionError naming ``what`` after
    ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    """A local TCP port nobody listens on (for an unreachable address, or a cluster's ports)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto's, in a subprocess bound to 127.0.0.1 so Ray workers and CLI
    subprocesses reach it too) with the bucket ``sweeps``; yields the AWS variables that point at it. Its state is
    in memory: tests share it, so each writes under its own prefix."""
    import time
    import urllib.error
    import urllib.request
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    env = {"AWS_ACCESS_KEY_ID": "sweeplab-test", "AWS_SECRET_ACCESS_KEY": "sweeplab-test-secret",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(env["AWS_ENDPOINT_URL"], timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                assert server.poll() is None, log.read_text()
                time.sleep(0.1)
        import boto3
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket="sweeps")
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
