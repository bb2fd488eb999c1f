"""The driver lock (one driver per sweep) on a local folder: refusal while held, takeover of a dead or expired
holder, release on every exit, and `sweeplab run` refusing a sweep another driver holds."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from sweeplab import cli
from sweeplab.lock import LOCK_NAME, TTL_ENV, DriverLock, LockHeld
from sweeplab.storage import location


@pytest.fixture(autouse=True)
def short_lease(monkeypatch):
    monkeypatch.setenv(TTL_ENV, "0.6")  # renewals every 0.2 s, a refused driver gives up within ~0.8 s


def _holder(path, **fields):
    doc = {"owner": "someone-else", "host": "elsewhere", "pid": 1, "since": "2026-01-01T00:00:00+00:00",
           "expires_at": time.time() + 3600, **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return doc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_driver_is_refused_while_the_first_renews(tmp_path):
    sweep = location(tmp_path / "sweep")
    with DriverLock(sweep) as first:
        record = json.loads((tmp_path / "sweep" / LOCK_NAME).read_text())
        assert record["owner"] == first.owner and record["pid"] == os.getpid()
        assert record["host"] == socket.gethostname() and record["since"] == first.since
        t0 = time.monotonic()
        with pytest.raises(LockHeld) as err:
            DriverLock(sweep).acquire()
        waited = time.monotonic() - t0
        assert 0.6 <= waited < 3  # it waited out the lease it saw, which the holder kept renewing
        assert f"host {socket.gethostname()}, pid {os.getpid()}, since {first.since}" in str(err.value)
        renewed = json.loads((tmp_path / "sweep" / LOCK_NAME).read_text())["expires_at"]
        assert renewed > record["expires_at"]
    assert not (tmp_path / "sweep" / LOCK_NAME).exists()  # released
    with DriverLock(sweep):  # free again: taken at once
        pass


def test_exactly_one_of_several_racing_drivers_gets_the_lock(tmp_path):
    sweep = location(tmp_path / "sweep")
    won, refused = [], []

    def drive():
        lock = DriverLock(sweep)
        try:
            lock.acquire()
        except LockHeld:
            refused.append(lock)
            return
        won.append(lock)
        time.sleep(2)  # hold it while the others give up
        lock.release()

    threads = [threading.Thread(target=drive) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 4


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, capsys):
    path = tmp_path / "sweep" / LOCK_NAME
    pid = _dead_pid()
    _holder(path, host=socket.gethostname(), pid=pid)
    t0 = time.monotonic()
    with DriverLock(location(tmp_path / "sweep")) as lock:
        assert time.monotonic() - t0 < 0.5  # no wait: the holder is known to be gone
        assert json.loads(path.read_text())["owner"] == lock.owner
    assert f"its process {pid} on this host" in capsys.readouterr().err


def test_a_live_process_on_another_host_is_waited_for_then_named(tmp_path, capsys):
    path = tmp_path / "sweep" / LOCK_NAME
    _holder(path, pid=_dead_pid())  # dead here, but on another host: only its lease tells
    with pytest.raises(LockHeld, match="held by host elsewhere, pid .*, since 2026-01-01T00:00:00"):
        DriverLock(location(tmp_path / "sweep")).acquire()
    assert "waiting up to 1 s for the driver lock" in capsys.readouterr().err
    assert json.loads(path.read_text())["owner"] == "someone-else"  # left alone


def test_an_expired_lease_is_taken_over(tmp_path, capsys):
    path = tmp_path / "sweep" / LOCK_NAME
    _holder(path, expires_at=time.time() - 1)
    with DriverLock(location(tmp_path / "sweep")) as lock:
        assert json.loads(path.read_text())["owner"] == lock.owner
    assert "its lease expired at" in capsys.readouterr().err


def test_a_lease_that_stops_being_renewed_is_taken_over_once_it_expires(tmp_path, capsys):
    path = tmp_path / "sweep" / LOCK_NAME
    _holder(path, expires_at=time.time() + 0.4)  # its driver died on another host 0.2 s ago
    t0 = time.monotonic()
    with DriverLock(location(tmp_path / "sweep")) as lock:
        assert 0.3 < time.monotonic() - t0 < 2
        assert json.loads(path.read_text())["owner"] == lock.owner
    err = capsys.readouterr().err
    assert "waiting up to" in err and "its lease expired" in err


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_released_when_the_driver_raises(tmp_path, exc):
    with pytest.raises(type(exc)):
        with DriverLock(location(tmp_path / "sweep")):
            raise exc
    assert not (tmp_path / "sweep" / LOCK_NAME).exists()


def test_a_lock_taken_from_under_us_is_noticed_and_not_deleted(tmp_path, capsys):
    path = tmp_path / "sweep" / LOCK_NAME
    lock = DriverLock(location(tmp_path / "sweep")).acquire()
    _holder(path)  # another driver took it over (as after our renewals had stalled past the lease)
    time.sleep(0.5)
    lock.release()
    assert lock.lost and "lost the driver lock" in capsys.readouterr().err
    assert json.loads(path.read_text())["owner"] == "someone-else"


def test_bad_ttl_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(TTL_ENV, "soon")
    with pytest.raises(ValueError, match=f"{TTL_ENV}='soon'"):
        DriverLock(location(tmp_path))


def test_run_refuses_a_sweep_another_driver_holds(toy_spec, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(TTL_ENV, "1")
    spec_path = tmp_path / "toy.yaml"
    spec_path.write_text(yaml.safe_dump(toy_spec))
    sweep = tmp_path / "results" / "toy-sweep"
    _holder(sweep / LOCK_NAME, host="other-host", pid=os.getpid())
    assert cli.main(["run", str(spec_path), "--local"]) == 1
    err = capsys.readouterr().err
    assert "waiting up to 1 s" in err
    assert f"error: another driver is running this sweep ({sweep / LOCK_NAME} is held by host other-host, pid " \
           f"{os.getpid()}, since 2026-01-01T00:00:00+00:00)" in err
    assert not (sweep / "fragments").exists() and not (sweep / "sweep.json").exists()  # nothing ran
    (sweep / LOCK_NAME).unlink()
    assert cli.main(["run", str(spec_path), "--local"]) == 0  # the driver holds the lock while it runs...
    assert not (sweep / LOCK_NAME).exists()  # ...and releases it when done
