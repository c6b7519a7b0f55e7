"""open(2) and creat: pjdfstest open/00-25 on a mount: O_CREAT, O_EXCL, O_TRUNC, O_APPEND,
O_DIRECTORY, O_NOFOLLOW, errno values, and the times of the file and of its directory."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from posix_util import (KINDS, NAME_255, NAME_256, NOBODY, as_nobody, err, make, mode, raises, read, run_as,
                        tick, times, touch)


def openclose(path: Path | str, flags: int, m: int = 0o644) -> None:
    os.close(os.open(path, flags, m))


@pytest.mark.parametrize("umask,asked,got", [(0o022, 0o644, 0o644), (0o022, 0o777, 0o755), (0o077, 0o666, 0o600),
                                             (0o000, 0o4777, 0o4777), (0o000, 0o1600, 0o1600),
                                             (0o000, 0o000, 0o000)])
def test_create_mode_and_umask(mnt: Path, umask: int, asked: int, got: int) -> None:
    old = os.umask(umask)
    try:
        openclose(mnt / "f", os.O_CREAT | os.O_WRONLY, asked)
    finally:
        os.umask(old)
    st = os.stat(mnt / "f")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == got
    assert (st.st_size, st.st_nlink, st.st_uid, st.st_gid) == (0, 1, 0, 0)


def test_create_times_and_parent(mnt: Path) -> None:
    pt0 = times(mnt)
    tick()
    t0 = time.time_ns()
    openclose(mnt / "f", os.O_CREAT | os.O_WRONLY)
    t1 = time.time_ns()
    for t in times(mnt / "f"):
        assert t0 - 10**7 <= t <= t1 + 10**7, "a new file's times are now"
    pt1 = times(mnt)
    assert pt1[1] > pt0[1] and pt1[2] > pt0[2], "creating a file updates the parent's mtime and ctime"
    # O_CREAT of an existing file changes nothing: not the file, not the parent
    ft1 = times(mnt / "f")
    tick()
    openclose(mnt / "f", os.O_CREAT | os.O_WRONLY, 0o600)
    assert times(mnt / "f")[1:] == ft1[1:] and times(mnt)[1:] == pt1[1:]
    assert mode(mnt / "f") == 0o644, "the mode of O_CREAT applies only to a new file"


def test_o_trunc(mnt: Path) -> None:
    p = touch(mnt / "f", b"some content")
    ino = os.stat(p).st_ino
    pt0 = times(mnt)
    _, m0, c0 = times(p)
    tick()
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
    st = os.stat(p)
    assert st.st_size == 0 and st.st_ino == ino and read(p) == b""
    assert st.st_mtime_ns > m0 and st.st_ctime_ns > c0, "O_TRUNC updates mtime and ctime"
    assert times(mnt)[1:] == pt0[1:], "O_TRUNC of an existing file leaves the parent"
    # of an empty file too: POSIX marks mtime and ctime whenever O_TRUNC opens an existing file
    _, m1, c1 = times(p)
    tick()
    openclose(p, os.O_WRONLY | os.O_TRUNC)
    _, m2, c2 = times(p)
    assert m2 > m1 and c2 > c1, "O_TRUNC of an empty file updates mtime and ctime too"
    # O_CREAT|O_TRUNC on an existing file keeps its inode, mode and owner
    os.chmod(p, 0o600)
    os.chown(p, 12, 34)
    touch(p, b"again")
    openclose(p, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o777)
    st = os.stat(p)
    assert (st.st_ino, st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (ino, 0, 0o600, 12, 34)


def test_o_trunc_on_fifo_and_dir(mnt: Path) -> None:
    os.mkfifo(mnt / "p")
    fd = os.open(mnt / "p", os.O_RDWR | os.O_TRUNC)  # ignored on a FIFO
    os.close(fd)
    with raises(errno.EISDIR):
        os.open(mnt, os.O_RDWR | os.O_TRUNC)


@pytest.mark.parametrize("kind", KINDS)
def test_o_excl_any_kind(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    st = os.lstat(p)
    with raises(errno.EEXIST):
        os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    st2 = os.lstat(p)
    assert (st2.st_ino, st2.st_mode, st2.st_ctime_ns) == (st.st_ino, st.st_mode, st.st_ctime_ns)


def test_o_excl_does_not_follow_symlinks(mnt: Path) -> None:
    os.symlink("target", mnt / "dangling")
    with raises(errno.EEXIST):
        os.open(mnt / "dangling", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert not os.path.lexists(mnt / "target")
    # without O_EXCL, O_CREAT through a dangling symlink creates its target
    fd = os.open(mnt / "dangling", os.O_CREAT | os.O_WRONLY, 0o640)
    os.write(fd, b"via link")
    os.close(fd)
    assert read(mnt / "target") == b"via link" and mode(mnt / "target") == 0o640
    assert stat.S_ISLNK(os.lstat(mnt / "dangling").st_mode)


def test_o_excl_race_one_winner(mnt: Path) -> None:
    """Many processes racing O_CREAT|O_EXCL on one name: exactly one wins."""
    pids = []
    r, w = os.pipe()
    for i in range(8):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                fd = os.open(mnt / "lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.write(fd, str(i).encode())
                os.close(fd)
                code = 1
            except FileExistsError:
                code = 2
            except BaseException:  # noqa: BLE001
                code = 3
            os.write(w, bytes([code]))
            os._exit(0)
        pids.append(pid)
    os.close(w)
    for pid in pids:
        os.waitpid(pid, 0)
    results = sorted(os.read(r, 100))
    os.close(r)
    assert results == [1] + [2] * 7
    assert len(read(mnt / "lock")) == 1 and os.listdir(mnt) == ["lock"]


def test_o_append(mnt: Path) -> None:
    p = touch(mnt / "f", b"0123")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"ab")  # O_APPEND: at the end whatever the offset
        assert os.lseek(fd, 0, os.SEEK_CUR) == 6
        os.lseek(fd, 1, os.SEEK_SET)
        os.write(fd, b"cd")
        os.pwrite(fd, b"ef", 0)  # Linux: pwrite on an O_APPEND descriptor appends too
    finally:
        os.close(fd)
    assert read(p) == b"0123abcdef"
    # two appenders interleave without overwriting
    fa, fb = os.open(p, os.O_WRONLY | os.O_APPEND), os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(5):
            os.write(fa, b"A")
            os.write(fb, b"B")
    finally:
        os.close(fa)
        os.close(fb)
    assert read(p) == b"0123abcdef" + b"AB" * 5


def test_o_append_after_truncate_elsewhere(mnt: Path) -> None:
    p = touch(mnt / "f", b"0123456789")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.truncate(p, 3)
        os.write(fd, b"X")
    finally:
        os.close(fd)
    assert read(p) == b"012X"


def test_open_flags_errnos(mnt: Path) -> None:
    f = touch(mnt / "f", b"x")
    os.mkdir(mnt / "d")
    os.symlink("f", mnt / "lf")
    os.symlink("d", mnt / "ld")
    with raises(errno.EISDIR):
        os.open(mnt / "d", os.O_WRONLY)
    with raises(errno.EISDIR):
        os.open(mnt / "d", os.O_RDWR)
    with raises(errno.EISDIR):
        os.open(mnt / "d", os.O_CREAT | os.O_RDONLY)
    os.close(os.open(mnt / "d", os.O_RDONLY))  # a directory opens read-only
    os.close(os.open(mnt / "d", os.O_RDONLY | os.O_DIRECTORY))
    os.close(os.open(mnt / "ld", os.O_RDONLY | os.O_DIRECTORY))
    with raises(errno.ENOTDIR):
        os.open(f, os.O_RDONLY | os.O_DIRECTORY)
    with raises(errno.ENOTDIR):
        os.open(mnt / "lf", os.O_RDONLY | os.O_DIRECTORY)
    with raises(errno.ELOOP):
        os.open(mnt / "lf", os.O_RDONLY | os.O_NOFOLLOW)
    fd = os.open(mnt / "lf", os.O_PATH | os.O_NOFOLLOW)  # O_PATH names the link itself
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    with raises(errno.ENOTDIR):
        os.open(f / "x", os.O_RDONLY)
    with raises(errno.ENOTDIR):
        os.open(f / "x", os.O_CREAT | os.O_WRONLY)
    with raises(errno.ENOTDIR):
        os.open(str(f) + "/", os.O_RDONLY)
    with raises(errno.ENOENT):
        os.open(mnt / "missing", os.O_RDONLY)
    with raises(errno.ENOENT):
        os.open(mnt / "missing" / "x", os.O_CREAT | os.O_WRONLY)
    with raises(errno.EISDIR):  # O_CREAT of a name with a trailing slash
        os.open(str(mnt / "new") + "/", os.O_CREAT | os.O_WRONLY)
    openclose(mnt / NAME_255, os.O_CREAT | os.O_WRONLY)
    with raises(errno.ENAMETOOLONG):
        os.open(mnt / NAME_256, os.O_CREAT | os.O_WRONLY)
    with raises(errno.ENAMETOOLONG):
        os.open(mnt / NAME_256, os.O_RDONLY)
    with raises(errno.ENAMETOOLONG):
        os.open(str(mnt) + "/" + "/".join(["a" * 200] * 25), os.O_CREAT | os.O_WRONLY)
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.open(mnt / "loop1", os.O_RDONLY)
    with raises(errno.ELOOP):
        os.open(mnt / "loop1", os.O_CREAT | os.O_WRONLY)
    with raises(errno.ELOOP):
        os.open(mnt / "loop1" / "x", os.O_CREAT | os.O_WRONLY)
    with raises(errno.EINVAL):  # O_DIRECTORY|O_CREAT is refused outright since Linux 6.4
        os.open(mnt / "dc", os.O_CREAT | os.O_DIRECTORY | os.O_RDONLY)
    assert sorted(os.listdir(mnt)) == sorted(["f", "d", "lf", "ld", NAME_255, "loop1", "loop2"])


def test_unprivileged_access(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    for name, m in (("r", 0o444), ("w", 0o222), ("none", 0o000), ("rw", 0o666)):
        touch(mnt / name, b"data")
        os.chmod(mnt / name, m)
    os.mkdir(mnt / "ro", 0o755)
    os.mkdir(mnt / "nosearch", 0o666)
    touch(mnt / "nosearch" / "f")

    def probe() -> dict[str, str]:
        return {
            "read r": err(lambda: openclose(mnt / "r", os.O_RDONLY)),
            "write r": err(lambda: openclose(mnt / "r", os.O_WRONLY)),
            "read w": err(lambda: openclose(mnt / "w", os.O_RDONLY)),
            "write w": err(lambda: openclose(mnt / "w", os.O_WRONLY)),
            "rdwr w": err(lambda: openclose(mnt / "w", os.O_RDWR)),
            "read none": err(lambda: openclose(mnt / "none", os.O_RDONLY)),
            "rdwr rw": err(lambda: openclose(mnt / "rw", os.O_RDWR)),
            "trunc r": err(lambda: openclose(mnt / "r", os.O_RDONLY | os.O_TRUNC)),
            "create in ro": err(lambda: openclose(mnt / "ro" / "n", os.O_CREAT | os.O_WRONLY)),
            "open in nosearch": err(lambda: openclose(mnt / "nosearch" / "f", os.O_RDONLY)),
            "creat existing r": err(lambda: openclose(mnt / "r", os.O_CREAT | os.O_WRONLY)),
        }

    assert as_nobody(probe) == {
        "read r": "0", "write r": "EACCES", "read w": "EACCES", "write w": "0", "rdwr w": "EACCES",
        "read none": "EACCES", "rdwr rw": "0", "trunc r": "EACCES", "create in ro": "EACCES",
        "open in nosearch": "EACCES", "creat existing r": "EACCES"}
    assert read(mnt / "r") == b"data" and os.listdir(mnt / "ro") == []


def test_mode_applies_to_later_opens_only(mnt: Path) -> None:
    """open(O_CREAT|O_RDWR, 0444) gives a writable descriptor although the new file is read-only."""
    os.chmod(mnt, 0o777)

    def create() -> tuple[str, bytes]:
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o444)
        try:
            os.write(fd, b"written")
            data = os.pread(fd, 100, 0)
        finally:
            os.close(fd)
        return err(lambda: openclose(mnt / "f", os.O_WRONLY)), data

    assert as_nobody(create) == ("EACCES", b"written")
    assert read(mnt / "f") == b"written" and mode(mnt / "f") == 0o444


def test_owner_and_setgid_directory(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    os.mkdir(mnt / "sg")
    os.chown(mnt / "sg", 0, 4242)
    os.chmod(mnt / "sg", 0o2777)

    def create() -> list[tuple[int, int, int]]:
        out = []
        for p, m in ((mnt / "plain", 0o644), (mnt / "sg" / "f", 0o644), (mnt / "sg" / "g", 0o2755)):
            openclose(p, os.O_CREAT | os.O_WRONLY, m)
            st = os.stat(p)
            out.append((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
        return out

    # in a setgid directory a new file takes the directory's group; a non-member asking for
    # S_ISGID does not get it (Linux strips it)
    assert as_nobody(create) == [(NOBODY[0], NOBODY[1], 0o644), (NOBODY[0], 4242, 0o644),
                                 (NOBODY[0], 4242, 0o755)]
    assert run_as(NOBODY, lambda: (openclose(mnt / "sg" / "m", os.O_CREAT | os.O_WRONLY, 0o2755),
                                   stat.S_IMODE(os.stat(mnt / "sg" / "m").st_mode))[1], groups=(4242,)) == 0o2755


def test_open_existing_does_not_touch_times(mnt: Path) -> None:
    p = touch(mnt / "f", b"abc")
    os.utime(p, ns=(10**18, 10**18))
    c0 = times(p)[2]
    pt0 = times(mnt)
    for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR | os.O_APPEND):
        openclose(p, flags)
    assert times(p) == (10**18, 10**18, c0) and times(mnt) == pt0
    assert read(p) == b"abc"


@pytest.mark.parametrize("start,after", [(0o6777, 0o777), (0o4766, 0o766), (0o2767, 0o2767)])
@pytest.mark.parametrize("flags", [os.O_WRONLY | os.O_TRUNC, os.O_RDWR | os.O_TRUNC | os.O_CREAT])
def test_o_trunc_by_non_owner_clears_setid(mnt: Path, start: int, after: int, flags: int) -> None:
    """Truncating through open(O_TRUNC) clears the set-id bits as truncate(2) does, for a caller
    without CAP_FSETID (S_ISGID only with group execute); root keeps them."""
    p = touch(mnt / "f", b"0123")
    os.chmod(p, start)
    as_nobody(lambda: openclose(p, flags))
    st = os.stat(p)
    assert (stat.S_IMODE(st.st_mode), st.st_size) == (after, 0)
    os.chmod(p, start)
    touch(p, b"again")
    openclose(p, flags)
    assert mode(p) == start and os.stat(p).st_size == 0
