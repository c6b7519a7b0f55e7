"""The relay: one lease-elected reader of the DynamoDB Stream per file system, passing compact
invalidation notices to every mount through "bulletin" partitions of the meta table.

Why: DynamoDB advises at most two concurrent readers per stream shard, so mounts cannot all
read the stream. The relay reads it (and folds changes for its own mount), and writes each
batch of changed journal keys as one notice item to each of K bulletin partitions
(``nb/<k>``); a mount reads bulletin ``nb/<hash(session) % K>`` with one Query per poll.
Reads spread over K partition keys, so K grows with the number of mounts (docs/SCALING.md).
If the relay dies, its lease expires and another mount takes over; a mount that sees no
notices falls back on demand revalidation (the core re-reads a directory's tail when the
follower cannot vouch for it).

Idle cost (docs/SCALING.md, "Adaptive polling"): the relay renews its lease at an interval
that grows while quiet and writes that interval, plus a margin, into the lease, so renewals
are rare when idle. Mounts that are not the relay read the lease (one GetItem) only when it
is due to expire and only while they are active themselves: an idle file system needs no
relay, and an active mount takes the lease over within a poll of finding it expired.

Alone, no notices: a relay whose mount is the only live session publishes nothing, since nobody
reads the bulletin; a tar on a lone mount then pays no notice writes (docs/SCALING.md). The relay
learns of other mounts from the sessions it lists when it takes the lease and from the session
items' own writes, which come through the stream it reads anyway (a heartbeat's image carries
its lease). When a peer appears it publishes again, with a new ``since``: the batches it kept to
itself are a break in the chain, and every reader that covered less marks its views stale.

Freshness claims: every notice carries ``fr``, a wall time (relay's clock) before which every
committed change is in this or an earlier notice of the same relay, and ``since``, the time
from which that relay has read the stream without a break. A mount that meets a relay whose
``since`` is later than what it has covered so far marks every view stale (changes in the gap
may never have been announced) and carries on from there.

Items:  fs/relay    holder, exp (ns), since (ns)   the lease
        nb/<k>      <ts:020d>-<session>-<n>        ch (JSON [[path, name], ...]), fr, since (ns), ttl (epoch s)
"""

from __future__ import annotations

import json
import random
import time
import zlib

import structlog

from .. import schema
from ..errors import JournalConflict
from ..store.base import ABSENT, Change, ChangeBatch, ChangeFeed, Cond, Put, Store
from .cadence import BULLETIN, RELAY_RENEW, STREAM, STREAM_LAG, Backoff, Cadence
from .sessions import SessionInfo, list_sessions

log = structlog.get_logger(__name__)

