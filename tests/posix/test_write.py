"""write(2), pwrite(2), read(2) as POSIX specifies them on a mount: offsets, holes, mtime and ctime,
set-id bits cleared by an unprivileged writer, descriptors that may not write."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from mounted.conftest import Mount, Mounter, public_dir
from posix_util import NOBODY, as_nobody, mode, raises, read, tick, times, touch

BS = 128 * 1024


def test_offsets_and_holes(mnt: Path) -> None:
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        assert os.write(fd, b"abc") == 3 and os.lseek(fd, 0, os.SEEK_CUR) == 3
        os.lseek(fd, BS + 5, os.SEEK_SET)  # past the end: the gap reads as zeros
        os.write(fd, b"Z")
        assert os.fstat(fd).st_size == BS + 6
        assert os.pwrite(fd, b"mid", 10) == 3 and os.lseek(fd, 0, os.SEEK_CUR) == BS + 6  # pwrite keeps the offset
        assert os.lseek(fd, 0, os.SEEK_END) == BS + 6
        assert os.pread(fd, 20, 0) == b"abc" + bytes(7) + b"mid" + bytes(7)
        assert os.pread(fd, 10, BS + 5) == b"Z" and os.pread(fd, 10, BS + 6) == b""
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 3) == b"abc" and os.lseek(fd, 0, os.SEEK_CUR) == 3
    finally:
        os.close(fd)
    data = read(mnt / "f")
    assert data == b"abc" + bytes(7) + b"mid" + bytes(BS + 5 - 13) + b"Z"


@pytest.mark.parametrize("size", [1, BS - 1, BS, BS + 1, 3 * BS + 17])
def test_block_boundaries(mnt: Path, size: int) -> None:
    data = bytes((i * 31 + 7) % 256 for i in range(size))
    touch(mnt / "f", data)
    assert read(mnt / "f") == data and os.stat(mnt / "f").st_size == size
    fd = os.open(mnt / "f", os.O_RDWR)
    try:  # overwrite across the last boundary inside the file
        at = max(0, size - 3)
        os.pwrite(fd, b"XYZW", at)
    finally:
        os.close(fd)
    assert read(mnt / "f") == data[:at] + b"XYZW" and os.stat(mnt / "f").st_size == at + 4


def test_times(mnt: Path) -> None:
    p = touch(mnt / "f", b"x")
    a0, m0, c0 = times(p)
    pt0 = times(mnt)
    tick()
    fd = os.open(p, os.O_WRONLY)
    try:
        os.write(fd, b"y")
    finally:
        os.close(fd)
    a1, m1, c1 = times(p)
    assert m1 > m0 and c1 > c0, "write updates mtime and ctime"
    assert times(mnt) == pt0, "write leaves the directory"
    tick()
    fd = os.open(p, os.O_WRONLY)
    os.close(fd)
    assert times(p)[1:] == (m1, c1), "an open and close without a write changes nothing"
    tick()
    fd = os.open(p, os.O_WRONLY)
    try:
        assert os.write(fd, b"") == 0  # an empty write
    finally:
        os.close(fd)
    assert read(p) == b"y"


def test_bad_descriptors(mnt: Path) -> None:
    p = touch(mnt / "f", b"data")
    fd = os.open(p, os.O_RDONLY)
    try:
        with raises(errno.EBADF):
            os.write(fd, b"x")
    finally:
        os.close(fd)
    fd = os.open(p, os.O_WRONLY)
    try:
        with raises(errno.EBADF):
            os.read(fd, 1)
    finally:
        os.close(fd)
    fd = os.open(mnt, os.O_RDONLY)
    try:
        with raises(errno.EISDIR):
            os.read(fd, 1)
    finally:
        os.close(fd)
    assert read(p) == b"data"


def test_shared_between_descriptors_and_dup(mnt: Path) -> None:
    fd1 = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
    fd2 = os.open(mnt / "f", os.O_RDWR)
    fd3 = os.dup(fd1)
    try:
        os.write(fd1, b"one")
        assert os.pread(fd2, 10, 0) == b"one"  # seen through another descriptor before any close
        os.write(fd3, b"two")  # a dup shares the offset
        assert os.lseek(fd1, 0, os.SEEK_CUR) == 6
        assert os.pread(fd2, 10, 0) == b"onetwo"
    finally:
        for fd in (fd1, fd2, fd3):
            os.close(fd)
    assert read(mnt / "f") == b"onetwo"


@pytest.mark.parametrize("start,after", [(0o4777, 0o777), (0o2777, 0o777), (0o6777, 0o777), (0o2767, 0o2767),
                                         (0o1777, 0o1777)])
def test_unprivileged_write_clears_setid(mnt: Path, start: int, after: int) -> None:
    """A write by someone without CAP_FSETID clears S_ISUID, and S_ISGID with group execute."""
    p = touch(mnt / "f", b"0123")
    os.chmod(p, start)

    def append() -> None:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)

    as_nobody(append)
    assert mode(p) == after and read(p) == b"0123x"
    os.chmod(p, start)
    append()  # root keeps them
    assert mode(p) == start and NOBODY[0] != 0


def test_owner_write_clears_setid_too(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    as_nobody(lambda: touch(mnt / "mine", b"a"))
    as_nobody(lambda: os.chmod(mnt / "mine", 0o4755))

    def write() -> int:
        fd = os.open(mnt / "mine", os.O_WRONLY)
        try:
            os.write(fd, b"b")
        finally:
            os.close(fd)
        return stat.S_IMODE(os.stat(mnt / "mine").st_mode)

    assert as_nobody(write) == 0o755


@pytest.fixture
def relatime_mnt(posix_mount: Mount) -> Iterator[Path]:
    """A second mount of the session's file system with ``-o relatime`` (the default is noatime)."""
    base = public_dir("dynlog-relatime-")
    m = Mounter(base)
    try:
        d = Path(m.mount(posix_mount.source, options="allow_other,relatime").path) / f"relatime-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        yield d
    finally:
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_read_updates_atime_relatime(relatime_mnt: Path) -> None:
    mnt = relatime_mnt
    p = touch(mnt / "f", b"abc")
    os.utime(p, ns=(10**18, 15 * 10**17))  # atime older than mtime: relatime updates it on the next read
    assert read(p) == b"abc"
    assert times(p)[0] > 15 * 10**17
    atime = times(p)[0]
    assert read(p) == b"abc"  # atime is now newer than mtime and ctime: no update (no write)
    assert times(p)[0] == atime


