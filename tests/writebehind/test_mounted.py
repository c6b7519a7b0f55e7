"""tar into a real FUSE mount with ``-o writebehind``; a second mount (write-behind off) reads the
tree back exact once the first has synced the directory (fsync of a directory is a durability
point). fsck is clean after the write-behind mount is unmounted (its leases released)."""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from mounted.conftest import Mounter, Source, fs_source, fsync_dir, mounter  # noqa: F401 (fixtures)

from dynlog.history.fsck import fsck
from dynlog.store.source import open_store

pytestmark = pytest.mark.mounted


def _tree(base: Path) -> Path:
    """300 small files in 10 directories, and one of 200 KB (blocks, not inline)."""
    src = base / "src"
    for d in range(10):
        (src / f"dir{d}").mkdir(parents=True)
        for f in range(30):
            (src / f"dir{d}" / f"file{f}.txt").write_bytes(f"{d}/{f}\n".encode() * (f + 1))
    (src / "big.bin").write_bytes(os.urandom(200_000))
    tar = base / "tree.tar"
    with tarfile.open(tar, "w") as t:
        t.add(src, arcname="tree")
    return tar


@pytest.mark.timeout(180)
def test_tar_into_a_writebehind_mount(fs_source: Source, mounter: Mounter, tmp_path: Path) -> None:  # noqa: F811
    tar = _tree(tmp_path)
    a = mounter.mount(fs_source, options="writebehind")
    b = mounter.mount(fs_source)
    started = time.monotonic()
    subprocess.run(["tar", "-xf", str(tar), "-C", a.path], check=True, timeout=120)
    elapsed = time.monotonic() - started
    print(f"\ntar into -o writebehind ({fs_source.backend}): {301 / elapsed:.0f} files/s")
    fsync_dir(a.path)  # commits every queued operation of that mount
    diff = subprocess.run(["diff", "-r", str(tmp_path / "src"), os.path.join(b.path, "tree")],
                          capture_output=True, text=True, timeout=120)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    mounter.unmount(a)
    assert "writebehind.lease_lost" not in a.log_text()
    store = open_store(fs_source.source, endpoint_url=fs_source.endpoint)
    try:
        report = fsck(store)
        assert report.clean, report.lines()
    finally:
        store.close()
