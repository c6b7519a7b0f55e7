"""A journal's materialized state: a pure fold of its records, one function per event type.

For a directory journal ``d/<ino>`` the state is the sorted entries (name -> Inode) plus
``own``: the directory's own attribute changes since its creation (the creation values are
embedded in its parent's journal; see docs/ARCHITECTURE.md). For an inode journal ``i/<ino>``
the state is ``subject``: the inode that several names share.
"""

from __future__ import annotations

import functools
import threading
import time
from itertools import chain, islice
from typing import Any, Callable, TypeVar

from sortedcontainers import SortedDict

from ..journal.events import (
    Create, Detach, Event, InodeInit, Lease, Link, MoveIn, MoveOut, Orphaned, Release, Remove, Rename, SetAttr,
    SetXattr, Stamp,
)
from ..journal.inode import Inode, evolve, reference, with_contents
from ..journal.record import GENESIS_HASH, Record


T = TypeVar("T")
SCAN_LIMIT = 4096  # entries View.pick_after looks at, at most


class SequenceGap(Exception):
    """A record did not follow the view's head: the view must be re-read from the store."""


class View:
    def __init__(self, jid: str, entries: "SortedDict | None" = None) -> None:
        """``entries``: what to hold the entries in (a Draft passes its overlay: an empty
        SortedDict costs 14 us, and every commit builds a draft)."""
        self.jid = jid
        self.head = 0
        self.head_hash = GENESIS_HASH
        self.head_ts = 0
        self.entries: SortedDict = SortedDict() if entries is None else entries
        self.by_ino: dict[int, str] = {}
        self.moved_out: dict[int, tuple[int, str]] = {}
        self.own: dict[str, Any] = {}
        self.subject: Inode | None = None
        self.ndirs = 0
        self.orphans: dict[int, Orphaned] = {}
        self.lock = threading.RLock()
        self.validated = 0.0  # time.monotonic() of the last strongly consistent read of the tail
        self.committed = 0.0  # time.monotonic() of this mount's last commit to the journal
        self.stale = False
        self.chain_ok = True
        self.removed = False  # the directory itself was removed (rmdir seals its journal)
        # write-behind lease (Lease/Release events): its holder's session and expiry (ns)
        self.lease_holder: str | None = None
        self.lease_until = 0
        self.head_session = ""  # session of the record at head (write-behind: recent foreign activity)
        self.pinned = False  # holds write-behind events not yet committed: never evicted
        # this mount holds a write-behind lease here: nobody else may append, so the view (with
        # the operations it acknowledged) is the truth; refresh reads nothing, and the change
        # feed's records of the journal are this mount's own batches (ViewCache)
        self.own_lease = False

    # -- folding ---------------------------------------------------------------------------
    def apply(self, rec: Record) -> None:
        if rec.seq != self.head + 1:
            raise SequenceGap(f"{self.jid}: record {rec.seq} after head {self.head}")
        if rec.prev != self.head_hash:
            self.chain_ok = False
        ts = rec.ts
        for ev in rec.events:
            if isinstance(ev, Stamp):  # a write-behind batch: each operation at its own time
                ts = ev.ts
            fold(ev, self, ts)
        self.head = rec.seq
        self.head_hash = rec.hash
        self.head_ts = rec.ts
        self.head_session = rec.session

    def put_entry(self, name: str, inode: Inode) -> None:
        old = self.entries.get(name)
        if old is not None:
            self.drop_entry(name)
        self.entries[name] = inode
        self.by_ino[inode.ino] = name
        self.moved_out.pop(inode.ino, None)
        if inode.is_dir:
            self.ndirs += 1

    def drop_entry(self, name: str) -> Inode | None:
        old = self.entries.pop(name, None)
        if old is not None:
            if self.by_ino.get(old.ino) == name:
                del self.by_ino[old.ino]
                if old.linked:  # only a hard-linked inode can have a second name here: look for it
                    for other, ent in self.entries.items():
                        if ent.ino == old.ino:
                            self.by_ino[old.ino] = other
                            break
            if old.is_dir:
                self.ndirs -= 1
        return old

    def touch(self, ts: int) -> None:
        self.own["mtime"] = ts
        self.own["ctime"] = ts

    # -- reading ---------------------------------------------------------------------------
    def pick_after(self, name: str, pick: Callable[[Inode], T | None], n: int | None = None,
                   wrap: bool = False) -> list[tuple[str, T]]:
        """(name, pick(entry)) for the entries after ``name`` in name order (then from the start, if
        ``wrap``) for which ``pick`` gives something, at most ``n``, looking at no more than
        ``SCAN_LIMIT`` entries: what readahead of a walk wants next, cheap in a directory of a
        million files. The caller holds the view's lock."""
        entries = self.entries
        names = entries.irange(minimum=name, inclusive=(False, False))
        if wrap:
            names = chain(names, entries.irange(maximum=name, inclusive=(False, False)))
        out: list[tuple[str, T]] = []
        for nm in islice(names, SCAN_LIMIT):
            got = pick(entries[nm])
            if got is not None:
                out.append((nm, got))
                if n is not None and len(out) >= n:
                    break
        return out

    def own_inode(self, base: Inode) -> Inode:
        """The directory's inode: its creation values (``base``) with its own changes applied."""
        out = evolve(base, **{k: v for k, v in self.own.items() if k != "xattrs"}, nlink=2 + self.ndirs)
        if base.ctime > out.ctime:
            # a rename within the parent stamps the ctime on the entry there, in the parent's
            # journal (one put, none to this one): the later stamp is the directory's ctime
            out = evolve(out, ctime=base.ctime)
        if "xattrs" in self.own:
            out = evolve(out, xattrs=self.own["xattrs"])
        return out

    # -- snapshots -------------------------------------------------------------------------
    def to_snapshot(self) -> dict[str, Any]:
        own = dict(self.own)
        if "xattrs" in own:
            own["xattrs"] = [[k, v.hex()] for k, v in own["xattrs"]]
        return {
            "jid": self.jid, "head": self.head, "hash": self.head_hash, "ts": self.head_ts, "own": own,
            "subject": self.subject.to_json() if self.subject else None,
            "entries": [[n, e.to_json()] for n, e in self.entries.items()],
            "moved": [[i, d, n] for i, (d, n) in self.moved_out.items()],
            "orphans": [o.to_json() for o in self.orphans.values()],
            "removed": int(self.removed),
            **({"lease": [self.lease_holder, self.lease_until]} if self.lease_holder is not None else {}),
        }

    @classmethod
    def from_snapshot(cls, d: dict[str, Any]) -> "View":
        v = cls(d["jid"])
        v.head, v.head_hash, v.head_ts = d["head"], d["hash"], d.get("ts", 0)
        v.own = dict(d.get("own", {}))
        if "xattrs" in v.own:
            v.own["xattrs"] = tuple((k, bytes.fromhex(h)) for k, h in v.own["xattrs"])
        v.subject = Inode.from_json(d["subject"]) if d.get("subject") else None
        for n, e in d["entries"]:
            v.put_entry(n, Inode.from_json(e))
        v.removed = bool(d.get("removed", 0))
        if d.get("lease"):
            v.lease_holder, v.lease_until = d["lease"][0], int(d["lease"][1])
        v.moved_out = {i: (dd, n) for i, dd, n in d.get("moved", [])}
        for o in d.get("orphans", []):
            ev = Event.from_json(o)
            assert isinstance(ev, Orphaned)
            v.orphans[ev.ino] = ev
        return v

    def adopt(self, other: "View") -> None:
        """Take over another view's state in place (a rebuild), so holders of this object see it."""
        for attr in ("head", "head_hash", "head_ts", "entries", "by_ino", "moved_out", "own", "subject", "ndirs",
                     "orphans", "chain_ok", "removed", "lease_holder", "lease_until", "head_session"):
            setattr(self, attr, getattr(other, attr))

    def state_equals(self, other: "View") -> bool:
        a, b = self.to_snapshot(), other.to_snapshot()
        return a == b

    def mark_validated(self, read_at: float | None = None) -> None:
        """The view is the journal as of ``read_at`` (time.monotonic() when its read began; now
        if not given): a commit that lands while a read is on its way may not be in it."""
        self.validated = time.monotonic() if read_at is None else read_at
        self.stale = False

    def mark_committed(self, put_at: float | None = None) -> None:
        """This mount's own record just won head+1: the view was exactly the journal's head when
        the put was applied. ``put_at`` (time.monotonic() before the put was sent) is when the
        view counts as read: another mount may have appended after ours before the put's reply
        arrived, and a view counted as read at the reply would pass for fresher than it is (a
        directory move checks its target's ancestry against that, docs/ARCHITECTURE.md)."""
        now = time.monotonic()
        self.mark_validated(now if put_at is None else min(put_at, now))
        self.committed = now


