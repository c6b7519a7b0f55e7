"""Helpers shared by the engine tests: errno assertions, tree walks, strict journal replay."""

from __future__ import annotations

import contextlib
import errno
import json
import stat
import threading
import traceback
from typing import Any, Iterator

import pytest

from dynlog import schema
from dynlog.core.filesystem import FileSystem
from dynlog.errors import FsError
from dynlog.history.walk import fold_record
from dynlog.journal.events import (
    Create, Detach, Event, InodeInit, Link, MoveIn, MoveOut, Remove, Rename, SetAttr, SetXattr,
)
from dynlog.journal.log import JournalStore
from dynlog.journal.record import GENESIS_HASH, Record
from dynlog.materialize.view import View
from dynlog.store.base import Store


# -- errors -------------------------------------------------------------------------------------

@contextlib.contextmanager
def raises_errno(code: int) -> Iterator[None]:
    """Expect an FsError with exactly this errno."""
    with pytest.raises(FsError) as info:
        yield
    assert info.value.errno == code, f"expected {errno.errorcode[code]}, got {info.value}"


def errno_of(fn: Any, *a: Any, **kw: Any) -> int:
    """0 when ``fn`` succeeds, else the errno of the FsError it raised."""
    try:
        fn(*a, **kw)
    except FsError as e:
        return e.errno
    return 0


# -- backings (for worker processes) --------------------------------------------------------------

def backing_of(store: Store, endpoint: str | None) -> dict[str, Any]:
    from dynlog.store.dynamo import DynamoStore
    from dynlog.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return {"kind": "sqlite", "path": store.path}
    assert isinstance(store, DynamoStore)
    return {"kind": "dynamodb", "region": store.client.meta.region_name, "table": store.meta_table,
            "endpoint": endpoint}


def open_backing(spec: dict[str, Any]) -> Store:
    if spec["kind"] == "sqlite":
        from dynlog.store.sqlite import SqliteStore

        return SqliteStore(spec["path"])
    from dynlog.store.dynamo import DynamoStore

    return DynamoStore(spec["region"], spec["table"], endpoint_url=spec["endpoint"])


# -- trees ----------------------------------------------------------------------------------------

def join(parent: str, name: str) -> str:
    return ("" if parent == "/" else parent) + "/" + name


def walk(fs: FileSystem, top: str = "/") -> dict[str, tuple]:
    """path -> (type, ino, mode, nlink, uid, gid, size) of everything under ``top`` (not ``top``),
    through the public API. Raises if a directory is reached twice (a cycle)."""
    out: dict[str, tuple] = {}
    seen_dirs: set[int] = set()

    def visit(path: str) -> None:
        for name, _ in fs.readdir(path):
            if name in (".", ".."):
                continue
            p = join(path, name)
            st = fs.getattr(p)
            kind = stat.S_IFMT(st["st_mode"])
            out[p] = (kind, st["st_ino"], st["st_mode"], st["st_nlink"], st["st_uid"], st["st_gid"],
                      st["st_size"])
            if kind == stat.S_IFDIR:
                assert st["st_ino"] not in seen_dirs, f"directory {st['st_ino']} reached twice (cycle) at {p}"
                seen_dirs.add(st["st_ino"])
                visit(p)

    visit(top)
    return out


# -- journals -------------------------------------------------------------------------------------

def journal_ids(store: Store) -> list[str]:
    return sorted(list(store.scan_partitions("meta", "d/")) + list(store.scan_partitions("meta", "i/")))


def verify_chain(recs: list[Record], first_prev: str = GENESIS_HASH, first_seq: int = 1) -> None:
    """Contiguous seqs, every record's own hash right, each ``prev`` the hash of the one before."""
    prev, seq = first_prev, first_seq
    for r in recs:
        assert r.seq == seq, f"{r.jid}: seq {r.seq}, expected {seq}"
        assert r.verify(), f"{r.jid}/{r.seq}: hash does not verify"
        assert r.prev == prev, f"{r.jid}/{r.seq}: prev {r.prev} != hash of predecessor {prev}"
        prev, seq = r.hash, seq + 1


def replay(journals: JournalStore, jid: str, upto: int | None = None) -> View:
    """A view folded from seq 1 (no snapshot) up to ``upto`` (None: the whole journal)."""
    v = View(jid)
    for r in journals.read_after(jid, 0, until=upto):
        v.apply(r)
    return v


