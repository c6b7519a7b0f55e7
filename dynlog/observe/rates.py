"""Per-second rates, latency quantiles and cost between two snapshots (snapshot.py): the
numbers ``dynlog stats`` shows each second."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..store.metrics import LATENCY_BOUNDS, quantile_of
from .cost import ON_DEMAND, Prices, cost_per_second

STREAM_PREFIX = "Streams."


@dataclass
class Rates:
    seconds: float
    ops: dict[str, float] = field(default_factory=dict)  # operations/s by kind
    requests: float = 0.0  # DynamoDB requests/s (capacity-billed; not Streams)
    by_call: dict[str, float] = field(default_factory=dict)
    by_op: dict[str, float] = field(default_factory=dict)  # requests/s by the operation that made them
    stream_reads: float = 0.0  # Streams requests/s
    read_units: float = 0.0
    write_units: float = 0.0
    p50_ms: float = 0.0  # request latency over the interval (bucket upper bounds)
    p99_ms: float = 0.0
    latency_samples: int = 0
    dollars_per_hour: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _delta(new: dict[str, float], old: dict[str, float]) -> dict[str, float]:
    return {k: v - old.get(k, 0) for k, v in new.items() if v - old.get(k, 0) > 0}


def between(a: dict[str, Any], b: dict[str, Any], prices: Prices = ON_DEMAND) -> Rates:
    """Rates from snapshot ``a`` to the later snapshot ``b`` of the same mount."""
    dt = max(1e-6, b["mono"] - a["mono"])
    calls = _delta(b["calls"], a["calls"])
    stream = sum(n for c, n in calls.items() if c.startswith(STREAM_PREFIX))
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    for call, h in b["latency"].items():
        if call.startswith(STREAM_PREFIX):
            continue
        old = a["latency"].get(call, {"counts": [0] * len(counts)})["counts"]
        for i, (n, o) in enumerate(zip(h["counts"], old)):
            counts[i] += n - o
    r = Rates(seconds=dt)
    r.ops = {k: n / dt for k, n in sorted(_delta(b["ops"], a["ops"]).items())}
    r.by_call = {k: n / dt for k, n in sorted(calls.items())}
    r.by_op = {k: n / dt for k, n in sorted(_delta(b.get("requests_by_op", {}), a.get("requests_by_op", {})).items())}
    r.stream_reads = stream / dt
    r.requests = (sum(calls.values()) - stream) / dt
    r.read_units = (b["read_units"] - a["read_units"]) / dt
    r.write_units = (b["write_units"] - a["write_units"]) / dt
    r.latency_samples = sum(counts)
    r.p50_ms = quantile_of(counts, 0.50) * 1000
    r.p99_ms = quantile_of(counts, 0.99) * 1000
    r.dollars_per_hour = cost_per_second(r.read_units, r.write_units, r.stream_reads, prices) * 3600
    return r


def totals_cost(s: dict[str, Any], prices: Prices = ON_DEMAND) -> float:
    """Dollars spent by the mount so far, at these prices."""
    stream = sum(n for c, n in s["calls"].items() if c.startswith(STREAM_PREFIX))
    return cost_per_second(s["read_units"], s["write_units"], stream, prices)
