"""One sqlite3 writer process for test_sqlite.py: ``sqlite_writer.py DB WRITER TXNS ROWS``.

Runs TXNS transactions, each ``BEGIN IMMEDIATE``, reading the highest sequence number and
inserting ROWS rows numbered after it, then ``COMMIT``. sqlite's own locking (fcntl byte-range
locks on the database file) is what keeps writers apart, with a busy timeout for waiting. Any
stale read (a page another writer changed, served from an outdated cache) shows up as a
duplicate ``seq``: the PRIMARY KEY refuses it and the writer reports it.

Prints one JSON line: committed and rolled-back transaction numbers, stale reads, errors.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time

BUSY_MS = 60_000


def main() -> None:
    db, writer, txns, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    out: dict = {"writer": writer, "committed": [], "rolled_back": [], "uncertain": [], "stale": [], "errors": []}
    con = sqlite3.connect(db, timeout=BUSY_MS / 1000, isolation_level=None)
    con.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
    # The default rollback journal. WAL would need the -shm file mapped into memory shared by
    # every process, which works on one host only: not across machines (nor across mounts).
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    t0 = time.monotonic()
    for t in range(txns):
        for attempt in range(20):
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:  # busy past the timeout: try again
                out["errors"].append(f"begin {t}: {e}")
                continue
            try:
                top = con.execute("SELECT coalesce(max(seq), 0) FROM log").fetchone()[0]
                for k in range(rows):
                    con.execute("INSERT INTO log (seq, writer, txn, k, payload) VALUES (?, ?, ?, ?, ?)",
                                (top + 1 + k, writer, t, k, f"{writer}:{t}:{k}:" + "x" * 200))
                con.execute("UPDATE counters SET n = n + 1 WHERE writer = ?", (writer,))
            except sqlite3.IntegrityError as e:
                out["stale"].append(f"txn {t}: {e} (max(seq) read as {top})")
                con.execute("ROLLBACK")
                out["rolled_back"].append(t)
                break
            except sqlite3.OperationalError as e:
                out["errors"].append(f"txn {t}: {e}")
                con.execute("ROLLBACK")
                out["rolled_back"].append(t)
                continue
            try:
                con.execute("COMMIT")
            except sqlite3.OperationalError as e:
                out["errors"].append(f"commit {t}: {e}")
                try:
                    con.execute("ROLLBACK")
                    out["rolled_back"].append(t)
                except sqlite3.OperationalError:
                    out["uncertain"].append(t)
                continue
            out["committed"].append(t)
            break
    out["seconds"] = round(time.monotonic() - t0, 2)
    con.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
