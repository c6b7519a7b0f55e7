#!/usr/bin/env python3
"""What relatime costs in a read-mostly workload, against noatime (and strictatime where the
core has it): three clients of one file system (FileSystem objects with their change feeds,
without a kernel), a writer that rewrites a tenth of the files each round and two readers that
read every file each round. Counts the store requests each policy makes, by kind, from the
stores' own metrics (the same counts on SQLite as on DynamoDB: units are computed alike).

    python benchmarks/atime_cost.py                       # local store in a temp dir
    python benchmarks/atime_cost.py --files 200 --rounds 5

docs/OPERATIONS.md ("atime") records a run and the choice of default it supports.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dynlog.core.attrs import ROOT  # noqa: E402
from dynlog.core.filesystem import FileSystem  # noqa: E402
from dynlog.core.superblock import mkfs  # noqa: E402
from dynlog.store.sqlite import SqliteStore  # noqa: E402


def run(policy: str, files: int, rounds: int, base: Path) -> dict[str, float]:
    path = base / f"{policy}.db"
    mkfs(SqliteStore(str(path)))
    clients = []
    for name in ("writer", "reader1", "reader2"):
        fs = FileSystem(SqliteStore(str(path)), session=name, atime_policy=policy)
        fs.start_services(f"/mnt/{name}")
        clients.append(fs)
    writer, *readers = clients
    try:
        writer.mkdir("/data", 0o755, ROOT)
        for i in range(files):
            fh = writer.create(f"/data/f{i}", 0o644, os.O_WRONLY, ROOT)
            writer.write(fh, os.urandom(4096), 0, ROOT)
            writer.release(fh, ROOT)
        time.sleep(1.0)
        for fs in clients:
            fs.store.metrics.reset()
        reads = 0
        for r in range(rounds):
            for i in range(r, files, 10):  # a tenth of the files change each round
                fh = writer.open(f"/data/f{i}", os.O_WRONLY, ROOT)
                writer.write(fh, os.urandom(4096), 0, ROOT)
                writer.release(fh, ROOT)
            for fs in readers:
                for i in range(files):
                    fh = fs.open(f"/data/f{i}", os.O_RDONLY, ROOT)
                    fs.read(fh, 4096, 0)
                    fs.release(fh, ROOT)
                    reads += 1
            time.sleep(0.5)  # let the feeds settle: their fast-forwards count too
        calls: Counter[str] = Counter()
        atime_puts = 0
        for fs in clients:
            calls.update(fs.store.metrics.by_call())
            atime_puts += fs.store.metrics.requests(op="atime")
        writes = sum(calls[c] for c in ("PutItem", "BatchWriteItem", "TransactWriteItems", "UpdateItem", "DeleteItem"))
        units = sum(fs.store.metrics.capacity() for fs in clients)
        return {"reads": reads, "requests": sum(calls.values()), "writes": writes, "atime_puts": atime_puts,
                "queries": calls["Query"], "units": units}
    finally:
        for fs in clients:
            fs.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--policies", default="noatime,relatime")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dynlog-atime-") as tmp:
        rows = {p: run(p, args.files, args.rounds, Path(tmp)) for p in args.policies.split(",")}
    print(f"\n{args.files} files, {args.rounds} rounds: the writer rewrites a tenth of them, two readers read all "
          f"of them (open, read, close), each round:\n")
    print("| policy | reads | requests | writes | atime puts | Query | capacity units | requests per read |")
    print("|---|---|---|---|---|---|---|---|")
    for p, r in rows.items():
        print(f"| {p} | {r['reads']} | {r['requests']} | {r['writes']} | {r['atime_puts']} | {r['queries']} | "
              f"{r['units']:.0f} | {r['requests'] / r['reads']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
