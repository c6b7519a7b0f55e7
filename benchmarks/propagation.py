#!/usr/bin/env python3
"""Propagation delay between real mounts: how long a change made on one mount takes to show on
the others, on both stores.

Three ``dynlog mount -f`` processes of one file system (SQLite with its change feed; DynamoDB
Local with the relay: stream -> bulletin -> mounts). Mount A makes CHANGES changes, cycling
create (create+write+close), rename, write+close of an existing file, and delete; mounts B and
C are watched from the moment A's system call returns, polling every 5 ms: a listing for
create/rename/delete, a stat (size) for the write. Prints median, p95 and max per store and
kind. docs/SCALING.md ("Measured") records a run.

    python benchmarks/propagation.py                 # both stores, 48 changes each
    python benchmarks/propagation.py --changes 100 --stores sqlite

Not a test (tests/multimount/test_propagation.py checks the same with generous bounds). Needs
root (FUSE), and DynamoDB Local as scripts/install-deps installs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from dynamodb_local import FAKE_ENV, REGION, DynamoDBLocal, unique_table  # noqa: E402
from mounted.conftest import Mounter, Source, run_cli  # noqa: E402

POLL = 0.005
BOUND = 10.0
KINDS = ("create", "rename", "write", "delete")


def watch(roots: list[Path], check) -> list[float]:
    start = time.monotonic()
    took: list[float | None] = [None] * len(roots)

    def one(i: int) -> None:
        while time.monotonic() - start < BOUND:
            try:
                if check(roots[i]):
                    took[i] = time.monotonic() - start
                    return
            except OSError:
                pass
            time.sleep(POLL)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(roots))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(t is None for t in took):
        raise SystemExit(f"a change did not show within {BOUND} s")
    return [t for t in took if t is not None]


def measure(source: Source, base: Path, changes: int) -> dict[str, list[float]]:
    mounter = Mounter(base)
    try:
        a, b, c = (Path(mounter.mount(source).path) for _ in range(3))
        others = [b, c]
        os.mkdir(a / "p")
        watch(others, lambda r: "p" in os.listdir(r))
        for r in others:
            os.listdir(r / "p")
        time.sleep(1.0)  # let the relay be elected and the feeds settle
        delays: dict[str, list[float]] = {k: [] for k in KINDS}
        for i in range(changes // len(KINDS)):
            name, new = f"f{i}", f"g{i}"
            with open(a / "p" / name, "wb") as f:
                f.write(b"x" * 1000)
            delays["create"] += watch(others, lambda r: name in os.listdir(r / "p"))
            os.rename(a / "p" / name, a / "p" / new)
            delays["rename"] += watch(others, lambda r: (lambda ls: new in ls and name not in ls)(os.listdir(r / "p")))
            for r in others:
                os.stat(r / "p" / new)  # the observers' kernels cache the old size
            with open(a / "p" / new, "r+b") as f:
                f.write(b"y" * 5000)
            delays["write"] += watch(others, lambda r: os.stat(r / "p" / new).st_size == 5000)
            os.unlink(a / "p" / new)
            delays["delete"] += watch(others, lambda r: new not in os.listdir(r / "p"))
            time.sleep(0.05)
        return delays
    finally:
        mounter.cleanup()


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=48, help="changes per store (a multiple of 4)")
    ap.add_argument("--stores", default="sqlite,dynamodb")
    args = ap.parse_args()
    os.environ.update(FAKE_ENV)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dynlog-prop-") as tmp:
        base = Path(tmp)
        for store in args.stores.split(","):
            if store == "sqlite":
                src = Source(f"local:{base / 'fs.db'}", None, "sqlite")
                assert run_cli("mkfs", src.source).returncode == 0
                results["local (SQLite feed)"] = measure(src, base, args.changes)
            else:
                with DynamoDBLocal() as ddb:
                    src = Source(f"aws:{REGION}/{unique_table()}", ddb.endpoint, "dynamodb")
                    res = run_cli(*src.global_args(), "mkfs", src.source)
                    assert res.returncode == 0, res.stderr
                    results["DynamoDB Local (relay)"] = measure(src, base, args.changes)
    print(f"\nPropagation delay, 3 mounts, commit on A until B's and C's listing/stat shows it "
          f"({POLL * 1000:.0f} ms polling), ms:\n")
    print(f"| {'store':24s} | {'change':7s} | {'n':>3s} | {'median':>6s} | {'p95':>6s} | {'max':>6s} |")
    print(f"|{'-' * 26}|{'-' * 9}|{'-' * 5}|{'-' * 8}|{'-' * 8}|{'-' * 8}|")
    for store, delays in results.items():
        for kind in (*KINDS, "all"):
            ds = [d * 1000 for d in (sum(delays.values(), []) if kind == "all" else delays[kind])]
            print(f"| {store:24s} | {kind:7s} | {len(ds):3d} | {statistics.median(ds):6.0f} | {pct(ds, 0.95):6.0f} "
                  f"| {max(ds):6.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
