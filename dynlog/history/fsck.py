"""``dynlog fsck``: check every invariant of the stored file system, and repair what is safe.

Journals
  * every record decodes, its hash verifies, and it chains to the record (or snapshot) before it;
  * no record is missing between the oldest state that can be built and the head;
  * every snapshot is complete and equals the fold of its journal up to its seq (or, where the
    records before it were compacted away, carries the hash of the record at its seq).
Namespace (the tree now, walked from the root)
  * every name points at a live inode: a directory whose journal is not sealed, a hard link
    whose shared inode (``i/<ino>``) exists with a link count equal to the names that refer to it;
  * an inode that is not shared has exactly one name; a directory has exactly one name (no
    cycle, no second parent); every directory journal is reachable from the root; a removed
    (sealed) directory holds no entries;
  * every block version a live file maps is stored.
Blocks
  * a stored block version that nothing references (no live file, no retained record or
    snapshot, no file a live session holds open) is garbage: fine while it waits for compact's grace period, a problem
    once its GC candidate is older than the grace period (compact should have collected it).
    A version nobody references and that compact has not seen yet is reported as a note (it may
    be a flush in flight).

``--repair`` fixes what is safe: rewrites a snapshot that is wrong or incomplete from the fold of
its journal (or deletes it when the records it summarises are all still there), resets a wrong
link count through the journal, deletes garbage blocks past their grace period. It never
rewrites history: a record that fails its hash stays, and is reported.
"""

from __future__ import annotations

import errno
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .. import schema
from ..core.superblock import load_superblock
from ..errors import FsError
from ..journal.append import Committer, Tx
from ..journal.events import SetAttr
from ..journal.inode import INLINE_MAX, Inode
from ..journal.log import JournalStore
from ..journal.record import GENESIS_HASH
from ..materialize.cache import ViewCache
from ..materialize.view import View
from ..store.base import Store
from .compact import GC_PARTITION, HOUR, MINUTE, Refs, session_refs
from .progress import Progress
from .timeparse import format_duration, format_time
from .walk import JournalData, Journals, fold_record, view_block_refs


@dataclass
class Finding:
    what: str  # a short code: chain, hash, gap, snapshot, nlink, entry, cycle, unreachable, sealed, block, garbage
    message: str
    repairable: bool = False
    repaired: str = ""


@dataclass
class FsckReport:
    journals: int = 0
    records: int = 0
    snapshots: int = 0
    entries: int = 0
    block_versions: int = 0
    problems: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not [p for p in self.problems if not p.repaired]

    def lines(self) -> list[str]:
        out = [f"checked {self.journals} journals ({self.records} records, {self.snapshots} snapshots), "
               f"{self.entries} names, {self.block_versions} block versions"]
        for p in self.problems:
            out.append(f"PROBLEM: {p.message}" + (f" -- repaired: {p.repaired}" if p.repaired else ""))
        out.extend(f"note: {n}" for n in self.notes)
        if self.clean:
            out.append("clean" if not self.problems else "clean after repairs")
        else:
            left = len([p for p in self.problems if not p.repaired])
            out.append(f"{left} problem{'s' if left != 1 else ''} found")
        return out


@dataclass
class _JournalState:
    data: JournalData
    head: View | None  # the state at the head (None: could not be built)
    refs: Refs


# Journals are read in parallel, this many at a time (then checked in order): the reads are
# round trips, the checks are CPU, and the progress line still moves on a big file system.
PREFETCH_CHUNK = 256
READ_WORKERS = 16  # requests in flight, as data/blocks.py's pool


