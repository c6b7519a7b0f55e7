"""Sibling prefetch: when a walk through a directory is evident, load the views of its other
subdirectories (and of its hard-linked files' inode journals) in the background, several at once.

Why: a directory's attributes live partly in its own journal (docs/ARCHITECTURE.md, "Where
inodes live"), so ``ls -l``, ``find``, ``du``, ``rsync`` or ``git status`` on a cold mount load
one view per subdirectory they meet, and each load is two requests (the snapshot, then the tail
after it). One after another at 5 to 8 ms a request, a walk of a thousand directories waits half
a minute on round trips alone. The loads do not depend on each other, so they can be in flight
together, as a kernel's readahead overlaps the reads of a file read in order.

When: a view missed by a file operation (not by this prefetcher) whose parent directory was
listed within ``LISTED_WINDOW``, or had another child view missed within ``MISS_WINDOW``. A plain
``ls`` (a listing, no stat of the subdirectories) or one ``cd`` therefore prefetches nothing:
requests are what users pay for. What: the parent's subdirectories and hard-linked files after
the missed name, in name order (the order readdir gives and walkers follow), then wrapping to the
start, up to ``WINDOW`` not yet cached or queued. The next miss among them moves the window on.

Bounds: ``workers`` loads in flight, at most ``MAX_QUEUED`` waiting, nothing queued while the
cache holds more than half its entry budget (prefetch must not evict what is in use). A load goes
through ``ViewCache.get``, so a file operation that wants a view being prefetched waits for that
load instead of making its own, and the view's freshness is the same as if it had loaded it. The
requests are counted as operation ``prefetch``. Threads start on first use: an idle mount has
none.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from itertools import chain, islice
from typing import TYPE_CHECKING

import structlog

from .. import schema
from ..journal.inode import Inode
from ..store.metrics import operation

if TYPE_CHECKING:
    from .cache import ViewCache

log = structlog.get_logger(__name__)

LISTED_WINDOW = 10.0  # s after a readdir in which a child's miss means a walk
MISS_WINDOW = 2.0  # s between two child misses of one directory that mean a walk
WINDOW = 64  # views queued by one trigger
SCAN_LIMIT = 4096  # entries looked at by one trigger (a directory of files has few views to load)
MAX_QUEUED = 1024
MAX_PARENTS = 1024  # directories whose last listing and miss are remembered
DEFAULT_WORKERS = 8


class SiblingPrefetch:
    def __init__(self, cache: "ViewCache", workers: int = DEFAULT_WORKERS) -> None:
        self.cache = cache
        self.workers = workers
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._seen: OrderedDict[str, tuple[float, float]] = OrderedDict()  # parent -> (listed, missed)
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.loaded = 0  # views this prefetcher loaded (a file operation had not yet)
        self.triggers = 0

    # -- what file operations tell it -----------------------------------------------------------
    def listed(self, parent: str) -> None:
        """A file operation listed directory journal ``parent`` (readdir)."""
        if self.workers:
            self._remember(parent, listed=time.monotonic())

    def missed(self, jid: str, parent: str) -> None:
        """A file operation is about to load view ``jid``, met as a child of ``parent``. Called by
        ViewCache.get in the caller's thread: it queues work and takes no view lock."""
        if not self.workers:
            return
        now = time.monotonic()
        listed, last_miss = self._remember(parent, missed=now)
        if now - listed <= LISTED_WINDOW or now - last_miss <= MISS_WINDOW:
            name = self._child_name(parent, jid)
            if name is not None:
                self._enqueue_siblings(parent, name)

    # -- choosing -------------------------------------------------------------------------------
    def _remember(self, parent: str, listed: float | None = None, missed: float | None = None) -> tuple[float, float]:
        """Record a listing or a miss of ``parent``; returns what was known before."""
        with self._lock:
            before = self._seen.pop(parent, (float("-inf"), float("-inf")))
            self._seen[parent] = (before[0] if listed is None else listed, before[1] if missed is None else missed)
            while len(self._seen) > MAX_PARENTS:
                self._seen.popitem(last=False)
            return before

    def _child_name(self, parent: str, jid: str) -> str | None:
        view = self.cache.peek(parent)
        if view is None:
            return None
        ino = schema.journal_ino(jid)
        with view.lock:
            return view.by_ino.get(ino)

    def _enqueue_siblings(self, parent: str, name: str) -> None:
        view = self.cache.peek(parent)
        if view is None or self.cache.entries() > self.cache.entry_budget // 2:
            return
        with view.lock:
            entries = view.entries
            after = entries.irange(minimum=name, inclusive=(False, False))
            before = entries.irange(maximum=name, inclusive=(False, False))
            names = list(islice(chain(after, before), SCAN_LIMIT))
            wanted = [jid for jid in (_journal_of(entries[n]) for n in names) if jid is not None]
        fresh = [jid for jid in wanted if self.cache.peek(jid) is None]
        with self._lock:
            if self._closed:
                return
            added = 0
            for jid in fresh:
                if added >= WINDOW or len(self._queue) >= MAX_QUEUED:
                    break
                if jid not in self._queued:
                    self._queued.add(jid)
                    self._queue.append(jid)
                    added += 1
            if added:
                self.triggers += 1
                self._start_workers()
                self._wake.notify(added)

    # -- loading --------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        """Start the worker threads on first use (the caller holds ``_lock``)."""
        while len(self._threads) < self.workers:
            t = threading.Thread(target=self._work, name=f"dynlog-prefetch-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                jid = self._queue.popleft()
                self._queued.discard(jid)
            if self.cache.peek(jid) is not None:
                continue  # a file operation loaded it first
            try:
                with operation("prefetch"):
                    self.cache.get(jid)
                self.loaded += 1
            except Exception as e:  # noqa: BLE001 - a failed guess costs nothing: the file operation will load it
                log.debug("prefetch.failed", jid=jid, error=str(e))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._queued.clear()
            self._wake.notify_all()
            threads, self._threads = self._threads, []
        for t in threads:
            t.join(timeout=5)


def _journal_of(entry: Inode) -> str | None:
    """The journal whose view a stat of this entry loads: a directory's own, a hard-linked file's
    inode journal; None for a plain file (its inode is in the parent's view)."""
    if entry.is_dir:
        return schema.dir_journal(entry.ino)
    if entry.linked:
        return schema.inode_journal(entry.ino)
    return None
