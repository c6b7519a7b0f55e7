"""The relative times the help shows (``--at -1h``, ``--since -5m``, ``diff SRC / -1d now``) work
as separate words through the real ``dynlog`` command, not only as ``--at=-1h``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.store.sqlite import SqliteStore


def dynlog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dynlog.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def source(tmp_path: Path) -> str:
    """local: file system with /docs/a.txt written just now."""
    path = tmp_path / "fs.db"
    store = SqliteStore(str(path))
    mkfs(store)
    fs = FileSystem(store, session="reltime")
    try:
        fs.mkdir("/docs", 0o755, ROOT)
        fh = fs.create("/docs/a.txt", 0o644, os.O_WRONLY | os.O_CREAT, ROOT)
        fs.write(fh, b"hello\n", 0, ROOT)
        fs.release(fh, ROOT)
    finally:
        fs.close()
        store.close()
    return f"local:{path}"


def test_replay_at_relative_time_as_separate_word(source: str) -> None:
    past = dynlog("replay", source, "/docs", "--at", "-1h")  # before the file system existed: no /docs
    assert "expected one argument" not in past.stderr
    assert past.returncode != 2, past.stderr
    now = dynlog("replay", source, "/docs", "--at", "-0s")
    assert now.returncode == 0, now.stderr
    assert "a.txt" in now.stdout
    joined = dynlog("replay", source, "/docs", "--at=-0s")  # the form that always worked: same listing
    assert joined.stdout.splitlines()[1:] == now.stdout.splitlines()[1:]


def test_replay_since_until_relative(source: str) -> None:
    res = dynlog("replay", source, "--since", "-1h", "--until", "-0s")
    assert res.returncode == 0, res.stderr
    assert "/docs/a.txt" in res.stdout
    none = dynlog("replay", source, "--since", "-2h30m", "--until", "-1h")
    assert none.returncode == 0, none.stderr
    assert "/docs/a.txt" not in none.stdout


def test_diff_relative_positionals(source: str) -> None:
    res = dynlog("diff", source, "/", "-1h", "now")
    assert res.returncode == 1, res.stderr  # 1: there are changes
    assert "/docs/a.txt" in res.stdout


def test_restore_at_relative(source: str) -> None:
    res = dynlog("restore", source, "/docs/a.txt", "--at", "-0s", "--to", "/copy.txt")
    assert res.returncode == 0, res.stderr
    assert "restored /docs/a.txt" in res.stdout
    old = dynlog("restore", source, "/docs/a.txt", "--at", "-1h", "--to", "/older.txt")
    assert old.returncode == 1 and "expected one argument" not in old.stderr  # it did not exist an hour ago
