"""``dynlog replay``: the history of the file system (or of one directory or file) as events.

Every journal is folded from its earliest surviving state, and all records are merged in time
order (a journal's own records stay in sequence order). Folding as we go means each event is
shown with the path it had at that moment, the inode it touched and the sizes involved, and it
lets ``--follow`` continue from the exact heads it printed.

One line per event. Internal bookkeeping events (the seal an rmdir puts on the removed
directory's journal, the move of a hard-linked inode into its own journal) are kept out of the
text and marked ``"internal": true`` in JSON. A rename across directories is two events in one
transaction: it is shown once, as ``rename``.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from .. import schema
from ..journal.events import (
    Create, Detach, Event, InodeInit, Link, MoveIn, MoveOut, Orphaned, Remove, Rename, SetAttr, SetXattr,
)
from ..journal.record import Record
from ..materialize.view import View
from ..store.base import Store
from .timeparse import format_time
from .walk import Journals, JournalData, NotFound, Tree, fold_record, join, type_name


@dataclass
class Line:
    """One event as replay shows it."""

    ts: int
    jid: str
    seq: int
    session: str
    host: str
    uid: int
    op: str  # what happened: create, mkdir, write, rename, unlink, chmod, ...
    record_op: str  # the operation(s) the record was committed for
    path: str
    ino: int
    to: str = ""  # rename / link target path, symlink target
    details: dict[str, Any] = field(default_factory=dict)
    internal: bool = False
    dirs: tuple[int, ...] = ()  # the directory inodes the event happened in (for path filters)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "time": format_time(self.ts, 9), "ts": self.ts, "journal": self.jid, "seq": self.seq,
            "session": self.session, "host": self.host or None, "uid": self.uid, "op": self.op,
            "record_op": self.record_op, "path": self.path, "ino": self.ino,
        }
        if self.to:
            d["to"] = self.to
        d.update(self.details)
        if self.internal:
            d["internal"] = True
        return d

    def to_text(self) -> str:
        who = self.session + (f"@{self.host}" if self.host else "")
        target = f" -> {self.to}" if self.to else ""
        extra = " ".join(f"{k}={_fmt(k, v)}" for k, v in self.details.items() if k not in ("type",))
        kind = self.details.get("type", "")
        if kind and self.op not in ("mkdir", "symlink") and kind != "file":
            extra = f"type={kind} " + extra
        return f"{format_time(self.ts)}  {who:<20} uid={self.uid:<5} {self.op:<11} {self.path}{target}" + (
            f"  {extra.strip()}" if extra.strip() else "")


def _fmt(key: str, v: Any) -> str:
    if key == "mode" and isinstance(v, int):
        return f"{v & 0o7777:04o}"
    if key in ("mtime", "atime") and isinstance(v, int):
        return format_time(v)
    return str(v)


def sessions_hosts(store: Store) -> dict[str, str]:
    """session id -> host, from the session items (absent when sessions are not recorded)."""
    out: dict[str, str] = {}
    try:
        for it in store.query("meta", schema.SESSIONS):
            if it.get("host"):
                out[it["name"]] = str(it["host"])
    except Exception:  # noqa: BLE001 - hosts are a nicety; never fail a replay over them
        pass
    return out


class Replayer:
    """Folds every journal in time order and describes each event as a Line."""

    def __init__(self, store: Store, journals: Journals | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.journals = journals or Journals(store)
        self.warn = warn or (lambda msg: None)
        self.hosts = sessions_hosts(store)
        self.views: dict[str, View] = {}
        self.where: dict[int, set[tuple[int, str]]] = {}  # ino -> {(dir ino, name)}
        self._recent_moves: dict[tuple[int, int], bool] = {}  # (ino, ts) of a shown cross-dir rename
        self._lines: list[Line] = []
        self.horizon: int | None = None  # events before this time were (partly) compacted away

    # -- paths ---------------------------------------------------------------------------------------
    def path_of(self, ino: int, depth: int = 0) -> str:
        if ino == schema.ROOT_INO:
            return "/"
        names = self.where.get(ino)
        if not names or depth > 256:
            return f"<inode {ino}>"
        d, n = min(names)
        return join(self.path_of(d, depth + 1), n)

    def ancestry(self, ino: int) -> list[int]:
        """``ino`` and the directories above it, as things stand at the replay point."""
        out = [ino]
        while ino != schema.ROOT_INO and len(out) < 256:
            names = self.where.get(ino)
            if not names:
                break
            ino = min(names)[0]
            out.append(ino)
        return out

    def _add(self, ino: int, d: int, name: str) -> None:
        self.where.setdefault(ino, set()).add((d, name))

    def _drop(self, ino: int, d: int, name: str) -> None:
        s = self.where.get(ino)
        if s is not None:
            s.discard((d, name))

    # -- loading ---------------------------------------------------------------------------------------
    def load(self) -> list[tuple[JournalData, View]]:
        """Read every journal and fold it to its earliest surviving state."""
        out = []
        for jid in self.journals.list():
            data = self.journals.data(jid)
            for name, why in data.bad_records:
                self.warn(f"{jid}/{name}: unreadable record ({why})")
            view = self._earliest(data)
            if view.head:
                self.horizon = max(self.horizon or 0, view.head_ts)
            self.views[jid] = view
            out.append((data, view))
            if jid.startswith("d/"):
                dino = schema.journal_ino(jid)
                for n, e in view.entries.items():
                    self._add(e.ino, dino, n)
        return out

    def _earliest(self, data: JournalData) -> View:
        """The oldest state of the journal that can be built: seq 0 when its records start at 1,
        else the oldest snapshot that the records after it continue from."""
        recs = data.records
        if recs and recs[0].seq == 1:
            return View(data.jid)
        for seq in sorted(data.snapshot_parts):
            snap = data.snapshot(seq)
            if snap is None or (recs and seq < recs[0].seq - 1):
                continue
            after = next((r for r in recs if r.seq > seq), None)
            if after is None or after.seq == seq + 1:
                return View.from_snapshot(snap)
        if not recs:
            return View(data.jid)
        self.warn(f"{data.jid}: records before {recs[0].seq} are gone and no snapshot covers them")
        v = View(data.jid)
        v.head = recs[0].seq - 1
        v.head_hash = recs[0].prev
        return v

    # -- the merged stream ----------------------------------------------------------------------------
    def history(self) -> Iterator[Line]:
        """Every event from the earliest surviving state to now, in time order."""
        loaded = self.load()
        streams = [[r for r in data.records if r.seq > view.head] for data, view in loaded]
        merged = heapq.merge(*streams, key=lambda r: (r.ts, r.jid, r.seq))
        yield from self.feed(merged)

    def feed(self, records: Iterable[Record]) -> Iterator[Line]:
        for rec in records:
            view = self.views.get(rec.jid)
            if view is None:
                view = self.views[rec.jid] = View(rec.jid)
            if rec.seq <= view.head:
                continue
            if rec.seq != view.head + 1:
                self.warn(f"{rec.jid}: records {view.head + 1}..{rec.seq - 1} are missing")
                view.head, view.head_hash = rec.seq - 1, rec.prev
            if not rec.verify():
                self.warn(f"{rec.jid} record {rec.seq}: its hash does not verify (altered?)")
            elif rec.prev != view.head_hash:
                self.warn(f"{rec.jid} record {rec.seq}: does not chain to record {rec.seq - 1}")
            self._lines = []
            fold_record(view, rec, self._describe)
            yield from self._lines

    # -- describing events ------------------------------------------------------------------------------
    def _line(self, rec: Record, op: str, path: str, ino: int, dirs: tuple[int, ...], **kw: Any) -> None:
        self._lines.append(Line(rec.ts, rec.jid, rec.seq, rec.session, self.hosts.get(rec.session, ""), rec.uid,
                                op, rec.op, path, ino, dirs=dirs, **kw))

    def _describe(self, ev: Event, view: View, rec: Record) -> None:
        if ev.kind == "stamp":
            return  # times the operation after it (fold_record gives its lines that time)
        jid = rec.jid
        jino = schema.journal_ino(jid)
        if jid.startswith("i/"):
            self._describe_inode(ev, view, rec, jino)
            return
        d = jino
        dpath = self.path_of(d)
        if isinstance(ev, Create):
            ino = ev.inode
            op = {"dir": "mkdir", "symlink": "symlink", "file": "create"}.get(type_name(ino.mode), "mknod")
            det: dict[str, Any] = {"type": type_name(ino.mode), "mode": ino.mode & 0o7777}
            if ino.size:
                det["size"] = ino.size
            self._line(rec, op, join(dpath, ev.name), ino.ino, (d,), to=ino.target, details=det)
            self._add(ino.ino, d, ev.name)
        elif isinstance(ev, Remove):
            if ev.name == "":
                self._line(rec, "seal", dpath, d, (d,), internal=True)
                return
            ent = view.entries.get(ev.name)
            kind = type_name(ent.mode) if ent is not None else "file"
            det = {"type": kind}
            if ent is not None and ent.size:
                det["size"] = ent.size
            self._line(rec, "rmdir" if kind == "dir" else "unlink", join(dpath, ev.name), ev.ino, (d,), details=det)
            self._drop(ev.ino, d, ev.name)
        elif isinstance(ev, Rename):
            ent = view.entries.get(ev.name)
            tgt = view.entries.get(ev.new)
            det = {"type": type_name(ent.mode)} if ent is not None else {}
            if tgt is not None and tgt.ino != ev.ino:
                det["replaced"] = tgt.ino
                self._drop(tgt.ino, d, ev.new)
            self._line(rec, "rename", join(dpath, ev.name), ev.ino, (d,), to=join(dpath, ev.new), details=det)
            self._drop(ev.ino, d, ev.name)
            self._add(ev.ino, d, ev.new)
        elif isinstance(ev, MoveOut):
            ent = view.entries.get(ev.name)
            det = {"type": type_name(ent.mode)} if ent is not None else {}
            key = (ev.ino, rec.ts)
            if not self._recent_moves.pop(key, False):
                self._recent_moves[key] = True
                self._line(rec, "rename", join(dpath, ev.name), ev.ino, (d, ev.to_dir),
                           to=join(self.path_of(ev.to_dir), ev.to_name), details=det)
            self._drop(ev.ino, d, ev.name)
        elif isinstance(ev, MoveIn):
            tgt = view.entries.get(ev.name)
            if tgt is not None and tgt.ino != ev.inode.ino:
                self._drop(tgt.ino, d, ev.name)
            key = (ev.inode.ino, rec.ts)
            if not self._recent_moves.pop(key, False):
                self._recent_moves[key] = True
                det = {"type": type_name(ev.inode.mode)}
                if tgt is not None and tgt.ino != ev.inode.ino:
                    det["replaced"] = tgt.ino
                self._line(rec, "rename", join(self.path_of(ev.from_dir), ev.from_name), ev.inode.ino,
                           (ev.from_dir, d), to=join(dpath, ev.name), details=det)
            self._add(ev.inode.ino, d, ev.name)
        elif isinstance(ev, SetAttr):
            touch = set(ev.attrs) <= {"ctime"} and not ev.blocks and ev.data is None  # e.g. the ctime of a directory moved elsewhere
            if ev.name == "":
                self._line(rec, _attr_op(ev), dpath, d, (d,), details=_attr_details(ev), internal=touch)
                return
            ent = view.entries.get(ev.name)
            ino = ent.ino if ent is not None else 0
            self._line(rec, _attr_op(ev), join(dpath, ev.name), ino, (d,), details=_attr_details(ev), internal=touch)
        elif isinstance(ev, SetXattr):
            path = dpath if ev.name == "" else join(dpath, ev.name)
            ent = view.entries.get(ev.name) if ev.name else None
            ino = d if ev.name == "" else (ent.ino if ent is not None else 0)
            det = {"key": ev.key}
            if ev.value is not None:
                det["bytes"] = len(ev.value)
            self._line(rec, "setxattr" if ev.value is not None else "removexattr", path, ino, (d,), details=det)
        elif isinstance(ev, Detach):
            self._line(rec, "detach", join(dpath, ev.name), ev.ino, (d,), internal=True)
        elif isinstance(ev, Link):
            existing = self.path_of(ev.ino)
            self._line(rec, "link", join(dpath, ev.name), ev.ino, (d,), to=existing if not existing.startswith("<") else "",
                       details={"type": type_name(ev.mode)})
            self._add(ev.ino, d, ev.name)
        elif isinstance(ev, Orphaned):
            self._line(rec, "orphaned", self.path_of(ev.ino), ev.ino, (d,), details={"held_by": ev.session},
                       internal=True)
        else:
            self._line(rec, ev.kind, dpath, d, (d,), internal=True)

    def _describe_inode(self, ev: Event, view: View, rec: Record, ino: int) -> None:
        path = self.path_of(ino)
        dirs = tuple(sorted({d for d, _ in self.where.get(ino, ())}))
        if isinstance(ev, InodeInit):
            self._line(rec, "inode_init", path, ino, dirs, details={"nlink": ev.inode.nlink}, internal=True)
        elif isinstance(ev, SetAttr):
            attrs = ev.attrs
            nlink_only = set(attrs) <= {"nlink", "ctime"}
            self._line(rec, "nlink" if nlink_only else _attr_op(ev), path, ino, dirs, details=_attr_details(ev),
                       internal=nlink_only)
        elif isinstance(ev, SetXattr):
            det: dict[str, Any] = {"key": ev.key}
            if ev.value is not None:
                det["bytes"] = len(ev.value)
            self._line(rec, "setxattr" if ev.value is not None else "removexattr", path, ino, dirs, details=det)
        elif isinstance(ev, Orphaned):
            self._line(rec, "orphaned", path, ev.ino, dirs, details={"held_by": ev.session}, internal=True)
        else:
            self._line(rec, ev.kind, path, ino, dirs, internal=True)


def _attr_op(ev: SetAttr) -> str:
    a = ev.attrs
    if ev.blocks or ev.data is not None:
        return "write"
    if "size" in a:
        return "truncate"
    if "mode" in a:
        return "chmod"
    if "uid" in a or "gid" in a:
        return "chown"
    if "atime" in a or "mtime" in a:
        return "utimens"
    if "nlink" in a:
        return "nlink"
    if "ctime" in a:
        return "touch"
    return "setattr"


def _attr_details(ev: SetAttr) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("size", "mode", "uid", "gid", "nlink", "mtime", "atime"):
        if k in ev.attrs:
            out[k] = ev.attrs[k]
    if ev.blocks:
        out["blocks"] = sum(c for _, c, _ in ev.blocks)
    if ev.data is not None:
        out["inline"] = len(ev.data)
    return out


# -- scope: which events a PATH selects ----------------------------------------------------------------

class Scope:
    """Selects the events under a path: a directory (recursively, or only its own journal) or a file.

    The path is resolved now (or at --until); events are selected by inode, so a directory that
    was renamed since keeps its history. A path that does not exist any more is matched by name
    against the path each event had at the time."""

    def __init__(self, store: Store, journals: Journals, path: str, recursive: bool, ts: int | None) -> None:
        self.path = "/" + "/".join(p for p in path.split("/") if p)
        self.recursive = recursive
        self.ino: int | None = None
        self.is_dir = True
        if self.path == "/":
            self.ino = schema.ROOT_INO
            return
        try:
            ent = Tree(journals, ts).lookup(self.path)
            self.ino, self.is_dir = ent.ino, ent.inode.is_dir
        except NotFound:
            self.ino = None

    def wants(self, line: Line, replayer: Replayer) -> bool:
        if self.ino == schema.ROOT_INO and self.recursive:
            return True
        if self.ino is not None:
            if line.ino == self.ino:
                return True
            if not self.is_dir:
                return False
            for d in line.dirs:
                if d == self.ino:
                    return True
                if self.recursive and self.ino in replayer.ancestry(d):
                    return True
            return False
        # Gone now: match by the paths the event had.
        for p in (line.path, line.to):
            if p and (p == self.path or (p.startswith(self.path + "/")
                                         and (self.recursive or "/" not in p[len(self.path) + 1:]))):
                return True
        return False


# -- following -------------------------------------------------------------------------------------------

def follow(replayer: Replayer, emit: Callable[[Line], None], *, stop: threading.Event | None = None,
           interval: float = 0.5, idle_exit: float | None = None, feed: Any = None) -> None:
    """After ``history()``: print new events as they are committed until ``stop`` (or idle_exit
    seconds without any). Uses the store's change feed when there is one (keys of new records), and
    otherwise polls the journals' tails, re-listing journals now and then to find new ones."""
    stop = stop or threading.Event()
    last_event = time.monotonic()
    rescan_every = 10
    polls = 0
    while not stop.is_set():
        touched: set[str] = set()
        if feed is not None:
            batch = feed.poll(interval)
            if batch.lost:
                touched = set(replayer.journals.list())
            for ch in batch.changes:
                if ch.name.startswith("j/") and (ch.path.startswith("d/") or ch.path.startswith("i/")):
                    touched.add(ch.path)
        else:
            stop.wait(interval)
            touched = set(replayer.views)
            polls += 1
            if polls % rescan_every == 1:
                touched |= set(replayer.journals.list())
        recs: list[Record] = []
        for jid in sorted(touched):
            view = replayer.views.get(jid)
            head = view.head if view is not None else 0
            recs.extend(replayer.journals.log.read_after(jid, head))
        recs.sort(key=lambda r: (r.ts, r.jid, r.seq))
        for line in replayer.feed(recs):
            emit(line)
            last_event = time.monotonic()
        if idle_exit is not None and time.monotonic() - last_event > idle_exit:
            return


def line_json(line: Line) -> str:
    return json.dumps(line.to_json(), ensure_ascii=True, sort_keys=False)
