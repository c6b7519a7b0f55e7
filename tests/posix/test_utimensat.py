"""utimensat(2), futimens(3), utimes: pjdfstest utimensat/00-09 on a mount: nanosecond times,
UTIME_NOW and UTIME_OMIT, AT_SYMLINK_NOFOLLOW, and who may set what."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from posix_util import (KINDS, NAME_256, NOBODY, UTIME_NOW, UTIME_OMIT, as_nobody, err, make, raises, tick, times,
                        touch, utimensat)

NS = 10**9


@pytest.mark.parametrize("kind", KINDS)
def test_explicit_nanoseconds(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    c0 = times(p)[2]
    pt0 = times(mnt)
    tick()
    t0 = time.time_ns()
    utimensat(p, (1_234_567_890, 123_456_789), (987_654_321, 999_999_999), follow=False)
    a, m, c = times(p)
    assert (a, m) == (1_234_567_890 * NS + 123_456_789, 987_654_321 * NS + 999_999_999)
    assert c > c0 and c >= t0 - 10**7, "setting times updates ctime to now"
    assert times(mnt) == pt0, "the parent is untouched"


@pytest.mark.parametrize("atime,mtime", [((0, 0), (0, 1)), ((-1, 0), (-10**9, 500)), ((2**33, 1), (2**34, 2)),
                                         ((1, 999_999_999), (1, 0))])
def test_extreme_values(mnt: Path, atime: tuple[int, int], mtime: tuple[int, int]) -> None:
    p = touch(mnt / "f")
    utimensat(p, atime, mtime)
    st = os.stat(p)
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime[0] * NS + atime[1], mtime[0] * NS + mtime[1])


def test_now_and_omit(mnt: Path) -> None:
    p = touch(mnt / "f")
    utimensat(p, (100, 1), (200, 2))
    base = (100 * NS + 1, 200 * NS + 2)
    c0 = times(p)[2]
    tick()
    utimensat(p, (0, UTIME_OMIT), (0, UTIME_OMIT))  # both omitted: nothing changes, not even ctime
    assert times(p) == (*base, c0)
    tick()
    t0 = time.time_ns()
    utimensat(p, (0, UTIME_NOW), (0, UTIME_OMIT))
    a, m, c = times(p)
    assert t0 - 10**7 <= a <= time.time_ns() + 10**7 and m == base[1] and c > c0
    tick()
    t1 = time.time_ns()
    utimensat(p, (5, 5), (0, UTIME_NOW))
    a, m, c2 = times(p)
    assert a == 5 * NS + 5 and t1 - 10**7 <= m <= time.time_ns() + 10**7 and c2 > c
    tick()
    t2 = time.time_ns()
    utimensat(p, None, None)  # NULL: both now
    a, m, c3 = times(p)
    assert a >= t2 - 10**7 and m >= t2 - 10**7 and c3 > c2
    t3 = time.time_ns()
    os.utime(p)  # utimes(NULL) too
    assert times(p)[1] >= t3 - 10**7


def test_invalid_nanoseconds(mnt: Path) -> None:
    p = touch(mnt / "f")
    utimensat(p, (1, 1), (2, 2))
    for bad in (10**9, -1, UTIME_NOW + 5):
        with raises(errno.EINVAL):
            utimensat(p, (1, bad), (2, 2))
        with raises(errno.EINVAL):
            utimensat(p, (1, 1), (2, bad))
    assert times(p)[:2] == (NS + 1, 2 * NS + 2)


def test_symlink_nofollow(mnt: Path) -> None:
    f = touch(mnt / "f")
    os.symlink("f", mnt / "l")
    utimensat(f, (10, 0), (20, 0))
    utimensat(mnt / "l", (30, 3), (40, 4), follow=False)
    assert times(mnt / "l")[:2] == (30 * NS + 3, 40 * NS + 4)
    assert times(f)[:2] == (10 * NS, 20 * NS)
    utimensat(mnt / "l", (50, 0), (60, 0))  # follows
    assert times(f)[:2] == (50 * NS, 60 * NS) and times(mnt / "l")[:2] == (30 * NS + 3, 40 * NS + 4)


def test_futimens(mnt: Path) -> None:
    p = touch(mnt / "f", b"x")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.utime(fd, ns=(7 * NS + 7, 8 * NS + 8))
        st = os.fstat(fd)
        assert (st.st_atime_ns, st.st_mtime_ns) == (7 * NS + 7, 8 * NS + 8)
        utimensat(None, (0, UTIME_OMIT), (9, 9), fd=fd)
        assert os.fstat(fd).st_mtime_ns == 9 * NS + 9
    finally:
        os.close(fd)
    assert times(p)[:2] == (7 * NS + 7, 9 * NS + 9)


def test_write_after_utime(mnt: Path) -> None:
    """Times set while writes are pending stay set; a later write moves mtime to now."""
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"pending")
        os.utime(mnt / "f", ns=(NS, 2 * NS))
        os.fsync(fd)
        assert times(mnt / "f")[:2] == (NS, 2 * NS)
        tick()
        t0 = time.time_ns()
        os.write(fd, b" more")
        os.fsync(fd)
    finally:
        os.close(fd)
    assert times(mnt / "f")[1] >= t0 - 10**7
    fd = os.open(mnt / "f", os.O_RDWR)
    try:
        os.write(fd, b"x")
        os.utime(fd, ns=(3 * NS, 4 * NS))  # futimens after an unflushed write
    finally:
        os.close(fd)
    assert times(mnt / "f")[:2] == (3 * NS, 4 * NS)


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOENT):
        utimensat(mnt / "missing", None, None)
    with raises(errno.ENOTDIR):
        utimensat(f / "x", None, None)
    with raises(errno.ENAMETOOLONG):
        utimensat(mnt / NAME_256, None, None)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        utimensat(mnt / "loop1", (1, 0), (1, 0))
    utimensat(mnt / "loop1", (1, 0), (1, 0), follow=False)
    assert times(mnt / "loop1")[:2] == (NS, NS)


def test_permissions(mnt: Path) -> None:
    """Owner: anything. Non-owner with write permission: only "now" for both (NULL or
    UTIME_NOW twice). Non-owner without write permission: EACCES for "now", EPERM otherwise."""
    os.chmod(mnt, 0o777)
    touch(mnt / "writable")
    os.chmod(mnt / "writable", 0o666)
    touch(mnt / "readonly")
    as_nobody(lambda: touch(mnt / "mine"))
    for n in ("writable", "readonly", "mine"):
        utimensat(mnt / n, (1, 0), (1, 0))

    def probe() -> dict[str, str]:
        w, r = mnt / "writable", mnt / "readonly"
        return {
            "writable: NULL": err(lambda: utimensat(w, None, None)),
            "writable: NOW,NOW": err(lambda: utimensat(w, (0, UTIME_NOW), (0, UTIME_NOW))),
            "writable: explicit": err(lambda: utimensat(w, (5, 0), (5, 0))),
            "writable: NOW,OMIT": err(lambda: utimensat(w, (0, UTIME_NOW), (0, UTIME_OMIT))),
            "writable: OMIT,OMIT": err(lambda: utimensat(w, (0, UTIME_OMIT), (0, UTIME_OMIT))),
            "readonly: NULL": err(lambda: utimensat(r, None, None)),
            "readonly: explicit": err(lambda: utimensat(r, (5, 0), (5, 0))),
            "own: explicit": err(lambda: utimensat(mnt / "mine", (6, 6), (7, 7))),
            "own: NOW,OMIT": err(lambda: utimensat(mnt / "mine", (0, UTIME_NOW), (0, UTIME_OMIT))),
        }

    assert as_nobody(probe) == {
        "writable: NULL": "0", "writable: NOW,NOW": "0", "writable: explicit": "EPERM",
        "writable: NOW,OMIT": "EPERM", "writable: OMIT,OMIT": "0", "readonly: NULL": "EACCES",
        "readonly: explicit": "EPERM", "own: explicit": "0", "own: NOW,OMIT": "0"}
    assert times(mnt / "readonly")[:2] == (NS, NS)
    assert times(mnt / "mine")[1] == 7 * NS + 7
    assert times(mnt / "writable")[1] > 5 * NS
    assert NOBODY[0] != 0
