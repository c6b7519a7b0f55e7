"""sqlite3 on one database from two mounts at once, two writer processes on each, using nothing
but sqlite's own locking (journal_mode=DELETE; see sqlite_writer.py for why not WAL).

That is safe only if (1) fcntl locks are seen by every mount, (2) a lock release commits the
writer's pages first, and (3) taking a lock drops the kernel's cached pages and attributes of a
file another mount changed (FileSystem.setlk, DynlogOperations._set_lock). Afterwards:
integrity_check is ok from both mounts, every committed row is there exactly once, no writer
ever read a stale page (sqlite_writer.py turns one into a PRIMARY KEY clash) and no update
was lost (per-writer counters equal the committed transactions).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from .conftest import HERE, daemon_errors, until

TXNS = {"sqlite": 10, "dynamodb": 5}  # per writer (a transaction is ~25 lock and file requests)
ROWS = 5  # per transaction
WRITERS = {"a1": 0, "a2": 0, "b1": 1, "b2": 1}  # writer -> mount


def test_sqlite_from_two_mounts(fs_source, mount_all) -> None:
    txns = TXNS[fs_source.backend]
    mounts = mount_all(fs_source, 2)
    roots = [Path(m.path) for m in mounts]
    db = [r / "shared.db" for r in roots]
    con = sqlite3.connect(db[0], isolation_level=None)
    con.executescript("""
        PRAGMA journal_mode = DELETE;
        CREATE TABLE log (seq INTEGER PRIMARY KEY, writer TEXT NOT NULL, txn INTEGER NOT NULL,
                          k INTEGER NOT NULL, payload TEXT NOT NULL);
        CREATE TABLE counters (writer TEXT PRIMARY KEY, n INTEGER NOT NULL);
    """)
    con.executemany("INSERT INTO counters VALUES (?, 0)", [(w,) for w in WRITERS])
    con.close()
    until(lambda: db[1].exists(), what="database visible on B")

    procs = {w: subprocess.Popen([sys.executable, str(HERE / "sqlite_writer.py"), str(db[m]), w, str(txns), str(ROWS)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w, m in WRITERS.items()}
    results = {}
    try:
        for w, p in procs.items():
            out, err = p.communicate(timeout=110)
            assert p.returncode == 0, f"writer {w} failed:\n{err}"
            results[w] = json.loads(out)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    print(f"\nsqlite writers on {fs_source.backend}: "
          + ", ".join(f"{w} {r['seconds']} s ({len(r['errors'])} retries)" for w, r in results.items()))

    for w, r in results.items():
        assert r["stale"] == [], f"{w} read a stale page: {r['stale']}"
        assert r["uncertain"] == [], f"{w}: commits of unknown outcome {r['uncertain']}"
        # busy past the timeout may happen under load (and is retried); nothing else may
        assert [e for e in r["errors"] if "database is locked" not in e] == [], f"{w}: {r['errors']}"
        assert sorted(set(r["committed"])) == list(range(txns)), f"{w} could not commit: {r['errors']}"

    for path in db:  # read from both mounts, in fresh processes' views
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            seqs = [s for (s,) in con.execute("SELECT seq FROM log ORDER BY seq")]
            assert seqs == list(range(1, len(WRITERS) * txns * ROWS + 1))  # none lost, none twice
            for w, r in results.items():
                got = con.execute("SELECT txn, count(*), group_concat(k) FROM log WHERE writer = ? GROUP BY txn",
                                  (w,)).fetchall()
                assert {t for t, _, _ in got} == set(r["committed"])
                assert all(n == ROWS for _, n, _ in got), got
                assert con.execute("SELECT n FROM counters WHERE writer = ?", (w,)).fetchone()[0] == txns
        finally:
            con.close()
    assert db[0].read_bytes() == db[1].read_bytes()
    assert not Path(str(db[0]) + "-journal").exists() and not Path(str(db[1]) + "-journal").exists()
    for m in mounts:
        assert daemon_errors(m) == [], m.log_text()[-3000:]
