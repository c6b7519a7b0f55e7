"""Helpers for the POSIX suite: errno assertions, system calls Python lacks (through ctypes),
running a function as an unprivileged user in a forked child, and attribute snapshots."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import pickle
import select
import stat
import struct
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_SYMLINK_FOLLOW = 0x400
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

NOBODY = (65534, 65534)  # uid, gid
OTHER = (65533, 65533)

NAME_255 = "x" * 255
NAME_256 = "x" * 256

ATTR_TIMEOUT = 1.0  # the kernel's attribute cache timeout of a default mount (dynlog/fuse/operations.py)
TICK = 0.02  # seconds between "before" and the operation, so ns timestamps must differ


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _check(rc: int, path: Any) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


def renameat2(old: str | os.PathLike, new: str | os.PathLike, flags: int) -> None:
    _libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _check(_libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags), old)


def linkat(old: str | os.PathLike, new: str | os.PathLike, flags: int) -> None:
    """linkat(2) (os.link never passes AT_SYMLINK_FOLLOW without a directory fd)."""
    _libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    _check(_libc.linkat(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags), old)


def utimensat(path: str | os.PathLike | None, atime: tuple[int, int] | None, mtime: tuple[int, int] | None,
              follow: bool = True, fd: int = AT_FDCWD) -> None:
    """utimensat(2). Times are (seconds, nanoseconds), nanoseconds may be UTIME_NOW or UTIME_OMIT;
    both None passes a NULL times pointer (both now). ``path`` None with ``fd``: futimens."""
    if atime is None and mtime is None:
        ts = None
    else:
        ts = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))  # type: ignore[misc]
    if path is None:
        _check(_libc.futimens(fd, ts), fd)
        return
    _check(_libc.utimensat(fd, os.fsencode(path), ts, 0 if follow else AT_SYMLINK_NOFOLLOW), path)


def mknod(path: str | os.PathLike, mode: int, dev: int = 0) -> None:
    os.mknod(path, mode, dev)


@contextmanager
def raises(*codes: int) -> Iterator[None]:
    """Assert the block raises OSError with one of ``codes``."""
    try:
        yield
    except OSError as e:
        assert e.errno in codes, (f"expected {'/'.join(errno.errorcode[c] for c in codes)}, "
                                  f"got {errno.errorcode.get(e.errno, e.errno)}: {e}")
    else:
        raise AssertionError(f"expected OSError {'/'.join(errno.errorcode[c] for c in codes)}, nothing raised")


def err(fn: Callable[[], Any]) -> str:
    """'0' when ``fn()`` succeeds, else the errno's symbolic name (readable in a failed assert)."""
    try:
        fn()
        return "0"
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))


def run_as(user: tuple[int, int], fn: Callable[[], Any], groups: tuple[int, ...] = (), timeout: float = 30.0,
           umask: int = 0o022) -> Any:
    """Run ``fn`` in a forked child with uid/gid ``user`` and supplementary ``groups``; return its
    (pickled) result. An exception in the child is re-raised here as an AssertionError."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, never return into pytest
        try:
            os.close(r)
            os.umask(umask)
            os.setgroups(list(groups))
            os.setgid(user[1])
            os.setuid(user[0])
            out: tuple[str, Any] = ("ok", fn())
        except BaseException as e:  # noqa: BLE001
            out = ("err", f"{e!r}\n{traceback.format_exc()}")
        try:
            os.write(w, pickle.dumps(out))
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, 9)
                raise AssertionError(f"child as uid {user[0]} timed out")
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "err":
        raise AssertionError(f"in child as uid {user[0]}: {value}")
    return value


def as_nobody(fn: Callable[[], Any], groups: tuple[int, ...] = ()) -> Any:
    return run_as(NOBODY, fn, groups)


def touch(path: str | os.PathLike, data: bytes = b"", mode: int = 0o644) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)
    return Path(path)


def read(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def mode(path: str | os.PathLike) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class Statx(NamedTuple):
    mode: int
    nlink: int
    uid: int
    gid: int
    ino: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int


AT_STATX_FORCE_SYNC = 0x2000
STATX_BASIC_STATS = 0x7FF
_STATX = struct.Struct("=IIQIIIHHQQQQ" + "qIi" * 4)  # up to the four timestamps of struct statx


def xstat(path: str | os.PathLike, follow: bool = False) -> Statx:
    """statx(2) with AT_STATX_FORCE_SYNC: the file system's attributes, asked of the daemon
    whatever the kernel has cached (FUSE sends a GETATTR). The plain os.stat calls elsewhere
    check what the kernel's cache shows; this checks what dynlog itself holds."""
    buf = ctypes.create_string_buffer(256)
    flags = AT_STATX_FORCE_SYNC | (0 if follow else AT_SYMLINK_NOFOLLOW)
    _check(_libc.statx(AT_FDCWD, os.fsencode(path), flags, STATX_BASIC_STATS, buf), path)
    f = _STATX.unpack_from(buf.raw)
    # mask blksize attributes nlink uid gid mode spare ino size blocks attributes_mask a b c m
    ts = [f[12 + 3 * i] * 10**9 + f[13 + 3 * i] for i in range(4)]  # atime, btime, ctime, mtime
    return Statx(f[6], f[3], f[4], f[5], f[8], f[9], ts[0], ts[3], ts[2])


def times(path: str | os.PathLike) -> tuple[int, int, int]:
    """(atime, mtime, ctime) in ns, of the name itself, as the file system holds them (xstat)."""
    st = xstat(path)
    return st.atime_ns, st.mtime_ns, st.ctime_ns


def tick() -> None:
    """Let the clock move on so that a change made now has a later timestamp."""
    time.sleep(TICK)


def make(kind: str, path: str | os.PathLike, mode_: int = 0o644) -> Path:
    """Create an object of ``kind``: regular, dir, fifo, socket, char, block or symlink."""
    if kind == "regular":
        touch(path, mode=mode_)
    elif kind == "dir":
        os.mkdir(path, mode_)
    elif kind == "fifo":
        os.mkfifo(path, mode_)
    elif kind == "socket":
        os.mknod(path, stat.S_IFSOCK | mode_)
    elif kind == "char":
        os.mknod(path, stat.S_IFCHR | mode_, os.makedev(1, 3))
    elif kind == "block":
        os.mknod(path, stat.S_IFBLK | mode_, os.makedev(7, 0))
    elif kind == "symlink":
        os.symlink("target", path)
    else:
        raise ValueError(kind)
    return Path(path)


KINDS = ["regular", "dir", "fifo", "socket", "char", "block", "symlink"]
NONDIR_KINDS = [k for k in KINDS if k != "dir"]