class Fsck:
    def __init__(self, store: Store, *, repair: bool = False, grace: int = HOUR,
                 progress: Progress | None = None, now: int | None = None, session_timeout: int = 5 * MINUTE) -> None:
        self.store = store
        self.session_timeout = session_timeout
        self.repair = repair
        self.grace = grace
        self.now = now if now is not None else time.time_ns()
        self.journals = Journals(store)
        self.log = JournalStore(store)
        self.progress = progress or Progress("fsck", enabled=False)
        self.report = FsckReport()
        self.states: dict[str, _JournalState] = {}

    def check_inline(self, path: str, inode: Inode) -> None:
        """A file's inline contents are exactly its size, under the limit, and never beside blocks."""
        if inode.data is None:
            return
        if len(inode.data) != inode.size or inode.size > INLINE_MAX or inode.blocks:
            self.problem("inline", f"{path}: inline contents of {len(inode.data)} bytes for a size of {inode.size}"
                                   f"{' with blocks mapped' if inode.blocks else ''}")

    def problem(self, what: str, message: str, repairable: bool = False) -> Finding:
        f = Finding(what, message, repairable)
        self.report.problems.append(f)
        return f

    def run(self) -> FsckReport:
        try:
            jids = self.journals.list()
            self.report.journals = len(jids)
            self.progress.stage("fsck: journals", len(jids))
            with ThreadPoolExecutor(max_workers=READ_WORKERS, thread_name_prefix="fsck-read") as pool:
                for start in range(0, len(jids), PREFETCH_CHUNK):
                    chunk = jids[start:start + PREFETCH_CHUNK]
                    self.journals.prefetch(chunk, pool)
                    for jid in chunk:
                        self.check_journal(jid)
                        self.progress.advance(note=jid)
            self.progress.stage("fsck: namespace")
            live_refs = self.check_namespace()
            self.progress.stage("fsck: blocks")
            self.check_blocks(live_refs)
        finally:
            self.progress.close()
        return self.report

    # -- journals -------------------------------------------------------------------------------------------
    def check_journal(self, jid: str) -> None:
        data = self.journals.data(jid)
        rep = self.report
        rep.records += len(data.records)
        rep.snapshots += len(data.snapshot_parts)
        for name, why in data.bad_records:
            self.problem("hash", f"{jid} {name}: record cannot be read ({why})")
        refs = Refs()
        # Hash chain.
        prev_rec = None
        for rec in data.records:
            if not rec.verify():
                self.problem("hash", f"{jid} record {rec.seq}: content does not match its hash (altered after commit)")
            if prev_rec is not None and prev_rec.seq + 1 == rec.seq and rec.prev != prev_rec.hash:
                self.problem("chain", f"{jid} record {rec.seq}: does not chain to record {prev_rec.seq}")
            if rec.seq == 1 and rec.prev != GENESIS_HASH:
                self.problem("chain", f"{jid} record 1: does not start the chain")
            if prev_rec is not None and rec.seq != prev_rec.seq + 1:
                lo, hi = prev_rec.seq + 1, rec.seq - 1
                if not any(data.snapshot(s) is not None for s in range(lo, hi + 2) if s in data.snapshot_parts):
                    self.problem("gap", f"{jid}: records {lo}..{hi} are missing and no snapshot covers them")
            prev_rec = rec
        # Snapshots.
        for seq in sorted(data.snapshot_parts):
            self.check_snapshot(data, seq)
        # The fold from the oldest buildable state to the head, collecting what it references.
        head = self._fold_all(data, refs)
        if head is not None and head.removed and head.entries:
            self.problem("sealed", f"{jid}: removed directory still holds {len(head.entries)} entries")
        self.states[jid] = _JournalState(data, head, refs)

    def _fold_all(self, data: JournalData, refs: Refs) -> View | None:
        """Fold from the oldest buildable state through every record; None when no state can be built."""
        recs = data.records
        view: View | None = None
        i = 0
        if recs and recs[0].seq == 1:
            view = View(data.jid)
        else:
            first = recs[0].seq if recs else None
            for seq in sorted(data.snapshot_parts):
                snap = data.snapshot(seq)
                if snap is None or snap.get("head") != seq:
                    continue
                if first is None or seq >= first - 1:
                    view = View.from_snapshot(snap)
                    break
            if view is None:
                if recs:
                    self.problem("gap", f"{data.jid}: records start at {recs[0].seq} and no snapshot covers the ones before")
                return None
            refs.bids |= view_block_refs(view)
        while i < len(recs) and recs[i].seq <= view.head:
            i += 1
        for rec in recs[i:]:
            if rec.seq != view.head + 1:
                snap = data.snapshot(rec.seq - 1)
                if snap is None:
                    return view  # reported as a gap above
                view = View.from_snapshot(snap)
                refs.bids |= view_block_refs(view)
            fold_record(view, rec, lambda ev, v, r: refs.add_event(ev, v, data.jid))
        return view

    def check_snapshot(self, data: JournalData, seq: int) -> None:
        jid = data.jid
        parts = data.snapshot_parts[seq]
        snap = data.snapshot(seq)
        if snap is None or snap.get("head") != seq or snap.get("jid") != jid:
            why = "incomplete or unreadable" if snap is None else "describes another journal or seq"
            f = self.problem("snapshot", f"{jid} snapshot at {seq}: {why} ({len(parts)} parts stored)", True)
            self._repair_snapshot(data, seq, f)
            return
        if any(p.get("h") != snap.get("hash") for p in parts):
            f = self.problem("snapshot", f"{jid} snapshot at {seq}: its parts disagree on the hash", True)
            self._repair_snapshot(data, seq, f)
            return
        rec = data.record(seq)
        if rec is not None and rec.hash != snap.get("hash"):
            f = self.problem("snapshot", f"{jid} snapshot at {seq}: hash differs from record {seq}'s", True)
            self._repair_snapshot(data, seq, f)
            return
        nxt = data.record(seq + 1)
        if nxt is not None and nxt.prev != snap.get("hash"):
            self.problem("chain", f"{jid} record {seq + 1}: does not chain to the snapshot at {seq}")
        expect = rebuild(data, seq)
        if expect is None:
            return  # the records before it were compacted away: the hash checks above are all we have
        if expect.to_snapshot() != View.from_snapshot(snap).to_snapshot():
            f = self.problem("snapshot", f"{jid} snapshot at {seq}: differs from the replay of records 1..{seq}", True)
            self._repair_snapshot(data, seq, f, expect)

    def _repair_snapshot(self, data: JournalData, seq: int, f: Finding, state: View | None = None) -> None:
        if not self.repair:
            return
        state = state or rebuild(data, seq)
        if state is not None:
            self.log.delete_snapshot(data.jid, seq)
            self.log.write_snapshot(data.jid, state.to_snapshot())
            f.repaired = "rewrote it from the replay of the journal"
        else:
            parts = data.snapshot_parts.pop(seq)
            head = max([r.seq for r in data.records[-1:]] + list(data.snapshot_parts), default=0)
            needed = rebuild(data, head) is None
            data.snapshot_parts[seq] = parts
            if needed:
                self.report.notes.append(f"{data.jid} snapshot at {seq}: not repaired: the records it summarises "
                                         "were compacted away and the journal cannot be built without it")
                return
            self.log.delete_snapshot(data.jid, seq)
            f.repaired = "deleted it (the journal is whole without it)"
        self.report.repairs.append(f"{data.jid} snapshot {seq}: {f.repaired}")
        self.journals.forget(data.jid)

    # -- namespace -------------------------------------------------------------------------------------------
    def check_namespace(self) -> Refs:
        """Walk the tree now; returns the block versions live files map."""
        load_superblock(self.store)  # a file system is there at all
        live = Refs()
        names: dict[int, list[str]] = {}  # ino -> paths (hard links, duplicates)
        dirs_seen: dict[int, str] = {schema.ROOT_INO: "/"}
        stack = [(schema.ROOT_INO, "/")]
        sealed_live: list[str] = []
        while stack:
            dino, dpath = stack.pop()
            st = self.states.get(schema.dir_journal(dino))
            if st is None:
                continue  # an empty directory has no journal yet
            view = st.head
            if view is None:
                self.problem("entry", f"{dpath}: its journal d/{dino} cannot be read to the head")
                continue
            if view.removed and dino != schema.ROOT_INO:
                sealed_live.append(dpath)
            for name, ent in view.entries.items():
                path = (dpath.rstrip("/") + "/" + name)
                self.report.entries += 1
                names.setdefault(ent.ino, []).append(path)
                if ent.is_dir:
                    if ent.ino in dirs_seen:
                        self.problem("cycle", f"{path}: directory inode {ent.ino} also appears as {dirs_seen[ent.ino]} "
                                              "(a cycle or a second parent)")
                        continue
                    dirs_seen[ent.ino] = path
                    stack.append((ent.ino, path))
                elif ent.linked:
                    ist = self.states.get(schema.inode_journal(ent.ino))
                    if ist is None or ist.head is None or ist.head.subject is None:
                        self.problem("entry", f"{path}: hard link to inode {ent.ino}, whose journal i/{ent.ino} is missing")
                    else:
                        live.bids |= {schema.block_id(ent.ino, w) for _, _, w in ist.head.subject.blocks}
                        self.check_inline(path, ist.head.subject)
                else:
                    live.bids |= {schema.block_id(ent.ino, w) for _, _, w in ent.blocks}
                    self.check_inline(path, ent)
        for path in sealed_live:
            self.problem("sealed", f"{path}: a live name points at a removed (sealed) directory")
        # Names per inode.
        for ino, paths in names.items():
            ist = self.states.get(schema.inode_journal(ino))
            shared = ist is not None and ist.head is not None and ist.head.subject is not None
            if not shared and len(paths) > 1:
                kinds = "directory" if ino in dirs_seen else "inode"
                if kinds == "inode":
                    self.problem("entry", f"inode {ino} is named {len(paths)} times ({', '.join(paths[:3])}) "
                                          "but has no shared-inode journal")
        for jid, st in self.states.items():
            if jid.startswith("i/") and st.head is not None and st.head.subject is not None:
                ino = schema.journal_ino(jid)
                count = len(names.get(ino, []))
                nlink = st.head.subject.nlink
                if count != nlink and not (count == 0 and nlink <= 0):
                    f = self.problem("nlink", f"inode {ino}: link count {nlink}, but {count} names refer to it"
                                              + (f" ({', '.join(names[ino][:3])})" if count else ""), True)
                    self._repair_nlink(jid, nlink, count, f)
            elif jid.startswith("d/") and st.head is not None:
                dino = schema.journal_ino(jid)
                if dino not in dirs_seen and not st.head.removed:
                    self.problem("unreachable", f"directory journal {jid} ({len(st.head.entries)} entries) is not "
                                                "reachable from the root and was never removed")
        return live

    def _repair_nlink(self, jid: str, nlink: int, count: int, f: Finding) -> None:
        if not self.repair:
            return
        cache = ViewCache(self.log)
        committer = Committer(self.log, cache, "fsck")

        def build(tx: Tx) -> None:
            d = tx.draft(jid)
            if d.subject is None or d.subject.nlink != nlink:
                raise FsError(errno.EAGAIN, "changed meanwhile")
            d.emit(SetAttr("", {"nlink": count, "ctime": tx.ts}))

        try:
            committer.commit([jid], build, "fsck", 0)
            f.repaired = f"set the link count to {count}"
            self.report.repairs.append(f"{jid}: link count {nlink} -> {count}")
        except FsError as e:
            f.repaired = ""
            self.report.notes.append(f"{jid}: link count not repaired ({e})")

    # -- blocks --------------------------------------------------------------------------------------------------
    def check_blocks(self, live: Refs) -> None:
        inventory = set(self.store.scan_partitions("blocks"))
        self.report.block_versions = len(inventory)
        for bid in sorted(live.bids - inventory):
            self.problem("block", f"block version {bid} is mapped by a live file but is not stored (data lost)")
        refs = session_refs(self.store, self.now - self.session_timeout)
        for st in self.states.values():
            refs.update(st.refs)
            if st.head is not None:
                refs.bids |= view_block_refs(st.head)
        candidates = {it["name"]: int(it.get("seen", 0)) for it in self.store.query("meta", GC_PARTITION)}
        unref = sorted(b for b in inventory if not refs.references(b))
        overdue = [b for b in unref if b in candidates and candidates[b] <= self.now - self.grace]
        waiting = [b for b in unref if b in candidates and b not in overdue]
        unseen = [b for b in unref if b not in candidates]
        if overdue:
            f = self.problem("garbage", f"{len(overdue)} block versions unreferenced for longer than the grace period "
                                        f"({format_duration(self.grace)}), e.g. {overdue[0]}: compact should have "
                                        "collected them", True)
            if self.repair:
                for bid in overdue:
                    self.store.batch_write("blocks", deletes=[(bid, it["blockNum"]) for it in self.store.query("blocks", bid)])
                    self.store.batch_write("meta", deletes=[(GC_PARTITION, bid)])
                f.repaired = f"deleted {len(overdue)} block versions"
                self.report.repairs.append(f.repaired)
        if waiting:
            first = min(candidates[b] for b in waiting)
            self.report.notes.append(f"{len(waiting)} unreferenced block versions wait for collection "
                                     f"(unreferenced since {format_time(first, 0)})")
        if unseen:
            self.report.notes.append(f"{len(unseen)} block versions are referenced by nothing and not yet seen by "
                                     f"compact (flushes in flight, or garbage compact will collect), e.g. {unseen[0]}")


def rebuild(data: JournalData, seq: int) -> View | None:
    """The journal's state at ``seq`` folded from records, without the snapshot at ``seq``: from seq 0
    when every record up to it is there, else from the newest older snapshot they continue from."""
    bases = [0] + sorted((s for s in data.snapshot_parts if s < seq), reverse=True)
    for b in bases:
        if b == 0:
            view = View(data.jid)
        else:
            snap = data.snapshot(b)
            if snap is None or snap.get("head") != b:
                continue
            view = View.from_snapshot(snap)
        ok = True
        for s in range(b + 1, seq + 1):
            rec = data.record(s)
            if rec is None:
                ok = False
                break
            view.apply(rec)
        if ok:
            return view
    return None


def fsck(store: Store, *, repair: bool = False, grace: int = HOUR, progress: Progress | None = None,
         now: int | None = None, log: Callable[[str], None] | None = None) -> FsckReport:
    return Fsck(store, repair=repair, grace=grace, progress=progress, now=now).run()
