"""Sibling prefetch: when a walk through a directory is evident, load the views of its other
subdirectories (and of its hard-linked files' inode journals) in the background, several at once.

Why: a directory's attributes live partly in its own journal (docs/ARCHITECTURE.md, "Where
inodes live"), so ``ls -l``, ``find``, ``du``, ``rsync`` or ``git status`` on a cold mount load
one view per subdirectory they meet, and each load is two requests (the snapshot and the tail
after it, sent together: one round trip). One after another at 5 to 8 ms a request, a walk of a thousand directories waits half
a minute on round trips alone. The loads do not depend on each other, so they can be in flight
together, as a kernel's readahead overlaps the reads of a file read in order.

When: a view missed by a file operation (not by this prefetcher) whose parent directory was
listed within ``LISTED_WINDOW``; or ``MISS_RUN`` steps in a row in one directory, a step being a
miss of the next uncached subdirectory after the one missed before, within ``MISS_WINDOW`` of it
(d03, d04, d05: a walk that does not list, as git status lstat()s its index in name order). A plain ``ls`` (a listing,
no stat of the subdirectories), one ``cd`` or lookups in no order (a hashed directory such as
.git/objects) therefore prefetch nothing: requests are what users pay for. What: the parent's subdirectories and hard-linked files after
the missed name, in name order (the order readdir gives and walkers follow), then wrapping to the
start, up to ``WINDOW`` not yet cached or queued. The next miss among them moves the window on.
And a walk that goes down: when a file operation lists a directory whose view this prefetcher
loaded (find, du, ls -R, rsync descend into what they list), that directory's subdirectories are
queued at once, and its parent counts as walked recursively from then on: each of the parent's
subdirectories has its own subdirectories queued as soon as it loads, so the walk finds the next
level loading before it gets there. One level ahead, no more: a subtree the walk skips (``find
-prune``, ``du --exclude``, a ``.git`` beside the sources) costs its first level only. (``ls -l``
lists no subdirectory and goes no deeper.)

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
from typing import TYPE_CHECKING, Callable, NamedTuple

import structlog

from .. import schema
from ..journal.inode import Inode
from ..recent import remember
from ..store.metrics import operation

if TYPE_CHECKING:
    from .cache import ViewCache

log = structlog.get_logger(__name__)

LISTED_WINDOW = 10.0  # s after a readdir in which a child's miss means a walk
MISS_WINDOW = 2.0  # s between child misses of one directory that may mean a walk
MISS_RUN = 2  # steps in a row (a miss of the next uncached subdirectory after the one before) that mean a walk
WINDOW = 64  # views queued by one trigger
MAX_QUEUED = 1024
MAX_PARENTS = 1024  # directories whose last listing and miss are remembered
MAX_WALKED = 4096  # views loaded here, directories walked recursively, runs in name order: each remembered up to this
DEFAULT_WORKERS = 8


class Expansion(NamedTuple):
    """Work for a worker: queue the views below ``parent``."""

    parent: str
    child: str | None  # from the name after this child's, wrapping round; None: from the start
    after: str | None  # the child missed before ``child``: expand only if they are next to each other
    deep: bool  # queue the level below each cached subdirectory of ``parent`` (a walk going down)


class Seen(NamedTuple):
    """What is known of a directory: when it was last listed, and its last child miss (when, which)."""

    listed: float
    missed: float
    child: str


NEVER_SEEN = Seen(float("-inf"), float("-inf"), "")


class SiblingPrefetch:
    def __init__(self, cache: "ViewCache", workers: int = DEFAULT_WORKERS) -> None:
        self.cache = cache
        self.workers = workers
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # directories whose subdirectories are to be queued. Workers expand them: a file
        # operation's thread never takes a view lock here (it may hold others: docs/ARCHITECTURE.md,
        # "Locking order")
        self._expand: deque[Expansion] = deque()
        self._queue: deque[tuple[str, str]] = deque()  # (view to load, the directory it is in)
        self._queued: set[str] = set()
        self._seen: OrderedDict[str, Seen] = OrderedDict()
        self._walked: OrderedDict[str, str] = OrderedDict()  # views this prefetcher loaded -> their parent
        self._runs: OrderedDict[str, int] = OrderedDict()  # parent -> child misses in a row, each next to the one before
        # directories a recursive walk is going through (it listed one of their subdirectories
        # that this prefetcher loaded): a subdirectory of theirs that loads has its own queued at
        # once, so the walk finds the level under it loading before it gets there. One level
        # ahead only: a subtree the walk skips (find -prune, du --exclude) costs one level.
        self._recursive: OrderedDict[str, None] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # told of every view this prefetcher loads (the file system fetches a walked directory's
        # files ahead with it: dynlog/data/siblings.py)
        self.on_loaded: Callable[[str], None] | None = None
        self.loaded = 0  # views this prefetcher loaded (a file operation had not yet)
        self.triggers = 0

    # -- what file operations tell it -----------------------------------------------------------
    def listed(self, parent: str) -> None:
        """A file operation listed directory journal ``parent`` (readdir). If this prefetcher
        loaded that view, a walk has come down into it (find, du, ls -R): its subdirectories are
        queued now, without waiting for the walk's first miss there."""
        if not self.workers:
            return
        self._remember(parent, listed=time.monotonic())
        with self._lock:
            above = self._walked.get(parent)
            newly = above is not None and above not in self._recursive
            if above is not None:
                remember(self._recursive, above, None, MAX_WALKED)
                remember(self._recursive, parent, None, MAX_WALKED)
        if above is not None:
            self._ask_expand(parent, None)
            if newly:  # the siblings loaded before the walk was known to go down
                self._ask_expand(above, None, deep=True)

    def missed(self, jid: str, parent: str) -> None:
        """A file operation is about to load view ``jid``, met as a child of ``parent``. Called by
        ViewCache.get in the caller's thread: it only queues work."""
        if not self.workers:
            return
        now = time.monotonic()
        before = self._remember(parent, missed=(now, jid))
        if now - before.listed <= LISTED_WINDOW:
            self._ask_expand(parent, jid)
        elif now - before.missed <= MISS_WINDOW:
            self._ask_expand(parent, jid, after=before.child)
        else:
            with self._lock:
                self._runs.pop(parent, None)

    # -- choosing -------------------------------------------------------------------------------
    def _remember(self, parent: str, listed: float | None = None, missed: tuple[float, str] | None = None) -> "Seen":
        """Record a listing or a child's miss (when, which) in ``parent``; returns what was known before."""
        with self._lock:
            before = self._seen.get(parent, NEVER_SEEN)
            now = before._replace(listed=before.listed if listed is None else listed)
            if missed is not None:
                now = now._replace(missed=missed[0], child=missed[1])
            remember(self._seen, parent, now, MAX_PARENTS)
            return before

    def _ask_expand(self, parent: str, child: str | None, after: str | None = None, deep: bool = False) -> None:
        with self._lock:
            if self._closed or len(self._expand) >= MAX_QUEUED:
                return
            self._expand.append(Expansion(parent, child, after, deep))
            self._start_workers()
            self._wake.notify()

    def _siblings(self, parent: str, child: str | None, after: str | None = None) -> list[tuple[str, str]]:
        """The views to load for a walk through ``parent``: (journal, parent) of its subdirectories
        and hard-linked files not cached, after ``child``'s name, then from the start (all of them
        from the start for None). ``after``: the child missed before ``child``; nothing unless
        ``child`` is the next one after it not cached, and the miss before was such a step too (MISS_RUN): a
        walk in name order, as git status lstat()s its index. Lookups in a hashed directory such as
        .git/objects come in no order: with 250 subdirectories, one lookup in a few hundred lands
        next to the one before by chance, and two in a row hardly ever."""
        if self.cache.entries() > self.cache.entry_budget // 2:
            return []
        if after is not None:
            step = self._next_to(parent, after, child)
            with self._lock:
                run = self._runs.get(parent, 0) + 1 if step else 0
                remember(self._runs, parent, run, MAX_WALKED)
            if run < MISS_RUN:
                return []
        return [(jid, parent) for jid in self._children(parent, child) if self.cache.peek(jid) is None]

    def _next_to(self, parent: str, before: str, child: str | None) -> bool:
        """Whether no view between ``before`` and ``child`` in ``parent`` is left uncached."""
        ahead = self._children(parent, before)
        if child not in ahead:
            return False
        return all(self.cache.peek(jid) is not None for jid in ahead[:ahead.index(child)])

    def _expand_deep(self, parent: str) -> list[tuple[str, str]]:
        """A recursive walk is going through ``parent``: the views to load below those of its
        subdirectories that are cached already (loaded before the walk was known to go down)."""
        out: list[tuple[str, str]] = []
        for jid in self._children(parent, None):
            if jid.startswith("d/") and self.cache.peek(jid) is not None:
                out += self._siblings(jid, None)
        return out

    def _children(self, parent: str, child: str | None) -> list[str]:
        """The journals of ``parent``'s subdirectories and hard-linked files in name order: after
        ``child``'s name, wrapping round to the start (all of them for None)."""
        view = self.cache.peek(parent)
        if view is None:
            return []
        with view.lock:
            if child is None:
                return [jid for _, jid in view.pick_after("", _journal_of)]
            name = view.by_ino.get(schema.journal_ino(child))
            if name is None:
                return []
            return [jid for _, jid in view.pick_after(name, _journal_of, wrap=True)]

    def _enqueue(self, loads: list[tuple[str, str]], limit: int = WINDOW) -> None:
        with self._lock:
            added = 0
            for jid, parent in loads:
                if added >= limit or len(self._queue) >= MAX_QUEUED or self._closed:
                    break
                if jid not in self._queued:
                    self._queued.add(jid)
                    self._queue.append((jid, parent))
                    added += 1
            if added:
                self.triggers += 1
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
            task = self._next_task()
            if task is None:
                return
            try:
                if isinstance(task, Expansion):
                    self._run(task)
                else:
                    self._load(*task)
            except Exception as e:  # noqa: BLE001 - a failed guess costs nothing: the file operation will load it
                log.debug("prefetch.failed", task=str(task), error=str(e))

    def _next_task(self) -> "Expansion | tuple[str, str] | None":
        """The next expansion (first: they feed the loads), else the next view to load; None once
        closed."""
        with self._lock:
            while not self._expand and not self._queue and not self._closed:
                self._wake.wait()
            if self._closed:
                return None
            if self._expand:
                return self._expand.popleft()
            jid, parent = self._queue.popleft()
            self._queued.discard(jid)
            return jid, parent

    def _run(self, task: Expansion) -> None:
        if task.deep:
            self._enqueue(self._expand_deep(task.parent), MAX_QUEUED)
        else:
            self._enqueue(self._siblings(task.parent, task.child, task.after))

    def _load(self, jid: str, parent: str) -> None:
        if self.cache.peek(jid) is not None:
            return  # a file operation loaded it first
        log.debug("prefetch.load", jid=jid, parent=parent)
        with operation("prefetch"):
            self.cache.get(jid)
        with self._lock:
            self.loaded += 1
            remember(self._walked, jid, parent, MAX_WALKED)
            deeper = parent in self._recursive and jid.startswith("d/")
        if deeper:  # a recursive walk comes this way: one level ahead of it
            self._ask_expand(jid, None)
        if self.on_loaded is not None:
            self.on_loaded(jid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._expand.clear()
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
