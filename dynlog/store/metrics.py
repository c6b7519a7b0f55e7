"""Request and capacity accounting: every store call is counted against the current
file-system operation, so cost per operation is measured rather than hoped for."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator

_current_op: contextvars.ContextVar[str] = contextvars.ContextVar("dynlog_fs_op", default="other")


@dataclass
class Tally:
    requests: int = 0
    capacity: float = 0.0
    items: int = 0


@dataclass
class RequestMetrics:
    """Counts requests, items and consumed capacity units per (fs operation, store call)."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tallies: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))

    def record(self, call: str, *, capacity: float = 0.0, items: int = 0) -> None:
        with self._lock:
            t = self._tallies[(_current_op.get(), call)]
            t.requests += 1
            t.capacity += capacity
            t.items += items

    def snapshot(self) -> dict[tuple[str, str], Tally]:
        with self._lock:
            return {k: Tally(v.requests, v.capacity, v.items) for k, v in self._tallies.items()}

    def reset(self) -> None:
        with self._lock:
            self._tallies.clear()

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

    def capacity(self, op: str | None = None) -> float:
        with self._lock:
            return sum(t.capacity for (o, _), t in self._tallies.items() if op is None or o == op)


@contextlib.contextmanager
def operation(name: str) -> Iterator[None]:
    """Attribute the store requests made inside this block to file-system operation ``name``."""
    token = _current_op.set(name)
    try:
        yield
    finally:
        _current_op.reset(token)


def current_operation() -> str:
    return _current_op.get()
