"""chown(2), fchown(2), lchown(2): pjdfstest chown/00-10 on a mount."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from posix_util import (KINDS, NAME_255, NAME_256, NOBODY, OTHER, as_nobody, err, make, mode, raises, run_as,
                        tick, times, touch)


def owner(p: Path, follow: bool = False) -> tuple[int, int]:
    st = os.stat(p) if follow else os.lstat(p)
    return st.st_uid, st.st_gid


@pytest.mark.parametrize("kind", KINDS)
def test_root_chown_any_kind(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "obj")
    assert owner(p) == (0, 0)
    a0, m0, c0 = times(p)
    pt0 = times(mnt)
    tick()
    os.chown(p, 123, 456, follow_symlinks=False)
    assert owner(p) == (123, 456)
    a1, m1, c1 = times(p)
    assert c1 > c0, "chown updates ctime"
    assert (a1, m1) == (a0, m0), "chown leaves atime and mtime"
    assert times(mnt)[1:] == pt0[1:], "chown leaves the parent's times"
    os.chown(p, -1, 789, follow_symlinks=False)
    assert owner(p) == (123, 789)
    os.chown(p, 321, -1, follow_symlinks=False)
    assert owner(p) == (321, 789)
    c2 = times(p)[2]
    os.chown(p, 2**32 - 2, 2**32 - 2, follow_symlinks=False)  # the largest ids that are not -1
    assert owner(p) == (2**32 - 2, 2**32 - 2)
    assert times(p)[2] >= c2


def test_follows_symlink_lchown_does_not(mnt: Path) -> None:
    touch(mnt / "f")
    os.symlink("f", mnt / "l")
    os.chown(mnt / "l", 11, 12)
    assert owner(mnt / "f") == (11, 12) and owner(mnt / "l") == (0, 0)
    os.lchown(mnt / "l", 21, 22)
    assert owner(mnt / "f") == (11, 12) and owner(mnt / "l") == (21, 22)
    assert owner(mnt / "l", follow=True) == (11, 12)


def test_fchown(mnt: Path) -> None:
    p = touch(mnt / "f", b"x")
    c0 = times(p)[2]
    tick()
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fchown(fd, 5, 6)
        st = os.fstat(fd)
        assert (st.st_uid, st.st_gid) == (5, 6)
    finally:
        os.close(fd)
    assert owner(p) == (5, 6) and times(p)[2] > c0


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOTDIR):
        os.chown(f / "x", 1, 1)
    with raises(errno.ENOENT):
        os.chown(mnt / "missing", 1, 1)
    with raises(errno.ENOENT):
        os.lchown(mnt / "missing" / "x", 1, 1)
    touch(mnt / NAME_255)
    os.chown(mnt / NAME_255, 7, 7)
    assert owner(mnt / NAME_255) == (7, 7)
    with raises(errno.ENAMETOOLONG):
        os.chown(mnt / NAME_256, 1, 1)
    with raises(errno.ENAMETOOLONG):
        os.chown(str(mnt) + "/" + "/".join(["a" * 200] * 25), 1, 1)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.chown(mnt / "loop1", 1, 1)
    os.lchown(mnt / "loop1", 3, 3)  # lchown does not follow
    assert owner(mnt / "loop1") == (3, 3)
    with raises(errno.ELOOP):
        os.lchown(mnt / "loop1" / "x", 1, 1)


def test_unprivileged_rules(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    f = mnt / "f"
    as_nobody(lambda: touch(f))
    touch(mnt / "roots")

    def probe() -> dict[str, str]:
        return {
            "give away uid": err(lambda: os.chown(f, OTHER[0], -1)),
            "to own uid": err(lambda: os.chown(f, NOBODY[0], -1)),
            "to own gid": err(lambda: os.chown(f, -1, NOBODY[1])),
            "to member group": err(lambda: os.chown(f, -1, 777)),
            "to non-member group": err(lambda: os.chown(f, -1, 4242)),
            "both -1": err(lambda: os.chown(f, -1, -1)),
            "root's file gid": err(lambda: os.chown(mnt / "roots", -1, NOBODY[1])),
            "root's file uid": err(lambda: os.chown(mnt / "roots", NOBODY[0], -1)),
        }

    got = run_as(NOBODY, probe, groups=(777,))
    assert got == {"give away uid": "EPERM", "to own uid": "0", "to own gid": "0", "to member group": "0",
                   "to non-member group": "EPERM", "both -1": "0", "root's file gid": "EPERM",
                   "root's file uid": "EPERM"}
    assert owner(f) == (NOBODY[0], 777) and owner(mnt / "roots") == (0, 0)
    # no search permission on the way
    os.mkdir(mnt / "private", 0o700)
    touch(mnt / "private" / "g")
    os.chown(mnt / "private" / "g", *NOBODY)
    assert as_nobody(lambda: err(lambda: os.chown(mnt / "private" / "g", -1, NOBODY[1]))) == "EACCES"


def test_failed_chown_changes_nothing(mnt: Path) -> None:
    p = touch(mnt / "f")
    before = os.stat(p)
    tick()
    assert as_nobody(lambda: err(lambda: os.chown(p, *NOBODY))) == "EPERM"
    after = os.stat(p)
    assert (after.st_uid, after.st_gid, after.st_ctime_ns) == (0, 0, before.st_ctime_ns)


@pytest.mark.parametrize("start,cleared", [(0o6755, 0o755), (0o4755, 0o755), (0o2755, 0o755), (0o2745, 0o2745),
                                           (0o6745, 0o2745)])
def test_unprivileged_chown_clears_setid(mnt: Path, start: int, cleared: int) -> None:
    """A successful chown by a non-root owner clears S_ISUID, and S_ISGID when the group may
    execute (S_ISGID without group execute marks mandatory locking and stays)."""
    os.chmod(mnt, 0o777)
    f = mnt / "f"
    as_nobody(lambda: touch(f))
    os.chmod(f, start)

    def change() -> int:
        os.chown(f, -1, 777)
        return stat.S_IMODE(os.stat(f).st_mode)

    assert run_as(NOBODY, change, groups=(777,)) == cleared
    assert mode(f) == cleared and owner(f) == (NOBODY[0], 777)


def test_root_chown_setid(mnt: Path) -> None:
    """Root's chown of a regular file: POSIX lets the set-id bits go or stay (Linux clears them);
    a directory's set-id bits always stay."""
    f = touch(mnt / "f")
    os.chmod(f, 0o6555)
    os.chown(f, 65534, 65533)
    assert mode(f) in (0o6555, 0o555) and owner(f) == (65534, 65533)
    os.mkdir(mnt / "d")
    os.chmod(mnt / "d", 0o3755)
    os.chown(mnt / "d", 65534, 65533)
    assert mode(mnt / "d") == 0o3755


def test_unprivileged_chown_of_directory_keeps_setgid(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    d = mnt / "d"
    as_nobody(lambda: os.mkdir(d))
    os.chmod(d, 0o2775)
    assert run_as(NOBODY, lambda: err(lambda: os.chown(d, -1, 777)), groups=(777,)) == "0"
    assert mode(d) == 0o2775 and owner(d) == (NOBODY[0], 777)
