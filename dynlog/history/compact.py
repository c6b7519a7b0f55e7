"""``dynlog compact``: snapshot and trim journals, collect unreferenced blocks, expire sessions.

Safe while other clients are mounted and writing, because it only ever

  * adds a snapshot at a seq that already exists (a snapshot is the fold of the records up to
    its seq, so appends after it change nothing), and
  * deletes records and snapshots that a newer snapshot covers and that are older than the
    retention window, after that newer snapshot has been in place for ``settle`` seconds (so a
    client that read the previous snapshot just before still finds the records after it).

The retention window: for every time T in [now - retain, now], the state at T stays
rebuildable (``replay --at``, ``restore``, ``diff``). Per journal, compact therefore keeps a
snapshot at the *cut* (the state at now - retain), every record after the cut, and a snapshot
at the head, so that a cold client lists a directory with one snapshot read and one short query.
It never deletes a journal's newest record: a client whose cached view is behind then always
finds a record after its head that does not follow it, and rebuilds from the snapshot, instead of
reading "nothing new" and keeping a stale view.

Blocks. A block version ``<ino>.<wid>`` is garbage when nothing retained references it: not a
live file's block map, not a record or snapshot inside the retention window, not an orphan
(a file unlinked while still open). A flush writes its blocks *before* the metadata event that
maps them commits, so a block version that looks unreferenced may be in flight. Open files
count too: each live session advertises the block versions its open files read (its session
item's ``open``), which keeps an open-unlinked file's data until its session closes it or dies. Compact
therefore never deletes a block version the first time it sees it unreferenced: it records a
GC candidate (path ``gc``, name = blockId, ``seen`` = time first seen unreferenced) and deletes
the blocks on a later run once the candidate is older than ``grace`` (default 1 hour) and the
version is still unreferenced; a candidate that becomes referenced again is dropped. (Write ids
are not time-sortable, and block items carry no time, so the candidate item is the clock.)
Journals are read one after another while clients keep renaming; a file moved between two of
them during the run would be missed by both reads, so compact re-reads every journal's tail at
the end and counts what the new records reference too.

It also deletes the relay's expired bulletin notices (``nb/<k>`` items past their ``ttl``).

Resumable: every step is idempotent and recomputed from what is stored, so an interrupted run
is finished by the next one. One compact runs at a time (a lease item ``fs``/``compact``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .. import schema
from ..errors import JournalConflict, QuietError
from ..journal.events import Create, Event, InodeInit, MoveIn, Orphaned, SetAttr
from ..journal.log import JournalStore
from ..journal.record import Record
from ..materialize.view import View
from ..store.base import ABSENT, Cond, Delete, Item, Put, Store, item_size
from .progress import Progress
from .timeparse import NS, format_duration, format_time
from .walk import decode_snapshot, fold_record, runs_refs, view_block_refs

GC_PARTITION = "gc"
NOTICE_PREFIX = "nb/"  # the relay's bulletin partitions (dynlog/cluster/relay.py)
LEASE_NAME = "compact"
LEASE_NS = 10 * 60 * NS
MINUTE = 60 * NS
HOUR = 60 * MINUTE
DAY = 24 * HOUR
DELETE_CHUNK = 500


@dataclass
class CompactOptions:
    retain: int = 7 * DAY  # ns of history kept rebuildable
    grace: int = HOUR  # ns a block version must stay unreferenced before it is deleted
    session_timeout: int = 5 * MINUTE  # a session whose heartbeat is older is dead
    dry_run: bool = False
    settle: float = 5.0  # seconds between writing snapshots and trimming what they cover
    blocks: bool = True  # collect blocks
    now: int | None = None


@dataclass
class Refs:
    """Block versions referenced: full block ids, and bare write ids (for events that name a file
    by name only, when the name could not be resolved)."""

    bids: set[str] = field(default_factory=set)
    wids: set[str] = field(default_factory=set)

    def add_event(self, ev: Event, view: View | None, jid: str) -> None:
        if isinstance(ev, (Create, MoveIn, InodeInit)):
            self.bids |= runs_refs(ev.inode.ino, ev.inode.blocks)
        elif isinstance(ev, Orphaned):
            self.bids |= runs_refs(ev.ino, ev.blocks)
        elif isinstance(ev, SetAttr) and ev.blocks:
            ino = None
            if ev.name == "":
                ino = schema.journal_ino(jid)
            elif view is not None:
                ent = view.entries.get(ev.name)
                ino = ent.ino if ent is not None else None
            if ino is not None:
                self.bids |= runs_refs(ino, ev.blocks)
            else:
                self.wids |= {w for _, _, w in ev.blocks}

    def add_record(self, rec: Record, view: View | None = None) -> None:
        for ev in rec.events:
            self.add_event(ev, view, rec.jid)

    def update(self, other: "Refs") -> None:
        self.bids |= other.bids
        self.wids |= other.wids

    def references(self, bid: str) -> bool:
        return bid in self.bids or bid.partition(".")[2] in self.wids


@dataclass
class JournalPlan:
    jid: str
    head: int = 0
    records: int = 0
    cut: int | None = None  # the state at the retention cutoff: records <= cut and snapshots < cut go
    records_to_cut: int = 0  # records stored at or before the cut
    snapshots: dict[int, int] = field(default_factory=dict)  # seq -> number of parts stored
    complete: set[int] = field(default_factory=set)  # seqs of snapshots that decode
    write: dict[int, dict[str, Any]] = field(default_factory=dict)  # snapshots to write
    drop: bool = False  # a removed directory / unlinked shared inode past the retention: delete it all
    problem: str = ""
    refs: Refs = field(default_factory=Refs)

    @property
    def trims(self) -> bool:
        return self.drop or (bool(self.cut) and (self.records_to_cut > 1 or any(s < self.cut for s in self.snapshots)))


@dataclass
class CompactReport:
    dry_run: bool = False
    journals: int = 0
    records_before: int = 0
    snapshots_written: int = 0
    snapshot_bytes_written: int = 0
    records_deleted: int = 0
    record_bytes_deleted: int = 0
    snapshots_deleted: int = 0
    snapshot_bytes_deleted: int = 0
    journals_dropped: int = 0
    block_versions: int = 0
    blocks_collected: int = 0  # versions
    block_items_deleted: int = 0
    block_bytes_deleted: int = 0
    candidates_new: int = 0
    candidates_waiting: int = 0
    candidates_cleared: int = 0
    sessions_expired: int = 0
    notices_expired: int = 0
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        would = "would " if self.dry_run else ""
        out = [
            f"journals: {self.journals} ({self.records_before} records before)",
            f"snapshots: {would}write {self.snapshots_written} ({_size(self.snapshot_bytes_written)}), "
            f"{would}delete {self.snapshots_deleted} older ({_size(self.snapshot_bytes_deleted)})",
            f"records: {would}delete {self.records_deleted} ({_size(self.record_bytes_deleted)})",
        ]
        if self.journals_dropped:
            out.append(f"journals of removed directories and unlinked inodes: {would}delete {self.journals_dropped}")
        out.append(f"blocks: {self.block_versions} versions stored; {would}collect {self.blocks_collected} "
                   f"({self.block_items_deleted} blocks, {_size(self.block_bytes_deleted)}); "
                   f"{self.candidates_new} newly unreferenced (collected after the grace period), "
                   f"{self.candidates_waiting} waiting, {self.candidates_cleared} referenced again")
        out.append(f"sessions: {would}expire {self.sessions_expired}; relay notices: {would}delete "
                   f"{self.notices_expired} expired")
        saved = self.record_bytes_deleted + self.snapshot_bytes_deleted + self.block_bytes_deleted \
            - self.snapshot_bytes_written
        out.append(f"saved: {_size(max(0, saved))} net; {self.requests} requests in {self.seconds:.1f}s")
        out.extend(f"note: {n}" for n in self.notes)
        out.extend(f"problem: {p}" for p in self.problems)
        return out

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# -- analysing one journal (streaming: only the current state is in memory) ------------------------

def analyze(store: Store, jid: str, cutoff: int, tick: Callable[[int], None] | None = None) -> JournalPlan:
    """Read the journal once (snapshots, then records in order) and decide what to write and what
    to trim. The fold starts at the oldest state that can be built (seq 0, or the oldest snapshot
    the records continue from) and jumps a gap only where a snapshot covers it."""
    plan = JournalPlan(jid)
    parts: dict[int, list[Item]] = {}
    for it in store.query_prefix("meta", jid, "s/"):
        try:
            parts.setdefault(schema.snapshot_seq(it["name"]), []).append(it)
        except ValueError:
            plan.problem = f"bad snapshot key {it['name']}"
    decoded: dict[int, dict[str, Any] | None] = {}

    def snapshot(seq: int) -> dict[str, Any] | None:
        if seq not in decoded:
            d = decode_snapshot(parts[seq]) if seq in parts else None
            decoded[seq] = d if d is not None and d.get("head") == seq and d.get("jid") == jid else None
        return decoded[seq]

    for seq, ps in parts.items():
        plan.snapshots[seq] = len(ps)
        if snapshot(seq) is not None:
            plan.complete.add(seq)

    view: View | None = None
    deciding = True  # still before the cutoff: the state at the cutoff is not known yet
    loose = Refs()  # what records before the oldest buildable state reference
    loose_max = 0

    def decide(cut: int | None, v: View) -> None:
        nonlocal deciding
        deciding = False
        plan.cut = cut
        plan.records_to_cut = plan.records if cut else 0
        plan.refs.update(state_refs(v))
        if cut and cut not in plan.complete:
            plan.write[cut] = v.to_snapshot()

    def hook(ev: Event, v: View, rec: Record) -> None:
        if not deciding:
            plan.refs.add_event(ev, v, jid)

    for item in store.query_prefix("meta", jid, "j/"):
        try:
            rec = Record.from_item(item)
        except Exception as e:  # noqa: BLE001 - reported; the journal is left alone
            plan.problem = f"unreadable record {item.get('name')}: {e}"
            break
        if view is None or rec.seq != view.head + 1:
            snap = None if rec.seq == 1 else snapshot(rec.seq - 1)
            if rec.seq != 1 and snap is None:
                if view is not None:
                    plan.problem = f"records {view.head + 1}..{rec.seq - 1} are missing and no snapshot covers them"
                    break
                plan.records += 1
                loose.add_record(rec)  # older than the oldest state we can build
                loose_max = rec.seq
                continue
            anchor = View(jid) if snap is None else View.from_snapshot(snap)
            if deciding and anchor.head and anchor.head_ts > cutoff:
                if view is not None:
                    decide(view.head, view)
                else:
                    decide(None, anchor)
            if not deciding:
                plan.refs.update(state_refs(anchor))
            view = anchor
        if deciding and rec.ts > cutoff:
            decide(view.head, view)
        plan.records += 1
        fold_record(view, rec, hook)
        if tick is not None and plan.records % 20_000 == 0:
            tick(plan.records)

    if plan.problem:
        return plan
    if view is None:
        if plan.complete:
            view = View.from_snapshot(snapshot(max(plan.complete)))  # type: ignore[arg-type]
        elif plan.records:
            plan.problem = "its records do not start at 1 and no snapshot covers them"
            return plan
        else:
            view = View(jid)
    if deciding:
        decide(view.head if view.head == 0 or view.head_ts <= cutoff else None, view)
    if plan.cut is None or plan.cut < loose_max:
        plan.refs.update(loose)
    plan.head = view.head
    newest = max(list(plan.complete) + list(plan.write), default=0)
    if view.head > newest:
        plan.write[view.head] = view.to_snapshot()

    # A removed directory (its journal sealed) or a shared inode with no name left, wholly older
    # than the retention: nothing can reach it any more, so the whole journal goes.
    gone = view.removed or (jid.startswith("i/") and view.subject is not None and view.subject.nlink <= 0)
    if gone and view.head and plan.cut == view.head and not view.orphans:
        plan.drop = True
        plan.write.clear()
        plan.refs = Refs()
    return plan


def state_refs(v: View) -> Refs:
    return Refs(bids=view_block_refs(v))


def session_refs(store: Store, live_after: int) -> Refs:
    """Block versions that live sessions (heartbeat at or after ``live_after``) advertise as read by
    their open files (attribute ``open``: JSON {ino: [wid, ...]}): an open file whose last name is
    gone keeps its blocks until its session closes it or dies."""
    refs = Refs()
    for it in store.query("meta", schema.SESSIONS):
        hb = it.get("hb")
        if not isinstance(hb, (int, float)) or hb < live_after or not it.get("open"):
            continue
        try:
            held = json.loads(it["open"])
        except ValueError:
            continue
        for ino, wids in held.items():
            refs.bids |= {schema.block_id(int(ino), w) for w in wids}
    return refs


# -- the run ----------------------------------------------------------------------------------------

class Compactor:
    def __init__(self, store: Store, options: CompactOptions | None = None,
                 progress: Progress | None = None, log: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.opt = options or CompactOptions()
        self.progress = progress or Progress("compact", enabled=False)
        self.log = log or (lambda msg: None)
        self.journals = JournalStore(store)
        self.report = CompactReport(dry_run=self.opt.dry_run)
        self.lease_owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._lease_renewed = 0.0

    def run(self) -> CompactReport:
        started = time.monotonic()
        req0 = self.store.metrics.requests()
        now = self.opt.now if self.opt.now is not None else time.time_ns()
        cutoff = now - self.opt.retain
        if not self.opt.dry_run:
            self._take_lease(now)
        try:
            plans = self._analyze_all(cutoff)
            if not self.opt.dry_run and self.opt.settle > 0 and any(p.trims for p in plans):
                time.sleep(self.opt.settle)
            self._trim(plans)
            if self.opt.blocks:
                self._collect_blocks(plans, now)
            self._expire_sessions(now)
            self._expire_notices(now)
        finally:
            self.progress.close()
            if not self.opt.dry_run:
                self._release_lease()
        self.report.requests = self.store.metrics.requests() - req0
        self.report.seconds = time.monotonic() - started
        self.report.notes.insert(0, f"retention {format_duration(self.opt.retain)} (history kept from "
                                    f"{format_time(cutoff, 0)}), block grace {format_duration(self.opt.grace)}")
        return self.report

    # -- lease ------------------------------------------------------------------------------------------
    def _take_lease(self, now: int) -> None:
        item = {"path": schema.FS_PARTITION, "name": LEASE_NAME, "owner": self.lease_owner, "until": now + LEASE_NS}
        try:
            self.store.put(Put("meta", item, ABSENT + (Cond("lt", "until", now),)))
        except JournalConflict:
            cur = self.store.get("meta", (schema.FS_PARTITION, LEASE_NAME)) or {}
            raise QuietError(f"another compact is running ({cur.get('owner', '?')}, lease until "
                             f"{format_time(int(cur.get('until', 0)), 0)}); try again later") from None
        self._lease_renewed = time.monotonic()

    def _renew_lease(self) -> None:
        if self.opt.dry_run or time.monotonic() - self._lease_renewed < 60:
            return
        item = {"path": schema.FS_PARTITION, "name": LEASE_NAME, "owner": self.lease_owner,
                "until": time.time_ns() + LEASE_NS}
        try:
            self.store.put(Put("meta", item, (Cond("eq", "owner", self.lease_owner),)))
        except JournalConflict:
            raise QuietError("lost the compact lease to another run: stopping (the next run finishes the job)") from None
        self._lease_renewed = time.monotonic()

    def _release_lease(self) -> None:
        try:
            self.store.delete(Delete("meta", (schema.FS_PARTITION, LEASE_NAME), (Cond("eq", "owner", self.lease_owner),)))
        except JournalConflict:
            pass

    # -- phase 1: analyse, write snapshots ----------------------------------------------------------------
    def _analyze_all(self, cutoff: int) -> list[JournalPlan]:
        """Read every journal, and write its snapshots right away (one journal's state in memory at
        a time)."""
        jids = list(self.store.scan_partitions("meta", "d/")) + list(self.store.scan_partitions("meta", "i/"))
        self.report.journals = len(jids)
        self.progress.stage("compact: reading journals, writing snapshots", len(jids))
        plans = []
        for jid in jids:
            plan = analyze(self.store, jid, cutoff, tick=lambda n, j=jid: self._tick(f"{j}: {n} records"))
            self.report.records_before += plan.records
            if plan.problem:
                self.report.problems.append(f"{jid}: {plan.problem} (left alone; run dynlog fsck)")
            else:
                self._write_snapshots(plan)
            plan.write.clear()
            plans.append(plan)
            self.progress.advance(note=jid)
            self._renew_lease()
        return plans

    def _tick(self, note: str) -> None:
        self.progress.advance(0, note=note)
        self._renew_lease()

    def _write_snapshots(self, p: JournalPlan) -> None:
        for seq in sorted(p.write):
            state = p.write[seq]
            size = len(zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 6))
            if not self.opt.dry_run:
                self.journals.write_snapshot(p.jid, state)
                p.complete.add(seq)
            self.report.snapshots_written += 1
            self.report.snapshot_bytes_written += size

    # -- phase 2: trim ---------------------------------------------------------------------------------------
    def _trim(self, plans: list[JournalPlan]) -> None:
        todo = [p for p in plans if not p.problem and (p.drop or p.cut)]
        self.progress.stage("compact: trimming journals", len(todo))
        for p in todo:
            if p.drop:
                self._delete_items(p.jid, "j/", None, records=True)
                self._delete_items(p.jid, "s/", None, records=False)
                self.report.journals_dropped += 1
            else:
                assert p.cut is not None
                # Never the newest record: a client whose cached view is behind must find a record
                # after its head that does not follow it (a gap: it rebuilds from the snapshot). With
                # no record left at all it would read "nothing new" and keep its stale view.
                upto = min(p.cut, p.head - 1)
                if upto > 0:
                    self._delete_items(p.jid, "j/", schema.record_key(upto + 1), records=True)
                if any(s < p.cut for s in p.snapshots):
                    self._delete_items(p.jid, "s/", schema.snapshot_key(p.cut, 0), records=False)
            self.progress.advance(note=p.jid)
            self._renew_lease()

    def _delete_items(self, jid: str, prefix: str, stop: str | None, records: bool) -> None:
        keys: list[tuple[str, str]] = []
        stop = stop or (prefix + "~")
        seqs: set[int] = set()

        def flush() -> None:
            if keys and not self.opt.dry_run:
                self.store.batch_write("meta", deletes=list(keys))
            keys.clear()
            self._tick(f"{jid}: deleting")

        for it in self.store.query("meta", jid, start=prefix, stop=stop):
            keys.append((jid, it["name"]))
            if records:
                self.report.records_deleted += 1
                self.report.record_bytes_deleted += item_size(it)
            else:
                self.report.snapshot_bytes_deleted += len(it.get("data", b""))
                seqs.add(schema.snapshot_seq(it["name"]))
            if len(keys) >= DELETE_CHUNK:
                flush()
        flush()
        self.report.snapshots_deleted += len(seqs)

    # -- phase 3: blocks ------------------------------------------------------------------------------------
    def _collect_blocks(self, plans: list[JournalPlan], now: int) -> None:
        broken = [p.jid for p in plans if p.problem]
        refs = session_refs(self.store, now - self.opt.session_timeout)
        for p in plans:
            refs.update(p.refs)
        self.progress.stage("compact: listing blocks")
        inventory = list(self.store.scan_partitions("blocks"))
        self.report.block_versions = len(inventory)
        # Re-read every journal's tail: catches files that moved between two journals while we read
        # them one by one, and flushes that committed during the run.
        self.progress.stage("compact: re-reading journal tails", len(plans))
        for p in plans:
            if not p.problem and not p.drop:
                for rec in self.journals.read_after(p.jid, p.head):
                    refs.add_record(rec)
            self.progress.advance()
        for jid in self._new_journals(plans):
            for rec in self.journals.read_after(jid, 0):
                refs.add_record(rec)
        if broken:
            self.report.notes.append(f"blocks not collected: {len(broken)} journal(s) could not be read whole, "
                                     "so what they reference is unknown")
            return
        candidates = {it["name"]: int(it.get("seen", 0)) for it in self.store.query("meta", GC_PARTITION)}
        new_cands: list[Item] = []
        clear: list[tuple[str, str]] = []
        collect: list[str] = []
        for bid in inventory:
            if refs.references(bid):
                if bid in candidates:
                    clear.append((GC_PARTITION, bid))
                continue
            seen = candidates.get(bid)
            if self.opt.grace <= 0 or (seen is not None and seen <= now - self.opt.grace):
                collect.append(bid)
            elif seen is None:
                new_cands.append({"path": GC_PARTITION, "name": bid, "seen": now})
            else:
                self.report.candidates_waiting += 1
        stored = set(inventory)
        clear += [(GC_PARTITION, bid) for bid in candidates if bid not in stored]
        self.report.candidates_new = len(new_cands)
        self.report.candidates_cleared = len(clear)
        if not self.opt.dry_run:
            if new_cands:
                self.store.batch_write("meta", puts=new_cands)
            if clear:
                self.store.batch_write("meta", deletes=clear)
        self.progress.stage("compact: collecting blocks", len(collect))
        for bid in collect:
            items = list(self.store.query("blocks", bid))
            self.report.blocks_collected += 1
            self.report.block_items_deleted += len(items)
            self.report.block_bytes_deleted += sum(len(it.get("data", b"")) for it in items)
            if not self.opt.dry_run:
                self.store.batch_write("blocks", deletes=[(bid, it["blockNum"]) for it in items])
                if bid in candidates:
                    self.store.delete(Delete("meta", (GC_PARTITION, bid)))
            self.progress.advance(note=bid)
            self._renew_lease()

    def _new_journals(self, plans: list[JournalPlan]) -> Iterable[str]:
        known = {p.jid for p in plans}
        for jid in list(self.store.scan_partitions("meta", "d/")) + list(self.store.scan_partitions("meta", "i/")):
            if jid not in known:
                yield jid

    # -- sessions --------------------------------------------------------------------------------------------
    def _expire_sessions(self, now: int) -> None:
        limit = now - self.opt.session_timeout
        for it in self.store.query("meta", schema.SESSIONS):
            hb = it.get("hb")
            if not isinstance(hb, (int, float)) or hb >= limit:
                continue
            self.report.sessions_expired += 1
            if not self.opt.dry_run:
                try:
                    self.store.delete(Delete("meta", (schema.SESSIONS, it["name"]), (Cond("lt", "hb", limit),)))
                except JournalConflict:
                    self.report.sessions_expired -= 1  # it beat again meanwhile


    # -- relay notices ------------------------------------------------------------------------------------------
    def _expire_notices(self, now: int) -> None:
        """The relay's bulletin items (``nb/<k>``) past their ``ttl`` (epoch seconds): DynamoDB's TTL
        removes them eventually, the embedded store never does."""
        now_s = now // NS
        for part in self.store.scan_partitions("meta", NOTICE_PREFIX):
            old = [(part, it["name"]) for it in self.store.query("meta", part)
                   if isinstance(it.get("ttl"), (int, float)) and it["ttl"] < now_s]
            self.report.notices_expired += len(old)
            if old and not self.opt.dry_run:
                self.store.batch_write("meta", deletes=old)


def compact(store: Store, options: CompactOptions | None = None, progress: Progress | None = None) -> CompactReport:
    return Compactor(store, options, progress).run()
