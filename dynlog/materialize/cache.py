"""The cache of materialized views: built lazily, fast-forwarded, evicted LRU under a budget.

Locking: ``_lock`` guards only the dictionary of views. Each view has its own RLock; an
operation that changes several journals takes their locks in sorted journal-id order (see
docs/ARCHITECTURE.md, "Locking order"). Store requests happen with a view lock held only
while fast-forwarding that view or committing to it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

import structlog

from ..journal.log import JournalStore
from ..journal.record import Record
from ..store.base import Change
from .prefetch import SiblingPrefetch
from .view import SequenceGap, View

log = structlog.get_logger(__name__)

DEFAULT_ENTRY_BUDGET = 500_000  # ~0.8 KB an entry measured: about 400 MB


class ViewCache:
    def __init__(self, journals: JournalStore, *, entry_budget: int = DEFAULT_ENTRY_BUDGET,
                 prefetch_workers: int = 0) -> None:
        """``prefetch_workers``: views of a walked directory's subdirectories loaded at once in the
        background (prefetch.py); 0: none."""
        self.journals = journals
        self.entry_budget = entry_budget
        self._views: OrderedDict[str, View] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        # journals whose change-feed notice came while their view was being loaded (see on_change)
        self._missed: set[str] = set()
        self.loads = 0
        self.fast_forwards = 0
        # time.monotonic() up to which a change feed has applied (or marked stale) every change
        # to the cached views; -inf without a feed. A view is as fresh as the later of this and
        # its own last read (demand revalidation: docs/ARCHITECTURE.md, "Freshness").
        self.confirmed: Callable[[], float] = lambda: float("-inf")
        self.prefetch = SiblingPrefetch(self, prefetch_workers)

    def peek(self, jid: str) -> View | None:
        with self._lock:
            return self._views.get(jid)

    def get(self, jid: str, max_age: float | None = None, parent: str | None = None) -> View:
        """The view of ``jid``; re-read its tail if stale or not fresh within ``max_age``.
        ``parent``: the directory journal in which a file operation met ``jid`` (a subdirectory or a
        hard-linked file there); a miss then tells the prefetcher, which may load its siblings."""
        with self._lock:
            view = self._views.get(jid)
            if view is not None:
                self._views.move_to_end(jid)
            load_lock = self._loading.setdefault(jid, threading.Lock()) if view is None else None
        if view is None:
            assert load_lock is not None
            if parent is not None:
                self.prefetch.missed(jid, parent)
            with load_lock:
                view = self.peek(jid)
                if view is None:
                    view = self._load(jid)
                    with self._lock:
                        self._views[jid] = view
                        self._loading.pop(jid, None)
                        if jid in self._missed:  # a commit may have landed after the load's read
                            self._missed.discard(jid)
                            view.stale = True
                    self._evict()
                    if not view.stale:
                        return view
        if view.stale or (max_age is not None and not self.fresh(view, max_age)):
            # now, before waiting for the view's lock: a read another thread starts meanwhile will do
            self.refresh(view, not_before=time.monotonic())
        return view

    def fresh(self, view: View, max_age: float) -> bool:
        """Whether ``view`` may be used without re-reading: read (or committed to), or vouched
        for by the feed, within ``max_age`` seconds."""
        now = time.monotonic()
        if now - view.validated <= max_age:
            return True
        return max_age > 0 and now - self.confirmed() <= max_age

    def seed_empty(self, jid: str) -> None:
        """Cache the view of a journal this client knows to be empty (a directory it just
        created under a fresh inode number), so its first use costs no read."""
        with self._lock:
            if jid in self._views:
                return
            view = View(jid)
            view.mark_committed()  # as good as a commit: this client made it, empty
            self._views[jid] = view
        self._evict()  # a seeded view counts against the budget like a loaded one

    def _load(self, jid: str) -> View:
        """The view of ``jid`` read from the store; validated as of the read's start, since a
        commit that lands while the read is on its way may not be in it."""
        self.loads += 1
        started = time.monotonic()
        for attempt in range(3):
            snap, tail = self.journals.load_latest(jid)
            view = View.from_snapshot(snap) if snap else View(jid)
            try:
                for rec in tail:
                    view.apply(rec)
            except SequenceGap:
                # compact trimmed the records after the snapshot we read, between our two queries:
                # a newer snapshot covers them now
                if attempt == 2:
                    raise
                continue
            view.mark_validated(started)
            return view
        raise AssertionError("unreachable")

    def refresh(self, view: View, not_before: float | None = None) -> list[Record]:
        """Fast-forward from the head: one query for the records after it. Returns the records
        folded (empty after a rebuild, which callers treat as "everything may have changed").
        ``not_before``: when the caller's operation began. A read of the tail that began after it
        (another thread's, which held the view's lock while this one waited for it) shows every
        commit this operation must see, so none is made: opens and lookups that arrive together
        in one directory, as a parallel build's do, share one Query instead of queueing one each."""
        with view.lock:
            if not_before is not None and not view.stale and view.validated >= not_before:
                return []
            started = time.monotonic()
            if view.own_lease:  # nothing to read: see View.own_lease (a batch may be in flight)
                view.mark_validated(started)
                return []
            recs: list[Record] = []
            try:
                recs = self.journals.read_after(view.jid, view.head)
                if recs and recs[0].seq != view.head + 1:
                    raise SequenceGap(f"{view.jid}: first record {recs[0].seq} after head {view.head}")
                for rec in recs:
                    view.apply(rec)
                self.fast_forwards += 1
            except SequenceGap as e:
                log.debug("view.rebuild", jid=view.jid, why=str(e))
                view.adopt(self._load(view.jid))
                recs = []
            view.mark_validated(started)
            return recs

    def rebuild(self, view: View) -> None:
        """Re-read a view whole from the store, in place (write-behind: a lease that turned out
        lost leaves a view holding events the journal never got)."""
        with view.lock:
            loaded = self._load(view.jid)
            view.adopt(loaded)
            view.mark_validated(loaded.validated)  # as of the read's start

    def apply_records(self, view: View, recs: list[Record]) -> None:
        """Fold records this client just committed (the caller holds the view lock)."""
        for rec in recs:
            view.apply(rec)

    def invalidate(self, jid: str) -> None:
        view = self.peek(jid)
        if view is not None:
            view.stale = True

    def invalidate_all(self) -> None:
        with self._lock:
            for v in self._views.values():
                v.stale = True

    def on_change(self, change: Change) -> tuple[View | None, list[Record]]:
        """A change-feed record for a journal: fold it if it is the next record of a cached view,
        else mark the view stale. Returns (the cached view it concerns, records folded now);
        (None, []) when it concerns nothing cached or nothing new."""
        from .. import schema

        if not change.name.startswith("j/"):
            return None, []
        with self._lock:
            view = self._views.get(change.path)
            if view is None:
                # Nothing cached costs nothing, unless a view is being loaded: its read may have
                # been served before this commit, and once cached it would pass for fresh while
                # the feed vouches for this moment. It is marked stale as it is cached (get).
                if change.path in self._loading:
                    self._missed.add(change.path)
                return None, []
        if view.own_lease:
            return None, []
        seq = schema.record_seq(change.name)
        if seq <= view.head or (change.path, seq) in self.journals.inflight:
            return None, []  # ours (folded by the committer when its put returns), or already seen
        if change.item is not None and view.lock.acquire(blocking=False):
            try:
                rec = Record.from_item(change.item)
                if rec.seq == view.head + 1:
                    view.apply(rec)
                    return view, [rec]
            finally:
                view.lock.release()
        view.stale = True
        return view, []

    def entries(self) -> int:
        with self._lock:
            return sum(len(v.entries) for v in self._views.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._views)

    def _evict(self) -> None:
        with self._lock:
            total = sum(len(v.entries) for v in self._views.values())
            while total > self.entry_budget and len(self._views) > 1:
                jid, view = next(iter(self._views.items()))
                if view.pinned or not view.lock.acquire(blocking=False):
                    self._views.move_to_end(jid)
                    break
                try:
                    del self._views[jid]
                    total -= len(view.entries)
                finally:
                    view.lock.release()
