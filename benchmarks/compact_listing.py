#!/usr/bin/env python3
"""Cold listing of a directory with a long history, before and after ``dynlog compact``.

Builds one directory with ENTRIES names and EVENTS events of history (creates, then attribute
changes and renames over the same names), measures a cold ``ls`` of it from a fresh client
(requests and seconds), compacts, and measures again. A listing reads the latest snapshot and
the records after it, so after compact its cost follows the directory's size, not its history.

The history is generated straight into the journal (sealed, hash-chained records written with
batch writes, no conditional puts): building a million events through the file-system API would
take hours and measure the wrong thing. Everything else (listing, compact) is the real code.

    python benchmarks/compact_listing.py                          # quick: 10,000 entries, 100,000 events
    python benchmarks/compact_listing.py --entries 100000 --events 1000000
    python benchmarks/compact_listing.py --source aws:us-east-1/bench --endpoint-url http://localhost:8000

Not a test: it prints numbers (docs/HISTORY.md records a run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import stat
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynlog import schema  # noqa: E402
from dynlog.core.attrs import ROOT  # noqa: E402
from dynlog.core.filesystem import FileSystem  # noqa: E402
from dynlog.core.superblock import mkfs  # noqa: E402
from dynlog.history.compact import CompactOptions, Compactor  # noqa: E402
from dynlog.journal.events import Create, Event, Rename, SetAttr  # noqa: E402
from dynlog.journal.inode import Inode  # noqa: E402
from dynlog.journal.record import GENESIS_HASH, Record  # noqa: E402
from dynlog.store.base import Store  # noqa: E402
from dynlog.store.source import open_store  # noqa: E402

BATCH = 5000


def generate(store: Store, jid: str, entries: int, events: int, per_record: int, seed: int = 1) -> int:
    """Write the history of one directory; returns the number of records."""
    rng = random.Random(seed)
    first_ino = store.add("meta", (schema.FS_PARTITION, schema.INO_COUNTER), "n", entries) - entries + 1
    t0 = time.time_ns() - events * 1000  # one event a microsecond, ending now
    names = [f"file-{i:07d}" for i in range(entries)]
    alt = [False] * entries
    prev, seq, made, pending = GENESIS_HASH, 0, 0, []
    t_start = time.monotonic()

    def event(k: int) -> Event:
        ts = t0 + k * 1000
        if k < entries:
            return Create(names[k], Inode(ino=first_ino + k, mode=stat.S_IFREG | 0o644, atime=ts, mtime=ts, ctime=ts))
        i = rng.randrange(entries)
        cur = names[i] + (".old" if alt[i] else "")
        r = rng.random()
        if r < 0.2:
            alt[i] = not alt[i]
            return Rename(cur, names[i] + (".old" if alt[i] else ""), first_ino + i)
        if r < 0.4:
            return SetAttr(cur, {"mode": stat.S_IFREG | rng.choice([0o644, 0o600, 0o664]), "ctime": ts})
        return SetAttr(cur, {"size": rng.randrange(1 << 20), "mtime": ts, "ctime": ts}, None, 131072)

    k = 0
    while k < events:
        evs = tuple(event(k + j) for j in range(min(per_record, events - k)))
        k += len(evs)
        seq += 1
        rec = Record(jid, seq, evs, t0 + k * 1000, "bench", 0, "bench", prev).sealed()
        prev = rec.hash
        pending.append(rec.to_item())
        if len(pending) >= BATCH:
            store.batch_write("meta", puts=pending)
            made += len(pending)
            pending = []
            rate = made / max(1e-9, time.monotonic() - t_start)
            print(f"\r  generated {made} records ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    if pending:
        store.batch_write("meta", puts=pending)
    print(file=sys.stderr)
    return seq


def cold_listing(source: str, endpoint: str | None, path: str) -> dict[str, float]:
    store = open_store(source, endpoint_url=endpoint)
    fs = FileSystem(store, session="lister")
    try:
        list(fs.readdir("/"))  # the root: not what we measure
        store.metrics.reset()
        t = time.perf_counter()
        n = sum(1 for name, _ in fs.readdir(path) if name not in (".", ".."))
        secs = time.perf_counter() - t
        return {"entries": n, "requests": store.metrics.requests(), "seconds": round(secs, 3),
                "by_call": store.metrics.by_call()}
    finally:
        fs.close()
        store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=100_000, help="events of history, the creates included")
    ap.add_argument("--events-per-record", type=int, default=1, help="events grouped in one record (group commit)")
    ap.add_argument("--source", help="where (default: a new local: store in a temporary directory)")
    ap.add_argument("--endpoint-url")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.events < args.entries:
        ap.error("--events must be at least --entries (each entry is created once)")

    tmp = None
    source = args.source
    if source is None:
        tmp = tempfile.mkdtemp(prefix="dynlog-bench-")
        source = f"local:{tmp}/fs.db"
    store = open_store(source, endpoint_url=args.endpoint_url)
    mkfs(store, uid=0, gid=0)
    fs = FileSystem(store, session="bench")
    fs.mkdir("/big", 0o755, ROOT)
    jid = schema.dir_journal(fs.ns.resolve("/big").ino)
    fs.close()

    print(f"generating {args.entries:,} entries and {args.events:,} events in {jid} ({source})", file=sys.stderr)
    t = time.perf_counter()
    records = generate(store, jid, args.entries, args.events, args.events_per_record)
    gen_secs = time.perf_counter() - t

    before = cold_listing(source, args.endpoint_url, "/big")
    print(f"before compact: {before['requests']} requests, {before['seconds']} s", file=sys.stderr)

    store.metrics.reset()
    t = time.perf_counter()
    report = Compactor(store, CompactOptions(retain=0, settle=0)).run()
    compact_secs = time.perf_counter() - t
    after = cold_listing(source, args.endpoint_url, "/big")
    snap_parts = sum(1 for it in store.query_prefix("meta", jid, "s/"))
    store.close()

    result = {
        "source": source.split(":")[0], "entries": args.entries, "events": args.events, "records": records,
        "generate_seconds": round(gen_secs, 1),
        "before": before, "after": after,
        "compact": {"seconds": round(compact_secs, 1), "requests": report.requests,
                    "records_deleted": report.records_deleted, "record_bytes_deleted": report.record_bytes_deleted,
                    "snapshot_bytes": report.snapshot_bytes_written, "snapshot_parts": snap_parts},
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"directory: {args.entries:,} entries, {args.events:,} events in {records:,} records ({result['source']})")
        print(f"{'':24}{'requests':>10}{'seconds':>10}")
        print(f"{'cold listing, before':24}{before['requests']:>10}{before['seconds']:>10}")
        print(f"{'cold listing, after':24}{after['requests']:>10}{after['seconds']:>10}")
        print(f"compact: {compact_secs:.1f} s, {report.requests} requests; deleted {report.records_deleted:,} records "
              f"({report.record_bytes_deleted / 2**20:.1f} MiB); snapshot {report.snapshot_bytes_written / 2**20:.2f} MiB "
              f"in {snap_parts} parts")
    if tmp:
        try:
            os.remove(f"{tmp}/fs.db")
            for extra in ("-wal", "-shm"):
                if os.path.exists(f"{tmp}/fs.db{extra}"):
                    os.remove(f"{tmp}/fs.db{extra}")
            os.rmdir(tmp)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