def apply_attrs(inode: Inode, attrs: dict[str, int], blocks: tuple | None, block_size: int,
                data: bytes | None = None) -> Inode:
    out = evolve(inode, **{k: v for k, v in attrs.items() if k != "size"})
    if "size" in attrs or blocks or data is not None:
        out = with_contents(out, attrs.get("size", inode.size), blocks, data, block_size)
    return out


@functools.singledispatch
def fold(ev: Event, view: View, ts: int) -> None:
    raise TypeError(f"no fold for {type(ev).__name__}")


@fold.register
def _(ev: Create, view: View, ts: int) -> None:
    view.put_entry(ev.name, ev.inode)
    view.touch(ts)


@fold.register
def _(ev: Remove, view: View, ts: int) -> None:
    if ev.name == "":
        view.removed = True  # rmdir seals the directory's own journal
        return
    view.drop_entry(ev.name)
    view.touch(ts)


@fold.register
def _(ev: Rename, view: View, ts: int) -> None:
    inode = view.drop_entry(ev.name)
    if inode is not None:
        view.put_entry(ev.new, inode if inode.linked else evolve(inode, ctime=ts))
    view.touch(ts)


@fold.register
def _(ev: MoveOut, view: View, ts: int) -> None:
    view.drop_entry(ev.name)
    view.moved_out[ev.ino] = (ev.to_dir, ev.to_name)
    view.touch(ts)


