"""Mount sessions: each mount registers an item (host, pid, mount point, started, heartbeat)
and keeps it alive; locks and open-unlinked files are tied to it, so when it stops beating
the others (or compact) know what to free.

Item: path ``sess``, name ``<session id>``; attributes host, pid, mnt, started, hb (ns), ls
(lease, ms), open.

The lease is written into the item: each beat promises the next one within ``ls``, and a
session whose heartbeat is older than its own ``ls`` is dead. That lets an idle mount beat
rarely (the interval grows from 5 s to IDLE_HEARTBEAT, 120 s by default) while a mount that
holds locks keeps the short lease (30 s), so a crashed holder's locks still free themselves
after 30 s: the lock manager asks for the short lease, with a beat, before it takes a lock.
An item without ``ls`` (an older dynlog) is judged by LEASE.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import structlog

from .. import schema
from ..errors import DynlogError
from ..store.base import Delete, Put, Store
from ..store.metrics import operation
from .cadence import Backoff

log = structlog.get_logger(__name__)


def _seconds_from_env(var: str, default: float) -> float:
    """A positive number of seconds from the environment (for tests that cannot wait 30 s)."""
    raw = os.environ.get(var, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("sessions.bad_env", var=var, value=raw)
        return default
    return value if value > 0 else default


# DYNLOG_SESSION_LEASE / DYNLOG_HEARTBEAT_INTERVAL shorten both for tests (docs/OPERATIONS.md).
# Every mount of one file system must use the same lease, or one may think another dead; the
# heartbeat defaults to a sixth of the lease (5 s of 30 s), so a short lease alone is enough.
LEASE = _seconds_from_env("DYNLOG_SESSION_LEASE", 30.0)  # a session whose heartbeat is older than this is dead
HEARTBEAT_INTERVAL = _seconds_from_env("DYNLOG_HEARTBEAT_INTERVAL", min(5.0, LEASE / 6))
# Between the beats of an idle session without locks: the written lease is this plus
# LEASE_MARGIN. DYNLOG_IDLE_HEARTBEAT overrides it; the default follows the lease (4 x 30 s).
IDLE_HEARTBEAT = max(HEARTBEAT_INTERVAL, _seconds_from_env("DYNLOG_IDLE_HEARTBEAT", 4 * LEASE))
LEASE_MARGIN = max(LEASE - HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL)  # slack for a late beat (25 s)
# From the first beat on the interval is 1.5 x the time since start (or since the last lock was
# released), between HEARTBEAT_INTERVAL and IDLE_HEARTBEAT: 0, 5, 12.5, 31, 78, 195 s, ...
HEARTBEAT = Backoff(fast=HEARTBEAT_INTERVAL, slow=IDLE_HEARTBEAT, hold=0.0, ratio=1.5)
MAX_OPEN_BYTES = 300 * 1024


@dataclass(frozen=True)
class SessionInfo:
    id: str
    host: str
    pid: int
    mountpoint: str
    started: int
    heartbeat: int
    open_blocks: dict[int, list[str]] | None = None
    lease_ms: int = 0  # the lease the session wrote (0: an older dynlog, judged by LEASE)

    def lease(self, default: float = LEASE) -> float:
        """Seconds this session's last beat is good for."""
        return self.lease_ms / 1000 if self.lease_ms > 0 else default

    def alive(self, now_ns: int | None = None, lease: float = LEASE) -> bool:
        """Its last beat is younger than its own lease (``lease`` for items that carry none)."""
        now_ns = now_ns or time.time_ns()
        return now_ns - self.heartbeat < self.lease(lease) * 1e9

    @classmethod
    def from_item(cls, it: dict) -> "SessionInfo":
        held = {int(k): v for k, v in json.loads(it["open"]).items()} if it.get("open") else None
        return cls(it["name"], it.get("host", "?"), int(it.get("pid", 0)), it.get("mnt", ""), int(it.get("started", 0)),
                   int(it.get("hb", 0)), held, int(it.get("ls", 0)))


_running: dict[str, "Session"] = {}  # session id -> its heartbeat in this process (for the lock manager)
_running_lock = threading.Lock()


def running(session_id: str) -> "Session | None":
    """This process's live Session with that id, if one is beating."""
    with _running_lock:
        return _running.get(session_id)


