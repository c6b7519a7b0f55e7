"""sqlite3 on the mount: a database written in several transactions (rollback journal and WAL),
checked with PRAGMA integrity_check, read by the sqlite3 command-line shell, copied out and
checked again."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from .treeutil import run

ROWS_PER_TX = 500
TRANSACTIONS = 8


def fill(db: Path, journal_mode: str) -> str:
    """Write TRANSACTIONS transactions of ROWS_PER_TX rows (plus updates, deletes, an index);
    return a digest of the final contents."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        assert con.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0] == journal_mode
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB, n REAL)")
        for tx in range(TRANSACTIONS):
            con.execute("BEGIN")
            con.executemany("INSERT INTO t (name, payload, n) VALUES (?, ?, ?)",
                            [(f"row-{tx}-{i}", hashlib.sha256(f"{tx}/{i}".encode()).digest() * (1 + i % 40), i / 7)
                             for i in range(ROWS_PER_TX)])
            con.execute("UPDATE t SET n = n * 2 WHERE id % 13 = ?", (tx % 13,))
            con.execute("DELETE FROM t WHERE id % 97 = ?", (tx,))
            con.execute("COMMIT")
            if tx == 3:
                con.execute("CREATE INDEX t_name ON t (name)")
        # a transaction rolled back leaves nothing behind
        con.execute("BEGIN")
        con.execute("DELETE FROM t")
        con.execute("ROLLBACK")
        if journal_mode == "wal":
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return digest(con)
    finally:
        con.close()


def digest(con: sqlite3.Connection) -> str:
    h = hashlib.sha256()
    for row in con.execute("SELECT id, name, payload, n FROM t ORDER BY id"):
        h.update(repr(row).encode())
    return h.hexdigest()


def check(db: Path) -> tuple[str, int, str]:
    con = sqlite3.connect(db)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        return ok, con.execute("SELECT count(*) FROM t").fetchone()[0], digest(con)
    finally:
        con.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_sqlite_database(mnt: Path, tmp_path: Path, journal_mode: str) -> None:
    db = mnt / "test.db"
    want = fill(db, journal_mode)
    ok, count, got = check(db)
    assert ok == "ok" and got == want
    assert TRANSACTIONS * ROWS_PER_TX * 0.9 < count < TRANSACTIONS * ROWS_PER_TX
    # no journal left behind after the last connection closed
    assert sorted(os.listdir(mnt)) == ["test.db"]
    # the command-line shell agrees
    out = run("sqlite3", db, "PRAGMA integrity_check; SELECT count(*) FROM t; PRAGMA journal_mode;").stdout.split()
    assert out == [b"ok", str(count).encode(), journal_mode.encode()]
    # a copy taken out of the mount is the same database
    shutil.copyfile(db, tmp_path / "copy.db")
    assert check(tmp_path / "copy.db") == ("ok", count, want)
    # the shell's .dump of it restores into a new database on the mount
    dump = run("sqlite3", db, ".dump").stdout
    run("sqlite3", mnt / "restored.db", input=dump)
    assert check(mnt / "restored.db")[:2] == ("ok", count)
