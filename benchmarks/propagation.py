"""Propagation delay between real mounts: how long after mount A's create (or write+close)
returns does mount B see it? Runs on the embedded store and, given an endpoint, on DynamoDB.

    python benchmarks/propagation.py                       # local store only
    python benchmarks/propagation.py --endpoint http://127.0.0.1:8000   # and DynamoDB (Local)

Prints median, p95 and max over N changes per kind. Numbers, not asserts (docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dynlog.cli.main", *args], check=True, cwd=REPO, timeout=120)


def mount(global_args: list[str], source: str, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    cli(*global_args, "mount", source, str(path))


def wait_visible(check, timeout: float = 30.0) -> float:
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("change never arrived")
        time.sleep(0.002)
    return time.perf_counter() - t0


def measure(global_args: list[str], source: str, n: int) -> dict[str, list[float]]:
    base = Path(tempfile.mkdtemp(prefix="dynlog-prop-"))
    a, b = base / "a", base / "b"
    cli(*global_args, "mkfs", source)
    mount(global_args, source, a)
    mount(global_args, source, b)
    out: dict[str, list[float]] = {"create (listing)": [], "write+close (read)": []}
    try:
        os.listdir(b)
        time.sleep(1.0)  # the relay is elected, the followers are polling
        for i in range(n):
            name = f"f{i}"
            (a / name).write_bytes(b"")
            out["create (listing)"].append(wait_visible(lambda: name in os.listdir(b)))
            payload = f"version {i}".encode()
            (a / name).write_bytes(payload)
            out["write+close (read)"].append(wait_visible(lambda: (b / name).read_bytes() == payload))
    finally:
        for m in (a, b):
            subprocess.run(["fusermount3", "-u", str(m)], timeout=30)
    return out


def report(label: str, results: dict[str, list[float]]) -> None:
    for kind, xs in results.items():
        xs = sorted(xs)
        p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
        print(f"{label:24} {kind:22} n={len(xs):3d}  median {statistics.median(xs) * 1000:7.1f} ms"
              f"  p95 {p95 * 1000:7.1f} ms  max {xs[-1] * 1000:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--endpoint", help="DynamoDB endpoint (e.g. DynamoDB Local); omit for the local store only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        report("local (SQLite feed)", measure([], f"local:{d}/fs.db", args.n))
    if args.endpoint:
        table = "prop" + uuid.uuid4().hex[:10]
        report("DynamoDB (relay)", measure(["--endpoint-url", args.endpoint], f"aws:us-east-1/{table}", args.n))


if __name__ == "__main__":
    main()
