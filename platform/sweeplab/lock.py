"""One driver per sweep: a lease lock, ``<sweep>/driver.lock``, taken by ``sweeplab run`` and ``resume``.

Two drivers on one sweep would run its trials twice and write its tables over each other. The lock file is made
with :meth:`Location.create_exclusive` (``O_EXCL`` on a local or shared folder, ``If-None-Match: *`` on S3), so of
two drivers starting at once exactly one creates it. It holds the holder's owner id, host, pid, when it took the
lock (``since``) and ``expires_at``; a background thread rewrites it every :data:`RENEW_EVERY_S` with a new
``expires_at`` (:data:`TTL_S` ahead). A driver that finds the lock held takes it over when the holder is gone: its
lease expired, or it ran on this host and its pid is dead. Otherwise it waits for the lease to run out (the holder
may have just died on another host) and then gives up, naming the holder. The lock is released when the driver
ends, by an exception or Ctrl-C too; a driver killed outright leaves a lock that expires within :data:`TTL_S`.

Leases compare ``expires_at`` with the reader's clock: hosts sharing a sweep should keep their clocks in sync
(NTP) to well within the TTL.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from . import layout as L
from .layout import LOCK_NAME  # noqa: F401 - the lock file's name, for tests and tools
from .storage import Location, location

TTL_S = 30.0          # how long a lease lasts without renewal
RENEW_EVERY_S = 5.0   # how often the holder renews it (at most a third of the TTL)
TTL_ENV = "SWEEPLAB_LOCK_TTL_S"  # overrides TTL_S (tests, or storage with slow writes)


class LockHeld(RuntimeError):
    """Another live driver holds the sweep's lock."""

    def __init__(self, lock_file: Location, holder: dict[str, Any]):
        self.holder = holder
        super().__init__(f"another driver is running this sweep ({lock_file} is held by host "
                         f"{holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"
                         ": wait for it to end or stop it; a driver that died releases the lock within "
                         f"{_ttl():g} s")


def _ttl() -> float:
    text = os.environ.get(TTL_ENV)
    if text is None:
        return TTL_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"${TTL_ENV}={text!r}: expected a number of seconds above 0")
    return value


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def _read(file: Location) -> dict[str, Any] | None:
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _stale(holder: dict[str, Any], host: str, ttl: float, unreadable_since: float) -> str | None:
    """Why the holder of a lock is gone, seen from ``host`` (None while it may be alive)."""
    now = time.time()
    if not holder:  # a record never completed: its writer died between creating and writing it
        return "its record is unreadable" if now > unreadable_since + ttl else None
    expires = holder.get("expires_at")
    if isinstance(expires, (int, float)) and expires < now:
        return f"its lease expired at {_iso(expires)}"
    pid = holder.get("pid")
    if holder.get("host") == host and isinstance(pid, int) and not _alive(pid):
        return f"its process {pid} on this host ({host}) is gone"
    return None


def driver_alive(sweep: Location | str) -> bool:
    """Whether a driver holds the sweep's lock with a live lease (what ``sweeplab status`` tells running trials
    from interrupted ones by). A driver killed on another host counts as alive until its lease runs out."""
    holder = _read(L.lock_file(location(sweep)))
    if holder is None:
        return False
    return _stale(holder, socket.gethostname(), _ttl(), time.time()) is None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class DriverLock:
    """The lease lock of one sweep: ``with DriverLock(sweep):`` holds it for the block (:class:`LockHeld` when
    another driver has it)."""

    def __init__(self, sweep: Location | str, *, out=None):
        self.file = L.lock_file(location(sweep))
        self.ttl = _ttl()
        self.renew_every = min(RENEW_EVERY_S, self.ttl / 3)
        self.owner, self.host, self.pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        self.since: str | None = None
        self.lost = False  # set when another driver took the lock from under us (our renewals had stopped)
        self._out = out or sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _say(self, message: str) -> None:
        print(message, file=self._out, flush=True)

    def _doc(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": self.host, "pid": self.pid, "since": self.since,
                           "expires_at": time.time() + self.ttl}).encode()

    def read(self) -> dict[str, Any] | None:
        """The holder's record; None when nobody holds the lock, ``{}`` when it cannot be read (being written)."""
        return _read(self.file)

    def _stale(self, holder: dict[str, Any], unreadable_since: float) -> str | None:
        """Why the holder is gone (None while it may be alive)."""
        return _stale(holder, self.host, self.ttl, unreadable_since)

    def _take_over(self, holder: dict[str, Any]) -> bool:
        """Replace a stale lock; False when it changed meanwhile or another driver re-created it first."""
        if self.read() != holder:
            return False
        self.file.delete()
        return self.file.create_exclusive(self._doc())

    def acquire(self) -> "DriverLock":
        self.since = _iso(time.time())
        deadline, unreadable_since = None, time.time()
        while True:
            if self.file.create_exclusive(self._doc()):
                break
            holder = self.read()
            if holder is None:  # released between our two calls
                continue
            if reason := self._stale(holder, unreadable_since):
                self._say(f"taking over the driver lock {self.file}: held by host {holder.get('host', '?')} pid "
                          f"{holder.get('pid', '?')}, but {reason}")
                if self._take_over(holder):
                    break
                continue
            now = time.time()
            if deadline is None:
                # A live holder renews its lease; one that died on another host stops renewing: wait out the lease
                # it holds (never more than our TTL, whatever its clock says), plus one renewal period.
                expires = holder.get("expires_at")
                left = min(max(expires - now, 0.0), self.ttl) if isinstance(expires, (int, float)) else self.ttl
                deadline = now + left + self.renew_every
                self._say(f"waiting up to {deadline - now:.0f} s for the driver lock {self.file}: held by host "
                          f"{holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"
                          " (a driver that died stops renewing its lease)")
            if now >= deadline:
                raise LockHeld(self.file, holder)
            time.sleep(min(self.renew_every, 1.0, max(deadline - now, 0.01)))
        self._thread = threading.Thread(target=self._renew, name="sweeplab-driver-lock", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                holder = self.read()
                if holder is None or (holder and holder.get("owner") != self.owner):
                    self.lost = True
                    self._say(f"warning: lost the driver lock {self.file} (now held by "
                              f"{(holder or {}).get('host', 'nobody')} pid {(holder or {}).get('pid', '-')}): "
                              "another driver may be running this sweep")
                    return
                self.file.write_bytes(self._doc())
            except Exception as exc:  # noqa: BLE001 - a storage hiccup: try again at the next renewal
                self._say(f"warning: could not renew the driver lock {self.file}: {exc}")

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        holder = self.read()
        if holder and holder.get("owner") == self.owner:
            self.file.delete()

    def __enter__(self) -> "DriverLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
