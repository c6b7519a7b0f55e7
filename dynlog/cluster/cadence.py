"""How often a mount asks the store whether anything changed: fast while changes flow, rarer
the longer it has been quiet.

Why: an idle mount that polls at a fixed 0.1 s pays for ten requests a second that almost
always answer "nothing", and that is most of the bill of a fleet that mostly sits idle
(docs/SCALING.md, "What an idle mount costs"). The rule here is the classic one for feeds:
after ``hold`` seconds of quiet, poll again after a fraction ``ratio`` of the time it has
been quiet, between ``fast`` and ``slow``. The expected staleness of a quiet feed is then
proportional to how long it has been quiet, and the cost of a long quiet is one request per
``slow``. A change seen in the feed, or the mount's own activity (``wake``), starts the quiet
over and brings the fast rate back at once.

Correctness never rests on these intervals: the core re-reads a directory's tail whenever the
follower cannot vouch for its freshness (``Follower.confirmed_at``), open() re-reads the
parent's tail regardless, and session and relay leases are written into their items with the
interval the writer commits to.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Backoff:
    """``interval(quiet)``: ``fast`` for the first ``hold`` seconds of quiet, then ``ratio``
    times the quiet beyond ``hold``, never more than ``slow``."""

    fast: float
    slow: float
    hold: float
    ratio: float = 1.0

    def interval(self, quiet: float) -> float:
        if quiet < self.hold:
            return self.fast
        return min(self.slow, max(self.fast, self.ratio * (quiet - self.hold)))

    def scaled(self, factor: float) -> "Backoff":
        """The same shape with every duration times ``factor`` (tests shorten the slow end)."""
        return Backoff(self.fast * factor, self.slow * factor, self.hold * factor, self.ratio)

    def requests_per_second_idle(self) -> float:
        """Polls per second once the quiet is long enough to reach ``slow`` (the idle floor)."""
        return 1.0 / self.slow


def _factor_from_env() -> float:
    """DYNLOG_IDLE_SCALE shrinks every idle interval (tests that cannot wait 30 s for a back-off)."""
    raw = os.environ.get("DYNLOG_IDLE_SCALE", "")
    try:
        v = float(raw) if raw else 1.0
    except ValueError:
        log.warning("cadence.bad_env", var="DYNLOG_IDLE_SCALE", value=raw)
        return 1.0
    return v if 0 < v <= 1 else 1.0


_SCALE = _factor_from_env()


def _idle(fast: float, slow: float, hold: float, ratio: float) -> Backoff:
    """A back-off whose idle end (hold, slow) follows DYNLOG_IDLE_SCALE; ``fast`` never changes,
    so freshness while changes flow is the same in tests and in production."""
    return Backoff(fast, max(fast, slow * _SCALE), hold * _SCALE, ratio)


# Timings, measured and argued in docs/SCALING.md ("Adaptive polling").
# A mount that reads its relay bulletin (DynamoDB, every mount but the relay): one Query per poll.
BULLETIN = _idle(fast=0.1, slow=30.0, hold=2.0, ratio=1.0)
# The relay (or a direct reader) polling DynamoDB Streams: GetRecords per shard. Streams reads are
# free of capacity units but not of load, and the first change after a quiet waits for this poll,
# so its slow end stays short.
STREAM = _idle(fast=0.1, slow=4.0, hold=2.0, ratio=1.0)
# The SQLite change table of a local: store: no money, only a read of a local file, so the back-off
# is gentle and its slow end stays well inside the core's 1 s freshness bound.
LOCAL = _idle(fast=0.02, slow=0.5, hold=2.0, ratio=0.1)
# The relay's lease renewal (a conditional PutItem): the lease it writes is the interval plus
# RELAY_LEASE_MARGIN, so a relay that dies idle is replaced within about that long.
RELAY_RENEW = _idle(fast=5.0, slow=60.0, hold=0.0, ratio=1.5)


# A DynamoDB Stream shows a commit some time after it is acknowledged. A stream read at wall
# time t is taken to cover the commits before t - STREAM_LAG (AWS documents "near real time";
# measured on DynamoDB Local in docs/SCALING.md). Conservative on purpose: a claim too old costs
# the core one Query, a claim too new would serve a stale listing.
STREAM_LAG = 0.5


class Cadence:
    """The activity clock of one poller and its back-off; ``wake`` is cheap and thread-safe."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff
        self.clock = clock
        self.last_activity = clock()
        self._kick = threading.Event()
        self._waiting = 0.0  # the interval of the wait in progress (0: none)

    def quiet_for(self) -> float:
        return max(0.0, self.clock() - self.last_activity)

    def interval(self) -> float:
        return self.backoff.interval(self.quiet_for())

    def activity(self) -> None:
        """Something changed (a notice, a stream record): the quiet starts over."""
        self.last_activity = self.clock()

    def wake(self) -> None:
        """The mount's own activity: quiet starts over, and a long wait in progress is cut short.
        A float store and, only while a long wait runs, one Event.set: no lock, no request."""
        self.last_activity = self.clock()
        if self._waiting > self.backoff.fast:
            self._kick.set()

    def kick(self) -> None:
        """End the wait in progress now (stop)."""
        self._kick.set()

    def wait(self, interval: float | None = None) -> bool:
        """Sleep ``interval`` (default: the current one) or until woken; True if woken."""
        t = self.interval() if interval is None else interval
        self._waiting = t
        try:
            woke = self._kick.wait(t)
        finally:
            self._waiting = 0.0
        self._kick.clear()
        return woke
