"""Request and capacity accounting: every store call is counted against the current
file-system operation, so cost per operation is measured rather than hoped for.

Also kept here, for ``dynlog stats`` and the Prometheus endpoint (dynlog/observe):
- request latency, as a histogram per store call (``@timed`` on the store's request methods);
- file-system operations by kind (every outermost ``operation()`` block counts one), process-wide.
"""

from __future__ import annotations

import bisect
import contextvars
import functools
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

_current_op: contextvars.ContextVar[str] = contextvars.ContextVar("dynlog_fs_op", default="other")


@dataclass
class Tally:
    requests: int = 0
    capacity: float = 0.0
    items: int = 0


# Latency bucket upper bounds, seconds: 50 us to 60 s, about 12 per decade (each 1.21x the last),
# so a quantile read from the histogram is within about 10% of the true one.
LATENCY_BOUNDS: tuple[float, ...] = tuple(round(5e-5 * 10 ** (i / 12), 9) for i in range(74))


class LatencyHistogram:
    """Counts of request latencies in LATENCY_BOUNDS buckets (the last one open-ended)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.total = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.total += 1
        self.sum += seconds

    def merge(self, other: "LatencyHistogram") -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total
        self.sum += other.sum

    def copy(self) -> "LatencyHistogram":
        h = LatencyHistogram()
        h.merge(self)
        return h

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the q-quantile (0 when empty)."""
        return quantile_of(self.counts, q)


def quantile_of(counts: list[int], q: float) -> float:
    """The q-quantile of bucket counts over LATENCY_BOUNDS (an upper bound; 0 when empty)."""
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return LATENCY_BOUNDS[min(i, len(LATENCY_BOUNDS) - 1)]
    return LATENCY_BOUNDS[-1]


# Capacity by kind: what on-demand bills as read request units and write request units.
READ_CALLS = frozenset({"GetItem", "Query", "BatchGetItem", "Scan"})
WRITE_CALLS = frozenset({"PutItem", "DeleteItem", "UpdateItem", "BatchWriteItem", "TransactWriteItems"})


@dataclass
class RequestMetrics:
    """Counts requests, items and consumed capacity units per (fs operation, store call), and
    the latency of each store call."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tallies: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))
    _latency: dict[str, LatencyHistogram] = field(default_factory=lambda: defaultdict(LatencyHistogram))

    def record(self, call: str, *, capacity: float = 0.0, items: int = 0) -> None:
        with self._lock:
            t = self._tallies[(_current_op.get(), call)]
            t.requests += 1
            t.capacity += capacity
            t.items += items
        scope = getattr(_timing, "stack", None)
        if scope:
            scope[-1].append((self, call))

    def observe(self, call: str, seconds: float) -> None:
        """One request of ``call`` took ``seconds`` (wall time, retries of it counted apart)."""
        with self._lock:
            self._latency[call].observe(seconds)

    def latency(self, call: str | None = None) -> LatencyHistogram:
        """The latency histogram of one store call, or of all of them merged."""
        out = LatencyHistogram()
        with self._lock:
            for c, h in self._latency.items():
                if call is None or c == call:
                    out.merge(h)
        return out

    def latencies(self) -> dict[str, LatencyHistogram]:
        with self._lock:
            return {c: h.copy() for c, h in self._latency.items()}

    def capacity_by_kind(self) -> tuple[float, float]:
        """(read units, write units) consumed so far."""
        with self._lock:
            reads = sum(t.capacity for (_, c), t in self._tallies.items() if c in READ_CALLS)
            writes = sum(t.capacity for (_, c), t in self._tallies.items() if c in WRITE_CALLS)
        return reads, writes

    def snapshot(self) -> dict[tuple[str, str], Tally]:
        with self._lock:
            return {k: Tally(v.requests, v.capacity, v.items) for k, v in self._tallies.items()}

    def reset(self) -> None:
        with self._lock:
            self._tallies.clear()
            self._latency.clear()

    def requests(self, op: str | None = None, call: str | None = None) -> int:
        """Total requests, optionally only for one fs operation and/or one store call."""
        with self._lock:
            return sum(
                t.requests
                for (o, c), t in self._tallies.items()
                if (op is None or o == op) and (call is None or c == call)
            )

    def by_call(self, op: str | None = None) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        with self._lock:
            for (o, c), t in self._tallies.items():
                if op is None or o == op:
                    out[c] += t.requests
        return dict(out)

    def by_op(self) -> dict[str, int]:
        """Requests by the file-system operation that made them: which operations a workload's
        bill comes from (``dynlog stats``)."""
        out: dict[str, int] = defaultdict(int)
        with self._lock:
            for (o, c), t in self._tallies.items():
                if not c.startswith("Streams."):
                    out[o] += t.requests
        return dict(out)

    def capacity(self, op: str | None = None) -> float:
        with self._lock:
            return sum(t.capacity for (o, _), t in self._tallies.items() if op is None or o == op)


_timing = threading.local()  # .stack: one list per @timed call in progress, of (metrics, call) recorded in it
F = TypeVar("F", bound=Callable[..., Any])


def timed(fn: F) -> F:
    """Time each call of a store request method: the requests it records (``record``) share its
    wall time. One decorator on the method that makes the request keeps the store's own code as
    it is; a method recording no request observes nothing. Not for generators."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        stack = getattr(_timing, "stack", None)
        if stack is None:
            stack = _timing.stack = []
        calls: list[tuple[RequestMetrics, str]] = []
        stack.append(calls)
        started = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            elapsed = time.perf_counter() - started
            stack.pop()
            for metrics, call in calls:
                metrics.observe(call, elapsed / len(calls))

    return wrapper  # type: ignore[return-value]


class OperationCounts:
    """File-system operations by kind in this process: each outermost ``operation()`` block is
    one (a flush inside a release is part of the release). Background work counts under its own
    names (``follow``, ``session``), so ``dynlog stats`` shows what the mount does when idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


OPERATIONS = OperationCounts()


class operation:  # noqa: N801 - used as ``with operation(name):``, as the function it was
    """Attribute the store requests made inside this block to file-system operation ``name``.

    A class rather than a ``@contextmanager`` generator: every FUSE callback enters one (about 18
    per small file tar writes), and a generator-based manager costs three times as much."""

    __slots__ = ("name", "_token")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        if _current_op.get() == "other":
            OPERATIONS.add(self.name)
        self._token = _current_op.set(self.name)

    def __exit__(self, *exc: object) -> None:
        _current_op.reset(self._token)


def current_operation() -> str:
    return _current_op.get()
