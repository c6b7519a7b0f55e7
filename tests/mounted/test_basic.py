"""File operations through the kernel: plain os.* system calls on a mounted dynlog, on both
stores. Errno values and attribute effects are checked the way conformance suites do."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import time
from pathlib import Path

from .syscalls import (RENAME_EXCHANGE, RENAME_NOREPLACE, UTIME_NOW, UTIME_OMIT, raises_errno, renameat2,
                       utimensat)


def write(path: Path | str, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: Path | str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- files --------------------------------------------------------------------------------------------
def test_create_write_read(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"hello world")
    assert read(p) == b"hello world"
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_size == 11 and st.st_nlink == 1 and st.st_uid == 0
    assert st.st_blocks >= 1
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, b"WORLD", 6)
        assert os.pread(fd, 100, 0) == b"hello WORLD"  # this mount sees its own buffered write
    finally:
        os.close(fd)
    assert read(p) == b"hello WORLD"


def test_append(mnt: Path) -> None:
    p = mnt / "log"
    write(p, b"a")
    fa = os.open(p, os.O_WRONLY | os.O_APPEND)
    fb = os.open(p, os.O_WRONLY)
    try:
        os.write(fa, b"b")
        os.pwrite(fb, b"cc", 2)  # extends the file behind the appender's back
        os.write(fa, b"d")  # O_APPEND: lands at the end, whatever the descriptor's offset
    finally:
        os.close(fa)
        os.close(fb)
    assert read(p) == b"abccd"
    with open(p, "ab") as f:
        f.write(b"e")
    assert read(p) == b"abccde"


def test_open_flags(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"content")
    with raises_errno(errno.EEXIST):
        os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    assert os.stat(p).st_size == 0
    with raises_errno(errno.EISDIR):
        os.open(mnt, os.O_WRONLY)
    with raises_errno(errno.ENOTDIR):
        os.open(p, os.O_RDONLY | os.O_DIRECTORY)
    with raises_errno(errno.ENOENT):
        os.open(mnt / "missing", os.O_RDONLY)
    with raises_errno(errno.ENOTDIR):
        os.open(p / "below", os.O_RDONLY)


def test_truncate_and_holes(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"x" * 10_000)
    os.truncate(p, 100)
    assert read(p) == b"x" * 100
    os.truncate(p, 5000)  # growing reads as zeros
    assert read(p) == b"x" * 100 + b"\0" * 4900
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, 50)
        assert os.fstat(fd).st_size == 50
        os.pwrite(fd, b"end", 1_000_000)  # a hole in the middle
    finally:
        os.close(fd)
    data = read(p)
    assert len(data) == 1_000_003 and data[:50] == b"x" * 50 and data[50:1_000_000] == bytes(999_950)
    assert data.endswith(b"end")
    with raises_errno(errno.EISDIR):
        os.truncate(mnt, 0)
    with raises_errno(errno.EINVAL):
        os.truncate(p, -1)


def test_large_file_round_trip(mnt: Path) -> None:
    """More than the 16 MiB write-back threshold, so it is flushed while still being written."""
    p = mnt / "big"
    chunk = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB, not all zeros
    h = hashlib.sha256()
    with open(p, "wb") as f:
        for i in range(20):
            block = bytes([i]) + chunk[1:]
            f.write(block)
            h.update(block)
    assert os.stat(p).st_size == 20 * len(chunk)
    h2 = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(1 << 20):
            h2.update(b)
    assert h2.hexdigest() == h.hexdigest()


def test_fallocate(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"abc")
    fd = os.open(p, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 8192)
        assert os.fstat(fd).st_size == 8192
        assert os.pread(fd, 4, 0) == b"abc\0"
    finally:
        os.close(fd)
    assert os.stat(p).st_size == 8192


def test_fsync_and_times(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"1")
    st0 = os.stat(p)
    time.sleep(0.01)
    fd = os.open(p, os.O_WRONLY)
    try:
        os.write(fd, b"2")
        os.fsync(fd)
    finally:
        os.close(fd)
    st1 = os.stat(p)
    assert st1.st_mtime_ns > st0.st_mtime_ns and st1.st_ctime_ns >= st1.st_mtime_ns
    time.sleep(0.01)
    os.chmod(p, 0o600)
    st2 = os.stat(p)
    assert st2.st_ctime_ns > st1.st_ctime_ns and st2.st_mtime_ns == st1.st_mtime_ns


# -- names --------------------------------------------------------------------------------------------
def test_mkdir_rmdir_unlink_errnos(mnt: Path) -> None:
    d = mnt / "d"
    os.mkdir(d, 0o750)
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750 and st.st_nlink == 2
    assert os.stat(mnt).st_nlink == 3
    with raises_errno(errno.EEXIST):
        os.mkdir(d)
    write(d / "f", b"")
    with raises_errno(errno.ENOTEMPTY, errno.EEXIST):
        os.rmdir(d)
    with raises_errno(errno.EISDIR):
        os.unlink(d)
    with raises_errno(errno.ENOTDIR):
        os.rmdir(d / "f")
    with raises_errno(errno.ENOENT):
        os.unlink(d / "missing")
    with raises_errno(errno.ENOENT):
        os.mkdir(mnt / "no" / "such")
    os.unlink(d / "f")
    os.rmdir(d)
    assert not d.exists() and os.stat(mnt).st_nlink == 2
    assert os.listdir(mnt) == []


def test_rename(mnt: Path) -> None:
    write(mnt / "a", b"A")
    write(mnt / "b", b"B")
    os.rename(mnt / "a", mnt / "b")  # replaces
    assert read(mnt / "b") == b"A" and sorted(os.listdir(mnt)) == ["b"]
    os.mkdir(mnt / "d1")
    os.mkdir(mnt / "d2")
    write(mnt / "d1" / "x", b"X")
    os.rename(mnt / "d1", mnt / "d2")  # over an empty directory
    assert os.listdir(mnt / "d2") == ["x"]
    os.mkdir(mnt / "d3")
    write(mnt / "d3" / "y", b"")
    with raises_errno(errno.ENOTEMPTY, errno.EEXIST):
        os.rename(mnt / "d2", mnt / "d3")
    with raises_errno(errno.EINVAL):
        os.rename(mnt / "d2", mnt / "d2" / "inside")
    with raises_errno(errno.EISDIR):
        os.rename(mnt / "b", mnt / "d3")
    with raises_errno(errno.ENOTDIR):
        os.rename(mnt / "d3", mnt / "b")
    with raises_errno(errno.ENOENT):
        os.rename(mnt / "missing", mnt / "z")
    os.rename(mnt / "b", mnt / "d2" / "b")  # across directories
    assert read(mnt / "d2" / "b") == b"A"
    os.rename(mnt / "d2", mnt / "d3" / "moved")  # a directory into another
    assert sorted(os.listdir(mnt / "d3" / "moved")) == ["b", "x"]
    assert os.stat(mnt / "d3").st_nlink == 3


def test_rename_flags(mnt: Path) -> None:
    write(mnt / "a", b"A")
    write(mnt / "b", b"B")
    with raises_errno(errno.EEXIST):
        renameat2(mnt / "a", mnt / "b", RENAME_NOREPLACE)
    renameat2(mnt / "a", mnt / "c", RENAME_NOREPLACE)
    assert read(mnt / "c") == b"A"
    with raises_errno(errno.EINVAL):
        renameat2(mnt / "c", mnt / "b", RENAME_EXCHANGE)
    assert read(mnt / "b") == b"B" and read(mnt / "c") == b"A"


def test_name_too_long(mnt: Path) -> None:
    ok = "n" * 255
    long = "n" * 256
    write(mnt / ok, b"x")
    assert ok in os.listdir(mnt)
    with raises_errno(errno.ENAMETOOLONG):
        os.open(mnt / long, os.O_CREAT | os.O_WRONLY)
    with raises_errno(errno.ENAMETOOLONG):
        os.mkdir(mnt / long)
    with raises_errno(errno.ENAMETOOLONG):
        os.rename(mnt / ok, mnt / long)
    with raises_errno(errno.ENAMETOOLONG):
        os.symlink("t", mnt / long)
    with raises_errno(errno.ENAMETOOLONG):
        os.link(mnt / ok, mnt / long)
    with raises_errno(errno.ENAMETOOLONG):
        os.stat(mnt / long)
    multibyte = "é" * 127 + "e"  # 255 bytes in UTF-8
    write(mnt / multibyte, b"")
    with raises_errno(errno.ENAMETOOLONG):
        write(mnt / ("é" * 128), b"")


def test_non_utf8_names(mnt: Path) -> None:
    base = os.fsencode(mnt)
    names = [b"caf\xe9", b"\xff\xfe", b"ok-\xc3\xa9", b"tab\tnew\nline", b"sp ace", b"\x80"]
    for n in names:
        fd = os.open(base + b"/" + n, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, n)
        os.close(fd)
    assert sorted(os.listdir(base)) == sorted(names)
    for n in names:
        with open(base + b"/" + n, "rb") as f:
            assert f.read() == n
    os.mkdir(base + b"/dir\xfe")
    os.rename(base + b"/caf\xe9", base + b"/dir\xfe/caf\xe9-moved")
    assert os.listdir(base + b"/dir\xfe") == [b"caf\xe9-moved"]
    os.symlink(b"target\xff", base + b"/link\xff")
    assert os.readlink(base + b"/link\xff") == b"target\xff"


def test_readdir_many(mnt: Path) -> None:
    names = {f"file-{i:04d}" for i in range(400)}
    for n in names:
        os.close(os.open(mnt / n, os.O_CREAT | os.O_WRONLY, 0o644))
    assert set(os.listdir(mnt)) == names
    with os.scandir(mnt) as it:
        entries = {e.name: e for e in it}
    assert all(e.is_file(follow_symlinks=False) for e in entries.values())
    inos = {e.inode() for e in entries.values()}
    assert len(inos) == 400  # stable, distinct inode numbers from readdir
    assert entries["file-0007"].inode() == os.stat(mnt / "file-0007").st_ino


# -- links ---------------------------------------------------------------------------------------------
def test_symlink(mnt: Path) -> None:
    write(mnt / "target", b"T")
    os.symlink("target", mnt / "link")
    assert os.readlink(mnt / "link") == "target"
    st = os.lstat(mnt / "link")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("target")
    assert read(mnt / "link") == b"T"
    os.symlink("/nonexistent/dangling", mnt / "dangling")
    with raises_errno(errno.ENOENT):
        os.stat(mnt / "dangling")
    with raises_errno(errno.EEXIST):
        os.symlink("x", mnt / "link")
    with raises_errno(errno.EINVAL):
        os.readlink(mnt / "target")


def test_hard_links(mnt: Path) -> None:
    write(mnt / "a", b"shared")
    os.mkdir(mnt / "sub")
    os.link(mnt / "a", mnt / "sub" / "b")
    sa, sb = os.stat(mnt / "a"), os.stat(mnt / "sub" / "b")
    assert sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2
    write(mnt / "sub" / "b", b"changed", os.O_WRONLY | os.O_TRUNC)
    assert read(mnt / "a") == b"changed"
    os.chmod(mnt / "a", 0o600)
    time.sleep(1.1)  # each name is its own kernel inode: let the other name's cached attributes expire
    assert stat.S_IMODE(os.stat(mnt / "sub" / "b").st_mode) == 0o600
    with raises_errno(errno.EEXIST):
        os.link(mnt / "a", mnt / "sub" / "b")
    with raises_errno(errno.EPERM):
        os.link(mnt / "sub", mnt / "sub2")
    os.unlink(mnt / "a")
    assert os.stat(mnt / "sub" / "b").st_nlink == 1 and read(mnt / "sub" / "b") == b"changed"


def test_unlinked_open_file_stays_readable(mnt: Path) -> None:
    p = mnt / "tmp"
    write(p, b"still here")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert "tmp" not in os.listdir(mnt) and not p.exists()
        assert os.pread(fd, 100, 0) == b"still here"
        st = os.fstat(fd)
        assert st.st_nlink == 0 and st.st_size == 10
        os.pwrite(fd, b"!", 10)
        os.ftruncate(fd, 11)
        assert os.pread(fd, 100, 0) == b"still here!"
        write(p, b"new file, same name")  # the name is free again
        assert os.pread(fd, 100, 0) == b"still here!"
    finally:
        os.close(fd)
    assert read(p) == b"new file, same name"
    # replaced by a rename while open: the old content stays readable through the descriptor
    write(mnt / "old", b"old content")
    write(mnt / "new", b"new content")
    fd = os.open(mnt / "old", os.O_RDONLY)
    try:
        os.rename(mnt / "new", mnt / "old")
        assert os.pread(fd, 100, 0) == b"old content" and os.fstat(fd).st_nlink == 0
        assert read(mnt / "old") == b"new content" and sorted(os.listdir(mnt)) == ["old", "tmp"]
    finally:
        os.close(fd)
    # a directory holding only an unlinked-but-open file can be removed
    os.mkdir(mnt / "gone")
    fd = os.open(mnt / "gone" / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"x")
        os.unlink(mnt / "gone" / "f")
        os.rmdir(mnt / "gone")
        assert os.pread(fd, 10, 0) == b"x"
    finally:
        os.close(fd)


# -- attributes ------------------------------------------------------------------------------------------
def test_chmod_chown(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"")
    for mode in (0o000, 0o755, 0o4755, 0o2755, 0o1777, 0o644):
        os.chmod(p, mode)
        assert stat.S_IMODE(os.stat(p).st_mode) == mode
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(p, -1, 42)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 42)
    os.chown(p, 99, -1)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (99, 42)
    os.mkdir(mnt / "d")
    os.chmod(mnt / "d", 0o3775)
    assert stat.S_IMODE(os.stat(mnt / "d").st_mode) == 0o3775
    os.symlink("f", mnt / "l")
    os.lchown(mnt / "l", 7, 8)
    assert (os.lstat(mnt / "l").st_uid, os.stat(mnt / "l").st_uid) == (7, 99)


def test_setgid_directory(mnt: Path) -> None:
    d = mnt / "sg"
    os.mkdir(d)
    os.chown(d, 0, 4242)
    os.chmod(d, 0o2775)
    write(d / "f", b"")
    os.mkdir(d / "sub")
    assert os.stat(d / "f").st_gid == 4242
    st = os.stat(d / "sub")
    assert st.st_gid == 4242 and st.st_mode & stat.S_ISGID


def test_utimens(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"")
    os.utime(p, ns=(1_000_000_000_123_456_789, 2_000_000_000_987_654_321))
    st = os.stat(p)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_000_123_456_789, 2_000_000_000_987_654_321)
    utimensat(p, (5, 0), (0, UTIME_OMIT))  # atime only
    st = os.stat(p)
    assert (st.st_atime_ns, st.st_mtime_ns) == (5_000_000_000, 2_000_000_000_987_654_321)
    before = time.time_ns()
    utimensat(p, (0, UTIME_OMIT), (0, UTIME_NOW))  # mtime now, atime kept
    st = os.stat(p)
    assert st.st_atime_ns == 5_000_000_000 and st.st_mtime_ns >= before - 10**9
    os.utime(p)  # both now
    st = os.stat(p)
    assert st.st_atime_ns >= before - 10**9
    os.symlink("f", mnt / "l")
    os.utime(mnt / "l", ns=(10**9, 10**9), follow_symlinks=False)
    assert os.lstat(mnt / "l").st_mtime_ns == 10**9 and os.stat(p).st_mtime_ns != 10**9


def test_xattrs(mnt: Path) -> None:
    p = mnt / "f"
    write(p, b"")
    os.setxattr(p, "user.color", b"blue")
    os.setxattr(p, "user.empty", b"")
    os.setxattr(p, "user.bin", bytes(range(256)))
    assert os.getxattr(p, "user.color") == b"blue"
    assert os.getxattr(p, "user.empty") == b""
    assert os.getxattr(p, "user.bin") == bytes(range(256))
    assert sorted(os.listxattr(p)) == ["user.bin", "user.color", "user.empty"]
    with raises_errno(errno.EEXIST):
        os.setxattr(p, "user.color", b"red", os.XATTR_CREATE)
    with raises_errno(errno.ENODATA):
        os.setxattr(p, "user.shape", b"round", os.XATTR_REPLACE)
    os.setxattr(p, "user.color", b"red", os.XATTR_REPLACE)
    os.setxattr(p, "user.shape", b"round", os.XATTR_CREATE)
    assert os.getxattr(p, "user.color") == b"red"
    with raises_errno(errno.ENODATA):
        os.getxattr(p, "user.missing")
    os.removexattr(p, "user.color")
    with raises_errno(errno.ENODATA):
        os.removexattr(p, "user.color")
    assert "user.color" not in os.listxattr(p)
    os.mkdir(mnt / "d")
    os.setxattr(mnt / "d", "user.dir", b"yes")
    assert os.getxattr(mnt / "d", "user.dir") == b"yes"
    with raises_errno(errno.EOPNOTSUPP):
        os.setxattr(p, "bogus.namespace", b"x")


def test_mknod_special_files(mnt: Path) -> None:
    os.mkfifo(mnt / "fifo", 0o640)
    st = os.stat(mnt / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    os.mknod(mnt / "chr", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    st = os.stat(mnt / "chr")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    os.mknod(mnt / "blk", 0o600 | stat.S_IFBLK, os.makedev(8, 1))
    assert stat.S_ISBLK(os.stat(mnt / "blk").st_mode)
    os.mknod(mnt / "reg", 0o600)
    assert stat.S_ISREG(os.stat(mnt / "reg").st_mode)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(mnt / "sock"))
    finally:
        s.close()
    assert stat.S_ISSOCK(os.stat(mnt / "sock").st_mode)
    with raises_errno(errno.EEXIST):
        os.mkfifo(mnt / "fifo")
    # a FIFO on the mount works as a FIFO (the kernel serves it; we keep only its metadata)
    r = os.open(mnt / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(mnt / "fifo", os.O_WRONLY)
    try:
        os.write(w, b"through the pipe")
        assert os.read(r, 100) == b"through the pipe"
    finally:
        os.close(r)
        os.close(w)


def test_statfs_and_access(mnt: Path) -> None:
    sv = os.statvfs(mnt)
    assert sv.f_namemax == 255 and sv.f_bsize > 0 and sv.f_bavail > 0 and sv.f_ffree > 0
    write(mnt / "f", b"")
    os.chmod(mnt / "f", 0o644)
    assert os.access(mnt / "f", os.R_OK | os.W_OK) and not os.access(mnt / "f", os.X_OK)
    assert not os.access(mnt / "missing", os.F_OK)


def test_fcntl_locks_one_mount(mnt: Path) -> None:
    """Locks between processes on one mount: a second process cannot take a write lock held
    by the first (checked from a forked child, since locks are per process)."""
    import fcntl

    p = mnt / "lockme"
    write(p, b"")
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            fd2 = os.open(p, os.O_RDWR)
            try:
                fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
                code = 1  # should not have got it
            except OSError as e:
                code = 2 if e.errno in (errno.EAGAIN, errno.EACCES) else 3
            try:
                fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)  # a range nobody holds
            except OSError:
                code = 4
            os.write(w, bytes([code]))
            os._exit(0)
        os.close(w)
        got = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        assert got == bytes([2])
    finally:
        os.close(fd)
