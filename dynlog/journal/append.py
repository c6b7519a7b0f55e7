"""The append protocol: validate against the view, conditional put at head+1, on conflict
fast-forward and re-validate (never a blind retry).

One journal: a conditional PutItem. Several journals (rename across directories, link, rmdir,
unlink of a hard-linked file): one TransactWriteItems with one conditional put per journal.
Group commit: operations on one journal that arrive while a commit is in flight are folded
into the next record, so a busy directory pays one request for many operations.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import structlog

from ..errors import FsError, JournalConflict
from ..materialize.cache import ViewCache
from ..materialize.draft import Draft
from ..materialize.view import View
from ..store.base import Put
from ..store.retry import backoff_delay
from .log import JournalStore
from .record import Record

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 60
MAX_BATCH = 64
# Bytes of inline file contents one group-committed record may carry: with the events' own
# JSON it stays well under DynamoDB's 400 KB item limit however many small files close at once.
MAX_BATCH_BYTES = 256 * 1024


class NeedJournal(Exception):
    """Raised by a build function that discovered it must also change journal ``jid``."""

    def __init__(self, jid: str) -> None:
        super().__init__(jid)
        self.jid = jid


@dataclass
class Tx:
    """What a build function sees: one draft per journal, and room for extra conditional puts."""

    drafts: dict[str, Draft]
    ts: int
    extra: list[Put] = field(default_factory=list)
    on_conflict: list[Callable[[], None]] = field(default_factory=list)

    def draft(self, jid: str) -> Draft:
        d = self.drafts.get(jid)
        if d is None:
            raise NeedJournal(jid)
        return d


Build = Callable[[Tx], Any]

NOT_TAKEN: Any = object()


class LeaseHooks(Protocol):
    """Write-behind directory leases (dynlog/writebehind), seen from the committer. Every mount
    honours other mounts' leases whether or not it takes any itself."""

    def submit(self, jid: str, build: Build, op: str, uid: int) -> Any:
        """Acknowledge a one-journal operation under this mount's lease (queued, committed by
        the flusher): its result, or NOT_TAKEN for the synchronous path."""

    def prepare(self, jids: list[str]) -> None:
        """Before any view lock: commit queued batches that these journals depend on."""

    def check(self, view: View) -> bool:
        """Under the view's lock, before a synchronous commit to it: drain this mount's queued
        events for it; False when another mount's live lease forbids appending now."""

    def wait(self, jid: str) -> None:
        """No lock held: ask the lease's holder to release it, and wait until it has (or expired)."""


@dataclass
class _Pending:
    build: Build
    op: str
    uid: int
    weight: int = 0  # bytes of inline contents the operation will emit (bounds a record's size)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class _Group:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: deque[_Pending] = deque()
        self.leading = False


