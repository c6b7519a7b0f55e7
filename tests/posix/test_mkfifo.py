"""mkfifo(3) (mknod(2) with S_IFIFO): pjdfstest mkfifo/00-12 on a mount. The kernel serves the
pipe itself; dynlog keeps only the FIFO's metadata."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from posix_util import (KINDS, NAME_255, NAME_256, NOBODY, as_nobody, err, make, mode, raises, tick, times,
                        touch)


@pytest.mark.parametrize("umask,asked,got", [(0o022, 0o644, 0o644), (0o022, 0o777, 0o755), (0o077, 0o666, 0o600),
                                             (0o000, 0o777, 0o777), (0o000, 0o1777, 0o1777)])
def test_mode_and_umask(mnt: Path, umask: int, asked: int, got: int) -> None:
    old = os.umask(umask)
    try:
        os.mkfifo(mnt / "p", asked)
    finally:
        os.umask(old)
    st = os.lstat(mnt / "p")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == got


def test_attributes_and_parent(mnt: Path) -> None:
    pt0 = times(mnt)
    tick()
    t0 = time.time_ns()
    os.mkfifo(mnt / "p", 0o640)
    t1 = time.time_ns()
    st = os.lstat(mnt / "p")
    assert (st.st_uid, st.st_gid, st.st_nlink, st.st_size) == (0, 0, 1, 0)
    for t in (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns):
        assert t0 - 10**7 <= t <= t1 + 10**7
    pt1 = times(mnt)
    assert pt1[1] > pt0[1] and pt1[2] > pt0[2], "mkfifo updates the parent's mtime and ctime"
    assert os.listdir(mnt) == ["p"]


def test_by_unprivileged_user_and_setgid_dir(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    os.mkdir(mnt / "sg", 0o777)
    os.chown(mnt / "sg", 0, 4242)
    os.chmod(mnt / "sg", 0o2777)

    def mk() -> list[tuple[int, int]]:
        os.mkfifo(mnt / "p")
        os.mkfifo(mnt / "sg" / "p")
        return [(os.stat(mnt / "p").st_uid, os.stat(mnt / "p").st_gid),
                (os.stat(mnt / "sg" / "p").st_uid, os.stat(mnt / "sg" / "p").st_gid)]

    assert as_nobody(mk) == [NOBODY, (NOBODY[0], 4242)]


def test_works_as_a_pipe(mnt: Path) -> None:
    os.mkfifo(mnt / "p", 0o600)
    with raises(errno.ENXIO):  # no reader: a non-blocking writer is refused
        os.open(mnt / "p", os.O_WRONLY | os.O_NONBLOCK)
    got: list[bytes] = []

    def reader() -> None:
        with open(mnt / "p", "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=reader)
    t.start()
    with open(mnt / "p", "wb") as f:  # blocks until the reader opens
        f.write(b"x" * 100_000)  # more than a pipe buffer
    t.join(10)
    assert got == [b"x" * 100_000]
    st = os.stat(mnt / "p")
    assert st.st_size == 0 and stat.S_ISFIFO(st.st_mode)


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOTDIR):
        os.mkfifo(f / "p")
    with raises(errno.ENOENT):
        os.mkfifo(mnt / "missing" / "p")
    os.mkfifo(mnt / NAME_255)
    with raises(errno.ENAMETOOLONG):
        os.mkfifo(mnt / NAME_256)
    with raises(errno.ENAMETOOLONG):
        os.mkfifo(str(mnt) + "/" + "/".join(["a" * 200] * 25))
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.mkfifo(mnt / "loop1" / "p")
    os.mkdir(mnt / "ro", 0o755)
    os.mkdir(mnt / "nosearch", 0o666)
    assert as_nobody(lambda: [err(lambda: os.mkfifo(mnt / "ro" / "p")),
                              err(lambda: os.mkfifo(mnt / "nosearch" / "p"))]) == ["EACCES", "EACCES"]


@pytest.mark.parametrize("kind", KINDS)
def test_eexist_any_kind(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    ino, m = os.lstat(p).st_ino, os.lstat(p).st_mode
    with raises(errno.EEXIST):
        os.mkfifo(p)
    assert (os.lstat(p).st_ino, os.lstat(p).st_mode) == (ino, m)
    assert mode(p) == stat.S_IMODE(m)
