"""truncate(2) and ftruncate(2): pjdfstest truncate/00-14 and ftruncate/00-14 on a mount."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from posix_util import NAME_255, NAME_256, NOBODY, as_nobody, err, mode, raises, read, tick, times, touch

BS = 128 * 1024  # the default block size: sizes below straddle block boundaries


@pytest.mark.parametrize("start,size", [(0, 1), (0, BS + 7), (100, 0), (3 * BS + 5, BS - 1), (3 * BS + 5, 2 * BS),
                                        (10, 5 * BS + 3), (BS, BS)])
def test_sizes_and_zero_fill(mnt: Path, start: int, size: int) -> None:
    data = bytes((i * 7 + 3) % 251 for i in range(start))
    p = touch(mnt / "f", data)
    os.truncate(p, size)
    assert os.stat(p).st_size == size
    want = data[:size] + bytes(max(0, size - start))
    assert read(p) == want
    # and from a descriptor, back to the original size: the cut part reads as zeros
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, start)
        assert os.fstat(fd).st_size == start
        assert os.pread(fd, start + 10, 0) == want[:start] + bytes(max(0, start - size))
    finally:
        os.close(fd)
    assert read(p) == want[:start] + bytes(max(0, start - size))


def test_times(mnt: Path) -> None:
    p = touch(mnt / "f", b"12345")
    a0, m0, c0 = times(p)
    pt0 = times(mnt)
    tick()
    os.truncate(p, 2)
    a1, m1, c1 = times(p)
    assert m1 > m0 and c1 > c0, "truncate that changes the size updates mtime and ctime"
    assert a1 == a0 and times(mnt) == pt0, "truncate leaves atime and the parent"
    tick()
    fd = os.open(p, os.O_WRONLY)
    try:
        os.ftruncate(fd, 1000)
    finally:
        os.close(fd)
    _, m2, c2 = times(p)
    assert m2 > m1 and c2 > c1, "ftruncate updates mtime and ctime"


def test_sparse_extension(mnt: Path) -> None:
    p = touch(mnt / "f", b"x")
    os.truncate(p, 1 << 30)  # 1 GiB of hole: nothing stored
    st = os.stat(p)
    assert st.st_size == 1 << 30 and st.st_blocks * 512 <= 2 * BS  # at most the one block written
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.pread(fd, 4, 0) == b"x\0\0\0"
        assert os.pread(fd, 8, (1 << 30) - 4) == b"\0\0\0\0"
        assert os.pread(fd, 8, 1 << 30) == b""
    finally:
        os.close(fd)
    os.truncate(p, 0)
    assert os.stat(p).st_size == 0 and read(p) == b""


def test_ftruncate_with_pending_writes(mnt: Path) -> None:
    """ftruncate cutting into data written but not yet flushed, then writing past the cut."""
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"a" * (2 * BS))
        os.ftruncate(fd, BS // 2)
        os.pwrite(fd, b"end", BS + 10)
        assert os.fstat(fd).st_size == BS + 13
    finally:
        os.close(fd)
    assert read(mnt / "f") == b"a" * (BS // 2) + bytes(BS // 2 + 10) + b"end"


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f", b"abc")
    os.mkdir(mnt / "d")
    os.mkfifo(mnt / "p")
    with raises(errno.ENOTDIR):
        os.truncate(f / "x", 0)
    with raises(errno.ENOENT):
        os.truncate(mnt / "missing", 0)
    touch(mnt / NAME_255)
    os.truncate(mnt / NAME_255, 5)
    with raises(errno.ENAMETOOLONG):
        os.truncate(mnt / NAME_256, 0)
    with raises(errno.ENAMETOOLONG):
        os.truncate(str(mnt) + "/" + "/".join(["a" * 200] * 25), 0)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.truncate(mnt / "loop1", 0)
    with raises(errno.EISDIR):
        os.truncate(mnt / "d", 0)
    with raises(errno.EINVAL):
        os.truncate(mnt / "p", 0)
    with raises(errno.EINVAL):
        os.truncate(f, -1)
    fd = os.open(f, os.O_RDONLY)
    try:
        with raises(errno.EINVAL, errno.EBADF):  # not open for writing
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    fd = os.open(f, os.O_RDWR)
    try:
        with raises(errno.EINVAL):
            os.ftruncate(fd, -1)
    finally:
        os.close(fd)
    os.symlink("f", mnt / "lf")
    os.truncate(mnt / "lf", 1)  # follows symlinks
    assert read(f) == b"a" and stat.S_ISLNK(os.lstat(mnt / "lf").st_mode)


def test_failed_truncate_changes_nothing(mnt: Path) -> None:
    p = touch(mnt / "f", b"abcdef")
    st0 = os.stat(p)
    tick()
    assert as_nobody(lambda: err(lambda: os.truncate(p, 1))) == "EACCES"
    st1 = os.stat(p)
    assert (st1.st_size, st1.st_mtime_ns, st1.st_ctime_ns) == (6, st0.st_mtime_ns, st0.st_ctime_ns)


def test_unprivileged(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    touch(mnt / "ro", b"read only")
    touch(mnt / "rw", b"writable by all")
    os.chmod(mnt / "rw", 0o666)
    os.mkdir(mnt / "nosearch")
    touch(mnt / "nosearch" / "f")
    os.chmod(mnt / "nosearch" / "f", 0o666)
    os.chmod(mnt / "nosearch", 0o666)

    def probe() -> dict[str, str]:
        return {
            "no write permission": err(lambda: os.truncate(mnt / "ro", 0)),
            "write permission": err(lambda: os.truncate(mnt / "rw", 3)),
            "unsearchable dir": err(lambda: os.truncate(mnt / "nosearch" / "f", 0)),
        }

    assert as_nobody(probe) == {"no write permission": "EACCES", "write permission": "0",
                                "unsearchable dir": "EACCES"}
    assert read(mnt / "rw") == b"wri" and read(mnt / "ro") == b"read only"


@pytest.mark.parametrize("how", ["truncate", "ftruncate"])
def test_by_non_owner_clears_setid(mnt: Path, how: str) -> None:
    p = touch(mnt / "f", b"0123456789")
    os.chmod(p, 0o6777)

    def cut() -> None:
        if how == "truncate":
            os.truncate(p, 4)
        else:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.ftruncate(fd, 4)
            finally:
                os.close(fd)

    as_nobody(cut)
    assert os.stat(p).st_size == 4 and mode(p) == 0o777, "a non-owner's truncate clears S_ISUID and S_ISGID"
    os.chmod(p, 0o6777)
    os.truncate(p, 2)  # root (CAP_FSETID) keeps them
    assert mode(p) == 0o6777
    assert NOBODY[0] != 0
