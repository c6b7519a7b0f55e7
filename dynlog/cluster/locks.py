"""Advisory locks seen by every mount: POSIX byte-range locks (fcntl) and BSD flock.

One item per locked inode holds its lock table: path ``lk/<ino>``, name ``t``, attributes
``v`` (version) and ``locks`` (JSON list). A change is read-modify-write conditioned on the
version, so two clients can never both think they hold conflicting locks. Entries carry the
owning session; an entry whose session has stopped beating is dropped by whoever next meets
it, so a dead client's locks free themselves after the session lease.

POSIX and flock locks do not interact (as on Linux). POSIX locks belong to a lock owner (the
kernel's id for the process's file table); ranges split and merge; any close of the file by
the owner releases them (FUSE's flush carries the owner). flock locks belong to the open file
description.
"""

from __future__ import annotations

import errno
import json
import random
import time
from dataclasses import dataclass

from .. import schema
from ..errors import FsError, JournalConflict
from ..store.base import ABSENT, Cond, Put, Store
from ..store.metrics import operation
from .sessions import LivenessCache, running

EOF_ = 2**63 - 1  # "to the end of the file, however far it grows"
TABLE = "t"


@dataclass(frozen=True)
class Lock:
    session: str
    owner: int
    kind: str  # "p" posix, "f" flock
    type: str  # "r" shared, "w" exclusive
    start: int
    end: int  # exclusive
    pid: int = 0

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end

    def to_json(self) -> list:
        return [self.session, self.owner, self.kind, self.type, self.start, self.end, self.pid]

    @classmethod
    def from_json(cls, v: list) -> "Lock":
        return cls(v[0], int(v[1]), v[2], v[3], int(v[4]), int(v[5]), int(v[6]))


def _subtract(locks: list[Lock], start: int, end: int) -> list[Lock]:
    out = []
    for lk in locks:
        if not lk.overlaps(start, end):
            out.append(lk)
            continue
        if lk.start < start:
            out.append(Lock(lk.session, lk.owner, lk.kind, lk.type, lk.start, start, lk.pid))
        if lk.end > end:
            out.append(Lock(lk.session, lk.owner, lk.kind, lk.type, end, lk.end, lk.pid))
    return out


def _merge(locks: list[Lock]) -> list[Lock]:
    out: list[Lock] = []
    for lk in sorted(locks, key=lambda x: (x.type, x.start)):
        if out and out[-1].type == lk.type and out[-1].end >= lk.start:
            prev = out[-1]
            out[-1] = Lock(prev.session, prev.owner, prev.kind, prev.type, prev.start, max(prev.end, lk.end), lk.pid)
        else:
            out.append(lk)
    return out


class LockManager:
    def __init__(self, store: Store, session: str, liveness: LivenessCache | None = None) -> None:
        self.store = store
        self.session = session
        self.liveness = liveness or LivenessCache(store)
        self.held: dict[int, set[int]] = {}  # ino -> owners with locks here (for unmount cleanup)

    def _read(self, ino: int) -> tuple[int, list[Lock]]:
        it = self.store.get("meta", (schema.lock_partition(ino), TABLE))
        if it is None:
            return 0, []
        return int(it["v"]), [Lock.from_json(v) for v in json.loads(it["locks"])]

    def _write(self, ino: int, version: int, locks: list[Lock]) -> None:
        when = ABSENT if version == 0 else (Cond("eq", "v", version),)
        item = {"path": schema.lock_partition(ino), "name": TABLE, "v": version + 1,
                "locks": json.dumps([lk.to_json() for lk in locks], separators=(",", ":"))}
        self.store.put(Put("meta", item, when))

    def _live(self, locks: list[Lock]) -> list[Lock]:
        return [lk for lk in locks if lk.session == self.session or self.liveness.alive(lk.session)]

    def _conflict(self, locks: list[Lock], kind: str, owner: int, type_: str, start: int, end: int) -> Lock | None:
        for lk in locks:
            if lk.kind != kind or (lk.session == self.session and lk.owner == owner):
                continue
            if lk.overlaps(start, end) and (lk.type == "w" or type_ == "w"):
                return lk
        return None

    def test(self, ino: int, owner: int, type_: str, start: int, end: int, kind: str = "p") -> Lock | None:
        """F_GETLK: the first lock that would block this one, or None."""
        with operation("getlk"):
            _, locks = self._read(ino)
            return self._conflict(self._live(locks), kind, owner, type_, start, end)

    def set(self, ino: int, owner: int, type_: str, start: int, end: int, pid: int = 0, *,
            wait: bool = False, kind: str = "p", deadline: float | None = None) -> None:
        """F_SETLK / F_SETLKW (``wait``) and flock; type_ "u" unlocks. Raises EAGAIN (or
        EWOULDBLOCK for flock) when a conflicting lock is held and ``wait`` is false."""
        delay = 0.01
        sess = running(self.session)
        if sess is not None and type_ != "u":
            # A lock outlives its holder only by the holder's lease: make sure it is the short one.
            sess.hold_short_lease(True)
        with operation("setlk" if kind == "p" else "flock"):
            while True:
                version, raw = self._read(ino)
                locks = self._live(raw)
                if type_ != "u":
                    blocker = self._conflict(locks, kind, owner, type_, start, end)
                    if blocker is not None:
                        if not wait or (deadline is not None and time.monotonic() > deadline):
                            raise FsError(errno.EAGAIN, f"lock held by session {blocker.session} pid {blocker.pid}")
                        time.sleep(delay * random.uniform(0.5, 1.0))
                        delay = min(delay * 2, 0.25)
                        continue
                mine = [lk for lk in locks if lk.kind == kind and lk.session == self.session and lk.owner == owner]
                others = [lk for lk in locks if lk not in mine]
                mine = _subtract(mine, start, end)
                if type_ != "u":
                    mine.append(Lock(self.session, owner, kind, type_, start, end, pid))
                new = others + _merge(mine)
                if sorted(map(Lock.to_json, new)) == sorted(map(Lock.to_json, raw)):
                    return
                try:
                    self._write(ino, version, new)
                except JournalConflict:
                    continue
                owners = self.held.setdefault(ino, set())
                if any(lk.session == self.session and lk.owner == owner for lk in new):
                    owners.add(owner)
                else:
                    owners.discard(owner)
                    if not owners:
                        del self.held[ino]
                if sess is not None and not self.held:
                    sess.hold_short_lease(False)  # no lock left here: heartbeats may back off again
                return

    def release_owner(self, ino: int, owner: int, kind: str = "p") -> None:
        if owner in self.held.get(ino, ()):
            self.set(ino, owner, "u", 0, EOF_, kind=kind)

    def release_all(self) -> None:
        """At unmount: drop every lock this session holds."""
        for ino, owners in list(self.held.items()):
            for owner in list(owners):
                for kind in ("p", "f"):
                    try:
                        self.set(ino, owner, "u", 0, EOF_, kind=kind)
                    except FsError:
                        pass
        self.held.clear()
