"""Mount sessions: each mount registers an item (host, pid, mount point, started, heartbeat)
and keeps it alive; locks and open-unlinked files are tied to it, so when it stops beating
the others (or compact) know what to free.

Item: path ``sess``, name ``<session id>``; attributes host, pid, mnt, started, hb (ns).
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

    def alive(self, now_ns: int | None = None, lease: float = LEASE) -> bool:
        now_ns = now_ns or time.time_ns()
        return now_ns - self.heartbeat < lease * 1e9

    @classmethod
    def from_item(cls, it: dict) -> "SessionInfo":
        held = {int(k): v for k, v in json.loads(it["open"]).items()} if it.get("open") else None
        return cls(it["name"], it.get("host", "?"), int(it.get("pid", 0)), it.get("mnt", ""), int(it.get("started", 0)),
                   int(it.get("hb", 0)), held)


class Session:
    """This mount's session item and its heartbeat thread."""

    def __init__(self, store: Store, session_id: str, mountpoint: str = "", interval: float = HEARTBEAT_INTERVAL,
                 open_files: Callable[[], dict[int, list[str]]] | None = None) -> None:
        self.open_files = open_files
        self.store = store
        self.id = session_id
        self.mountpoint = mountpoint
        self.interval = interval
        self.started = time.time_ns()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _item(self) -> dict:
        item = {"path": schema.SESSIONS, "name": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                "mnt": self.mountpoint, "started": self.started, "hb": time.time_ns()}
        if self.open_files is not None:
            held = self.open_files()
            if held:
                # Block versions this mount still reads: compact keeps them while the session lives,
                # even for a file whose last name is gone (an open-unlinked orphan).
                body = json.dumps({str(k): v for k, v in held.items()}, separators=(",", ":"))
                item["open"] = body[:MAX_OPEN_BYTES] if len(body) <= MAX_OPEN_BYTES else "{}"
        return item

    def beat(self) -> None:
        with operation("session"):
            self.store.put(Put("meta", self._item()))

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="dynlog-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except DynlogError as e:
                log.warning("session.heartbeat_failed", error=str(e))

    def stop(self, remove: bool = True) -> None:
        self._stop.set()
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
