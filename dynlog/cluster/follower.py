"""Stream-driven freshness: follow the store's change feed, fold new records into cached
views (or mark them stale and fast-forward them), and tell the kernel what changed.

The feed is the SQLite ``changes`` table for ``local:`` stores and DynamoDB Streams for
``aws:`` ones. When the feed reports lost records (trimmed, expired), every view is marked
stale. The TTL revalidation in the namespace stays as the floor under all of this.
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
from ..store.base import ChangeBatch, ChangeFeed
from ..store.metrics import operation

log = structlog.get_logger(__name__)

# (journal id, names in it that changed); names empty = "anything in it may have changed";
# journal id None = "everything may have changed".
Invalidate = Callable[[str | None, list[str]], None]


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
                 poll_timeout: float = 0.5) -> None:
        self.cache = cache
        self.feed = feed
        self.on_invalidate = on_invalidate or (lambda jid, names: None)
        self.poll_timeout = poll_timeout
        self.delays_ms: deque[float] = deque(maxlen=10_000)  # commit-to-applied, for docs and bench
        self.healthy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dynlog-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.feed.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with operation("follow"):
                    batch = self.feed.poll(self.poll_timeout)
                    self.handle(batch)
                self.healthy = True
                failures = 0
            except DynlogError as e:
                self.healthy = False
                failures += 1
                log.warning("follower.poll_failed", error=str(e), failures=failures)
                self.cache.invalidate_all()
                self._stop.wait(min(5.0, 0.2 * 2**failures))

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