RENEW_EVERY = RELAY_RENEW.fast  # seconds between renewals while changes flow
RELAY_LEASE_MARGIN = 10.0  # the lease runs this long past the next planned renewal
LEASE_NS = int((RENEW_EVERY + RELAY_LEASE_MARGIN) * 10**9)  # the lease while changes flow (15 s)
NOTICE_TTL = 600  # seconds; DynamoDB TTL (attribute ``ttl``) and compact remove old notices
OVERLAP_NS = 3 * 10**9  # re-read this much before the cursor: relays' clocks may differ a little
STREAM_LAG_NS = int(STREAM_LAG * 1e9)
READER_ACTIVE = 30.0  # a mount quiet longer than this does not check on the relay (nobody needs one)
LEASE_CHECK_MIN = 2.0  # seconds between lease checks of a mount that found the lease held
LEASE_CHECK_MAX = 600.0
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
        self.cadence: Cadence | None = None
        self._next_lease = 0.0  # monotonic time of the next renewal (leader) or check (reader)
        self._checked_once = False
        self._published = 0
        # Everything committed before this wall time (ns) has reached this mount (or been marked
        # lost). The follower marks the views it had before the feed began stale, so "now" is true.
        self._covered_ns = self.cursor_ns
        self._since_ns = 0  # as the relay: when our unbroken stream reading began
        self._gap = False  # the next batch reports lost (a relay change left a gap)
        # As the relay: other live sessions (id -> wall time their lease ends), and whether we
        # have kept a batch to ourselves since the last notice (so the next one needs a new since).
        self._peers: dict[str, int] = {}
        self._silent = False
        self.notices_skipped = 0  # batches not published because no other mount was alive (tests, stats)
        self.lease_checks = 0  # GetItems of the lease (tests, stats)
        self.renewals = 0

    # -- pacing -----------------------------------------------------------------------------------
    def attach(self, cadence: Cadence) -> None:
        """The follower's activity clock: lease renewals and checks back off with it."""
        self.cadence = cadence

    def backoff(self) -> Backoff:
        """The follower's poll back-off for this mount's current role."""
        return STREAM if self.leading else BULLETIN

    def _quiet(self) -> float:
        return self.cadence.quiet_for() if self.cadence is not None else 0.0

    def fresh_until_ns(self) -> int | None:
        """Wall time before which every committed change has been returned by poll (or reported
        lost): the follower's ``confirmed_at``."""
        return self._covered_ns

    # -- lease ------------------------------------------------------------------------------------
    def _lease_due(self) -> bool:
        if time.monotonic() < self._next_lease:
            return False
        # Only an active mount needs a relay; an idle one checks again when it wakes.
        return self.leading or not self._checked_once or self._quiet() < READER_ACTIVE

    def _renew_or_take(self) -> None:
        """Write the lease: renew ours, or take an absent or expired one."""
        interval = RELAY_RENEW.interval(self._quiet())
        now = time.time_ns()
        lease_ns = int((interval + RELAY_LEASE_MARGIN) * 1e9)
        since = self._since_ns if self.leading else now
        item = {"path": schema.FS_PARTITION, "name": RELAY, "holder": self.session, "exp": now + lease_ns,
                "since": since}
        when = (Cond("absent"), Cond("lt", "exp", now), Cond("eq", "holder", self.session))
        try:
            self.store.put(Put("meta", item, when))
        except JournalConflict:
            if self.leading:
                log.info("relay.lost_lease", session=self.session)
                self._stop_leading()
            self._next_lease = time.monotonic() + LEASE_CHECK_MIN
            return
        self.renewals += 1
        self._next_lease = time.monotonic() + interval
        if not self.leading:
            self._start_leading(now)

    def _check(self) -> None:
        """A mount that is not the relay: read the lease; take it if it is free or expired."""
        self._checked_once = True
        self.lease_checks += 1
        it = self.store.get("meta", (schema.FS_PARTITION, RELAY))
        now = time.time_ns()
        if it is None or int(it.get("exp", 0)) < now or it.get("holder") == self.session:
            self._renew_or_take()
            return
        until_exp = (int(it["exp"]) - now) / 1e9
        self._next_lease = time.monotonic() + min(LEASE_CHECK_MAX,
                                                  max(LEASE_CHECK_MIN, until_exp + random.uniform(0, 1)))

    def _start_leading(self, now: int) -> None:
        self.stream = self.store.change_feed()
        self.leading = self.stream is not None
        if self.leading:
            # The stream is read from LATEST: changes committed before now that the previous relay
            # never announced are lost to us. Report a gap (all views stale) and vouch from here.
            self._since_ns = now
            self._gap = True
            self._list_peers()
        log.info("relay.leading", session=self.session, ok=self.leading)

    def _stop_leading(self) -> None:
        self.leading = False
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        # Read the bulletin from now on; what came before, our own stream reading covered.
        self.cursor_ns = time.time_ns()

    # -- polling ----------------------------------------------------------------------------------
    def poll(self, timeout: float) -> ChangeBatch:
        if self._lease_due():
            if self.leading:
                self._renew_or_take()
            else:
                self._check()
        if self.leading and self.stream is not None:
            started = time.time_ns()
            batch = self.stream.poll(min(timeout, self.poll_interval))
            self._track_peers(batch)
            self._publish(batch, started)
            if len(batch.changes) < 1000:  # a full page may hide more: vouch only for a whole read
                self._covered_ns = max(self._covered_ns, started - STREAM_LAG_NS)
            return self._with_gap(batch)
        deadline = time.monotonic() + timeout
        while True:
            batch = self._with_gap(self._read_bulletin())
            if batch.changes or batch.lost or time.monotonic() >= deadline:
                return batch
            time.sleep(self.poll_interval)

    def _with_gap(self, batch: ChangeBatch) -> ChangeBatch:
        if not self._gap:
            return batch
        self._gap = False
        return ChangeBatch(batch.changes, True)

    # -- who reads the bulletin ------------------------------------------------------------------
    def _list_peers(self) -> None:
        """One Query of the sessions: the other mounts alive now, and until when."""
        self._peers = {s.id: _lease_end(s) for s in list_sessions(self.store) if s.id != self.session}

    def _track_peers(self, batch: ChangeBatch) -> None:
        """Follow the session items through the stream: a beat's image extends its lease, a
        removal ends it. A change without an image (a keys-only feed) is listed again."""
        sessions = [c for c in batch.changes if c.path == schema.SESSIONS and c.name != self.session]
        if any(c.item is None for c in sessions):
            self._list_peers()
            return
        for c in sessions:
            self._peers[c.name] = _lease_end(SessionInfo.from_item(c.item))

    def alone(self) -> bool:
        """No other mount's session is alive: nobody reads the bulletin. (Ended sessions stay in
        ``_peers`` until the next listing; this stops at the first live one.)"""
        now = time.time_ns()
        return not any(end > now for end in self._peers.values())

    def _publish(self, batch: ChangeBatch, started_ns: int) -> None:
        # journal records, and write-behind asks (wb/<holder>: the holder learns of them at once)
        keys = sorted({(c.path, c.name) for c in batch.changes if c.name.startswith("j/") or c.path.startswith("wb/")})
        if not keys:
            return
        if self.alone():
            self._silent = True
            self.notices_skipped += 1
            return
        if self._silent:
            # Batches before this read went unannounced; every commit after its start is in this
            # batch or a later one, so the unbroken chain begins here.
            self._silent = False
            self._since_ns = started_ns
        fresh_ns = started_ns - STREAM_LAG_NS
        self._published += 1
        now = time.time_ns()
        name = f"{now:020d}-{self.session}-{self._published}"
        body = json.dumps(keys, separators=(",", ":"))
        fr = fresh_ns if len(batch.changes) < 1000 else self._covered_ns
        items = [{"path": bulletin(k), "name": name, "ch": body, "fr": fr, "since": self._since_ns,
                  "ttl": now // 10**9 + NOTICE_TTL} for k in range(self.copies)]
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
            self._vouch(it)
        self.cursor_ns = newest
        cutoff = self.cursor_ns - 2 * OVERLAP_NS
        if len(self.seen) > 1000:
            self.seen = {k: v for k, v in self.seen.items() if v >= cutoff}
        return ChangeBatch(changes)

    def _vouch(self, notice: dict) -> None:
        """Advance what we have covered by a notice's claim, or report a gap."""
        if "fr" not in notice or "since" not in notice:
            return  # a notice of an older relay: it claims nothing
        fr, since = int(notice["fr"]), int(notice["since"])
        if since > self._covered_ns:
            # That relay's chain begins after what we have covered: changes in between may never
            # have been announced. Every view is marked stale (re-read when next used, which is
            # after ``since``), and from ``since`` on the chain is unbroken.
            self._gap = True
            self._covered_ns = max(fr, since)
        elif fr > self._covered_ns:
            self._covered_ns = fr

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.leading:
            try:  # hand the lease over at once rather than after it expires
                self.store.put(Put("meta", {"path": schema.FS_PARTITION, "name": RELAY, "holder": "", "exp": 0},
                                   (Cond("eq", "holder", self.session),)))
            except JournalConflict:
                pass


def _lease_end(s: SessionInfo) -> int:
    """Wall time (ns) at which a session's last beat stops vouching for it."""
    return s.heartbeat + int(s.lease() * 1e9)


__all__ = ["RelayFeed", "ABSENT"]
