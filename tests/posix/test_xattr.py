"""setxattr(2), getxattr(2), listxattr(2), removexattr(2) and their f*/l* forms on a mount:
namespaces, XATTR_CREATE/XATTR_REPLACE, ENODATA, ERANGE, E2BIG, permissions, ctime."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from posix_util import (NOBODY, OTHER, _libc, as_nobody, err, make, raises, run_as, tick, times, touch)


def test_set_get_list_remove(mnt: Path) -> None:
    p = touch(mnt / "f", b"data")
    values = {"user.a": b"1", "user.empty": b"", "user.bin": bytes(range(256)), "user.nul": b"a\0b\0",
              "user." + "n" * 250: b"long name", "user.big": os.urandom(65536)}
    for k, v in values.items():
        os.setxattr(p, k, v)
    for k, v in values.items():
        assert os.getxattr(p, k) == v
    assert sorted(os.listxattr(p)) == sorted(values)
    os.removexattr(p, "user.a")
    with raises(errno.ENODATA):
        os.getxattr(p, "user.a")
    assert "user.a" not in os.listxattr(p)
    assert open(p, "rb").read() == b"data" and os.stat(p).st_size == 4


@pytest.mark.parametrize("kind", ["regular", "dir"])
def test_ctime_not_mtime(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    _, m0, c0 = times(p)
    pt0 = times(mnt)
    tick()
    os.setxattr(p, "user.k", b"v")
    _, m1, c1 = times(p)
    assert c1 > c0 and m1 == m0, "setxattr updates ctime, not mtime"
    tick()
    os.removexattr(p, "user.k")
    _, m2, c2 = times(p)
    assert c2 > c1 and m2 == m0, "removexattr updates ctime, not mtime"
    assert times(mnt) == pt0, "the parent is untouched"


def test_create_and_replace_flags(mnt: Path) -> None:
    p = touch(mnt / "f")
    with raises(errno.ENODATA):
        os.setxattr(p, "user.k", b"v", os.XATTR_REPLACE)
    os.setxattr(p, "user.k", b"v1", os.XATTR_CREATE)
    with raises(errno.EEXIST):
        os.setxattr(p, "user.k", b"v2", os.XATTR_CREATE)
    assert os.getxattr(p, "user.k") == b"v1"
    os.setxattr(p, "user.k", b"v3", os.XATTR_REPLACE)
    assert os.getxattr(p, "user.k") == b"v3"
    os.setxattr(p, "user.k", b"v4")  # neither flag: create or replace
    assert os.getxattr(p, "user.k") == b"v4"
    both = os.XATTR_CREATE | os.XATTR_REPLACE  # both: can never succeed (as ext4)
    with raises(errno.EEXIST):
        os.setxattr(p, "user.k", b"v5", both)
    with raises(errno.ENODATA):
        os.setxattr(p, "user.new", b"v5", both)
    assert os.getxattr(p, "user.k") == b"v4"
    with raises(errno.ENODATA):
        os.removexattr(p, "user.missing")
    assert os.listxattr(p) == ["user.k"]


def test_sizes_and_erange(mnt: Path) -> None:
    p = touch(mnt / "f")
    os.setxattr(p, "user.k", b"0123456789")
    buf = ctypes.create_string_buffer(100)
    name = b"user.k"
    path = os.fsencode(p)
    assert _libc.getxattr(path, name, None, 0) == 10  # size 0: the value's size
    assert _libc.getxattr(path, name, buf, 4) == -1 and ctypes.get_errno() == errno.ERANGE
    assert _libc.getxattr(path, name, buf, 10) == 10 and buf.raw[:10] == b"0123456789"
    assert _libc.listxattr(path, None, 0) == len(b"user.k\0")
    assert _libc.listxattr(path, buf, 3) == -1 and ctypes.get_errno() == errno.ERANGE
    with raises(errno.ERANGE):  # a name longer than 255 bytes
        os.setxattr(p, "user." + "n" * 251, b"v")
    with raises(errno.E2BIG):  # a value larger than 64 KiB
        os.setxattr(p, "user.huge", b"x" * 65537)
    assert os.listxattr(p) == ["user.k"]


def test_many_attributes(mnt: Path) -> None:
    p = touch(mnt / "f")
    names = [f"user.attr{i:03d}" for i in range(60)]
    for n in names:
        os.setxattr(p, n, n.encode() * 10)
    assert sorted(os.listxattr(p)) == names
    for n in names[::3]:
        os.removexattr(p, n)
    assert sorted(os.listxattr(p)) == [n for i, n in enumerate(names) if i % 3]
    assert os.getxattr(p, names[1]) == names[1].encode() * 10


def test_namespaces(mnt: Path) -> None:
    p = touch(mnt / "f")
    os.setxattr(p, "trusted.t", b"root only")
    os.setxattr(p, "security.s", b"sec")
    os.setxattr(p, "user.u", b"anyone")
    assert sorted(os.listxattr(p)) == ["security.s", "trusted.t", "user.u"]
    for bad in ("bogus.x", "nonamespace"):
        with raises(errno.EOPNOTSUPP):
            os.setxattr(p, bad, b"x")
    os.chmod(p, 0o644)

    def probe() -> dict[str, object]:
        return {"list": sorted(os.listxattr(p)),  # trusted.* is hidden from the unprivileged
                "get trusted": err(lambda: os.getxattr(p, "trusted.t")),
                "set trusted": err(lambda: os.setxattr(p, "trusted.n", b"x")),
                "get user": os.getxattr(p, "user.u")}

    assert as_nobody(probe) == {"list": ["security.s", "user.u"], "get trusted": "ENODATA",
                                "set trusted": "EPERM", "get user": b"anyone"}


def test_special_files_and_symlinks(mnt: Path) -> None:
    """user.* attributes live on regular files and directories only (Linux): EPERM to set one on a
    symlink, FIFO or device; trusted.* are allowed there for root. get/set follow symlinks unless
    the l* form is used."""
    f = touch(mnt / "f")
    os.symlink("f", mnt / "l")
    os.mkfifo(mnt / "p")
    os.setxattr(mnt / "l", "user.via", b"followed")  # follows to f
    assert os.getxattr(f, "user.via") == b"followed"
    assert os.getxattr(mnt / "l", "user.via") == b"followed"
    with raises(errno.ENODATA):
        os.getxattr(mnt / "l", "user.via", follow_symlinks=False)
    with raises(errno.EPERM):
        os.setxattr(mnt / "l", "user.x", b"x", follow_symlinks=False)
    with raises(errno.EPERM):
        os.setxattr(mnt / "p", "user.x", b"x")
    os.setxattr(mnt / "l", "trusted.onlink", b"L", follow_symlinks=False)
    assert os.getxattr(mnt / "l", "trusted.onlink", follow_symlinks=False) == b"L"
    assert "trusted.onlink" not in os.listxattr(f)
    assert os.listxattr(mnt / "l", follow_symlinks=False) == ["trusted.onlink"]
    os.removexattr(mnt / "l", "trusted.onlink", follow_symlinks=False)
    assert os.listxattr(mnt / "l", follow_symlinks=False) == []


def test_fd_forms_and_links(mnt: Path) -> None:
    p = touch(mnt / "f")
    os.link(p, mnt / "g")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.setxattr(fd, "user.fd", b"through fd")
        assert os.getxattr(fd, "user.fd") == b"through fd"
        assert os.listxattr(fd) == ["user.fd"]
    finally:
        os.close(fd)
    assert os.getxattr(mnt / "g", "user.fd") == b"through fd"  # one inode, every name
    os.setxattr(mnt / "g", "user.g", b"G")
    os.rename(p, mnt / "renamed")
    assert sorted(os.listxattr(mnt / "renamed")) == ["user.fd", "user.g"]
    os.mkdir(mnt / "d")
    os.setxattr(mnt / "d", "user.dir", b"D")
    os.rename(mnt / "d", mnt / "d2")
    assert os.getxattr(mnt / "d2", "user.dir") == b"D"


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOENT):
        os.setxattr(mnt / "missing", "user.x", b"x")
    with raises(errno.ENOENT):
        os.getxattr(mnt / "missing", "user.x")
    with raises(errno.ENOENT):
        os.listxattr(mnt / "missing")
    with raises(errno.ENOTDIR):
        os.getxattr(f / "x", "user.x")
    with raises(errno.ENODATA):
        os.getxattr(f, "user.never")
    with raises(errno.ERANGE, errno.EINVAL):
        os.setxattr(f, "", b"x")


def test_permissions(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    ro = touch(mnt / "ro")
    os.setxattr(ro, "user.k", b"v")
    secret = touch(mnt / "secret")
    os.setxattr(secret, "user.k", b"v")
    os.chmod(secret, 0o600)
    rw = touch(mnt / "rw")
    os.chmod(rw, 0o666)
    os.mkdir(mnt / "sticky")
    os.chmod(mnt / "sticky", 0o1777)

    def probe() -> dict[str, str]:
        return {
            "set on read-only": err(lambda: os.setxattr(ro, "user.n", b"x")),
            "remove on read-only": err(lambda: os.removexattr(ro, "user.k")),
            "get on read-only": err(lambda: os.getxattr(ro, "user.k")),
            "get on unreadable": err(lambda: os.getxattr(secret, "user.k")),
            "set on writable": err(lambda: os.setxattr(rw, "user.n", b"x")),
            "list unreadable": err(lambda: os.listxattr(secret)),
            # user.* on a sticky directory: only its owner
            "set on another's sticky dir": err(lambda: os.setxattr(mnt / "sticky", "user.n", b"x")),
        }

    assert as_nobody(probe) == {"set on read-only": "EACCES", "remove on read-only": "EACCES",
                                "get on read-only": "0", "get on unreadable": "EACCES", "set on writable": "0",
                                "list unreadable": "0", "set on another's sticky dir": "EPERM"}
    assert os.getxattr(rw, "user.n") == b"x" and os.listxattr(ro) == ["user.k"]
    assert run_as(OTHER, lambda: os.getxattr(rw, "user.n")) == b"x" and NOBODY != OTHER


def test_unlinked_open_file(mnt: Path) -> None:
    """An open file with no name left keeps its xattrs, and takes new ones, through its descriptor."""
    p = touch(mnt / "f", b"x")
    os.setxattr(p, "user.before", b"1")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert os.getxattr(fd, "user.before") == b"1"
        os.setxattr(fd, "user.after", b"2")
        with raises(errno.EEXIST):
            os.setxattr(fd, "user.after", b"3", os.XATTR_CREATE)
        assert sorted(os.listxattr(fd)) == ["user.after", "user.before"]
        os.removexattr(fd, "user.before")
        with raises(errno.ENODATA):
            os.getxattr(fd, "user.before")
        assert os.listxattr(fd) == ["user.after"] and os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    assert os.listdir(mnt) == []
