"""chmod(2), fchmod(2), fchmodat(2): pjdfstest chmod/00-12 on a mount."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from posix_util import (KINDS, NAME_255, NAME_256, NOBODY, as_nobody, err, make, mode, raises, run_as, tick,
                        times, touch)

MODES = [0o000, 0o111, 0o444, 0o644, 0o755, 0o777, 0o4755, 0o2755, 0o1755, 0o7777]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "symlink"])
def test_mode_set_and_ctime(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "obj")
    for m in MODES:
        os.chmod(p, m)
        assert mode(p) == m, oct(m)
    assert stat.S_IFMT(os.lstat(p).st_mode) == stat.S_IFMT(os.lstat(p).st_mode)  # type kept
    a0, m0, c0 = times(p)
    pa0, pm0, pc0 = times(mnt)
    tick()
    os.chmod(p, 0o640)
    a1, m1, c1 = times(p)
    assert c1 > c0, "chmod updates ctime"
    assert (a1, m1) == (a0, m0), "chmod leaves atime and mtime"
    assert times(mnt)[1:] == (pm0, pc0), "chmod leaves the parent's mtime and ctime"


def test_file_type_bits_ignored(mnt: Path) -> None:
    p = touch(mnt / "f")
    os.chmod(p, stat.S_IFDIR | 0o600)  # only the permission bits are taken
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_follows_symlink(mnt: Path) -> None:
    p = touch(mnt / "f", mode=0o644)
    os.symlink("f", mnt / "l")
    lmode = mode(mnt / "l")
    os.chmod(mnt / "l", 0o600)
    assert mode(p) == 0o600 and mode(mnt / "l") == lmode == 0o777


def test_fchmod(mnt: Path) -> None:
    p = touch(mnt / "f", b"data")
    c0 = times(p)[2]
    tick()
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o4711)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o4711
    finally:
        os.close(fd)
    assert mode(p) == 0o4711 and times(p)[2] > c0


def test_fchmod_fchown_futimens_unlinked_open_file(mnt: Path) -> None:
    """An open file with no name left still takes attribute changes through its descriptor."""
    p = touch(mnt / "f", b"data")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        c0 = os.fstat(fd).st_ctime_ns
        tick()
        os.fchmod(fd, 0o600)
        os.fchown(fd, 12, 34)
        os.utime(fd, ns=(5, 6))
        st = os.fstat(fd)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_nlink) == (0o600, 12, 34, 0)
        assert (st.st_atime_ns, st.st_mtime_ns) == (5, 6) and st.st_ctime_ns > c0
        assert os.pread(fd, 10, 0) == b"data"
    finally:
        os.close(fd)
    assert os.listdir(mnt) == []


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOTDIR):
        os.chmod(f / "x", 0o644)
    with raises(errno.ENOENT):
        os.chmod(mnt / "missing", 0o644)
    with raises(errno.ENOENT):
        os.chmod(mnt / "missing" / "x", 0o644)
    touch(mnt / NAME_255)
    os.chmod(mnt / NAME_255, 0o620)
    assert mode(mnt / NAME_255) == 0o620
    with raises(errno.ENAMETOOLONG):
        os.chmod(mnt / NAME_256, 0o620)
    with raises(errno.ENAMETOOLONG):  # a path longer than PATH_MAX
        os.chmod(str(mnt) + "/" + "/".join(["a" * 200] * 25), 0o644)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.chmod(mnt / "loop1", 0o644)
    with raises(errno.ELOOP):
        os.chmod(mnt / "loop1" / "x", 0o644)
    os.symlink("missing", mnt / "dangling")
    with raises(errno.ENOENT):
        os.chmod(mnt / "dangling", 0o644)


def test_failed_chmod_changes_nothing(mnt: Path) -> None:
    os.chmod(mnt, 0o755)
    f = touch(mnt / "f", mode=0o644)
    before = os.stat(f)
    tick()
    assert as_nobody(lambda: err(lambda: os.chmod(f, 0o777))) == "EPERM"
    after = os.stat(f)
    assert (stat.S_IMODE(after.st_mode), after.st_ctime_ns) == (0o644, before.st_ctime_ns)


def test_unprivileged(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    d = mnt / "nobodys"

    def setup() -> None:
        os.mkdir(d, 0o755)
        touch(d / "f", mode=0o644)
        os.mkdir(d / "sub", 0o755)

    as_nobody(setup)
    touch(mnt / "roots")
    os.chmod(mnt / "roots", 0o666)

    def probe() -> dict[str, object]:
        out: dict[str, object] = {
            "own file": err(lambda: os.chmod(d / "f", 0o600)),
            "own dir": err(lambda: os.chmod(d / "sub", 0o700)),
            "sticky on own file": err(lambda: os.chmod(d / "f", 0o1644)),
            "root's file": err(lambda: os.chmod(mnt / "roots", 0o600)),
        }
        os.chmod(d / "sub", 0o600)  # no search permission in it any more
        out["no search"] = err(lambda: os.chmod(d / "sub" / "x", 0o644))
        os.chmod(d / "sub", 0o755)
        return out

    assert as_nobody(probe) == {"own file": "0", "own dir": "0", "sticky on own file": "0",
                                "root's file": "EPERM", "no search": "EACCES"}
    assert mode(d / "f") == 0o1644 and mode(d / "sub") == 0o755 and mode(mnt / "roots") == 0o666
    # search permission on a directory of root's, 0700: nobody cannot reach inside
    os.mkdir(mnt / "private", 0o700)
    touch(mnt / "private" / "f", mode=0o666)
    assert as_nobody(lambda: err(lambda: os.chmod(mnt / "private" / "f", 0o644))) == "EACCES"


def test_setgid_cleared_for_non_member(mnt: Path) -> None:
    """A non-root owner setting S_ISGID on a file whose group it is not in: the bit is dropped
    silently; in its own group it sticks."""
    os.chmod(mnt, 0o777)
    f = mnt / "f"
    as_nobody(lambda: touch(f))
    os.chown(f, NOBODY[0], 4242)  # a group nobody is not in
    assert as_nobody(lambda: err(lambda: os.chmod(f, 0o2755))) == "0"
    assert mode(f) == 0o755
    assert run_as(NOBODY, lambda: err(lambda: os.chmod(f, 0o2755)), groups=(4242,)) == "0"
    assert mode(f) == 0o2755
    # a directory alike
    g = mnt / "d"
    as_nobody(lambda: os.mkdir(g))
    os.chown(g, NOBODY[0], 4242)
    as_nobody(lambda: os.chmod(g, 0o2775))
    assert mode(g) == 0o775


def test_root_may_chmod_anything(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    as_nobody(lambda: touch(mnt / "f", mode=0o600))
    os.chmod(mnt / "f", 0o6777)
    st = os.stat(mnt / "f")
    assert stat.S_IMODE(st.st_mode) == 0o6777 and st.st_uid == NOBODY[0]