def canon(ev: Event) -> str:
    return json.dumps(ev.to_json(), sort_keys=True)


class StrictReplayError(AssertionError):
    pass


def strict_replay(recs: list[Record], jid: str | None = None) -> View:
    """Fold records while checking the namespace invariants each event must keep:
    Create/Link only of a free name; Remove/Rename/MoveOut of an entry that exists with that
    inode; nothing after a directory's seal (rmdir), and a seal only of an empty directory.

    Each event is checked against the state its predecessors left, within a record too: group
    commit folds several operations of one mount into one record (a create and then an unlink
    of the same name is a valid record)."""
    v = View(jid or (recs[0].jid if recs else "?"))
    for r in recs:
        fold_record(v, r, _check_event)
    return v


def _check_event(ev: Event, v: View, rec: Record) -> None:
    """strict_replay's check of one event, against the state just before it."""
    where = f"{rec.jid}/{rec.seq} {type(ev).__name__} {ev}"
    if v.removed:
        raise StrictReplayError(f"event after the seal: {where}")
    if isinstance(ev, (Create, Link)):
        if ev.name in v.entries:
            raise StrictReplayError(f"name taken twice: {where}")
    elif isinstance(ev, Remove):
        if ev.name == "":
            if len(v.entries):
                raise StrictReplayError(f"sealed a non-empty directory: {where} {list(v.entries)}")
        elif ev.name not in v.entries or v.entries[ev.name].ino != ev.ino:
            raise StrictReplayError(f"removed a missing entry: {where}")
    elif isinstance(ev, (Rename, MoveOut)):
        if ev.name not in v.entries or v.entries[ev.name].ino != ev.ino:
            raise StrictReplayError(f"moved a missing entry: {where}")
    elif isinstance(ev, (SetAttr, SetXattr, Detach)) and ev.name:
        if ev.name not in v.entries:
            raise StrictReplayError(f"changed a missing entry: {where}")


def is_dir_mode(mode: int) -> bool:
    return stat.S_ISDIR(mode)


__all__ = [
    "Create", "Detach", "InodeInit", "Link", "MoveIn", "MoveOut", "Remove", "Rename", "SetAttr", "SetXattr",
    "schema",
]


# -- lock order ----------------------------------------------------------------------------------

class ViewLockOrder:
    """Checks the view locks' order (dynlog/materialize/cache.py): a thread that holds a view's
    lock may wait for another view's lock only if that view's journal id sorts after it, the
    order in which a commit to several journals takes them. Waiting out of that order is how two
    threads end up each holding the lock the other waits for. ``install`` gives every View made
    from then on a checking lock; ``violations`` lists (held jid, wanted jid, stack) for each
    such wait. Tries (blocking=False) cannot deadlock and are not checked."""

    def __init__(self) -> None:
        self.violations: list[tuple[str, str, str]] = []
        self._held = threading.local()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        init = View.__init__
        order = self

        def checked_init(view: View, jid: str, *a: Any, **kw: Any) -> None:
            init(view, jid, *a, **kw)
            view.lock = _CheckedLock(order, jid)

        monkeypatch.setattr(View, "__init__", checked_init)

    def report(self) -> str:
        return "\n".join(f"waited for {w} holding {h}, at:\n{where}" for h, w, where in self.violations[:3])

    def held(self) -> list[_CheckedLock]:
        h = getattr(self._held, "locks", None)
        if h is None:
            h = self._held.locks = []
        return h


class _CheckedLock:
    def __init__(self, order: ViewLockOrder, jid: str) -> None:
        self.order = order
        self.jid = jid
        self._lock = threading.RLock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        held = self.order.held()
        if blocking and self not in held:
            later = [lk.jid for lk in held if lk.jid > self.jid]
            if later:
                self.order.violations.append((max(later), self.jid, "".join(traceback.format_stack(limit=12))))
        ok = self._lock.acquire(blocking, timeout)
        if ok:
            held.append(self)
        return ok

    def release(self) -> None:
        held = self.order.held()
        held.reverse()
        held.remove(self)  # the latest acquisition of this lock
        held.reverse()
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
