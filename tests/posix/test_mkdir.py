"""mkdir(2): pjdfstest mkdir/00-12 on a mount."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from posix_util import (KINDS, NAME_255, NAME_256, NOBODY, as_nobody, err, make, raises, run_as, tick, times,
                        touch)


@pytest.mark.parametrize("umask,asked,got", [(0o022, 0o755, 0o755), (0o022, 0o777, 0o755), (0o077, 0o777, 0o700),
                                             (0o000, 0o1777, 0o1777), (0o000, 0o7777, 0o1777),
                                             (0o070, 0o751, 0o701), (0o777, 0o777, 0o000)])
def test_mode_and_umask(mnt: Path, umask: int, asked: int, got: int) -> None:
    old = os.umask(umask)
    try:
        os.mkdir(mnt / "d", asked)
    finally:
        os.umask(old)
    st = os.stat(mnt / "d")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == got


def test_attributes_of_new_directory_and_parent(mnt: Path) -> None:
    pst0 = os.stat(mnt)
    tick()
    t0 = time.time_ns()
    os.mkdir(mnt / "d")
    t1 = time.time_ns()
    st = os.stat(mnt / "d")
    assert (st.st_uid, st.st_gid) == (0, 0) and st.st_nlink == 2 and st.st_size >= 0
    for t in (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns):
        assert t0 - 10**7 <= t <= t1 + 10**7, "a new directory's times are now"
    assert os.listdir(mnt / "d") == []
    pst1 = os.stat(mnt)
    assert pst1.st_mtime_ns > pst0.st_mtime_ns and pst1.st_ctime_ns > pst0.st_ctime_ns
    assert pst1.st_nlink == pst0.st_nlink + 1, "a subdirectory's '..' links the parent"
    os.mkdir(mnt / "d" / "e")
    assert os.stat(mnt / "d").st_nlink == 3 and os.stat(mnt).st_nlink == pst0.st_nlink + 1
    # . and .. name the right directories
    assert os.stat(mnt / "d" / "e" / "..").st_ino == st.st_ino
    assert os.stat(mnt / "d" / ".").st_ino == st.st_ino
    assert os.stat(mnt / "d" / ".." / "..").st_ino == os.stat(mnt.parent).st_ino


def test_trailing_slash(mnt: Path) -> None:
    os.mkdir(str(mnt / "d") + "/")
    os.mkdir(str(mnt / "e") + "//")
    assert sorted(os.listdir(mnt)) == ["d", "e"]


def test_owner_of_new_directory(mnt: Path) -> None:
    os.chmod(mnt, 0o777)

    def mk() -> tuple[int, int, int]:
        os.mkdir(mnt / "nd", 0o750)
        st = os.stat(mnt / "nd")
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    assert as_nobody(mk) == (NOBODY[0], NOBODY[1], 0o750)
    assert run_as((1000, 1001), lambda: (os.mkdir(mnt / "x"), os.stat(mnt / "x").st_gid)[1]) == 1001


def test_setgid_directory_inheritance(mnt: Path) -> None:
    """In a setgid directory a new directory takes the directory's group, and the setgid bit,
    whoever makes it (Linux); outside one it takes the maker's group."""
    sg = mnt / "sg"
    os.mkdir(sg)
    os.chown(sg, 0, 4242)
    os.chmod(sg, 0o2777)
    os.mkdir(sg / "by-root", 0o755)
    st = os.stat(sg / "by-root")
    assert st.st_gid == 4242 and stat.S_IMODE(st.st_mode) == 0o2755

    def mk() -> tuple[int, int, int]:
        os.mkdir(sg / "by-nobody", 0o700)
        os.mkdir(sg / "by-nobody" / "deeper", 0o700)
        a, b = os.stat(sg / "by-nobody"), os.stat(sg / "by-nobody" / "deeper")
        return a.st_gid, stat.S_IMODE(a.st_mode), b.st_gid

    assert as_nobody(mk) == (4242, 0o2700, 4242)
    os.chmod(sg, 0o777)  # setgid dropped: back to the maker's group
    as_nobody(lambda: os.mkdir(sg / "plain"))
    st = os.stat(sg / "plain")
    assert st.st_gid == NOBODY[1] and not st.st_mode & stat.S_ISGID


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOTDIR):
        os.mkdir(f / "d")
    with raises(errno.ENOENT):
        os.mkdir(mnt / "missing" / "d")
    os.mkdir(mnt / NAME_255)
    with raises(errno.ENAMETOOLONG):
        os.mkdir(mnt / NAME_256)
    with raises(errno.ENAMETOOLONG):
        os.mkdir(str(mnt) + "/" + "/".join(["a" * 200] * 25))
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.mkdir(mnt / "loop1" / "d")
    with raises(errno.EEXIST):  # an existing symlink, even a looping one, is not followed
        os.mkdir(mnt / "loop1")
    os.symlink("nowhere", mnt / "dangling")
    with raises(errno.EEXIST):
        os.mkdir(mnt / "dangling")
    for name in (".", ".."):
        with raises(errno.EEXIST):
            os.mkdir(mnt / NAME_255 / name)
    with raises(errno.EEXIST):
        os.mkdir(mnt)


@pytest.mark.parametrize("kind", KINDS)
def test_eexist_any_kind(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    st0 = os.lstat(p)
    pt0 = times(mnt)
    tick()
    with raises(errno.EEXIST):
        os.mkdir(p)
    st1 = os.lstat(p)
    assert (st1.st_ino, st1.st_mode, st1.st_ctime_ns) == (st0.st_ino, st0.st_mode, st0.st_ctime_ns)
    assert times(mnt) == pt0, "a failed mkdir leaves the parent's times"


def test_unprivileged_errnos(mnt: Path) -> None:
    os.mkdir(mnt / "ro", 0o755)
    os.mkdir(mnt / "nosearch", 0o776)
    os.mkdir(mnt / "nosearch" / "sub", 0o777)
    assert as_nobody(lambda: {"no write": err(lambda: os.mkdir(mnt / "ro" / "d")),
                              "no search": err(lambda: os.mkdir(mnt / "nosearch" / "sub" / "d"))}) == {
        "no write": "EACCES", "no search": "EACCES"}
    assert os.listdir(mnt / "ro") == [] and os.listdir(mnt / "nosearch" / "sub") == []


def test_many_subdirectories_nlink(mnt: Path) -> None:
    for i in range(40):
        os.mkdir(mnt / f"d{i}")
    touch(mnt / "file")  # files do not count
    assert os.stat(mnt).st_nlink == 42
    for i in range(0, 40, 2):
        os.rmdir(mnt / f"d{i}")
    assert os.stat(mnt).st_nlink == 22
