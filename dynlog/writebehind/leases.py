"""Directory leases and the write-behind queue (docs/ARCHITECTURE.md, "Write-behind directories").

Why: even at one round trip per file, one thread creating files on DynamoDB manages about
1/RTT operations a second. A mount that is alone and busy in a directory takes a **lease**: a
``lease`` event appended to the directory's own journal with the usual conditional put at
head+1. Every other mount must read that journal's tail before it can append to it, so it
learns of the lease before it could break it, and it asks the holder to release instead.

While it holds the lease, the mount validates each operation in that directory on a draft over
its view exactly as a synchronous commit would, folds the events into the view at once (they
are acknowledged), and queues them. A flusher thread commits the queue every ``window_s`` as
records of up to ``max_ops`` operations (``max_bytes`` of events): a record is all or nothing,
so a crash loses a suffix of acknowledged operations, never part of one. Each operation starts
with a ``stamp`` event carrying its own time, uid and op, so the batch folds and replays as the
synchronous commits it replaces.

Nobody else appends while the lease is live, so the holder's view is exact and its batches
never conflict; the flusher holds the view's lock while it writes, so a refresh never reads a
batch before the view's head has moved past it.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import structlog

from .. import schema
from ..errors import FsError, JournalConflict
from ..journal.append import NOT_TAKEN, Build, Committer, NeedJournal, Tx
from ..journal.events import Create, Event, Lease, Release, Stamp
from ..journal.log import JournalStore
from ..journal.record import Record
from ..materialize.cache import ViewCache
from ..materialize.draft import Draft
from ..materialize.view import View, fold
from ..store.base import ChangeBatch, ChangeFeed, Delete, Put, Store
from .rescue import Rescue

log = structlog.get_logger(__name__)

NS = 1_000_000_000
RESCUE_ATTEMPTS = 5  # re-reads of a lost lease's journal before what still conflicts is dropped


@dataclass
class Settings:
    """The knobs, with the defaults the architecture document explains."""

    # a lease's length; renewed inside the batches when half of it is left. DYNLOG_WRITEBEHIND_LEASE_S
    # sets it for a mount (tests that kill holders, so that the others wait less for expiry)
    lease_s: float = field(default_factory=lambda: float(os.environ.get("DYNLOG_WRITEBEHIND_LEASE_S", "5.0")))
    window_s: float = 0.2  # flush window: an acknowledged operation is committed within about this
    max_ops: int = 256  # operations per record
    max_bytes: int = 300_000  # event JSON per record (an item may not pass 400 KB)
    take_after: int = 4  # operations by this mount in one directory within take_window_s ...
    take_window_s: float = 1.0  # ... before it takes a lease there
    idle_s: float = 1.0  # release a lease after this long without an operation
    cooldown_s: float = 2.0  # after a revocation: synchronous commits there for this long
    contention_s: float = 2.0  # another mount committed there this recently: take no lease
    margin_s: float = 1.0  # stop acknowledging when less than this is left of the lease
    ask_stale_s: float = 30.0  # an ask older than this is from a mount that gave up or died
    wait_cap_s: float = 120.0  # longest wait for another mount's lease (it renews at most so long)
    ask_poll_s: float = 0.5  # fallback: how often a holder reads its ask partition unprompted
    skew_s: float = 0.5  # another mount's lease counts as expired only this long after its end


@dataclass
class _Op:
    """One acknowledged operation, waiting for the flusher."""

    events: list[Event]
    ts: int
    uid: int
    op: str
    children: list[str]  # journals of directories it created: they wait for this batch
    size: int = -1  # bytes of its events' JSON; measured by the flusher, off the caller's path

    def measured(self) -> int:
        if self.size < 0:
            self.size = len(json.dumps([e.to_json() for e in self.events], separators=(",", ":"))) + 2
        return self.size


@dataclass
class _Held:
    """A lease this mount holds."""

    jid: str
    view: View
    until: int  # ns, this mount's clock
    taken: int
    queue: deque[_Op] = field(default_factory=deque)
    last_op: float = 0.0  # time.monotonic()
    last_flush: float = 0.0  # time.monotonic()
    revoke: bool = False  # another mount asked
    releasing: bool = False
    # Serialises this journal's appends by this mount (the flusher's batches, a synchronous
    # commit draining the queue). Taken before the view's lock, or under it only without
    # blocking: the flusher puts a batch without holding the view's lock, so that this mount's
    # lookups, stats and new operations in the directory never wait on a round trip.
    append_lock: threading.Lock = field(default_factory=threading.Lock)
    flushing: bool = False  # a batch is on its way to the store (set and cleared under the view's lock)


class WriteBehind:
    """Takes, uses, renews and releases this mount's leases, and honours other mounts' leases
    (installed as the committer's ``leases`` hooks on every mount; ``enabled`` only decides
    whether this mount takes leases itself)."""

    def __init__(self, store: Store, journals: JournalStore, cache: ViewCache, committer: Committer, session: str,
                 *, enabled: bool = False, settings: Settings | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.journals = journals
        self.cache = cache
        self.session = session
        self.enabled = enabled
        self.settings = settings or Settings()
        self.clock = clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()  # a leaf: guards the dictionaries below, never held while calling out
        self._activity: dict[str, deque[float]] = {}
        self._cool: dict[str, float] = {}
        # journals whose lost lease is being rescued -> the rescuing thread. Until the rescue
        # ends, a synchronous commit there waits (check, wait): the view still holds the queued
        # operations, and a commit built on them (a file's close after its queued create) would
        # land before the rescue re-commits what it depends on
        self._rescuing: dict[str, int] = {}
        self._rescue_ended = threading.Condition(self._lock)
        self._deps: dict[str, str] = {}  # child journal -> journal whose queue holds the child's creation
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._asked = threading.Event()  # the change feed saw an ask for this mount: read them now
        self._asks_read = 0.0  # time.monotonic() of the last read of the ask partition
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.taken = self.revoked = self.records = self.ops = self.lost = self.asks = 0
        self.rescues = 0  # leases found lost, and their queues rescued or dropped (tests, stats)
        committer.leases = self

    # -- the committer's hooks --------------------------------------------------------------------
    def submit(self, jid: str, build: Build, op: str, uid: int) -> Any:
        if not self.enabled or not jid.startswith("d/"):
            return NOT_TAKEN
        st = self._held.get(jid)
        if st is None:
            if not self._busy(jid):
                return NOT_TAKEN
            st = self._acquire(jid)
            if st is None:
                return NOT_TAKEN
        view = st.view
        with view.lock:
            if self._held.get(jid) is not st or not self._usable(st):
                return NOT_TAKEN
            ts = self.clock()
            draft = Draft(view, ts)
            tx = Tx({jid: draft}, ts)
            try:
                result = build(tx)
            except NeedJournal:
                return NOT_TAKEN  # it changes another journal too: the synchronous path
            if tx.extra:
                return NOT_TAKEN
            if draft.events:
                evs: list[Event] = [Stamp(ts, uid, op), *draft.events]
                for ev in evs:
                    fold(ev, view, ts)
                children = [schema.dir_journal(e.inode.ino) for e in draft.events
                            if isinstance(e, Create) and e.inode.is_dir]
                st.queue.append(_Op(evs, ts, uid, op, children))
                if children:
                    with self._lock:
                        for c in children:
                            self._deps[c] = jid
                view.mark_committed()  # as exact as after a commit: nobody else appends
                st.last_op = time.monotonic()
                if len(st.queue) >= self.settings.max_ops:
                    self._wake.set()
            return result

    def prepare(self, jids: list[str]) -> None:
        if not self._deps:
            return
        for j in jids:
            self._flush_deps(j)

    def check(self, view: View) -> bool:
        if self._rescued_by_another(view.jid):
            return False  # wait() waits for the rescue's end
        holder = view.lease_holder
        if holder is None:
            return True
        if holder != self.session:
            return self._expired(view.lease_until)  # expired: its holder may no longer append
        st = self._held.get(view.jid)
        if st is None:
            return True
        if st.flushing or (st.queue and not st.append_lock.acquire(blocking=False)):
            return False  # a batch is in flight: wait() drains it without the view's lock
        if st.queue:
            try:
                ok = self._flush(st)  # the view's lock is held (an RLock): a rare, synchronous drain
            finally:
                st.append_lock.release()
            if not ok:
                return self.check(view)  # the lease was lost: the view was re-read
        return True

    def _rescued_by_another(self, jid: str) -> bool:
        with self._lock:
            return self._rescuing.get(jid, threading.get_ident()) != threading.get_ident()

    def wait(self, jid: str) -> None:
        """Ask the holder (an item in its ask partition, which it polls every window) and poll
        the journal's tail with backoff until a ``release`` appears or the lease expires."""
        with self._lock:
            while self._rescuing.get(jid, threading.get_ident()) != threading.get_ident():
                self._rescue_ended.wait()
        if jid in self._held:  # our own lease, a batch in flight: wait for it and drain the rest
            self.flush_jid(jid)
            return
        view = self.cache.get(jid)
        asked: str | None = None
        delay = 0.005
        deadline = time.monotonic() + self.settings.wait_cap_s
        try:
            while True:
                with view.lock:
                    holder, until = view.lease_holder, view.lease_until
                now = self.clock()
                if holder is None or holder == self.session or self._expired(until):
                    return
                if asked != holder:
                    if asked is not None:
                        self._unask(asked, jid)
                    self._ask(holder, jid)
                    asked = holder
                if time.monotonic() > deadline:
                    raise FsError(errno.EAGAIN, f"{jid}: the write-behind lease of {holder} was never released")
                time.sleep(max(0.001, min(delay, (until - now) / NS + self.settings.skew_s)))
                delay = min(delay * 2, 0.1)
                self.cache.refresh(view)
        finally:
            if asked is not None:
                self._unask(asked, jid)

    # -- what the file system calls -----------------------------------------------------------------
    def settle_read(self, view: View) -> None:
        """A read that must see everything committed before it (open, a lookup that missed): if
        another mount holds a live lease here, it may have acknowledged more: have it flush."""
        holder = view.lease_holder
        if holder is not None and holder != self.session and not self._expired(view.lease_until):
            self.wait(view.jid)

    def sync_all(self) -> None:
        """A durability point (fsync, syncfs): commit every queued operation, parents first."""
        for jid in list(self._held):
            self.flush_jid(jid)

    def close(self) -> None:
        """Unmount: commit everything and release every lease."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None:
            t.join(timeout=30)
        for jid in list(self._held):
            try:
                self.flush_jid(jid, release=True)
            except Exception as e:  # noqa: BLE001 - report, and release the others
                log.warning("writebehind.release_failed", jid=jid, error=str(e))
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def watch(self, feed: ChangeFeed) -> ChangeFeed:
        """The mount's change feed, passed through; an ask written to this mount's ask partition
        (the SQLite change table and the DynamoDB stream carry every item written, the relay's
        bulletin carries ``wb/`` keys) wakes the flusher to read the asks at once."""
        return _AskWatch(feed, self)

    def on_ask(self) -> None:
        self._asked.set()
        self._wake.set()

    def held(self) -> list[str]:
        return list(self._held)

    def pending(self) -> int:
        return sum(len(st.queue) for st in list(self._held.values()))

    # -- taking a lease -----------------------------------------------------------------------------
    def _busy(self, jid: str) -> bool:
        """Count an operation here; True once there were ``take_after`` within the window, or at
        once in a directory this mount created moments ago and nobody has written to since (its
        journal is still empty: tar, cp and git fill the directories they make)."""
        now = time.monotonic()
        s = self.settings
        view = self.cache.peek(jid)
        fresh = view is not None and view.head == 0 and now - view.committed < s.take_window_s
        with self._lock:
            if self._cool.get(jid, 0.0) > now or jid in self._rescuing:
                return False
            if fresh:
                return True
            q = self._activity.get(jid)
            if q is None:
                if len(self._activity) > 4096:
                    self._activity.clear()
                q = self._activity[jid] = deque()
            q.append(now)
            while q and now - q[0] > s.take_window_s:
                q.popleft()
            return len(q) >= s.take_after

    def _acquire(self, jid: str) -> _Held | None:
        s = self.settings
        self._flush_deps(jid)  # the lease record may not land before the directory's creation
        view = self.cache.get(jid)
        with view.lock:
            taken = self._held.get(jid)
            if taken is not None:  # another thread of this mount took it while we waited for the lock
                return taken
            if view.stale:
                self.cache.refresh(view)
            now = self.clock()
            if view.removed:
                return None
            if view.lease_holder not in (None, self.session) and not self._expired(view.lease_until):
                return None
            if view.head_session not in ("", self.session) and now - view.head_ts < s.contention_s * NS:
                return None  # another mount is working here too: stay synchronous
            until = now + int(s.lease_s * NS)
            rec = Record(jid, view.head + 1, (Lease(self.session, until),), now, self.session, 0, "lease",
                         view.head_hash).sealed()
            try:
                self.journals.append(rec)
            except JournalConflict:
                view.stale = True
                return None
            view.apply(rec)
            view.mark_committed()
            view.pinned = view.own_lease = True
            st = _Held(jid, view, until, now, last_op=time.monotonic(), last_flush=time.monotonic())
            with self._lock:
                self._held[jid] = st
            self.taken += 1
        self._start()
        return st

    def _expired(self, until: int) -> bool:
        """Whether another mount's lease ending at ``until`` (its clock) is over by ours, with
        ``skew_s`` to spare: the holder stops acknowledging ``margin_s`` before its end."""
        return until + int(self.settings.skew_s * NS) <= self.clock()

    def _usable(self, st: _Held) -> bool:
        return (not st.revoke and not st.releasing and not st.view.removed
                and st.until - self.clock() > self.settings.margin_s * NS)

    # -- flushing ------------------------------------------------------------------------------------
    def flush_jid(self, jid: str, release: bool = False) -> None:
        """Commit ``jid``'s queue (and, first, the batches that create its directory); with
        ``release``, end the lease in the last record. No view lock may be held by the caller."""
        self._flush_deps(jid)
        st = self._held.get(jid)
        if st is None:
            return
        with st.append_lock:
            if self._held.get(jid) is not st:
                return
            if not self._flush(st, release):
                raise FsError(errno.EIO, f"{jid}: write-behind lease lost; acknowledged operations were dropped")

    def _flush_deps(self, jid: str) -> None:
        seen: set[str] = set()
        while True:
            with self._lock:
                parent = self._deps.get(jid)
            if parent is None or parent in seen:
                return
            seen.add(parent)
            self.flush_jid(parent)
            with self._lock:
                if self._deps.get(jid) == parent:
                    del self._deps[jid]

    def _batch_len(self, st: _Held) -> int:
        return self._batch_len_of(st.queue)

    def _batch_len_of(self, ops: Iterable[_Op]) -> int:
        """How many of ``ops``, from the front, fit in one record (``max_ops``, ``max_bytes``)."""
        s = self.settings
        k = size = 0
        for op in ops:
            n = op.measured()
            if k >= s.max_ops or (k and size + n > s.max_bytes):
                break
            k += 1
            size += n
        return k

    def _flush(self, st: _Held, release: bool = False) -> bool:
        """Commit the queue as records; with ``release``, end the lease in the last one and drop
        it. The caller holds ``st.append_lock``. The view's lock is taken only to take a batch
        and to move the head after the put: meanwhile this mount goes on reading the view and
        acknowledging operations (appended to the queue behind the batch), a refresh reads
        nothing (``View.own_lease``), and a synchronous commit here waits (``check``). False
        when the lease turned out lost: the queued operations are dropped and the view re-read."""
        view = st.view
        lease_ns = int(self.settings.lease_s * NS)
        while True:
            # the next batch's operations, measured before the view's lock, which operations being
            # acknowledged meanwhile need (the copy, made in C, is atomic under the GIL)
            for op in list(itertools.islice(st.queue, self.settings.max_ops)):
                op.measured()
            with view.lock:
                if release:
                    st.releasing = True
                if view.removed:  # sealed by our own rmdir: nothing may follow the seal
                    self._drop(st)
                    return True
                k = self._batch_len(st)
                last = k == len(st.queue)
                now = self.clock()
                tail: list[Event] = []
                new_until = None
                if release and last:
                    tail.append(Release(self.session))
                elif st.until - now < lease_ns // 2 and not st.revoke and not st.releasing:
                    new_until = now + lease_ns
                    tail.append(Lease(self.session, new_until))
                if k == 0 and not tail:
                    return True
                batch = [st.queue[i] for i in range(k)]
                events = [e for op in batch for e in op.events] + tail
                first = batch[0] if batch else None
                ops = "+".join(dict.fromkeys(o.op for o in batch)) or ("release" if release else "lease")
                rec = Record(st.jid, view.head + 1, tuple(events), first.ts if first else now, self.session,
                             first.uid if first else 0, ops, view.head_hash).sealed()
                st.flushing = True
            try:
                self.journals.append(rec)
            except JournalConflict:
                with view.lock:
                    st.flushing = False
                    queued, since = list(st.queue), view.head
                    st.queue.clear()
                    with self._lock:  # before the lease goes: check() must never see neither
                        self._rescuing[st.jid] = threading.get_ident()
                    self._drop(st)
                return self._rescue(st, queued, since)
            except BaseException:
                with view.lock:
                    st.flushing = False  # kept queued: retried by the next flush
                raise
            with view.lock:
                st.flushing = False
                for _ in range(k):
                    st.queue.popleft()
                for ev in tail:
                    fold(ev, view, now)
                view.head, view.head_hash, view.head_ts, view.head_session = rec.seq, rec.hash, rec.ts, rec.session
                view.mark_committed()
                if new_until is not None:
                    st.until = new_until
                if release and last:
                    self._drop(st)
            done = [c for op in batch for c in op.children]
            if done:
                with self._lock:
                    for c in done:
                        if self._deps.get(c) == st.jid:
                            del self._deps[c]
            self.records += 1
            self.ops += k
            st.last_flush = time.monotonic()
            if last:
                return True

    def _rescue(self, st: _Held, queued: list[_Op], since: int) -> bool:
        """Another record took our seq: the lease had expired (we stalled past it) and another
        mount appended after our record ``since``. Commit, as synchronous records, the queued
        operations that touch no name the others touched (rescue.py); drop the rest, as a crash
        would drop them. True when nothing was dropped. The caller holds ``st.append_lock``; the
        lease is already dropped. A store error on the way drops what is not committed yet (and
        is raised): nothing acknowledged goes unaccounted."""
        verdict, pending = Rescue(), list(queued)
        with self._lock:  # no new lease here while the rescue appends: its records would race ours
            self._cool[st.jid] = float("inf")
        try:
            self.cache.rebuild(st.view)  # the store's state: our queued events were never committed
            self._rescue_rounds(st, verdict, pending, since)
        except BaseException:
            verdict.dropped.extend(op.op for op in pending)
            raise
        finally:
            self._rescued(st, verdict, len(queued))
            with self._lock:
                self._rescuing.pop(st.jid, None)
                self._rescue_ended.notify_all()
        return not verdict.dropped

    def _rescue_rounds(self, st: _Held, verdict: Rescue, pending: list[_Op], since: int) -> None:
        """Read what the others appended, judge the queue, commit a batch at the head; again
        until nothing is pending. ``pending`` shrinks in place as operations are committed or
        dropped, so that the caller knows what is left if the store fails."""
        view = st.view
        retries = 0
        while True:
            foreign = self.journals.read_after(st.jid, since)
            verdict.learn(foreign)
            since = foreign[-1].seq if foreign else since
            pending[:] = [op for op in pending if verdict.keep(op.events, op.op)]
            if not pending:
                return
            if retries == RESCUE_ATTEMPTS:  # still losing the race: what is left goes as a crash's would
                verdict.dropped.extend(op.op for op in pending)
                pending.clear()
                return
            with view.lock:
                holder, until, prev, head = view.lease_holder, view.lease_until, view.head_hash, view.head
            if head != since or (holder not in (None, self.session) and not self._expired(until)):
                retries += 1
                if head == since:
                    self.wait(st.jid)  # another mount took the lease: have it release first
                self.cache.rebuild(view)  # then learn what arrived meanwhile
                continue
            k = self._batch_len_of(pending)
            rec = Record(st.jid, since + 1, tuple(e for op in pending[:k] for e in op.events), pending[0].ts,
                         self.session, pending[0].uid, "+".join(dict.fromkeys(o.op for o in pending[:k])),
                         prev).sealed()
            put_at = time.monotonic()
            try:
                self.journals.append(rec)
            except JournalConflict:
                retries += 1
                self.cache.rebuild(view)
                continue
            with view.lock:
                if view.head == since:
                    view.apply(rec)
                    view.mark_committed(put_at)
                else:  # another thread re-read the view meanwhile: the next use reads the tail
                    view.stale = True
            since = rec.seq
            del pending[:k]
            self.records += 1
            self.ops += k

    def _rescued(self, st: _Held, verdict: Rescue, queued: int) -> None:
        """Account for a lost lease: children waiting on this journal wait no more (a dropped
        creation leaves theirs without a name, as a crash would), and the log says what went."""
        with self._lock:
            for c in [c for c, p in self._deps.items() if p == st.jid]:
                del self._deps[c]
            self._cool[st.jid] = time.monotonic() + self.settings.cooldown_s
        self.lost += len(verdict.dropped)
        self.rescues += 1
        committed = queued - len(verdict.dropped)
        if verdict.dropped:
            log.error("writebehind.lease_lost", jid=st.jid, dropped=len(verdict.dropped), committed=committed,
                      ops=verdict.dropped[:20])
        else:
            log.warning("writebehind.rescued", jid=st.jid, committed=committed)

    def _drop(self, st: _Held) -> None:
        with self._lock:
            if self._held.get(st.jid) is st:
                del self._held[st.jid]
        st.view.pinned = st.view.own_lease = False
        # Another mount may have appended since our last record (the asker, as soon as it saw
        # the release), and the change feed's notice of it, arriving while the view was still
        # ours, was ignored (ViewCache.on_change): the next use re-reads the tail (one Query).
        st.view.stale = True

    # -- the flusher ---------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=f"writebehind-{self.session}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            self._wake.wait(min(s.window_s, s.ask_poll_s))
            self._wake.clear()
            if self._stop.is_set():
                return
            held = list(self._held.values())
            if not held:
                continue
            if self._asked.is_set() or time.monotonic() - self._asks_read >= s.ask_poll_s:
                self._asked.clear()
                try:
                    self._poll_asks()
                except Exception as e:  # noqa: BLE001 - the loop must keep turning
                    log.warning("writebehind.asks_failed", error=str(e))
            now_m = time.monotonic()
            now = self.clock()
            jobs: list[tuple[_Held, bool]] = []
            for st in held:
                if st.revoke or st.view.removed or now_m - st.last_op > s.idle_s:
                    jobs.append((st, True))
                elif (st.queue and (now_m - st.last_flush >= s.window_s or len(st.queue) >= s.max_ops)
                      or st.until - now < int(s.lease_s * NS) // 2):
                    jobs.append((st, False))
            if len(jobs) == 1:
                self._job(*jobs[0])
            elif jobs:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(4, thread_name_prefix="writebehind-flush")
                list(self._pool.map(lambda j: self._job(*j), jobs))

    def _job(self, st: _Held, release: bool) -> None:
        try:
            self.flush_jid(st.jid, release=release)
        except Exception as e:  # noqa: BLE001 - kept queued; retried next window
            log.warning("writebehind.flush_failed", jid=st.jid, error=str(e))
            return
        if release and st.revoke:
            self.revoked += 1
            with self._lock:
                self._cool[st.jid] = time.monotonic() + self.settings.cooldown_s
                self._activity.pop(st.jid, None)

    # -- asks -------------------------------------------------------------------------------------------
    def _poll_asks(self) -> None:
        """One Query of this mount's ask partition: a live ask for a held journal revokes it."""
        part = schema.ask_partition(self.session)
        self._asks_read = time.monotonic()
        now = self.clock()
        stale: list[tuple[str, str]] = []
        for it in self.store.query("meta", part):
            jid, _, _asker = str(it["name"]).rpartition("@")
            if now - int(it.get("ts", 0)) > self.settings.ask_stale_s * NS:
                stale.append((part, it["name"]))
                continue
            st = self._held.get(jid)
            if st is not None and not st.revoke:
                st.revoke = True
                self.asks += 1
        if stale:
            self.store.delete_items("meta", stale)

    def _ask(self, holder: str, jid: str) -> None:
        self.store.put(Put("meta", {"path": schema.ask_partition(holder), "name": f"{jid}@{self.session}",
                                    "ts": self.clock()}))

    def _unask(self, holder: str, jid: str) -> None:
        try:
            self.store.delete(Delete("meta", (schema.ask_partition(holder), f"{jid}@{self.session}")))
        except Exception as e:  # noqa: BLE001 - a left-over ask goes stale harmlessly
            log.debug("writebehind.unask_failed", jid=jid, error=str(e))


class _AskWatch(ChangeFeed):
    """A change feed passed through unchanged, watching for asks addressed to this mount (see
    ``WriteBehind.watch``); every other attribute is the wrapped feed's."""

    def __init__(self, feed: ChangeFeed, wb: WriteBehind) -> None:
        self._feed = feed
        self._wb = wb
        self._part = schema.ask_partition(wb.session)

    def poll(self, timeout: float) -> ChangeBatch:
        batch = self._feed.poll(timeout)
        if any(c.path == self._part for c in batch.changes):
            self._wb.on_ask()
        return batch

    def close(self) -> None:
        self._feed.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feed, name)
