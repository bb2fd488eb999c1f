"""Reaching Ray: an embedded local Ray, or a cluster at an address (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``),
with a clear message when it cannot be reached or refuses the connection. Ray is imported inside the function
that starts it (deferred: a heavy import ``--local`` sweeps never need)."""
from __future__ import annotations

import os
import socket


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
    except (ConnectionError, RuntimeError, ValueError) as exc:
        return f"cannot connect to the Ray cluster at {address!r}: {exc}"
    except Exception as exc:  # noqa: BLE001 - ray.exceptions.AuthenticationError: a missing or wrong token
        if "Authentication" not in type(exc).__name__:
            raise
        return f"the Ray cluster at {address!r} refused the connection: {exc}\n{TOKEN_HELP}"
    return None
