"""link(2), linkat(2): pjdfstest link/00-17 on a mount (EXDEV n/a: one file system)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from posix_util import (AT_SYMLINK_FOLLOW, NAME_255, NAME_256, NONDIR_KINDS, as_nobody, err, linkat, make, raises,
                        read, tick, times, touch, xstat)


@pytest.mark.parametrize("kind", NONDIR_KINDS)
def test_link_any_kind(mnt: Path, kind: str) -> None:
    a = make(kind, mnt / "a")
    ino = os.lstat(a).st_ino
    os.mkdir(mnt / "d")
    c0 = times(a)[2]
    dt0 = times(mnt / "d")
    tick()
    os.link(a, mnt / "d" / "b", follow_symlinks=False)
    sa, sb = os.lstat(a), os.lstat(mnt / "d" / "b")
    assert sa.st_ino == sb.st_ino == ino and sa.st_nlink == sb.st_nlink == 2
    assert stat.S_IFMT(sb.st_mode) == stat.S_IFMT(sa.st_mode) and sb.st_mode == sa.st_mode
    assert sa.st_ctime_ns > c0, "link updates the file's ctime"
    dt1 = times(mnt / "d")
    assert dt1[1] > dt0[1] and dt1[2] > dt0[2], "link updates the new parent's mtime and ctime"
    os.link(a, mnt / "c", follow_symlinks=False)
    assert os.lstat(a).st_nlink == os.lstat(mnt / "c").st_nlink == os.lstat(mnt / "d" / "b").st_nlink == 3
    # a change through one name is seen through the others
    os.chown(mnt / "c", 77, 88, follow_symlinks=False)
    assert (os.lstat(mnt / "d" / "b").st_uid, os.lstat(a).st_gid) == (77, 88)
    c1 = times(a)[2]
    tick()
    os.unlink(mnt / "c")
    assert os.lstat(a).st_nlink == os.lstat(mnt / "d" / "b").st_nlink == 2
    assert times(a)[2] > c1, "unlink of another name updates the ctime"
    os.unlink(a)
    st = os.lstat(mnt / "d" / "b")
    assert st.st_nlink == 1 and st.st_ino == ino
    assert sorted(os.listdir(mnt)) == ["d"]


def test_link_shares_data(mnt: Path) -> None:
    a = touch(mnt / "a", b"one")
    os.link(a, mnt / "b")
    with open(mnt / "b", "ab") as f:
        f.write(b" two")
    assert read(a) == b"one two" and os.stat(a).st_size == 7
    fd = os.open(a, os.O_RDWR)  # open through one name, link again while open, write
    try:
        os.link(a, mnt / "c")
        os.pwrite(fd, b"ONE", 0)
    finally:
        os.close(fd)
    assert read(mnt / "b") == read(mnt / "c") == b"ONE two"
    os.truncate(mnt / "c", 3)
    assert read(a) == b"ONE" and os.stat(mnt / "b").st_size == 3


def test_link_to_symlink_does_not_follow(mnt: Path) -> None:
    touch(mnt / "f")
    os.symlink("f", mnt / "s")
    os.link(mnt / "s", mnt / "s2")  # Linux link(2) links the symlink itself
    assert stat.S_ISLNK(os.lstat(mnt / "s2").st_mode) and os.readlink(mnt / "s2") == "f"
    assert os.lstat(mnt / "s2").st_ino == os.lstat(mnt / "s").st_ino
    assert os.stat(mnt / "f").st_nlink == 1
    linkat(mnt / "s", mnt / "f2", AT_SYMLINK_FOLLOW)  # the symlink resolved: a link to f
    assert os.lstat(mnt / "f2").st_ino == os.stat(mnt / "f").st_ino and os.stat(mnt / "f").st_nlink == 2


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    os.mkdir(mnt / "d")
    with raises(errno.ENOTDIR):
        os.link(f / "x", mnt / "n")
    with raises(errno.ENOTDIR):
        os.link(f, f / "n")
    with raises(errno.ENOENT):
        os.link(mnt / "missing", mnt / "n")
    with raises(errno.ENOENT):
        os.link(f, mnt / "missing" / "n")
    os.link(f, mnt / NAME_255)
    assert os.stat(f).st_nlink == 2
    with raises(errno.ENAMETOOLONG):
        os.link(f, mnt / NAME_256)
    with raises(errno.ENAMETOOLONG):
        os.link(mnt / NAME_256, mnt / "n")
    with raises(errno.ENAMETOOLONG):
        os.link(f, str(mnt) + "/" + "/".join(["a" * 200] * 25))
    for existing in ("f", "d", NAME_255):
        with raises(errno.EEXIST):
            os.link(f, mnt / existing)
    os.symlink("nowhere", mnt / "dangling")
    with raises(errno.EEXIST):
        os.link(f, mnt / "dangling")
    with raises(errno.EPERM):
        os.link(mnt / "d", mnt / "d2")
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.link(mnt / "loop1" / "x", mnt / "n")
    with raises(errno.ELOOP):
        os.link(f, mnt / "loop1" / "n")
    assert os.stat(f).st_nlink == 2 and sorted(os.listdir(mnt)) == sorted(
        ["f", "d", NAME_255, "dangling", "loop1", "loop2"])


def test_failed_link_changes_nothing(mnt: Path) -> None:
    f = touch(mnt / "f")
    touch(mnt / "g")
    st0, pt0 = os.stat(f), times(mnt)
    tick()
    with raises(errno.EEXIST):
        os.link(f, mnt / "g")
    st1 = os.stat(f)
    assert (st1.st_nlink, st1.st_ctime_ns) == (1, st0.st_ctime_ns) and times(mnt) == pt0


def test_unprivileged(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    os.mkdir(mnt / "ro", 0o755)
    os.mkdir(mnt / "noexec", 0o766)
    touch(mnt / "roots", mode=0o644)
    touch(mnt / "noexec" / "f", mode=0o644)
    as_nobody(lambda: touch(mnt / "mine"))

    def probe() -> dict[str, str]:
        return {
            "own file, writable dir": err(lambda: os.link(mnt / "mine", mnt / "mine2")),
            "into unwritable dir": err(lambda: os.link(mnt / "mine", mnt / "ro" / "x")),
            "from unsearchable dir": err(lambda: os.link(mnt / "noexec" / "f", mnt / "y")),
            # fs.protected_hardlinks: no links to another user's file one cannot write
            "root's read-only file": err(lambda: os.link(mnt / "roots", mnt / "z")),
        }

    want = {"own file, writable dir": "0", "into unwritable dir": "EACCES", "from unsearchable dir": "EACCES",
            "root's read-only file": "EPERM"}
    if Path("/proc/sys/fs/protected_hardlinks").read_text().strip() != "1":
        want["root's read-only file"] = "0"
    assert as_nobody(probe) == want
    assert os.stat(mnt / "mine").st_nlink == 2 and os.stat(mnt / "roots").st_nlink == 1


def test_link_counts_through_renames_and_unlinks(mnt: Path) -> None:
    """One inode, names in three directories, moved about: every name shows the same inode, link
    count, mode and data, as dynlog holds them (xstat), after each step."""
    for d in ("d1", "d2", "d3"):
        os.mkdir(mnt / d)
    touch(mnt / "d1" / "a", b"shared data")
    os.link(mnt / "d1" / "a", mnt / "d2" / "b")
    os.link(mnt / "d2" / "b", mnt / "d3" / "c")

    def check(names: list[str], nlink: int, mode_: int) -> None:
        sts = [xstat(mnt / n) for n in names]
        assert {(s.ino, s.nlink, s.mode & 0o7777) for s in sts} == {(sts[0].ino, nlink, mode_)}, names
        assert {read(mnt / n) for n in names} == {b"shared data"}

    check(["d1/a", "d2/b", "d3/c"], 3, 0o644)
    os.rename(mnt / "d1" / "a", mnt / "d2" / "a-moved")  # across directories
    check(["d2/a-moved", "d2/b", "d3/c"], 3, 0o644)
    os.rename(mnt / "d2" / "b", mnt / "d2" / "a-moved")  # onto another name of itself: nothing happens
    check(["d2/a-moved", "d2/b", "d3/c"], 3, 0o644)
    os.chmod(mnt / "d3" / "c", 0o600)
    check(["d2/a-moved", "d2/b", "d3/c"], 3, 0o600)
    os.rename(mnt / "d3", mnt / "d1" / "d3-moved")  # the directory holding a name moves
    check(["d2/a-moved", "d2/b", "d1/d3-moved/c"], 3, 0o600)
    touch(mnt / "d1" / "other", b"other")
    os.rename(mnt / "d1" / "other", mnt / "d2" / "b")  # a name replaced by another file
    check(["d2/a-moved", "d1/d3-moved/c"], 2, 0o600)
    assert read(mnt / "d2" / "b") == b"other" and xstat(mnt / "d2" / "b").nlink == 1
    os.unlink(mnt / "d2" / "a-moved")
    check(["d1/d3-moved/c"], 1, 0o600)
    os.link(mnt / "d1" / "d3-moved" / "c", mnt / "again")  # linked again after dropping to one name
    check(["d1/d3-moved/c", "again"], 2, 0o600)
