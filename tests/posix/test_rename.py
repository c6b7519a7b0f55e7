"""rename(2) and renameat2(2): pjdfstest rename/00-24 on a mount: every kind of object, within
and across directories, over files and empty and non-empty directories, link counts, times,
sticky directories, '.' and '..', a directory into its own subtree, RENAME_NOREPLACE."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from posix_util import (ATTR_TIMEOUT, KINDS, NAME_255, NAME_256, OTHER, RENAME_EXCHANGE, RENAME_NOREPLACE,
                        RENAME_WHITEOUT, as_nobody, err, make, mode, raises, read, renameat2, run_as, tick, times,
                        touch)


@pytest.mark.parametrize("kind", KINDS)
def test_within_directory(mnt: Path, kind: str) -> None:
    p = make(kind, mnt / "a")
    st0 = os.lstat(p)
    pt0 = times(mnt)
    nlink0 = os.stat(mnt).st_nlink
    tick()
    os.rename(p, mnt / "b")
    assert not os.path.lexists(p)
    st1 = os.lstat(mnt / "b")
    assert (st1.st_ino, st1.st_mode, st1.st_nlink, st1.st_uid) == (st0.st_ino, st0.st_mode, st0.st_nlink, 0)
    assert st1.st_ctime_ns > st0.st_ctime_ns, "rename updates the renamed object's ctime (Linux)"
    assert st1.st_mtime_ns == st0.st_mtime_ns, "rename leaves its mtime"
    pt1 = times(mnt)
    assert pt1[1] > pt0[1] and pt1[2] > pt0[2], "rename updates the directory's mtime and ctime"
    assert os.stat(mnt).st_nlink == nlink0
    assert os.listdir(mnt) == ["b"]


def test_ctime_of_renamed_directories_from_the_daemon(mnt: Path) -> None:
    """A directory renamed within its parent gets a new ctime also when it already had changes
    of its own (contents, chmod); checked once the kernel's cached attributes have expired, so
    the values are the file system's, not the kernel's local update."""
    os.mkdir(mnt / "with-contents")
    touch(mnt / "with-contents" / "f")
    os.mkdir(mnt / "chmodded")
    os.chmod(mnt / "chmodded", 0o700)
    os.mkdir(mnt / "sub")
    os.mkdir(mnt / "across")
    touch(mnt / "across" / "g")
    before = {n: os.stat(mnt / n).st_ctime_ns for n in ("with-contents", "chmodded", "across")}
    tick()
    os.rename(mnt / "with-contents", mnt / "renamed-1")
    os.rename(mnt / "chmodded", mnt / "renamed-2")
    os.rename(mnt / "across", mnt / "sub" / "renamed-3")
    time.sleep(ATTR_TIMEOUT + 0.2)
    after = {n: os.stat(p).st_ctime_ns for n, p in (("with-contents", mnt / "renamed-1"),
                                                       ("chmodded", mnt / "renamed-2"),
                                                       ("across", mnt / "sub" / "renamed-3"))}
    assert {n: after[n] > before[n] for n in before} == {n: True for n in before}
    assert mode(mnt / "renamed-2") == 0o700 and os.listdir(mnt / "renamed-1") == ["f"]


@pytest.mark.parametrize("kind", KINDS)
def test_across_directories(mnt: Path, kind: str) -> None:
    os.mkdir(mnt / "src")
    os.mkdir(mnt / "dst")
    p = make(kind, mnt / "src" / "a")
    st0 = os.lstat(p)
    s0, d0 = os.stat(mnt / "src"), os.stat(mnt / "dst")
    tick()
    os.rename(p, mnt / "dst" / "b")
    st1 = os.lstat(mnt / "dst" / "b")
    assert (st1.st_ino, st1.st_mode) == (st0.st_ino, st0.st_mode) and st1.st_ctime_ns > st0.st_ctime_ns
    s1, d1 = os.stat(mnt / "src"), os.stat(mnt / "dst")
    for before, after in ((s0, s1), (d0, d1)):
        assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
    moved_dir = kind == "dir"
    assert s1.st_nlink == s0.st_nlink - moved_dir and d1.st_nlink == d0.st_nlink + moved_dir
    assert os.listdir(mnt / "src") == [] and os.listdir(mnt / "dst") == ["b"]
    if moved_dir:
        assert os.stat(mnt / "dst" / "b" / "..").st_ino == d1.st_ino, "'..' follows the move"


def test_directory_with_contents_moves_whole(mnt: Path) -> None:
    os.makedirs(mnt / "a" / "b" / "c")
    touch(mnt / "a" / "b" / "c" / "f", b"deep")
    touch(mnt / "a" / "top", b"top")
    os.mkdir(mnt / "x")
    os.rename(mnt / "a", mnt / "x" / "a2")
    assert read(mnt / "x" / "a2" / "b" / "c" / "f") == b"deep" and read(mnt / "x" / "a2" / "top") == b"top"
    os.rename(mnt / "x" / "a2" / "b" / "c", mnt / "c")  # out of the moved tree, upwards
    assert read(mnt / "c" / "f") == b"deep" and os.listdir(mnt / "x" / "a2" / "b") == []
    assert os.stat(mnt).st_nlink == 4 and os.stat(mnt / "x" / "a2").st_nlink == 3


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "dir"])
def test_over_existing_file(mnt: Path, kind: str) -> None:
    """A non-directory replaces a non-directory atomically; the replaced inode loses a link."""
    src = make(kind, mnt / "src")
    touch(mnt / "dst", b"old")
    os.link(mnt / "dst", mnt / "dst-link")
    ino = os.lstat(src).st_ino
    c0 = times(mnt / "dst-link")[2]
    tick()
    os.rename(src, mnt / "dst")
    assert os.lstat(mnt / "dst").st_ino == ino and stat.S_IFMT(os.lstat(mnt / "dst").st_mode) == \
        stat.S_IFMT(os.lstat(mnt / "dst").st_mode)
    other = os.stat(mnt / "dst-link")
    assert other.st_nlink == 1 and read(mnt / "dst-link") == b"old"
    assert other.st_ctime_ns > c0, "the replaced inode's ctime changes with its link count"
    assert sorted(os.listdir(mnt)) == ["dst", "dst-link"]


def test_over_file_open_elsewhere(mnt: Path) -> None:
    touch(mnt / "a", b"new")
    touch(mnt / "b", b"replaced")
    fd = os.open(mnt / "b", os.O_RDONLY)
    try:
        os.rename(mnt / "a", mnt / "b")
        assert os.pread(fd, 100, 0) == b"replaced"
        assert read(mnt / "b") == b"new"
    finally:
        os.close(fd)
    assert os.listdir(mnt) == ["b"]


def test_renamed_while_open(mnt: Path) -> None:
    fd = os.open(mnt / "a", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"before ")
        os.mkdir(mnt / "d")
        os.rename(mnt / "a", mnt / "d" / "b")
        os.write(fd, b"after")
        os.fsync(fd)
        assert os.fstat(fd).st_ino == os.stat(mnt / "d" / "b").st_ino
    finally:
        os.close(fd)
    assert read(mnt / "d" / "b") == b"before after" and os.listdir(mnt) == ["d"]


def test_directory_over_empty_directory(mnt: Path) -> None:
    os.mkdir(mnt / "src")
    touch(mnt / "src" / "f")
    os.mkdir(mnt / "dst")
    n0 = os.stat(mnt).st_nlink
    ino = os.stat(mnt / "src").st_ino
    os.rename(mnt / "src", mnt / "dst")
    assert os.stat(mnt / "dst").st_ino == ino and os.listdir(mnt / "dst") == ["f"]
    assert os.stat(mnt).st_nlink == n0 - 1 and os.listdir(mnt) == ["dst"]
    # across directories
    os.mkdir(mnt / "p")
    os.mkdir(mnt / "p" / "empty")
    n_p = os.stat(mnt / "p").st_nlink
    os.rename(mnt / "dst", mnt / "p" / "empty")
    assert os.listdir(mnt / "p" / "empty") == ["f"] and os.stat(mnt / "p").st_nlink == n_p
    assert os.stat(mnt).st_nlink == n0 - 1


def test_errnos_types(mnt: Path) -> None:
    os.mkdir(mnt / "d")
    os.mkdir(mnt / "full")
    touch(mnt / "full" / "x")
    touch(mnt / "f")
    os.symlink("d", mnt / "ld")
    with raises(errno.ENOTEMPTY, errno.EEXIST):
        os.rename(mnt / "d", mnt / "full")
    with raises(errno.EISDIR):
        os.rename(mnt / "f", mnt / "d")
    with raises(errno.ENOTDIR):
        os.rename(mnt / "d", mnt / "f")
    with raises(errno.ENOTDIR):  # a symlink to a directory is not a directory
        os.rename(mnt / "d", mnt / "ld")
    with raises(errno.ENOTDIR):
        os.rename(mnt / "f", mnt / "f" / "x")
    with raises(errno.ENOTDIR):
        os.rename(mnt / "f" / "x", mnt / "y")
    with raises(errno.ENOTDIR):
        os.rename(str(mnt / "f") + "/", mnt / "y")
    with raises(errno.ENOENT):
        os.rename(mnt / "missing", mnt / "y")
    with raises(errno.ENOENT):
        os.rename(mnt / "f", mnt / "missing" / "y")
    with raises(errno.ENOENT):
        os.rename(mnt / "missing" / "x", mnt / "y")
    touch(mnt / NAME_255)
    with raises(errno.ENAMETOOLONG):
        os.rename(mnt / NAME_255, mnt / NAME_256)
    with raises(errno.ENAMETOOLONG):
        os.rename(mnt / NAME_256, mnt / "y")
    with raises(errno.ENAMETOOLONG):
        os.rename(mnt / "f", str(mnt) + "/" + "/".join(["a" * 200] * 25))
    os.symlink("loop1", mnt / "loop2")
    os.symlink("loop2", mnt / "loop1")
    with raises(errno.ELOOP):
        os.rename(mnt / "loop1" / "x", mnt / "y")
    with raises(errno.ELOOP):
        os.rename(mnt / "f", mnt / "loop1" / "y")
    os.rename(mnt / "loop1", mnt / "loop3")  # the symlink itself is renamed, not followed
    assert os.readlink(mnt / "loop3") == "loop2"
    assert sorted(os.listdir(mnt)) == sorted(["d", "full", "f", "ld", NAME_255, "loop2", "loop3"])
    assert os.listdir(mnt / "full") == ["x"] and os.path.isdir(mnt / "d")


def test_directory_into_own_subtree(mnt: Path) -> None:
    os.makedirs(mnt / "a" / "b" / "c")
    for target in (mnt / "a" / "x", mnt / "a" / "b" / "x", mnt / "a" / "b" / "c" / "x", mnt / "a" / "b"):
        with raises(errno.EINVAL):
            os.rename(mnt / "a", target)
    with raises(errno.EINVAL):
        os.rename(mnt / "a" / "b", mnt / "a" / "b" / "c" / "b")
    with raises(errno.ENOTEMPTY, errno.EEXIST, errno.EINVAL):  # over its own (non-empty) ancestor
        os.rename(mnt / "a" / "b" / "c", mnt / "a")
    assert os.path.isdir(mnt / "a" / "b" / "c") and os.listdir(mnt) == ["a"]
    os.rename(mnt / "a" / "b", mnt / "b")  # out of the subtree is fine
    assert os.listdir(mnt / "a") == [] and os.listdir(mnt / "b") == ["c"]
    # a name that merely starts like the directory is not inside it
    os.mkdir(mnt / "ab")
    os.rename(mnt / "a", mnt / "ab" / "a")
    assert os.listdir(mnt / "ab") == ["a"]


def test_dot_and_dotdot(mnt: Path) -> None:
    os.makedirs(mnt / "d" / "e")
    d = str(mnt / "d")  # strings: pathlib would drop the "." components
    for src, dst in ((d + "/.", d + "/x"), (d + "/..", d + "/x"), (d + "/e", d + "/."), (d + "/e", d + "/.."),
                     (d + "/.", d + "/e/x"), (d + "/e/..", d + "/y")):
        with raises(errno.EBUSY, errno.EINVAL):  # Linux: EBUSY
            os.rename(src, dst)
    assert os.listdir(mnt) == ["d"] and os.listdir(mnt / "d") == ["e"]


def test_same_inode_and_same_name(mnt: Path) -> None:
    touch(mnt / "a", b"A")
    c0 = times(mnt / "a")[2]
    pt0 = times(mnt)
    os.rename(mnt / "a", mnt / "a")  # no-op
    assert os.listdir(mnt) == ["a"] and times(mnt) == pt0
    os.link(mnt / "a", mnt / "b")
    os.rename(mnt / "a", mnt / "b")  # two names of one inode: POSIX says do nothing
    assert sorted(os.listdir(mnt)) == ["a", "b"] and os.stat(mnt / "a").st_nlink == 2
    os.mkdir(mnt / "d")
    os.rename(mnt / "d", mnt / "d")
    assert os.path.isdir(mnt / "d")
    assert times(mnt / "a")[2] >= c0


def test_failed_rename_changes_nothing(mnt: Path) -> None:
    os.mkdir(mnt / "d")
    touch(mnt / "d" / "x")
    os.mkdir(mnt / "e")
    touch(mnt / "e" / "y")
    before = {n: os.lstat(mnt / n) for n in ("d", "e")}
    pt0 = times(mnt)
    tick()
    with raises(errno.ENOTEMPTY, errno.EEXIST):
        os.rename(mnt / "d", mnt / "e")
    assert times(mnt) == pt0
    for n, st in before.items():
        st2 = os.lstat(mnt / n)
        assert (st2.st_ino, st2.st_nlink, st2.st_ctime_ns, st2.st_mtime_ns) == (
            st.st_ino, st.st_nlink, st.st_ctime_ns, st.st_mtime_ns)


def test_renameat2_flags(mnt: Path) -> None:
    touch(mnt / "a", b"A")
    touch(mnt / "b", b"B")
    os.mkdir(mnt / "d")
    with raises(errno.EEXIST):
        renameat2(mnt / "a", mnt / "b", RENAME_NOREPLACE)
    with raises(errno.EEXIST):
        renameat2(mnt / "a", mnt / "d", RENAME_NOREPLACE)
    renameat2(mnt / "a", mnt / "d" / "c", RENAME_NOREPLACE)  # across directories
    assert read(mnt / "d" / "c") == b"A"
    renameat2(mnt / "d" / "c", mnt / "c", RENAME_NOREPLACE)
    with raises(errno.EINVAL):  # both flags at once
        renameat2(mnt / "c", mnt / "b", RENAME_NOREPLACE | RENAME_EXCHANGE)
    with raises(errno.EINVAL, errno.EOPNOTSUPP):  # not supported: refused, nothing moved
        renameat2(mnt / "c", mnt / "b", RENAME_EXCHANGE)
    with raises(errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
        renameat2(mnt / "c", mnt / "w", RENAME_WHITEOUT)
    assert read(mnt / "b") == b"B" and read(mnt / "c") == b"A"
    assert sorted(os.listdir(mnt)) == ["b", "c", "d"]


def test_unprivileged_permissions(mnt: Path) -> None:
    os.chmod(mnt, 0o777)
    os.mkdir(mnt / "ro", 0o755)
    touch(mnt / "ro" / "f")
    for w in ("w", "w2"):
        os.mkdir(mnt / w)
        os.chmod(mnt / w, 0o777)
    os.mkdir(mnt / "w" / "rootdir", 0o755)  # root's directory in a world-writable one
    as_nobody(lambda: (touch(mnt / "w" / "mine"), os.mkdir(mnt / "w" / "mydir")))

    def probe() -> dict[str, str]:
        return {
            "out of unwritable dir": err(lambda: os.rename(mnt / "ro" / "f", mnt / "w" / "f")),
            "into unwritable dir": err(lambda: os.rename(mnt / "w" / "mine", mnt / "ro" / "mine")),
            "file across writable dirs": err(lambda: os.rename(mnt / "w" / "mine", mnt / "w2" / "mine")),
            "own dir across": err(lambda: os.rename(mnt / "w" / "mydir", mnt / "w2" / "mydir")),
            # moving a directory to a new parent rewrites its '..': needs write permission on it
            "root's dir across": err(lambda: os.rename(mnt / "w" / "rootdir", mnt / "w2" / "rootdir")),
            "root's dir within": err(lambda: os.rename(mnt / "w" / "rootdir", mnt / "w" / "renamed")),
        }

    assert as_nobody(probe) == {"out of unwritable dir": "EACCES", "into unwritable dir": "EACCES",
                                "file across writable dirs": "0", "own dir across": "0",
                                "root's dir across": "EACCES", "root's dir within": "0"}
    assert sorted(os.listdir(mnt / "w2")) == ["mine", "mydir"] and os.listdir(mnt / "w") == ["renamed"]


def test_sticky_directory(mnt: Path) -> None:
    os.chmod(mnt, 0o1777)
    as_nobody(lambda: (touch(mnt / "nobodys"), os.mkdir(mnt / "nobodydir")))
    run_as(OTHER, lambda: touch(mnt / "others"))
    touch(mnt / "roots")
    os.chmod(mnt / "roots", 0o666)

    def intrude() -> dict[str, str]:
        return {
            "rename another's file": err(lambda: os.rename(mnt / "nobodys", mnt / "x")),
            "rename another's dir": err(lambda: os.rename(mnt / "nobodydir", mnt / "y")),
            "over another's file": err(lambda: os.rename(mnt / "others", mnt / "nobodys")),
            "over root's writable file": err(lambda: os.rename(mnt / "others", mnt / "roots")),
            "own file": err(lambda: os.rename(mnt / "others", mnt / "others2")),
        }

    assert run_as(OTHER, intrude) == {"rename another's file": "EPERM", "rename another's dir": "EPERM",
                                      "over another's file": "EPERM", "over root's writable file": "EPERM",
                                      "own file": "0"}
    # the owner of the directory may: root-owned sticky dir, so only root here
    os.rename(mnt / "nobodys", mnt / "by-root")
    assert sorted(os.listdir(mnt)) == ["by-root", "nobodydir", "others2", "roots"]


def test_writes_through_a_replaced_file_stay_with_it(mnt: Path) -> None:
    """A file replaced by rename while open for writing: what its descriptor writes afterwards
    goes to the replaced (now nameless) file, never into the file that took its name."""
    touch(mnt / "new", b"the new file")
    touch(mnt / "old", b"old")
    fd = os.open(mnt / "old", os.O_RDWR)
    try:
        os.write(fd, b"OLD")  # pending, not yet flushed
        os.rename(mnt / "new", mnt / "old")
        os.write(fd, b" written after the rename")
        os.fsync(fd)
        assert os.pread(fd, 100, 0) == b"OLD written after the rename"
    finally:
        os.close(fd)
    assert read(mnt / "old") == b"the new file" and os.listdir(mnt) == ["old"]
    # the same after an unlink and a new file of that name
    fd = os.open(mnt / "old", os.O_RDWR)
    try:
        os.unlink(mnt / "old")
        touch(mnt / "old", b"newest")
        os.pwrite(fd, b"THE", 0)
        os.ftruncate(fd, 3)
    finally:
        os.close(fd)
    assert read(mnt / "old") == b"newest"