@fold.register
def _(ev: MoveIn, view: View, ts: int) -> None:
    view.put_entry(ev.name, ev.inode if ev.inode.linked else evolve(ev.inode, ctime=ts))
    view.touch(ts)


@fold.register
def _(ev: SetAttr, view: View, ts: int) -> None:
    if ev.name == "":
        if view.subject is not None:
            view.subject = apply_attrs(view.subject, ev.attrs, ev.blocks, ev.block_size, ev.data)
        else:
            view.own.update(ev.attrs)
        return
    inode = view.entries.get(ev.name)
    if inode is not None:
        view.entries[ev.name] = apply_attrs(inode, ev.attrs, ev.blocks, ev.block_size, ev.data)


@fold.register
def _(ev: SetXattr, view: View, ts: int) -> None:
    if ev.name == "":
        if view.subject is not None:
            view.subject = evolve(view.subject.with_xattr(ev.key, ev.value), ctime=ev.ctime or ts)
        else:
            cur = Inode(0, 0, xattrs=view.own.get("xattrs", ()))
            view.own["xattrs"] = cur.with_xattr(ev.key, ev.value).xattrs
            view.own["ctime"] = ev.ctime or ts
        return
    inode = view.entries.get(ev.name)
    if inode is not None:
        view.entries[ev.name] = evolve(inode.with_xattr(ev.key, ev.value), ctime=ev.ctime or ts)


@fold.register
def _(ev: Detach, view: View, ts: int) -> None:
    inode = view.entries.get(ev.name)
    if inode is not None:
        view.entries[ev.name] = reference(inode)


@fold.register
def _(ev: Link, view: View, ts: int) -> None:
    view.put_entry(ev.name, Inode(ino=ev.ino, mode=ev.mode, linked=True))
    view.touch(ts)


@fold.register
def _(ev: InodeInit, view: View, ts: int) -> None:
    view.subject = ev.inode


@fold.register
def _(ev: Orphaned, view: View, ts: int) -> None:
    view.orphans[ev.ino] = ev


@fold.register
def _(ev: Stamp, view: View, ts: int) -> None:
    pass  # only times the events after it (View.apply)


@fold.register
def _(ev: Lease, view: View, ts: int) -> None:
    view.lease_holder, view.lease_until = ev.session, ev.until


@fold.register
def _(ev: Release, view: View, ts: int) -> None:
    if view.lease_holder == ev.session:
        view.lease_holder, view.lease_until = None, 0
