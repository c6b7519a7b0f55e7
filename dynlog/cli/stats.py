"""``dynlog stats MOUNTPOINT``: what a mount does and costs, refreshed every second (in the
spirit of ``juicefs stats``). Reads the mount daemon's stats socket (dynlog/observe/server.py);
asks the store nothing."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ..errors import QuietError
from ..observe.cost import ON_DEMAND
from ..observe.rates import Rates, between
from ..observe.server import find_socket, read_snapshot


def _fmt(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def frame(rates: Rates, snap: dict[str, Any]) -> str:
    """One view of the rates over the last interval, for a terminal."""
    ops = "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(rates.ops.items(), key=lambda kv: -kv[1])) or "none"
    calls = ", ".join(f"{k} {_fmt(v)}" for k, v in rates.by_call.items() if not k.startswith("Streams.")) or "none"
    by_op = "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(rates.by_op.items(), key=lambda kv: -kv[1])) or "none"
    role = "relay" if (snap.get("follower") or {}).get("relay") else snap.get("freshness", "")
    out = [
        f"dynlog stats {snap.get('mountpoint', '')}  ({snap.get('source', '')}, session {snap.get('session', '')}, "
        f"{role})  over {rates.seconds:.1f} s",
        f"  operations/s  {ops}",
        f"  requests/s    {_fmt(rates.requests)}  ({calls});  stream reads/s {_fmt(rates.stream_reads)}",
        f"  by operation  {by_op}",
        f"  units/s       read {_fmt(rates.read_units)}, write {_fmt(rates.write_units)}",
        f"  latency       p50 {rates.p50_ms:.1f} ms, p99 {rates.p99_ms:.1f} ms  ({rates.latency_samples} requests)",
        f"  cost          ${rates.dollars_per_hour:.6f}/hour  (on-demand {ON_DEMAND.region}, prices of {ON_DEMAND.as_of})",
    ]
    f, hb = snap.get("follower"), snap.get("heartbeat")
    parts = []
    if f:
        age = f.get("confirmed_age")
        parts.append(f"poll every {f['interval']:.2f} s (quiet {f['quiet']:.0f} s)")
        parts.append("confirmed " + (f"{age:.1f} s ago" if age is not None else "never") + ("" if f["healthy"] else ", FEED FAILING"))
    if hb:
        parts.append(f"heartbeat every {hb['interval']:.0f} s (lease {hb['lease']:.0f} s)")
    if parts:
        out.append("  freshness     " + ", ".join(parts))
    wb = snap.get("writebehind")
    if wb:
        out.append(f"  write-behind  {wb['held']} leases held, {wb['pending']} operations queued; since the mount: "
                   f"{wb['ops']} operations in {wb['records']} records, leases taken {wb['taken']}, "
                   f"revoked {wb['revoked']}, found lost {wb['rescues']} ({wb['lost']} operations dropped)")
    return "\n".join(out)


def cmd_stats(args: argparse.Namespace) -> int:
    mountpoint = os.path.abspath(args.mountpoint)
    path = find_socket(mountpoint)
    if path is None:
        raise QuietError(f"no dynlog mount daemon serves stats for {mountpoint} (is it a dynlog mount?)")
    try:
        prev = read_snapshot(path)
    except OSError as e:
        raise QuietError(f"{path}: {e.strerror or e}") from None
    shown = 0
    tty = sys.stdout.isatty() and not args.json and not args.once
    try:
        while True:
            time.sleep(args.interval)
            try:
                snap = read_snapshot(path)
            except OSError as e:
                raise QuietError(f"the mount daemon went away ({e.strerror or e})") from None
            rates = between(prev, snap)
            if args.json:
                print(json.dumps({"rates": rates.to_json(), "totals": {k: snap.get(k, {}) for k in
                                  ("ops", "calls", "requests_by_op", "read_units", "write_units")},
                                  "follower": snap.get("follower"), "heartbeat": snap.get("heartbeat"),
                                  "fuse": snap.get("fuse"),
                                  **({"writebehind": snap["writebehind"]} if "writebehind" in snap else {})}),
                      flush=True)
            else:
                text = frame(rates, snap)
                print(("\x1b[H\x1b[2J" + text) if tty else text + "\n", flush=True)
            prev = snap
            shown += 1
            if args.once or (args.count and shown >= args.count):
                return 0
    except KeyboardInterrupt:
        return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="live view of a mount: operations, DynamoDB requests, units, latency, cost",
                       description="Show what the mount at MOUNTPOINT does each second: operations by kind, "
                                   "DynamoDB requests and stream reads, read and write units, p50/p99 request "
                                   "latency, and the cost per hour at on-demand prices. Reads the mount daemon's "
                                   "stats socket; the store is not asked anything.")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="one interval, then exit")
    p.add_argument("-n", "--count", type=int, default=0, help="exit after this many refreshes")
    p.add_argument("--json", action="store_true", help="JSON lines (rates and totals) instead of the view")
    p.set_defaults(func=cmd_stats)
