"""unlink(2): pjdfstest unlink/00-14 on a mount, and files unlinked while open."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from posix_util import (NAME_255, NAME_256, NONDIR_KINDS, NOBODY, OTHER, as_nobody, err, make, raises, read,
                        run_as, tick, times, touch)


@pytest.mark.parametrize("kind", NONDIR_KINDS)
def test_removes_any_kind(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    n0 = os.stat(mnt).st_nlink
    pt0 = times(mnt)
    tick()
    os.unlink(p)
    assert not os.path.lexists(p) and os.listdir(mnt) == []
    pt1 = times(mnt)
    assert pt1[1] > pt0[1] and pt1[2] > pt0[2], "unlink updates the parent's mtime and ctime"
    assert os.stat(mnt).st_nlink == n0
    make(kind, p)  # the name is free for a new object
    assert os.path.lexists(p)


@pytest.mark.parametrize("kind", ["regular", "fifo", "symlink"])
def test_other_names_lose_a_link(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "a")
    os.mkdir(mnt / "d")
    os.link(p, mnt / "d" / "b", follow_symlinks=False)
    os.link(p, mnt / "c", follow_symlinks=False)
    c0 = times(mnt / "d" / "b")[2]
    dt0 = times(mnt / "d")
    tick()
    os.unlink(p)
    st = os.lstat(mnt / "d" / "b")
    assert st.st_nlink == 2 and os.lstat(mnt / "c").st_nlink == 2
    assert st.st_ctime_ns > c0, "unlink updates the remaining names' ctime"
    assert times(mnt / "d") == dt0, "other directories are untouched"
    os.unlink(mnt / "c")
    assert os.lstat(mnt / "d" / "b").st_nlink == 1
    assert sorted(os.listdir(mnt)) == ["d"]


def test_symlink_removed_not_target(mnt: Path) -> None:
    touch(mnt / "f", b"target")
    os.mkdir(mnt / "d")
    os.symlink("f", mnt / "lf")
    os.symlink("d", mnt / "ld")
    os.unlink(mnt / "lf")
    os.unlink(mnt / "ld")
    assert read(mnt / "f") == b"target" and os.path.isdir(mnt / "d")
    assert sorted(os.listdir(mnt)) == ["d", "f"]


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    os.mkdir(mnt / "d")
    with raises(errno.ENOTDIR):
        os.unlink(f / "x")
    with raises(errno.ENOTDIR):
        os.unlink(str(f) + "/")
    with raises(errno.ENOENT):
        os.unlink(mnt / "missing")
    with raises(errno.ENOENT):
        os.unlink(mnt / "missing" / "x")
    touch(mnt / NAME_255)
    os.unlink(mnt / NAME_255)
    with raises(errno.ENAMETOOLONG):
        os.unlink(mnt / NAME_256)
    with raises(errno.ENAMETOOLONG):
        os.unlink(str(mnt) + "/" + "/".join(["a" * 200] * 25))
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.unlink(mnt / "loop1" / "x")
    with raises(errno.EISDIR):  # Linux: EISDIR (POSIX also allows EPERM)
        os.unlink(mnt / "d")
    with raises(errno.EISDIR):
        os.unlink(str(mnt / "d") + "/.")
    os.unlink(mnt / "loop1")  # a looping symlink is itself removable
    assert sorted(os.listdir(mnt)) == ["d", "f", "loop2"]


def test_unprivileged(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    os.mkdir(mnt / "ro", 0o755)
    touch(mnt / "ro" / "f")
    os.chmod(mnt / "ro" / "f", 0o666)
    os.mkdir(mnt / "nosearch")
    touch(mnt / "nosearch" / "f")
    os.chmod(mnt / "nosearch", 0o666)
    touch(mnt / "roots")
    os.chmod(mnt / "roots", 0o000)

    def probe() -> dict[str, str]:
        return {
            "unwritable dir": err(lambda: os.unlink(mnt / "ro" / "f")),
            "unsearchable dir": err(lambda: os.unlink(mnt / "nosearch" / "f")),
            # the file's own permissions do not matter, only the directory's
            "root's 0000 file in writable dir": err(lambda: os.unlink(mnt / "roots")),
        }

    assert as_nobody(probe) == {"unwritable dir": "EACCES", "unsearchable dir": "EACCES",
                                "root's 0000 file in writable dir": "0"}


def test_sticky_directory(mnt: Path) -> None:
    os.chmod(mnt, 0o1777)
    as_nobody(lambda: touch(mnt / "nobodys"))
    touch(mnt / "roots")
    os.chmod(mnt / "roots", 0o666)
    run_as(OTHER, lambda: touch(mnt / "others"))

    def probe() -> dict[str, str]:
        return {"another's": err(lambda: os.unlink(mnt / "nobodys")),
                "root's writable": err(lambda: os.unlink(mnt / "roots")),
                "own": err(lambda: os.unlink(mnt / "others"))}

    assert run_as(OTHER, probe) == {"another's": "EPERM", "root's writable": "EPERM", "own": "0"}
    # the owner of a sticky directory may remove anything in it
    os.mkdir(mnt / "owned")
    os.chown(mnt / "owned", *OTHER)
    os.chmod(mnt / "owned", 0o1777)
    as_nobody(lambda: touch(mnt / "owned" / "n"))
    assert run_as(OTHER, lambda: err(lambda: os.unlink(mnt / "owned" / "n"))) == "0"
    assert sorted(os.listdir(mnt)) == ["nobodys", "owned", "roots"] and NOBODY != OTHER


def test_unlinked_while_open(mnt: Path) -> None:
    """POSIX: the name goes at once, the file lives on until its last descriptor closes."""
    p = touch(mnt / "f", b"contents")
    fd1 = os.open(p, os.O_RDWR)
    fd2 = os.open(p, os.O_RDONLY)
    try:
        ino = os.fstat(fd1).st_ino
        os.unlink(p)
        assert os.listdir(mnt) == [] and not os.path.lexists(p)
        with raises(errno.ENOENT):
            os.open(p, os.O_RDONLY)
        st = os.fstat(fd1)
        assert (st.st_nlink, st.st_size, st.st_ino) == (0, 8, ino)
        os.pwrite(fd1, b"-more", 8)
        os.fsync(fd1)
        assert os.pread(fd2, 100, 0) == b"contents-more"  # every descriptor sees the writes
        assert os.fstat(fd2).st_size == 13
        os.ftruncate(fd1, 4)
        assert os.pread(fd2, 100, 0) == b"cont"
        os.close(fd1)
        fd1 = -1
        assert os.pread(fd2, 100, 0) == b"cont"  # still open through the other descriptor
        touch(p, b"a new file of that name")
        assert os.pread(fd2, 100, 0) == b"cont" and os.fstat(fd2).st_ino != os.stat(p).st_ino
    finally:
        if fd1 >= 0:
            os.close(fd1)
        os.close(fd2)
    assert read(p) == b"a new file of that name" and os.listdir(mnt) == ["f"]


def test_unlinked_while_open_large(mnt: Path) -> None:
    """A file of several blocks keeps all its data after its name is gone."""
    data = os.urandom(3 * 128 * 1024 + 17)
    p = touch(mnt / "big", data)
    fd = os.open(p, os.O_RDONLY)
    try:
        os.unlink(p)
        chunks = []
        while b := os.read(fd, 65536):
            chunks.append(b)
        assert b"".join(chunks) == data
    finally:
        os.close(fd)


def test_last_name_removed_by_unlink_of_hard_link_while_open(mnt: Path) -> None:
    p = touch(mnt / "a", b"linked")
    os.link(p, mnt / "b")
    fd = os.open(mnt / "b", os.O_RDWR)
    try:
        os.unlink(mnt / "a")
        assert os.fstat(fd).st_nlink == 1
        os.unlink(mnt / "b")
        assert os.listdir(mnt) == []
        assert os.pread(fd, 100, 0) == b"linked"
        os.pwrite(fd, b"L", 0)
        assert os.pread(fd, 100, 0) == b"Linked" and os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    assert os.listdir(mnt) == []
