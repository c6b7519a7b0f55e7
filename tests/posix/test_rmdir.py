"""rmdir(2): pjdfstest rmdir/00-15 on a mount."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from posix_util import NAME_255, NAME_256, NOBODY, OTHER, as_nobody, err, make, raises, run_as, tick, times, touch


def test_removes_and_updates_parent(mnt: Path) -> None:
    os.mkdir(mnt / "d")
    n0 = os.stat(mnt).st_nlink
    pt0 = times(mnt)
    tick()
    os.rmdir(mnt / "d")
    assert not os.path.lexists(mnt / "d") and os.listdir(mnt) == []
    pt1 = times(mnt)
    assert pt1[1] > pt0[1] and pt1[2] > pt0[2], "rmdir updates the parent's mtime and ctime"
    assert os.stat(mnt).st_nlink == n0 - 1
    os.mkdir(mnt / "d")  # the name is free again, for a new directory
    touch(mnt / "d" / "f")
    assert os.listdir(mnt / "d") == ["f"]


def test_trailing_slash_and_nested(mnt: Path) -> None:
    os.makedirs(mnt / "a" / "b" / "c")
    os.rmdir(str(mnt / "a" / "b" / "c") + "/")
    os.rmdir(mnt / "a" / "b")
    assert os.stat(mnt / "a").st_nlink == 2
    os.rmdir(mnt / "a")
    assert os.listdir(mnt) == []


@pytest.mark.parametrize("content", ["regular", "dir", "fifo", "symlink", "socket", "hidden"])
def test_not_empty(mnt: Path, content: str) -> None:
    os.mkdir(mnt / "d")
    make("regular" if content == "hidden" else content, mnt / "d" / (".h" if content == "hidden" else "x"))
    st0 = os.stat(mnt / "d")
    pt0 = times(mnt)
    with raises(errno.ENOTEMPTY, errno.EEXIST):
        os.rmdir(mnt / "d")
    st1 = os.stat(mnt / "d")
    assert (st1.st_ino, st1.st_nlink, st1.st_ctime_ns) == (st0.st_ino, st0.st_nlink, st0.st_ctime_ns)
    assert times(mnt) == pt0


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    os.mkdir(mnt / "d")
    os.symlink("d", mnt / "ld")
    with raises(errno.ENOTDIR):
        os.rmdir(f)
    with raises(errno.ENOTDIR):
        os.rmdir(f / "x")
    with raises(errno.ENOTDIR):  # a symlink to a directory is not removed by rmdir
        os.rmdir(mnt / "ld")
    with raises(errno.ENOENT):
        os.rmdir(mnt / "missing")
    with raises(errno.ENOENT):
        os.rmdir(mnt / "missing" / "x")
    os.mkdir(mnt / NAME_255)
    with raises(errno.ENAMETOOLONG):
        os.rmdir(mnt / NAME_256)
    with raises(errno.ENAMETOOLONG):
        os.rmdir(str(mnt) + "/" + "/".join(["a" * 200] * 25))
    os.rmdir(mnt / NAME_255)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.rmdir(mnt / "loop1" / "x")
    with raises(errno.ENOTDIR):
        os.rmdir(mnt / "loop1")
    d = str(mnt / "d")
    with raises(errno.EINVAL):  # "." : Linux EINVAL
        os.rmdir(d + "/.")
    with raises(errno.ENOTEMPTY, errno.EEXIST, errno.EINVAL):  # ".." : Linux ENOTEMPTY
        os.rmdir(d + "/..")
    with raises(errno.EBUSY):  # the root of the mount
        os.rmdir(mnt.parent)
    assert sorted(os.listdir(mnt)) == ["d", "f", "ld", "loop1", "loop2"]


def test_removed_while_current_directory(mnt: Path) -> None:
    """A process's current directory removed under it: creating there fails with ENOENT, and
    the name can be made again."""
    os.mkdir(mnt / "cwd")

    def inside() -> list[str]:
        os.chdir(mnt / "cwd")
        os.rmdir(mnt / "cwd")
        # (listing "." is not checked: libfuse's path-based API answers ESTALE for a removed
        # directory, where a local file system lists nothing)
        return [err(lambda: os.open("new", os.O_CREAT | os.O_WRONLY, 0o644)), err(lambda: os.mkdir("sub")),
                err(lambda: os.symlink("t", "link"))]

    assert run_as((0, 0), inside) == ["ENOENT", "ENOENT", "ENOENT"]
    assert os.listdir(mnt) == []
    os.mkdir(mnt / "cwd")
    assert os.listdir(mnt / "cwd") == []


def test_unprivileged(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    os.mkdir(mnt / "ro", 0o755)
    os.mkdir(mnt / "ro" / "sub")
    os.mkdir(mnt / "nosearch")
    os.mkdir(mnt / "nosearch" / "sub")
    os.chmod(mnt / "nosearch", 0o666)
    os.mkdir(mnt / "roots")  # root's empty directory in a world-writable one
    as_nobody(lambda: os.mkdir(mnt / "mine"))

    def probe() -> dict[str, str]:
        return {
            "unwritable parent": err(lambda: os.rmdir(mnt / "ro" / "sub")),
            "unsearchable parent": err(lambda: os.rmdir(mnt / "nosearch" / "sub")),
            "root's, in writable dir": err(lambda: os.rmdir(mnt / "roots")),
            "own": err(lambda: os.rmdir(mnt / "mine")),
        }

    assert as_nobody(probe) == {"unwritable parent": "EACCES", "unsearchable parent": "EACCES",
                                "root's, in writable dir": "0", "own": "0"}


def test_sticky_directory(mnt: Path) -> None:
    os.chmod(mnt, 0o1777)
    as_nobody(lambda: os.mkdir(mnt / "nobodys"))
    os.mkdir(mnt / "roots")
    os.chmod(mnt / "roots", 0o777)

    def probe() -> dict[str, str]:
        return {"another's": err(lambda: os.rmdir(mnt / "nobodys")), "root's": err(lambda: os.rmdir(mnt / "roots"))}

    assert run_as(OTHER, probe) == {"another's": "EPERM", "root's": "EPERM"}
    assert as_nobody(lambda: err(lambda: os.rmdir(mnt / "nobodys"))) == "0"
    assert os.listdir(mnt) == ["roots"]
    assert NOBODY != OTHER