class Session:
    """This mount's session item and its heartbeat thread."""

    def __init__(self, store: Store, session_id: str, mountpoint: str = "", interval: float = HEARTBEAT_INTERVAL,
                 open_files: Callable[[], dict[int, list[str]]] | None = None) -> None:
        self.open_files = open_files
        self.store = store
        self.id = session_id
        self.mountpoint = mountpoint
        self.interval = interval
        self.backoff = Backoff(interval, max(interval, HEARTBEAT.slow), HEARTBEAT.hold, HEARTBEAT.ratio)
        self.started = time.time_ns()
        self.beats = 0
        self.next_interval = interval  # seconds until the next beat, as the last beat promised
        self.lease_written = 0.0  # the lease of the last beat, seconds
        self._pinned = False  # locks held: keep the short lease
        self._quiet_since = time.monotonic()
        self._beat_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _item(self, lease: float) -> dict:
        item = {"path": schema.SESSIONS, "name": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                "mnt": self.mountpoint, "started": self.started, "hb": time.time_ns(), "ls": int(lease * 1000)}
        if self.open_files is not None:
            held = self.open_files()
            if held:
                # Block versions this mount still reads: compact keeps them while the session lives,
                # even for a file whose last name is gone (an open-unlinked orphan).
                body = json.dumps({str(k): v for k, v in held.items()}, separators=(",", ":"))
                item["open"] = body[:MAX_OPEN_BYTES] if len(body) <= MAX_OPEN_BYTES else "{}"
        return item

    def _plan(self) -> float:
        """Seconds to the next beat: short while locks are held, growing while they are not."""
        if self._pinned:
            return self.interval
        return self.backoff.interval(time.monotonic() - self._quiet_since)

    def beat(self) -> None:
        """Write the item with a lease that covers the next planned beat plus LEASE_MARGIN."""
        with self._beat_lock:
            nxt = self._plan()
            lease = nxt + LEASE_MARGIN
            with operation("session"):
                self.store.put(Put("meta", self._item(lease)))
            self.next_interval, self.lease_written = nxt, lease
            self.beats += 1

    def hold_short_lease(self, on: bool) -> None:
        """``on``: this mount takes or holds locks, so its lease must be the short one; if the
        last beat promised a long one, beat now (one put) before the caller goes on. ``off``:
        the last lock is gone; the interval grows again from the short one."""
        if on == self._pinned:
            return
        self._pinned = on
        if on:
            if self.lease_written > self.interval + LEASE_MARGIN:
                self.beat()
        else:
            self._quiet_since = time.monotonic()

    def start(self) -> None:
        self.beat()
        with _running_lock:
            _running[self.id] = self
        self._thread = threading.Thread(target=self._run, name="dynlog-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = self.next_interval
        while not self._stop.wait(wait):
            try:
                self.beat()
                wait = self.next_interval
            except DynlogError as e:  # retry soon: the last beat's lease is running out
                log.warning("session.heartbeat_failed", error=str(e))
                wait = min(self.interval, 1.0)

    def stop(self, remove: bool = True) -> None:
        self._stop.set()
        with _running_lock:
            if _running.get(self.id) is self:
                del _running[self.id]
        if self._thread is not None:
            self._thread.join(timeout=5)
        if remove:
            with operation("session"):
                self.store.delete(Delete("meta", (schema.SESSIONS, self.id)))


def list_sessions(store: Store) -> list[SessionInfo]:
    return [SessionInfo.from_item(it) for it in store.query("meta", schema.SESSIONS)]


class LivenessCache:
    """Answers "is session S alive?" with one GetItem per session per lease period."""

    def __init__(self, store: Store, lease: float = LEASE) -> None:
        self.store = store
        self.lease = lease
        self._seen: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def alive(self, session_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(session_id)
            if hit and now - hit[0] < min(self.interval_for(hit[1]), self.lease):
                return hit[1]
        it = self.store.get("meta", (schema.SESSIONS, session_id))
        ok = it is not None and SessionInfo.from_item(it).alive(lease=self.lease)
        with self._lock:
            self._seen[session_id] = (now, ok)
        return ok

    @staticmethod
    def interval_for(alive: bool) -> float:
        return 2.0 if alive else 60.0
