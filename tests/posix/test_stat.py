"""stat(2), lstat(2), fstat(2), statvfs(3), access(2) on a mount: stable and distinct inode
numbers, one st_dev, sizes and st_blocks, and what the kernel's attribute cache may show."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from posix_util import NAME_256, as_nobody, err, raises, touch


def test_inode_numbers(mnt: Path) -> None:
    a, b = touch(mnt / "a"), touch(mnt / "b")
    os.mkdir(mnt / "d")
    inos = {os.stat(p).st_ino for p in (a, b, mnt / "d", mnt)}
    assert len(inos) == 4, "distinct objects have distinct inode numbers"
    devs = {os.stat(p).st_dev for p in (a, b, mnt / "d", mnt)}
    assert len(devs) == 1, "one file system, one st_dev"
    ino = os.stat(a).st_ino
    os.rename(a, mnt / "d" / "moved")
    assert os.stat(mnt / "d" / "moved").st_ino == ino, "the inode number survives a rename"
    fd = os.open(mnt / "d" / "moved", os.O_RDONLY)
    try:
        assert os.fstat(fd).st_ino == ino and os.fstat(fd).st_dev == devs.pop()
    finally:
        os.close(fd)


def test_sizes_and_blocks(mnt: Path) -> None:
    touch(mnt / "empty")
    touch(mnt / "small", b"x" * 100)
    touch(mnt / "big", os.urandom(300_000))
    os.symlink("a-target-of-20-bytes", mnt / "link")
    e, s, b, ln = (os.lstat(mnt / n) for n in ("empty", "small", "big", "link"))
    assert (e.st_size, e.st_blocks) == (0, 0)
    assert s.st_size == 100 and 1 <= s.st_blocks <= 16, "a small file does not count a whole block"
    assert b.st_size == 300_000 and b.st_blocks * 512 >= 300_000
    assert ln.st_size == 20 and stat.S_ISLNK(ln.st_mode)
    assert all(st.st_blksize > 0 for st in (e, s, b))
    assert os.stat(mnt).st_size > 0 and stat.S_ISDIR(os.stat(mnt).st_mode)


def test_statvfs(mnt: Path) -> None:
    sv = os.statvfs(mnt)
    assert sv.f_namemax == 255 and sv.f_bsize > 0 and sv.f_frsize > 0
    assert sv.f_blocks >= sv.f_bfree >= sv.f_bavail > 0 and sv.f_files >= sv.f_ffree > 0
    fd = os.open(mnt, os.O_RDONLY)
    try:
        assert os.fstatvfs(fd).f_namemax == 255
    finally:
        os.close(fd)


def test_access(mnt: Path) -> None:
    touch(mnt / "f")
    os.chmod(mnt / "f", 0o640)
    os.mkdir(mnt / "d", 0o700)
    assert os.access(mnt / "f", os.R_OK | os.W_OK) and not os.access(mnt / "f", os.X_OK)
    assert os.access(mnt / "d", os.R_OK | os.W_OK | os.X_OK)
    assert as_nobody(lambda: (os.access(mnt / "f", os.R_OK), os.access(mnt / "f", os.F_OK),
                              os.access(mnt / "d", os.X_OK))) == (False, True, False)
    os.chmod(mnt / "f", 0o644)
    assert as_nobody(lambda: (os.access(mnt / "f", os.R_OK), os.access(mnt / "f", os.W_OK))) == (True, False)


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOENT):
        os.stat(mnt / "missing")
    with raises(errno.ENOTDIR):
        os.stat(f / "x")
    with raises(errno.ENAMETOOLONG):
        os.lstat(mnt / NAME_256)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.stat(mnt / "loop1")
    assert stat.S_ISLNK(os.lstat(mnt / "loop1").st_mode)
    os.mkdir(mnt / "closed", 0o700)
    touch(mnt / "closed" / "x")
    assert as_nobody(lambda: err(lambda: os.stat(mnt / "closed" / "x"))) == "EACCES"
