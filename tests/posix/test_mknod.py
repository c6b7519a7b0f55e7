"""mknod(2): regular files, FIFOs, sockets and device nodes (kept as metadata): pjdfstest
mknod/00-11 on a mount."""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from posix_util import KINDS, NAME_255, NAME_256, NOBODY, as_nobody, err, make, raises, tick, times, touch

DEVICES = [(stat.S_IFCHR, 1, 3), (stat.S_IFCHR, 4095, 1048575), (stat.S_IFBLK, 8, 1), (stat.S_IFBLK, 0, 0),
           (stat.S_IFCHR, 136, 200)]


@pytest.mark.parametrize("kind,major,minor", DEVICES)
def test_device_nodes(mnt: Path, kind: int, major: int, minor: int) -> None:
    dev = os.makedev(major, minor)
    pt0 = times(mnt)
    tick()
    t0 = time.time_ns()
    os.mknod(mnt / "dev", kind | 0o640, dev)
    st = os.lstat(mnt / "dev")
    assert stat.S_IFMT(st.st_mode) == kind and stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_rdev == dev and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor)
    assert (st.st_uid, st.st_gid, st.st_nlink, st.st_size) == (0, 0, 1, 0)
    assert st.st_mtime_ns >= t0 - 10**7 and st.st_ctime_ns >= t0 - 10**7
    pt1 = times(mnt)
    assert pt1[1] > pt0[1] and pt1[2] > pt0[2]
    os.rename(mnt / "dev", mnt / "moved")  # rdev travels with the inode
    os.link(mnt / "moved", mnt / "linked")
    assert os.lstat(mnt / "moved").st_rdev == os.lstat(mnt / "linked").st_rdev == dev


@pytest.mark.parametrize("ftype", [stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, 0])
def test_non_device_types(mnt: Path, ftype: int) -> None:
    os.mknod(mnt / "n", ftype | 0o600)
    st = os.lstat(mnt / "n")
    assert stat.S_IFMT(st.st_mode) == (ftype or stat.S_IFREG), "mode type 0 means a regular file"
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_rdev == 0 and st.st_size == 0


def test_umask(mnt: Path) -> None:
    old = os.umask(0o027)
    try:
        os.mknod(mnt / "n", stat.S_IFREG | 0o777)
        os.mknod(mnt / "c", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(mnt / "n").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(mnt / "c").st_mode) == 0o640


def test_socket_bind(mnt: Path) -> None:
    """bind(2) of a unix socket makes an S_IFSOCK node through mknod; connecting through it works
    (the kernel keys the socket by the inode)."""
    path = str(mnt / "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        srv.listen(1)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            cli.connect(path)
            conn, _ = srv.accept()
            cli.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            conn.close()
        finally:
            cli.close()
        with raises(errno.EADDRINUSE):
            s2 = socket.socket(socket.AF_UNIX)
            try:
                s2.bind(path)
            finally:
                s2.close()
    finally:
        srv.close()


def test_unprivileged(mnt: Path) -> None:
    os.chmod(mnt, 0o777)

    def probe() -> dict[str, str]:
        return {
            "char": err(lambda: os.mknod(mnt / "c", stat.S_IFCHR | 0o600, os.makedev(1, 3))),
            "block": err(lambda: os.mknod(mnt / "b", stat.S_IFBLK | 0o600, os.makedev(8, 0))),
            "fifo": err(lambda: os.mknod(mnt / "p", stat.S_IFIFO | 0o600)),
            "regular": err(lambda: os.mknod(mnt / "r", stat.S_IFREG | 0o600)),
            "socket": err(lambda: os.mknod(mnt / "s", stat.S_IFSOCK | 0o600)),
        }

    assert as_nobody(probe) == {"char": "EPERM", "block": "EPERM", "fifo": "0", "regular": "0", "socket": "0"}
    assert sorted(os.listdir(mnt)) == ["p", "r", "s"]
    assert all(os.lstat(mnt / n).st_uid == NOBODY[0] for n in "prs")


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOTDIR):
        os.mknod(f / "n", stat.S_IFIFO | 0o644)
    with raises(errno.ENOENT):
        os.mknod(mnt / "missing" / "n", stat.S_IFIFO | 0o644)
    os.mknod(mnt / NAME_255, stat.S_IFCHR | 0o600, os.makedev(1, 1))
    with raises(errno.ENAMETOOLONG):
        os.mknod(mnt / NAME_256, stat.S_IFIFO | 0o644)
    with raises(errno.ENAMETOOLONG):
        os.mknod(str(mnt) + "/" + "/".join(["a" * 200] * 25), stat.S_IFIFO | 0o644)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.mknod(mnt / "loop1" / "n", stat.S_IFIFO | 0o644)
    with raises(errno.EPERM):  # directories are made with mkdir (Linux: EPERM)
        os.mknod(mnt / "d", stat.S_IFDIR | 0o755)
    with raises(errno.EINVAL):  # not a file type at all
        os.mknod(mnt / "bad", 0o170000 | 0o644)
    assert sorted(os.listdir(mnt)) == sorted(["f", NAME_255, "loop1", "loop2"])


@pytest.mark.parametrize("kind", KINDS)
def test_eexist_any_kind(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    st = os.lstat(p)
    for ftype in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFCHR):
        with raises(errno.EEXIST):
            os.mknod(p, ftype | 0o600, os.makedev(1, 3))
    st2 = os.lstat(p)
    assert (st2.st_ino, st2.st_mode, st2.st_rdev) == (st.st_ino, st.st_mode, st.st_rdev)