def test_read_leaves_atime_by_default(mnt: Path) -> None:
    """noatime is the default: a read writes nothing, so it costs no PutItem and no notice."""
    p = touch(mnt / "f", b"abc")
    os.utime(p, ns=(10**18, 15 * 10**17))
    assert read(p) == b"abc"
    assert times(p)[0] == 10**18


def test_mmap_shared_write_and_read(mnt: Path) -> None:
    import mmap

    p = touch(mnt / "f", bytes(3 * BS))
    fd = os.open(p, os.O_RDWR)
    try:
        with mmap.mmap(fd, 3 * BS, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[0:5] = b"hello"
            m[BS + 10:BS + 15] = b"world"
            m.flush()  # msync
            assert os.pread(fd, 5, BS + 10) == b"world"
    finally:
        os.close(fd)
    data = read(p)
    assert data[:5] == b"hello" and data[BS + 10:BS + 15] == b"world" and len(data) == 3 * BS
    fd = os.open(p, os.O_RDONLY)
    try:
        with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            assert m[:5] == b"hello" and m.size() == 3 * BS
    finally:
        os.close(fd)


def test_fsync_fdatasync_and_directory_fsync(mnt: Path) -> None:
    fd = os.open(mnt / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"durable")
        os.fdatasync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)  # what careful programs do after a rename
    finally:
        os.close(dfd)
    assert read(mnt / "f") == b"durable"


def test_seek_data_and_hole(mnt: Path) -> None:
    p = touch(mnt / "f", b"data")
    os.truncate(p, 2 * BS)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        assert 4 <= hole <= 2 * BS  # somewhere after the data, at the latest at the end
        with raises(errno.ENXIO):
            os.lseek(fd, 2 * BS, os.SEEK_DATA)
        with raises(errno.ENXIO):
            os.lseek(fd, 2 * BS + 1, os.SEEK_HOLE)
    finally:
        os.close(fd)
