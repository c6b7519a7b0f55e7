"""File data: crash-safe commits and large files.

A writer killed between writing its blocks and committing the event that maps them leaves the
old content whole (on both stores, with a real SIGKILL of a real process); a mount daemon
killed with unflushed writes leaves the old content whole too; and a 1 GiB file goes through a
real mount on the embedded store and reads back byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dynlog.core.attrs import Caller
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.history.fsck import fsck
from dynlog.store.base import Store

HERE = Path(__file__).parent
C = Caller(0, 0, 1)
OLD = b"the old content, whole\n" * 20_000  # ~460 KB: several blocks


def _source_of(store: Store) -> tuple[str, str]:
    endpoint = getattr(store, "endpoint_url", None) or "-"
    return store.source, endpoint


def _write_old(fs: FileSystem, path: str) -> None:
    fh = fs.create(path, 0o644, os.O_WRONLY, C)
    fs.write(fh, OLD, 0, C)
    fs.release(fh, C)


def _read_all(fs: FileSystem, path: str) -> bytes:
    fh = fs.open(path, os.O_RDONLY, C)
    try:
        return fs.read(fh, 1 << 30, 0)
    finally:
        fs.release(fh, C)


def test_writer_killed_before_its_commit_leaves_the_old_content(store: Store, store_factory) -> None:
    mkfs(store)
    fs = FileSystem(store)
    _write_old(fs, "/victim")
    blocks_before = FileSystem(store_factory()).getattr("/victim")["st_blocks"]
    source, endpoint = _source_of(store)
    proc = subprocess.run([sys.executable, str(HERE / "crash_writer.py"), source, endpoint, "/victim",
                           str(3 * 1024 * 1024), "7"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "dying before the commit" in proc.stdout
    fresh = FileSystem(store_factory())
    assert _read_all(fresh, "/victim") == OLD
    st = fresh.getattr("/victim")
    assert st["st_size"] == len(OLD) and st["st_blocks"] == blocks_before
    # The dead writer's blocks are in the blocks table, mapped by nothing: garbage that compact
    # collects after its grace period; fsck finds nothing wrong meanwhile.
    report = fsck(store_factory())
    assert not report.problems, report.problems


@pytest.mark.timeout(180)
def test_mount_killed_with_unflushed_writes_leaves_the_old_content(fs_source, mounter) -> None:
    m = mounter.mount(fs_source)
    p = Path(m.path) / "f"
    p.write_bytes(OLD)
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, b"N" * (2 * 1024 * 1024), 0)  # below the 16 MiB flush threshold: buffered
    os.killpg(m.proc.pid, signal.SIGKILL)  # the daemon dies; the write was never committed
    m.proc.wait(timeout=30)
    try:
        os.close(fd)
    except OSError:
        pass  # the connection is gone
    mounter.cleanup()
    again = mounter.mount(fs_source)
    assert (Path(again.path) / "f").read_bytes() == OLD


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_one_gib_file_through_a_mount(fs_source, mounter) -> None:
    m = mounter.mount(fs_source)
    path = Path(m.path) / "big.bin"
    chunk = random.Random(1).randbytes(4 * 1024 * 1024)
    total = 1 << 30
    h_in = hashlib.sha256()
    with open(path, "wb") as f:
        for k in range(total // len(chunk)):
            piece = chunk[k % 7 :] + chunk[: k % 7]  # every chunk differs: catches misplaced blocks
            f.write(piece)
            h_in.update(piece)
    assert os.stat(path).st_size == total
    mounter.cleanup()  # read back through a fresh mount: nothing from this one's caches
    m2 = mounter.mount(fs_source)
    h_out = hashlib.sha256()
    with open(Path(m2.path) / "big.bin", "rb") as f:
        while True:
            b = f.read(8 * 1024 * 1024)
            if not b:
                break
            h_out.update(b)
    assert h_out.hexdigest() == h_in.hexdigest()
