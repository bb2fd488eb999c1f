"""Reaching Ray: an embedded local Ray, or a cluster at an address (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``),
with a clear message when it cannot be reached or refuses the connection. Ray is imported inside the function
that starts it (deferred: a heavy import ``--local`` sweeps never need)."""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import socket
import sys
from pathlib import Path


def _reachable(address: str, timeout: float = 5.0) -> str | None:
    """None when ``host:port`` (or ``ray://host:port``) accepts a TCP connection, else the reason. Ray itself would
    retry an unreachable address for minutes; ``auto`` is left to Ray (it fails at once without a cluster)."""
    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return None
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


TOKEN_HELP = ("put the cluster's token in ~/.ray/auth_token, or export RAY_AUTH_TOKEN=<token> "
              "(or RAY_AUTH_TOKEN_PATH=<file>); on the head node `ray get-auth-token` prints it")


def init_ray(address: str | None) -> str | None:
    """Connect to the cluster at ``address``, or start an embedded local Ray; None, or why it failed. A process that
    already connected to Ray (a notebook, a benchmark) keeps its connection."""
    import ray  # deferred: Ray is heavy, and --local never needs it
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if ray.is_initialized():
        return None
    if address and (reason := _reachable(address)):
        return f"cannot reach the Ray cluster at {address!r}: {reason}"
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # With the dashboard: it is where a user watches the sweep, and Ray Train's placement-group cleaner
            # asks its state API whether a trial's Train controller still lives. Without it, a trial ASHA stops
            # keeps its resources and the sweep waits forever for them.
            ray.init(include_dashboard=True, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not address:
            return f"cannot start an embedded Ray on this machine: {first} (Ray's logs: /tmp/ray/session_latest/logs)"
        return f"cannot connect to the Ray cluster at {address!r}: {first}"
    except Exception as exc:  # noqa: BLE001 - ray.exceptions.AuthenticationError: a missing or wrong token
        if "Authentication" not in type(exc).__name__:
            raise
        return f"the Ray cluster at {address!r} refused the connection: {exc}\n{TOKEN_HELP}"
    return None


AUTOSCALER_ENV = "SWEEPLAB_AUTOSCALER"  # set (to 1) when the cluster grows on demand: a request too big now may fit


def unplaceable(nodes: list[dict[str, float]], cpus: float, gpus: float, workers: int) -> str | None:
    """Why ``workers`` bundles of ``cpus`` CPUs and ``gpus`` GPUs (one trial) cannot all be placed at once on
    nodes offering these resources (Ray's ``Resources`` of each alive node), or None when they can. A bundle sits
    on one node; a trial's bundles may spread over several."""
    def holds(node: dict[str, float]) -> int:
        counts = [math.floor(node.get(key, 0.0) / need + 1e-9) for key, need in (("CPU", cpus), ("GPU", gpus))
                  if need > 0]
        return min(counts) if counts else workers
    if sum(holds(node) for node in nodes) >= workers:
        return None
    cpu, gpu = (sum(node.get(key, 0.0) for node in nodes) for key in ("CPU", "GPU"))
    most = max((node.get("GPU", 0.0) if gpus else node.get("CPU", 0.0) for node in nodes), default=0.0)
    return (f"a trial asks for {workers} worker(s) of {cpus:g} CPU(s) and {gpus:g} GPU(s) each (resources), and "
            f"the cluster's {len(nodes)} node(s) offer {cpu:g} CPU(s) and {gpu:g} GPU(s) in all (at most {most:g} "
            f"{'GPU' if gpus else 'CPU'}(s) on one node): no trial could ever start")


def cluster_nodes() -> list[dict[str, float]]:
    """The resources of each alive node of the Ray this process is connected to."""
    import ray
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


LOG_DIR_ENV = "SWEEPLAB_LOG_DIR"  # where a driver keeps Ray's and Tune's output (default ~/.cache/sweeplab/logs)


def log_file(sweep_name: str) -> Path:
    """A new file on this machine's disk for one driver run's Ray and Tune output (also for ``s3://`` sweeps)."""
    folder = Path(os.environ.get(LOG_DIR_ENV) or Path.home() / ".cache" / "sweeplab" / "logs")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{sweep_name}-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"


class RayOutput(contextlib.AbstractContextManager):
    """While a sweep runs on Ray, everything Ray and Tune print (Python and C++, the driver's own and what the
    workers forward) goes to ``path``: the process's stdout and stderr point at the file. sweeplab's own lines go
    to the console through :meth:`say` (a copy of the real stdout; the current ``sys.stdout`` when it is not the
    process's, as under pytest's capture)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "RayOutput":
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            real = sys.stdout.fileno() == 1
        except (AttributeError, OSError, ValueError):
            real = False
        self.console = os.fdopen(os.dup(1), "w", buffering=1) if real else sys.stdout
        self.saved = os.dup(1), os.dup(2)
        log = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        return self

    def say(self, message: str) -> None:
        self.console.write(message + "\n")
        self.console.flush()

    def __exit__(self, *exc) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        if self.console is not sys.stdout:
            self.console.close()
