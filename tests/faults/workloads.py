"""Real workloads for the fault tests: each runs real programs (or real system calls) on a
directory of a mount and asserts that what it reads back is exactly what it wrote.

Shared by test_workloads.py (faults alone, two mounts) and crash_workload.py (SIGKILLed mounts).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

from programs.conftest import stdlib_dir
from programs.treeutil import compare, run

TX_ROWS = 50


def small_tree(root: Path) -> Path:
    """A local tree of real files (~80 entries): two standard-library packages, a 300 KB random
    file, a symlink, a hard link, an empty directory, odd modes and a nanosecond mtime."""
    root.mkdir(parents=True)
    for pkg in ("json", "email"):
        shutil.copytree(stdlib_dir() / pkg, root / pkg, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "random.bin").write_bytes(random.Random(5).randbytes(300_000))
    os.symlink("json/decoder.py", root / "link")
    os.link(root / "random.bin", root / "random-hard")
    (root / "empty").mkdir()
    (root / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o750)
    os.utime(root / "json" / "__init__.py", ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    return root


def tar_in(tree: Path, dst: Path) -> None:
    """tar c | tar x into ``dst`` (owners, modes, nanosecond mtimes kept), then compare."""
    dst.mkdir()
    run("bash", "-o", "pipefail", "-c", 'tar --format=posix -C "$0" -cf - . | tar -C "$1" -xpf -', tree, dst)
    diffs = compare(tree, dst)
    assert diffs == [], diffs


def sqlite_rows(tx: int) -> list[tuple[str, bytes]]:
    return [(f"row-{tx}-{i}", hashlib.sha256(f"{tx}/{i}".encode()).digest() * (1 + i % 9)) for i in range(TX_ROWS)]


def sqlite_commit(con: sqlite3.Connection, tx: int) -> None:
    """One transaction: TX_ROWS inserts, an update and a delete."""
    con.execute("BEGIN")
    con.executemany("INSERT INTO t (tx, name, payload) VALUES (?, ?, ?)", [(tx, n, p) for n, p in sqlite_rows(tx)])
    con.execute("UPDATE t SET name = name || '+' WHERE tx = ? AND id % 7 = 0", (tx,))
    con.execute("DELETE FROM t WHERE tx = ? AND id % 11 = 0", (tx,))
    con.execute("COMMIT")


def sqlite_open(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, name TEXT NOT NULL, "
                "payload BLOB)")
    return con


def sqlite_digest(con: sqlite3.Connection) -> str:
    h = hashlib.sha256()
    for row in con.execute("SELECT id, tx, name, payload FROM t ORDER BY id"):
        h.update(repr(row).encode())
    return h.hexdigest()


def sqlite_check(db: Path, acked: int) -> int:
    """The database is sound, holds at least the ``acked`` transactions, and equals exactly the
    same number of transactions made on a local file (none half-applied, none torn): returns
    the number of transactions found."""
    con = sqlite3.connect(db, timeout=30)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        found = con.execute("SELECT count(DISTINCT tx) FROM t").fetchone()[0]
        assert found >= acked, (found, acked)
        ref = sqlite_open(Path(":memory:"))
        for tx in range(found):
            sqlite_commit(ref, tx)
        assert sqlite_digest(con) == sqlite_digest(ref), f"{db}: not the state after {found} transactions"
        ref.close()
        return found
    finally:
        con.close()


def sqlite_workload(db: Path, transactions: int = 40) -> None:
    """``transactions`` commits (rollback journal, synchronous=FULL), then an integrity check
    and the same digest as the same transactions on a local file."""
    con = sqlite_open(db)
    ref = sqlite_open(Path(":memory:"))
    try:
        for tx in range(transactions):
            sqlite_commit(con, tx)
            sqlite_commit(ref, tx)
        assert sqlite_digest(con) == sqlite_digest(ref)
    finally:
        con.close()
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert sqlite_digest(con) == sqlite_digest(ref)
    finally:
        con.close()
        ref.close()


def git_workload(tree: Path, repo: Path, clone: Path, env: dict[str, str]) -> None:
    """git init, add, commit twice, clone within the mount, fsck both; the clone's checkout
    equals the tree."""
    def git(*args: object, cwd: Path | None = None) -> str:
        return run("git", *args, cwd=cwd, env=env).stdout.decode()

    git("init", "-q", "-b", "main", repo)
    shutil.copytree(tree / "json", repo / "json")
    shutil.copytree(tree / "email" / "mime", repo / "mime")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    with open(repo / "json" / "__init__.py", "a") as f:
        f.write("\n# second commit\n")
    git("mv", "mime/text.py", "mime/text_renamed.py", cwd=repo)
    git("commit", "-q", "-am", "second", cwd=repo)
    git("fsck", "--full", "--strict", cwd=repo)
    git("clone", "-q", repo, clone)
    git("fsck", "--full", "--strict", cwd=clone)
    assert git("log", "--format=%s", cwd=clone).split() == ["second", "first"]
    assert compare(repo, clone, owners=False, mtimes="", ignore=(b".git",)) == []
    assert git("status", "--porcelain", cwd=repo) == ""


def random_io(path: Path, seed: int, size: int = 2_000_000, writes: int = 150) -> None:
    """Random pwrites (some past the end, some fsynced) against a shadow copy in memory; the
    file read back after close, and after reopening, equals the shadow."""
    rng = random.Random(seed)
    shadow = bytearray(rng.randbytes(size))
    path.write_bytes(shadow)
    fd = os.open(path, os.O_RDWR)
    try:
        for i in range(writes):
            off = rng.randrange(0, len(shadow) + 70_000)
            data = rng.randbytes(rng.choice([1, 17, 4096, 65536, 131072 + 3, 300_000]))
            os.pwrite(fd, data, off)
            if off > len(shadow):
                shadow.extend(b"\0" * (off - len(shadow)))
            shadow[off : off + len(data)] = data
            if i % 25 == 24:
                os.fsync(fd)
            if i % 40 == 39:
                assert os.pread(fd, 5000, off) == bytes(shadow[off : off + 5000])
        if rng.random() < 0.5:
            cut = rng.randrange(len(shadow) // 2, len(shadow))
            os.ftruncate(fd, cut)
            del shadow[cut:]
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(shadow)


def rename_loop(root: Path, n: int = 60, dirs: int = 4) -> None:
    """The issue's loop, in a real shell: ``echo N > dK/fN; mv dK/fN dK+1/gN`` across ``dirs``
    directories; then every gN holds N and no fN is left."""
    for k in range(dirs + 1):
        (root / f"d{k}").mkdir()
    script = f'set -e; cd "$0"; for N in $(seq 0 {n - 1}); do K=$((N % {dirs})); ' \
             'echo $N > d$K/f$N; mv d$K/f$N d$((K+1))/g$N; done'
    res = subprocess.run(["sh", "-c", script, str(root)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for N in range(n):
        k = N % dirs
        assert (root / f"d{k + 1}" / f"g{N}").read_text() == f"{N}\n"
        assert not (root / f"d{k}" / f"f{N}").exists()
