"""Stream-driven freshness: follow the store's change feed, fold new records into cached
views (or mark them stale and fast-forward them), and tell the kernel what changed.

The feed is the SQLite ``changes`` table for ``local:`` stores and DynamoDB Streams for
``aws:`` ones. When the feed reports lost records (trimmed, expired), every view is marked
stale. The TTL revalidation in the namespace stays as the floor under all of this.

The follower polls at an adaptive rate (dynlog/cluster/cadence.py): fast while changes flow or
the mount itself is busy (``wake``), rarer the longer all is quiet. What it can vouch for is
``confirmed_at``: a ``time.monotonic()`` value T such that every change committed by another
mount before T has been applied to, or marked stale in, the view cache. The core trusts a
view without re-reading it only while ``max(view.validated, confirmed_at)`` is recent; so a
slow idle poll costs freshness nothing, only a Query paid by the operation that needs it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import structlog

from ..errors import DynlogError
from ..journal.events import MoveOut, Rename
from ..journal.record import Record
from ..materialize.cache import ViewCache
from ..store.base import Change, ChangeBatch, ChangeFeed
from ..store.metrics import operation
from .cadence import LOCAL, STREAM, STREAM_LAG, Backoff, Cadence

log = structlog.get_logger(__name__)

# (journal id, names in it that changed); names empty = "anything in it may have changed";
# journal id None = "everything may have changed".
Invalidate = Callable[[str | None, list[str]], None]

# A batch this large may have been cut by the feed's page limit (GetRecords 1000, SQLite 5000):
# more may be waiting, so it vouches for nothing and the next poll follows at once.
FULL_BATCH = 1000


def default_backoff(feed: ChangeFeed) -> Backoff:
    """The back-off that fits a feed: the feed's own (the relay's, which changes with its role),
    gentle for the local SQLite table, the stream's otherwise."""
    own = getattr(feed, "backoff", None)
    if callable(own):
        return own()
    return LOCAL if _is_local(feed) else STREAM


def is_journal_change(change: Change) -> bool:
    """A change that is file-system activity: a journal record. Heartbeats, lease renewals and
    bulletin notices also pass through the feed, and must not keep an idle mount polling fast."""
    return change.name.startswith("j/")


def _is_local(feed: ChangeFeed) -> bool:
    store = getattr(feed, "store", None)  # every feed here reads a store; be lenient with others
    return store is not None and store.local


def changed_names(rec: Record) -> list[str]:
    names: list[str] = []
    for ev in rec.events:
        name = getattr(ev, "name", None)
        if name is not None:
            names.append(name)
        if isinstance(ev, Rename):
            names.append(ev.new)
    return names


class Follower:
    def __init__(self, cache: ViewCache, feed: ChangeFeed, on_invalidate: Invalidate | None = None,
                 poll_timeout: float = 0.5, backoff: Backoff | None = None) -> None:
        self.cache = cache
        self.feed = feed
        self.on_invalidate = on_invalidate or (lambda jid, names: None)
        self.poll_timeout = poll_timeout  # kept for callers; polls are now single reads paced by the cadence
        self.delays_ms: deque[float] = deque(maxlen=10_000)  # commit-to-applied, for docs and bench
        self.healthy = False
        # See the module docstring. -inf: nothing is vouched for until the first poll has run.
        self.confirmed_at: float = float("-inf")
        self.polls = 0  # feed reads made (tests, stats)
        self._fixed_backoff = backoff
        self.cadence = Cadence(backoff or default_backoff(feed))
        attach = getattr(feed, "attach", None)
        if callable(attach):  # the relay paces its lease checks by the same activity clock
            attach(self.cadence)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the contract with the core ---------------------------------------------------------------
    def wake(self) -> None:
        """The mount did something: poll at the fast rate again, now if a long wait is running.
        Called by the core on every file-system operation: no lock, no request."""
        self.cadence.wake()

    @property
    def interval(self) -> float:
        """Seconds until the next poll as things stand (grows while quiet)."""
        return self.cadence.interval()

    def confirmed_age(self) -> float:
        """Seconds since ``confirmed_at`` (inf before the first good poll)."""
        return time.monotonic() - self.confirmed_at

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        # Views cached before the feed began may have missed changes made in between: mark them
        # stale, so that confirmed_at vouches only for what the feed has really covered.
        self.cache.invalidate_all()
        self._thread = threading.Thread(target=self._run, name="dynlog-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.cadence.kick()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.feed.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if self._fixed_backoff is None:
                self.cadence.backoff = default_backoff(self.feed)
            try:
                with operation("follow"):
                    batch, complete = self.poll_once()
                self.healthy = True
                failures = 0
            except Exception as e:  # noqa: BLE001 - a bug must not end freshness silently: keep trying
                self.healthy = False
                failures += 1
                if isinstance(e, DynlogError):
                    log.warning("follower.poll_failed", error=str(e), failures=failures)
                else:
                    log.error("follower.poll_crashed", error=repr(e), failures=failures, exc_info=True)
                self.cache.invalidate_all()
                self._stop.wait(min(5.0, 0.2 * 2**failures))
                continue
            if batch.lost or any(is_journal_change(c) for c in batch.changes):
                self.cadence.activity()
            if complete:
                self.cadence.wait()

    def poll_once(self) -> tuple[ChangeBatch, bool]:
        """One read of the feed, applied; advances ``confirmed_at`` when the read was complete.
        Returns the batch and whether it was complete (not cut by a page limit)."""
        started = time.monotonic()
        started_wall = time.time_ns()
        batch = self.feed.poll(0)
        self.polls += 1
        self.handle(batch)
        complete = len(batch.changes) < FULL_BATCH
        if complete:
            fresh = self._fresh(started, started_wall)
            if fresh is not None and fresh > self.confirmed_at:
                self.confirmed_at = fresh
        return batch, complete

    def _fresh(self, started: float, started_wall: int) -> float | None:
        """What the read that began at ``started`` vouches for, as a monotonic time."""
        until = getattr(self.feed, "fresh_until_ns", None)
        if callable(until):  # the relay knows (its stream read, or the notices' own claims)
            wall = until()
            if wall is None:
                return None
            return min(started, time.monotonic() - (time.time_ns() - wall) / 1e9)
        return started if _is_local(self.feed) else started - STREAM_LAG

    def handle(self, batch: ChangeBatch) -> None:
        if batch.lost:
            self.cache.invalidate_all()
            self.on_invalidate(None, [])
        stale: dict[str, object] = {}
        for ch in batch.changes:
            view, recs = self.cache.on_change(ch)
            if view is None:
                continue
            if recs:
                self._applied(view.jid, recs)
            else:
                stale[view.jid] = view
        for jid in stale:
            view = self.cache.peek(jid)
            if view is None:
                continue
            recs = self.cache.refresh(view)
            if recs:
                self._applied(jid, recs)
            else:
                self.on_invalidate(jid, [])

    def _applied(self, jid: str, recs: list[Record]) -> None:
        now = time.time_ns()
        names: list[str] = []
        for rec in recs:
            self.delays_ms.append((now - rec.ts) / 1e6)
            names.extend(changed_names(rec))
            for ev in rec.events:
                if isinstance(ev, MoveOut):
                    from .. import schema

                    self.cache.invalidate(schema.dir_journal(ev.to_dir))
        self.on_invalidate(jid, sorted(set(names)))
