#!/usr/bin/env python3
"""What an idle mount costs, counted from outside: two real mounts of one file system on
DynamoDB Local, each talking to it through its own counting proxy (dynlog.faults.proxy), idle
for --idle seconds, then counted for --window seconds of quiet. Then propagation: after a
quiet of --quiet seconds, how long a create on A takes to show in B's listing (B lists every
5 ms from the moment A's close returns), and the same while changes flow.

    python benchmarks/idle_cost.py                        # this checkout
    python benchmarks/idle_cost.py --rev 52c6d81          # the mount daemons of another revision
    python benchmarks/idle_cost.py --idle 40 --window 30 --quiet 20 --rounds 3

Prints requests/s per mount (DynamoDB requests: capacity-billed operations; stream reads:
GetRecords, GetShardIterator, DescribeStream, ListStreams) and the propagation delays.
docs/SCALING.md ("What an idle mount costs") records a run. Not a test: tests/cluster/test_idle.py
asserts the behaviour with counts. Needs root (FUSE) and DynamoDB Local (scripts/install-deps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from dynamodb_local import FAKE_ENV, REGION, DynamoDBLocal, unique_table  # noqa: E402

from dynlog.faults.proxy import FaultProxy  # noqa: E402
from dynlog.fuse import mounttab  # noqa: E402

STREAM_OPS = {"GetRecords", "GetShardIterator", "DescribeStream", "ListStreams"}
POLL = 0.005


@dataclass
class Daemon:
    path: Path
    proc: subprocess.Popen
    proxy: FaultProxy


def mount(code: Path, source: str, endpoint: str, path: Path, log: Path) -> subprocess.Popen:
    """``dynlog mount -f`` from the checkout at ``code`` (its own modules, not this one's)."""
    path.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(code))
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "dynlog.cli.main", "--endpoint-url", endpoint, "mount", "-f",
                                 source, str(path)], stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                cwd=str(code), env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = mounttab.find_mount(str(path))
        if entry is not None and entry.is_fuse:
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"mount exited: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    raise SystemExit("mount did not come up")


def split(counts: dict[str, int]) -> tuple[int, int]:
    """(DynamoDB requests, stream reads) in a proxy's counts."""
    stream = sum(n for op, n in counts.items() if op in STREAM_OPS)
    ddb = sum(n for op, n in counts.items() if not op.startswith("fault.") and op not in STREAM_OPS and op)
    return ddb, stream


def shows(root: Path, name: str, bound: float = 60.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < bound:
        if name in os.listdir(root):
            return time.monotonic() - start
        time.sleep(POLL)
    raise SystemExit(f"{name} did not show within {bound} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=40.0, help="seconds of quiet before counting")
    ap.add_argument("--window", type=float, default=30.0, help="seconds counted")
    ap.add_argument("--quiet", type=float, default=20.0, help="quiet before each propagation probe")
    ap.add_argument("--rounds", type=int, default=3, help="propagation probes after a quiet")
    ap.add_argument("--active", type=int, default=20, help="creates measured while changes flow")
    ap.add_argument("--rev", default=None, help="run the mount daemons of this git revision (a worktree)")
    args = ap.parse_args()
    os.environ.update(FAKE_ENV)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    with tempfile.TemporaryDirectory(prefix="dynlog-idle-") as tmp:
        base = Path(tmp)
        code = REPO
        if args.rev:
            code = base / "code"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(code), args.rev], check=True,
                           capture_output=True)
        daemons: list[Daemon] = []
        try:
            with DynamoDBLocal() as ddb:
                source = f"aws:{REGION}/{unique_table()}"
                res = subprocess.run([sys.executable, "-m", "dynlog.cli.main", "--endpoint-url", ddb.endpoint, "mkfs",
                                      source], capture_output=True, text=True, cwd=str(REPO))
                assert res.returncode == 0, res.stderr
                for name in ("a", "b"):
                    proxy = FaultProxy(ddb.endpoint).start()
                    proc = mount(code, source, proxy.endpoint, base / name, base / f"{name}.log")
                    daemons.append(Daemon(base / name, proc, proxy))
                a, b = daemons
                os.mkdir(a.path / "p")
                shows(b.path, "p")
                os.listdir(b.path / "p")  # B caches p's view
                print(f"idle {args.idle:.0f} s ...", flush=True)
                time.sleep(args.idle)
                before = [split(d.proxy.counts) for d in daemons]
                time.sleep(args.window)
                after = [split(d.proxy.counts) for d in daemons]
                print(f"\nIdle cost ({'rev ' + args.rev if args.rev else 'this checkout'}), counted for "
                      f"{args.window:.0f} s after {args.idle:.0f} s of quiet:\n")
                print("| mount | DynamoDB requests/s | stream reads/s |")
                print("|---|---|---|")
                tot = [0.0, 0.0]
                for name, x, y in zip("AB", before, after):
                    r, s = (y[0] - x[0]) / args.window, (y[1] - x[1]) / args.window
                    tot[0] += r
                    tot[1] += s
                    print(f"| {name} | {r:.3f} | {s:.3f} |")
                print(f"| both | {tot[0]:.3f} | {tot[1]:.3f} |")

                quiet = []
                for i in range(args.rounds):
                    time.sleep(args.quiet)
                    (a.path / "p" / f"q{i}").write_bytes(b"x")
                    quiet.append(shows(b.path / "p", f"q{i}"))
                active = []
                for i in range(args.active):
                    (a.path / "p" / f"a{i}").write_bytes(b"x")
                    active.append(shows(b.path / "p", f"a{i}"))
                    time.sleep(0.05)
                print(f"\nA's create -> B's listing, after {args.quiet:.0f} s of quiet (B lists every {POLL * 1000:.0f} "
                      f"ms): {', '.join(f'{q * 1000:.0f}' for q in quiet)} ms")
                print(f"while changes flow ({args.active} creates, 50 ms apart): median "
                      f"{statistics.median(active) * 1000:.0f} ms, max {max(active) * 1000:.0f} ms")
                print(f"proxy counts: A {dict(sorted(a.proxy.counts.items()))}\n              B "
                      f"{dict(sorted(b.proxy.counts.items()))}")
        finally:
            for d in reversed(daemons):
                mounttab.force_unmount(str(d.path))
                try:
                    d.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
                d.proxy.stop()
            if args.rev:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(code)],
                               capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