class Committer:
    def __init__(self, journals: JournalStore, cache: ViewCache, session: str, clock: Callable[[], int] = time.time_ns) -> None:
        self.journals = journals
        self.cache = cache
        self.session = session
        self.clock = clock
        self._groups: dict[str, _Group] = {}
        self._groups_lock = threading.Lock()
        self.group_commit = True
        self.conflicts = 0
        self.batched = 0
        self.leases: LeaseHooks | None = None

    def _now(self) -> int:
        return self.clock()

    # -- public -------------------------------------------------------------------------------
    def commit(self, jids: list[str] | tuple[str, ...], build: Build, op: str, uid: int = 0, weight: int = 0) -> Any:
        """Run ``build`` against fresh drafts of ``jids`` and commit what it emits, atomically.
        ``weight``: bytes of inline contents it will emit, so group commit keeps records small."""
        if self.leases is not None:
            if len(jids) == 1:
                result = self.leases.submit(jids[0], build, op, uid)
                if result is not NOT_TAKEN:
                    return result
            self.leases.prepare(list(jids))
        if len(jids) == 1 and self.group_commit:
            try:
                return self._commit_grouped(jids[0], build, op, uid, weight)
            except NeedJournal as n:
                return self._commit_many([jids[0], n.jid], build, op, uid)
        return self._commit_many(list(jids), build, op, uid)

    # -- several journals -----------------------------------------------------------------------
    def _commit_many(self, jids: list[str], build: Build, op: str, uid: int) -> Any:
        wanted = set(jids)
        refreshed_for_error = False
        held: str | None = None
        for attempt in range(MAX_ATTEMPTS):
            if held is not None and self.leases is not None:
                self.leases.wait(held)
                held = None
            order = sorted(wanted)
            views = [self.cache.get(j) for j in order]
            for v in views:
                v.lock.acquire()
            tx: Tx | None = None
            try:
                for v in views:
                    if v.stale:
                        self.cache.refresh(v)
                if self.leases is not None:
                    held = next((v.jid for v in views if not self.leases.check(v)), None)
                    if held is not None:
                        continue  # another mount's lease: wait for it without our locks
                ts = self._now()
                tx = Tx({v.jid: Draft(v, ts) for v in views}, ts)
                try:
                    result = build(tx)
                except NeedJournal as n:
                    wanted.add(n.jid)
                    continue
                except FsError:
                    if refreshed_for_error or all(time.monotonic() - v.validated < 0.05 for v in views):
                        raise
                    refreshed_for_error = True
                    for v in views:
                        self.cache.refresh(v)
                    continue
                recs = self._records(tx, op, uid)
                if recs or tx.extra:
                    put_at = time.monotonic()
                    if len(recs) == 1 and not tx.extra:
                        self.journals.append(recs[0])
                    else:
                        self.journals.append_many(recs, tx.extra)
                    self._apply(recs, {v.jid: v for v in views}, put_at)
                return result
            except JournalConflict as e:
                self.conflicts += 1
                named = {k[0] for k in e.keys} & wanted
                for j in named or wanted:
                    self.cache.invalidate(j)
                if tx is not None:
                    for hook in tx.on_conflict:
                        hook()
            finally:
                for v in reversed(views):
                    v.lock.release()
            time.sleep(backoff_delay(attempt, base=0.005, cap=0.5))
        raise FsError(errno.EAGAIN, f"{op}: gave up after {MAX_ATTEMPTS} conflicting attempts")

    def _records(self, tx: Tx, op: str, uid: int) -> list[Record]:
        return [
            Record(jid, d.head + 1, tuple(d.events), tx.ts, self.session, uid, op, d.head_hash).sealed()
            for jid, d in sorted(tx.drafts.items())
            if d.events
        ]

    def _apply(self, recs: list[Record], views: dict[str, View], put_at: float) -> None:
        for r in recs:
            v = views[r.jid]
            v.apply(r)
            v.mark_committed(put_at)
            self._evicted_meanwhile(v)

    def _evicted_meanwhile(self, view: View) -> None:
        """If the view was evicted and reloaded while we committed to the old object, the
        cached copy may lack our record: have it fast-forward before its next use."""
        cached = self.cache.peek(view.jid)
        if cached is not None and cached is not view and cached.head < view.head:
            cached.stale = True

    # -- one journal, group commit ------------------------------------------------------------------
    def _group(self, jid: str) -> _Group:
        with self._groups_lock:
            g = self._groups.get(jid)
            if g is None:
                g = self._groups[jid] = _Group()
            return g

    def _commit_grouped(self, jid: str, build: Build, op: str, uid: int, weight: int = 0) -> Any:
        g = self._group(jid)
        me = _Pending(build, op, uid, weight)
        with g.lock:
            g.pending.append(me)
            lead = not g.leading
            if lead:
                g.leading = True
        if lead:
            try:
                while True:
                    with g.lock:
                        batch = _take_batch(g.pending)
                        if not batch:
                            g.leading = False
                            break
                    self._commit_batch(jid, batch)
            except BaseException as e:
                with g.lock:
                    g.leading = False
                    orphans = list(g.pending)
                    g.pending.clear()
                for p in orphans:
                    p.error = e
                    p.done.set()
                raise
        me.done.wait()
        if me.error is not None:
            raise me.error
        return me.result

    def _commit_batch(self, jid: str, batch: list[_Pending]) -> None:
        live = list(batch)
        refreshed_for_error = False
        held = False
        try:
            for attempt in range(MAX_ATTEMPTS):
                if held and self.leases is not None:
                    self.leases.wait(jid)
                view = self.cache.get(jid)
                with view.lock:
                    if view.stale:
                        self.cache.refresh(view)
                    held = self.leases is not None and not self.leases.check(view)
                    if held:
                        continue  # another mount's lease: wait for it without the view lock
                    ts = self._now()
                    draft = Draft(view, ts)
                    tx = Tx({jid: draft}, ts)
                    results: list[tuple[_Pending, Any]] = []
                    failed: list[tuple[_Pending, BaseException]] = []
                    restart = False
                    for p in live:
                        mark = draft.mark()
                        try:
                            results.append((p, p.build(tx)))
                        except (FsError, NeedJournal) as e:
                            if draft.mark() != mark:
                                live.remove(p)
                                p.error, restart = e, True
                                p.done.set()
                                break
                            failed.append((p, e))
                    if restart:
                        continue
                    # A refusal read from a view older than 50 ms is checked against the journal's
                    # tail first. Not a NeedJournal: that says which journals the operation spans,
                    # and the transaction it moves to validates on its own.
                    refused = any(isinstance(e, FsError) for _, e in failed)
                    if refused and not refreshed_for_error and time.monotonic() - view.validated >= 0.05:
                        refreshed_for_error = True
                        self.cache.refresh(view)
                        continue
                    rec = None
                    if draft.events or tx.extra:
                        ops = "+".join(dict.fromkeys(p.op for p, _ in results)) or live[0].op
                        rec = Record(jid, draft.head + 1, tuple(draft.events), ts, self.session,
                                     results[0][0].uid if results else 0, ops, draft.head_hash).sealed()
                        put_at = time.monotonic()
                        try:
                            if tx.extra:
                                self.journals.append_many([rec], tx.extra)
                            else:
                                self.journals.append(rec)
                        except JournalConflict:
                            self.conflicts += 1
                            view.stale = True
                            for hook in tx.on_conflict:
                                hook()
                            rec = None
                            results = []
                            failed = []
                            ok = False
                        else:
                            ok = True
                            view.apply(rec)
                            self._evicted_meanwhile(view)
                            view.mark_committed(put_at)
                    else:
                        ok = True
                    if ok:
                        if len(results) > 1:
                            self.batched += len(results) - 1
                        for p, r in results:
                            p.result = r
                            p.done.set()
                        for p, e in failed:
                            p.error = e
                            p.done.set()
                        return
                time.sleep(backoff_delay(attempt, base=0.005, cap=0.5))
            for p in live:
                if not p.done.is_set():
                    p.error = FsError(errno.EAGAIN, f"{p.op}: gave up after {MAX_ATTEMPTS} conflicting attempts")
                    p.done.set()
        except BaseException as e:  # never leave a follower waiting forever
            for p in live:
                if not p.done.is_set():
                    p.error = e
                    p.done.set()
            raise


def _take_batch(pending: "deque[_Pending]") -> list[_Pending]:
    """The next group commit: up to MAX_BATCH operations and MAX_BATCH_BYTES of inline
    contents (always at least one operation)."""
    batch: list[_Pending] = []
    size = 0
    while pending and len(batch) < MAX_BATCH:
        if batch and size + pending[0].weight > MAX_BATCH_BYTES:
            break
        p = pending.popleft()
        size += p.weight
        batch.append(p)
    return batch
