"""Small helpers for mounted tests: syscalls Python lacks, errno assertions, running as another user."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import pickle
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def renameat2(old: str | bytes, new: str | bytes, flags: int) -> None:
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), ctypes.c_uint(flags))
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


def utimensat(path: str | bytes, atime: tuple[int, int], mtime: tuple[int, int], follow: bool = True) -> None:
    """Times as (seconds, nanoseconds); nanoseconds may be UTIME_NOW or UTIME_OMIT."""
    ts = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    rc = _libc.utimensat(AT_FDCWD, os.fsencode(path), ts, 0 if follow else 0x100)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


@contextmanager
def raises_errno(*codes: int) -> Iterator[None]:
    """Assert the block raises OSError with one of ``codes`` (by name in the failure message)."""
    try:
        yield
    except OSError as e:
        assert e.errno in codes, (f"expected {[errno.errorcode[c] for c in codes]}, "
                                  f"got {errno.errorcode.get(e.errno, e.errno)}: {e}")
    else:
        raise AssertionError(f"expected OSError {[errno.errorcode[c] for c in codes]}, nothing raised")


def errno_of(fn: Callable[[], Any]) -> int:
    """0 when ``fn()`` succeeds, else the errno of the OSError it raised."""
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno or -1


def run_as(uid: int, gid: int, fn: Callable[[], Any], groups: tuple[int, ...] = (), timeout: float = 30.0) -> Any:
    """Run ``fn`` in a forked child with the given credentials and return its (pickled) result.
    An exception in the child is re-raised here as AssertionError with its traceback."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges, run, report, never return into pytest
        os.close(r)
        try:
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            out = ("ok", fn())
        except BaseException as e:  # noqa: BLE001
            out = ("err", f"{e!r}\n{traceback.format_exc()}")
        try:
            os.write(w, pickle.dumps(out))
        finally:
            os._exit(0)
    os.close(w)
    import select

    chunks = []
    try:
        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
                raise AssertionError(f"child as uid {uid} timed out")
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "err":
        raise AssertionError(f"in child as uid {uid}: {value}")
    return value
