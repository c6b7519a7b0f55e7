"""The counters of a running mount as one JSON-able dict: what the stats socket serves and the
Prometheus endpoint renders. Everything is cumulative since the mount started; rates come from
the difference of two snapshots (rates.py), so a reader may come and go without resetting
anything in the daemon."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ..store.metrics import OPERATIONS


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def take(fs: Any, mountpoint: str = "", extra: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """A snapshot of ``fs`` (a FileSystem: read through its attributes, nothing is changed).
    ``extra``: more sections from the layers above the file system (the FUSE adapter's)."""
    m = fs.store.metrics
    reads, writes = m.capacity_by_kind()
    follower = getattr(fs, "follower", None)
    feed = getattr(follower, "feed", None)
    sess = getattr(fs, "session_item", None)
    snap: dict[str, Any] = {
        "time": time.time(),
        "mono": time.monotonic(),
        "source": fs.store.source,
        "mountpoint": mountpoint,
        "session": getattr(fs, "session", ""),
        "freshness": getattr(fs, "freshness", "ttl"),
        "ops": OPERATIONS.snapshot(),
        "calls": m.by_call(),
        "requests_by_op": m.by_op(),
        "read_units": reads,
        "write_units": writes,
        "latency": {c: {"counts": h.counts, "sum": h.sum} for c, h in m.latencies().items()},
        "follower": None,
        "heartbeat": None,
    }
    if follower is not None:
        snap["follower"] = {
            "healthy": bool(follower.healthy),
            "interval": follower.interval,
            "quiet": follower.cadence.quiet_for(),
            "confirmed_age": _finite(follower.confirmed_age()),
            "polls": follower.polls,
            "relay": bool(getattr(feed, "leading", False)),
        }
    if sess is not None:
        snap["heartbeat"] = {"interval": sess.next_interval, "lease": sess.lease_written, "beats": sess.beats}
    wb = getattr(fs, "wb", None)
    if wb is not None and wb.enabled:
        # leases held and operations queued now; the rest cumulative. ``lost``: acknowledged
        # operations a lost lease dropped (a conflict with another mount), ``rescues``: leases
        # found lost (docs/ARCHITECTURE.md, "A lease found lost")
        snap["writebehind"] = {"held": len(wb.held()), "pending": wb.pending(), "taken": wb.taken,
                               "revoked": wb.revoked, "records": wb.records, "ops": wb.ops, "lost": wb.lost,
                               "rescues": wb.rescues}
    if extra is not None:
        snap.update(extra())
    return snap
