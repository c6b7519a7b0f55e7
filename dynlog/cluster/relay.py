"""The relay: one lease-elected reader of the DynamoDB Stream per file system, passing compact
invalidation notices to every mount through "bulletin" partitions of the meta table.

Why: DynamoDB advises at most two concurrent readers per stream shard, so mounts cannot all
read the stream. The relay reads it (and folds changes for its own mount), and writes each
batch of changed journal keys as one notice item to each of K bulletin partitions
(``nb/<k>``); a mount reads bulletin ``nb/<hash(session) % K>`` with one Query per poll.
Reads spread over K partition keys, so K grows with the number of mounts (docs/SCALING.md).
If the relay dies, its lease expires and another mount takes over; a mount that sees no
notices falls back on TTL revalidation.

Items:  fs/relay    holder, exp (ns)             the lease
        nb/<k>      <ts:020d>-<session>-<n>      ch (JSON [[path, name], ...]), ttl (epoch s)
"""

from __future__ import annotations

import json
import time
import zlib

import structlog

from .. import schema
from ..errors import JournalConflict
from ..store.base import ABSENT, Change, ChangeBatch, ChangeFeed, Cond, Put, Store

log = structlog.get_logger(__name__)

LEASE_NS = 15 * 10**9
RENEW_EVERY = 5.0
NOTICE_TTL = 600  # seconds; DynamoDB TTL (attribute ``ttl``) and compact remove old notices
OVERLAP_NS = 3 * 10**9  # re-read this much before the cursor: relays' clocks may differ a little
RELAY = "relay"


def bulletin(k: int) -> str:
    return f"nb/{k}"


class RelayFeed(ChangeFeed):
    """A change feed for one mount: the stream itself while this mount holds the relay lease,
    the bulletin otherwise."""

    def __init__(self, store: Store, session: str, copies: int = 1, poll_interval: float = 0.1) -> None:
        self.store = store
        self.session = session
        self.copies = max(1, copies)
        self.poll_interval = poll_interval
        self.my_bulletin = bulletin(zlib.crc32(session.encode()) % self.copies)
        self.cursor_ns = time.time_ns()
        self.seen: dict[str, int] = {}
        self.stream: ChangeFeed | None = None
        self.leading = False
        self._lease_checked = 0.0
        self._published = 0

    # -- lease ----------------------------------------------------------------------------------------
    def _try_lease(self) -> None:
        now = time.time_ns()
        item = {"path": schema.FS_PARTITION, "name": RELAY, "holder": self.session, "exp": now + LEASE_NS}
        when = (Cond("absent"), Cond("lt", "exp", now), Cond("eq", "holder", self.session))
        try:
            self.store.put(Put("meta", item, when))
        except JournalConflict:
            if self.leading:
                log.info("relay.lost_lease", session=self.session)
            self.leading = False
            if self.stream is not None:
                self.stream.close()
                self.stream = None
            return
        if not self.leading:
            self.stream = self.store.change_feed()
            self.leading = self.stream is not None
            log.info("relay.leading", session=self.session, ok=self.leading)

    # -- polling ----------------------------------------------------------------------------------------
    def poll(self, timeout: float) -> ChangeBatch:
        if time.monotonic() - self._lease_checked > RENEW_EVERY:
            self._lease_checked = time.monotonic()
            self._try_lease()
        if self.leading and self.stream is not None:
            batch = self.stream.poll(min(timeout, self.poll_interval))
            self._publish(batch)
            # Notices from a previous relay may still be unread: read the bulletin as well.
            return self._merge(batch, self._read_bulletin())
        deadline = time.monotonic() + timeout
        while True:
            batch = self._read_bulletin()
            if batch.changes or time.monotonic() >= deadline:
                return batch
            time.sleep(self.poll_interval)

    def _merge(self, a: ChangeBatch, b: ChangeBatch) -> ChangeBatch:
        return ChangeBatch(a.changes + b.changes, a.lost or b.lost)

    def _publish(self, batch: ChangeBatch) -> None:
        keys = sorted({(c.path, c.name) for c in batch.changes if c.name.startswith("j/")})
        if not keys:
            return
        self._published += 1
        now = time.time_ns()
        name = f"{now:020d}-{self.session}-{self._published}"
        body = json.dumps(keys, separators=(",", ":"))
        items = [{"path": bulletin(k), "name": name, "ch": body, "ttl": now // 10**9 + NOTICE_TTL}
                 for k in range(self.copies)]
        self.seen[name] = now  # our own notice: already applied from the stream
        self.store.batch_write("meta", puts=items)

    def _read_bulletin(self) -> ChangeBatch:
        start = f"{max(0, self.cursor_ns - OVERLAP_NS):020d}"
        changes: list[Change] = []
        newest = self.cursor_ns
        for it in self.store.query("meta", self.my_bulletin, start=start):
            name = it["name"]
            if name in self.seen:
                continue
            ts = int(name.split("-", 1)[0])
            self.seen[name] = ts
            newest = max(newest, ts)
            changes.extend(Change(p, n) for p, n in json.loads(it["ch"]))
        self.cursor_ns = newest
        cutoff = self.cursor_ns - 2 * OVERLAP_NS
        if len(self.seen) > 1000:
            self.seen = {k: v for k, v in self.seen.items() if v >= cutoff}
        return ChangeBatch(changes)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.leading:
            try:  # hand the lease over at once rather than after it expires
                self.store.put(Put("meta", {"path": schema.FS_PARTITION, "name": RELAY, "holder": "", "exp": 0},
                                   (Cond("eq", "holder", self.session),)))
            except JournalConflict:
                pass


__all__ = ["RelayFeed", "ABSENT"]
