"""symlink(2) and readlink(2): pjdfstest symlink/00-12 and readlink on a mount."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from posix_util import (KINDS, NAME_255, NAME_256, NOBODY, as_nobody, err, make, raises, read, tick, times,
                        touch)


@pytest.mark.parametrize("target", ["f", "../x/y", "/absolute/elsewhere", "a" * 255, "/".join(["b" * 250] * 16),
                                    "sp ace", "ü-ñ", "dir/", ".", ".."])
def test_create_and_read(mnt: Path, target: str) -> None:
    pt0 = times(mnt)
    tick()
    t0 = time.time_ns()
    os.symlink(target, mnt / "l")
    st = os.lstat(mnt / "l")
    assert stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o777
    assert st.st_size == len(os.fsencode(target)) and st.st_nlink == 1 and (st.st_uid, st.st_gid) == (0, 0)
    assert all(t >= t0 - 10**7 for t in times(mnt / "l"))
    assert os.readlink(mnt / "l") == target
    pt1 = times(mnt)
    assert pt1[1] > pt0[1] and pt1[2] > pt0[2], "symlink updates the parent's mtime and ctime"


def test_non_utf8_target(mnt: Path) -> None:
    target = b"caf\xe9/\xff\xfe"
    os.symlink(target, os.fsencode(mnt / "l"))
    assert os.readlink(os.fsencode(mnt / "l")) == target and os.lstat(mnt / "l").st_size == len(target)


def test_umask_does_not_apply(mnt: Path) -> None:
    old = os.umask(0o777)
    try:
        os.symlink("t", mnt / "l")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(mnt / "l").st_mode) == 0o777


def test_followed_by_path_lookups(mnt: Path) -> None:
    os.makedirs(mnt / "real" / "sub")
    touch(mnt / "real" / "sub" / "f", b"content")
    os.symlink("real", mnt / "rel")
    os.symlink(str(mnt / "real" / "sub"), mnt / "abs")
    os.symlink("../real/sub/f", mnt / "real" / "up")
    assert read(mnt / "rel" / "sub" / "f") == b"content"
    assert read(mnt / "abs" / "f") == b"content"
    assert read(mnt / "real" / "up") == b"content"
    assert os.stat(mnt / "rel").st_ino == os.stat(mnt / "real").st_ino
    assert sorted(os.listdir(mnt / "rel")) == ["sub", "up"]
    touch(mnt / "rel" / "sub" / "g", b"through the link")  # create through a symlinked directory
    assert read(mnt / "real" / "sub" / "g") == b"through the link"
    os.symlink("missing", mnt / "dangling")
    with raises(errno.ENOENT):
        os.stat(mnt / "dangling")
    assert os.lstat(mnt / "dangling").st_size == 7


def test_chain_limit(mnt: Path) -> None:
    """Linux follows at most 40 symlinks in one lookup."""
    touch(mnt / "l0", b"end of chain")
    for i in range(1, 42):
        os.symlink(f"l{i - 1}", mnt / f"l{i}")
    assert read(mnt / "l40") == b"end of chain"
    with raises(errno.ELOOP):
        read(mnt / "l41")


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOTDIR):
        os.symlink("t", f / "l")
    with raises(errno.ENOENT):
        os.symlink("t", mnt / "missing" / "l")
    os.symlink("t", mnt / NAME_255)
    with raises(errno.ENAMETOOLONG):
        os.symlink("t", mnt / NAME_256)
    with raises(errno.ENAMETOOLONG):
        os.symlink("t", str(mnt) + "/" + "/".join(["a" * 200] * 25))
    os.symlink("x" * 4095, mnt / "longest")  # a target of PATH_MAX - 1 bytes
    assert os.readlink(mnt / "longest") == "x" * 4095
    with raises(errno.ENAMETOOLONG):
        os.symlink("x" * 4096, mnt / "toolong")
    with raises(errno.ENOENT):  # an empty target
        os.symlink("", mnt / "empty")
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.symlink("t", mnt / "loop1" / "l")
    with raises(errno.EEXIST):  # an existing symlink is not followed
        os.symlink("t", mnt / "loop1")
    assert sorted(os.listdir(mnt)) == sorted(["f", NAME_255, "longest", "loop1", "loop2"])


@pytest.mark.parametrize("kind", KINDS)
def test_eexist_any_kind(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "x")
    st = os.lstat(p)
    pt0 = times(mnt)
    with raises(errno.EEXIST):
        os.symlink("t", p)
    st2 = os.lstat(p)
    assert (st2.st_ino, st2.st_mode, st2.st_ctime_ns) == (st.st_ino, st.st_mode, st.st_ctime_ns)
    assert times(mnt) == pt0


def test_readlink_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    os.mkdir(mnt / "d")
    with raises(errno.EINVAL):
        os.readlink(f)
    with raises(errno.EINVAL):
        os.readlink(mnt / "d")
    with raises(errno.ENOENT):
        os.readlink(mnt / "missing")
    with raises(errno.ENOTDIR):
        os.readlink(f / "x")
    with raises(errno.ENAMETOOLONG):
        os.readlink(mnt / NAME_256)


def test_unprivileged(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    os.mkdir(mnt / "ro", 0o755)
    os.mkdir(mnt / "nosearch")
    os.mkdir(mnt / "nosearch" / "sub")
    os.chmod(mnt / "nosearch" / "sub", 0o777)
    os.chmod(mnt / "nosearch", 0o666)
    os.mkdir(mnt / "sg")
    os.chown(mnt / "sg", 0, 4242)
    os.chmod(mnt / "sg", 0o2777)

    def probe() -> dict[str, object]:
        os.symlink("t", mnt / "mine")
        os.symlink("t", mnt / "sg" / "mine")
        return {
            "owner": (os.lstat(mnt / "mine").st_uid, os.lstat(mnt / "mine").st_gid),
            "in setgid dir": os.lstat(mnt / "sg" / "mine").st_gid,
            "unwritable dir": err(lambda: os.symlink("t", mnt / "ro" / "l")),
            "unsearchable dir": err(lambda: os.symlink("t", mnt / "nosearch" / "sub" / "l")),
        }

    assert as_nobody(probe) == {"owner": NOBODY, "in setgid dir": 4242, "unwritable dir": "EACCES",
                                "unsearchable dir": "EACCES"}
