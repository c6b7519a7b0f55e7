"""libfuse 3's low-level API, through ctypes: the op table, the replies, and the session loop.

Why the low-level API: libfuse's high-level API keeps its own tree of path nodes, which it
locks per request and frees as the kernel forgets inodes. In libfuse 3.14 that bookkeeping has
two faults a network file system meets (docs/OPERATIONS.md, "Known limits between mounts"): a
rename onto the very name it moves waits for itself forever, and a FORGET that frees a
directory node another request holds locked aborts the daemon (``delete_node: Assertion
'node->treelock == 0'``). With the low-level API the kernel speaks to us in node ids that we
hand out, and libfuse keeps no tree at all; dynlog.fuse.inodes keeps what is needed.

Only what dynlog uses is bound. libfuse's struct layouts are 3.14's (fuse_lowlevel.h,
fuse_common.h); the system's (stat, statvfs, flock) are mfusepy's, which knows each platform's.
"""

from __future__ import annotations

import ctypes
import os
import signal
from ctypes.util import find_library
from typing import Any, Callable

import mfusepy


def _load_libfuse3() -> ctypes.CDLL:
    path = os.environ.get("FUSE_LIBRARY_PATH") or find_library("fuse3") or "libfuse3.so.3"
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"dynlog needs libfuse 3 ({path}: {e}); install it: apt-get install fuse3 libfuse3-3") from e


lib = _load_libfuse3()

req_t = ctypes.c_void_p
ino_t = ctypes.c_uint64
off_t = ctypes.c_int64
size_t = ctypes.c_size_t
mode_t = ctypes.c_uint32
dev_t = ctypes.c_uint64
stat_p = ctypes.POINTER(mfusepy.c_stat)
flock_p = ctypes.POINTER(mfusepy.c_flock_t)

# fuse_lowlevel.h: the setattr bits dynlog acts on
SET_ATTR_MODE = 1 << 0
SET_ATTR_UID = 1 << 1
SET_ATTR_GID = 1 << 2
SET_ATTR_SIZE = 1 << 3
SET_ATTR_ATIME = 1 << 4
SET_ATTR_MTIME = 1 << 5
SET_ATTR_ATIME_NOW = 1 << 7
SET_ATTR_MTIME_NOW = 1 << 8

# fuse_common.h capability bits
CAP_HANDLE_KILLPRIV = 1 << 20


class FileInfo(ctypes.Structure):
    """struct fuse_file_info: an open file's flags and handle."""
    _fields_ = [("flags", ctypes.c_int),
                ("writepage", ctypes.c_uint, 1), ("direct_io", ctypes.c_uint, 1), ("keep_cache", ctypes.c_uint, 1),
                ("flush", ctypes.c_uint, 1), ("nonseekable", ctypes.c_uint, 1), ("flock_release", ctypes.c_uint, 1),
                ("cache_readdir", ctypes.c_uint, 1), ("noflush", ctypes.c_uint, 1), ("padding", ctypes.c_uint, 24),
                ("padding2", ctypes.c_uint, 32),
                ("fh", ctypes.c_uint64), ("lock_owner", ctypes.c_uint64), ("poll_events", ctypes.c_uint32)]


class ConnInfo(ctypes.Structure):
    """struct fuse_conn_info: what the kernel can do, and what init asks of it."""
    _fields_ = [("proto_major", ctypes.c_uint), ("proto_minor", ctypes.c_uint), ("max_write", ctypes.c_uint),
                ("max_read", ctypes.c_uint), ("max_readahead", ctypes.c_uint), ("capable", ctypes.c_uint),
                ("want", ctypes.c_uint), ("max_background", ctypes.c_uint), ("congestion_threshold", ctypes.c_uint),
                ("time_gran", ctypes.c_uint), ("reserved", ctypes.c_uint * 22)]


assert ctypes.sizeof(FileInfo) == 40 and FileInfo.fh.offset == 16 and ctypes.sizeof(ConnInfo) == 128

fi_p = ctypes.POINTER(FileInfo)
conn_p = ctypes.POINTER(ConnInfo)


class EntryParam(ctypes.Structure):
    """struct fuse_entry_param: what lookup, create, mkdir and the like answer."""
    _fields_ = [("ino", ino_t), ("generation", ctypes.c_uint64), ("attr", mfusepy.c_stat),
                ("attr_timeout", ctypes.c_double), ("entry_timeout", ctypes.c_double)]


class Ctx(ctypes.Structure):
    """struct fuse_ctx: who made a request."""
    _fields_ = [("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("pid", ctypes.c_int32),
                ("umask", ctypes.c_uint32)]


class ForgetData(ctypes.Structure):
    _fields_ = [("ino", ino_t), ("nlookup", ctypes.c_uint64)]


class Args(ctypes.Structure):
    """struct fuse_args: the options fuse_session_new parses (argv style)."""
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


F = ctypes.CFUNCTYPE
# The op table in libfuse 3.14's order. Callbacks dynlog leaves out stay NULL: libfuse answers
# ENOSYS for those and the kernel falls back (copy_file_range, lseek) or stops asking.
OP_TYPES: list[tuple[str, Any]] = [
    ("init", F(None, ctypes.c_void_p, conn_p)),
    ("destroy", F(None, ctypes.c_void_p)),
    ("lookup", F(None, req_t, ino_t, ctypes.c_char_p)),
    ("forget", F(None, req_t, ino_t, ctypes.c_uint64)),
    ("getattr", F(None, req_t, ino_t, fi_p)),
    ("setattr", F(None, req_t, ino_t, stat_p, ctypes.c_int, fi_p)),
    ("readlink", F(None, req_t, ino_t)),
    ("mknod", F(None, req_t, ino_t, ctypes.c_char_p, mode_t, dev_t)),
    ("mkdir", F(None, req_t, ino_t, ctypes.c_char_p, mode_t)),
    ("unlink", F(None, req_t, ino_t, ctypes.c_char_p)),
    ("rmdir", F(None, req_t, ino_t, ctypes.c_char_p)),
    ("symlink", F(None, req_t, ctypes.c_char_p, ino_t, ctypes.c_char_p)),
    ("rename", F(None, req_t, ino_t, ctypes.c_char_p, ino_t, ctypes.c_char_p, ctypes.c_uint)),
    ("link", F(None, req_t, ino_t, ino_t, ctypes.c_char_p)),
    ("open", F(None, req_t, ino_t, fi_p)),
    ("read", F(None, req_t, ino_t, size_t, off_t, fi_p)),
    ("write", F(None, req_t, ino_t, ctypes.c_void_p, size_t, off_t, fi_p)),
    ("flush", F(None, req_t, ino_t, fi_p)),
    ("release", F(None, req_t, ino_t, fi_p)),
    ("fsync", F(None, req_t, ino_t, ctypes.c_int, fi_p)),
    ("opendir", F(None, req_t, ino_t, fi_p)),
    ("readdir", F(None, req_t, ino_t, size_t, off_t, fi_p)),
    ("releasedir", F(None, req_t, ino_t, fi_p)),
    ("fsyncdir", F(None, req_t, ino_t, ctypes.c_int, fi_p)),
    ("statfs", F(None, req_t, ino_t)),
    ("setxattr", F(None, req_t, ino_t, ctypes.c_char_p, ctypes.c_void_p, size_t, ctypes.c_int)),
    ("getxattr", F(None, req_t, ino_t, ctypes.c_char_p, size_t)),
    ("listxattr", F(None, req_t, ino_t, size_t)),
    ("removexattr", F(None, req_t, ino_t, ctypes.c_char_p)),
    ("access", F(None, req_t, ino_t, ctypes.c_int)),
    ("create", F(None, req_t, ino_t, ctypes.c_char_p, mode_t, fi_p)),
    ("getlk", F(None, req_t, ino_t, fi_p, flock_p)),
    ("setlk", F(None, req_t, ino_t, fi_p, flock_p, ctypes.c_int)),
    ("bmap", ctypes.c_void_p),
    ("ioctl", ctypes.c_void_p),
    ("poll", ctypes.c_void_p),
    ("write_buf", ctypes.c_void_p),
    ("retrieve_reply", ctypes.c_void_p),
    ("forget_multi", F(None, req_t, size_t, ctypes.POINTER(ForgetData))),
    ("flock", F(None, req_t, ino_t, fi_p, ctypes.c_int)),
    ("fallocate", F(None, req_t, ino_t, ctypes.c_int, off_t, off_t, fi_p)),
    ("readdirplus", ctypes.c_void_p),
    ("copy_file_range", ctypes.c_void_p),
    ("lseek", ctypes.c_void_p),
]


class LowLevelOps(ctypes.Structure):
    """struct fuse_lowlevel_ops (libfuse 3.14)."""
    _fields_ = OP_TYPES


def _bind(name: str, restype: Any, *argtypes: Any) -> Any:
    """A libfuse function called through the CDLL: the GIL is released for the call."""
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


# Replies. Through the CDLL, so the GIL is released while libfuse writes to /dev/fuse: the
# kernel wakes the caller there, and on a busy CPU it may run first. (Kept held, the GIL made
# every other worker wait for that; tar on one CPU cost more daemon CPU a file.)
reply_err = _bind("fuse_reply_err", ctypes.c_int, req_t, ctypes.c_int)
reply_none = _bind("fuse_reply_none", None, req_t)
reply_entry = _bind("fuse_reply_entry", ctypes.c_int, req_t, ctypes.POINTER(EntryParam))
reply_create = _bind("fuse_reply_create", ctypes.c_int, req_t, ctypes.POINTER(EntryParam), fi_p)
reply_attr = _bind("fuse_reply_attr", ctypes.c_int, req_t, stat_p, ctypes.c_double)
reply_readlink = _bind("fuse_reply_readlink", ctypes.c_int, req_t, ctypes.c_char_p)
reply_open = _bind("fuse_reply_open", ctypes.c_int, req_t, fi_p)
reply_write = _bind("fuse_reply_write", ctypes.c_int, req_t, size_t)
reply_buf = _bind("fuse_reply_buf", ctypes.c_int, req_t, ctypes.c_char_p, size_t)
reply_statfs = _bind("fuse_reply_statfs", ctypes.c_int, req_t, mfusepy.c_statvfs_p)
reply_xattr = _bind("fuse_reply_xattr", ctypes.c_int, req_t, size_t)
reply_lock = _bind("fuse_reply_lock", ctypes.c_int, req_t, flock_p)
add_direntry = _bind("fuse_add_direntry", size_t, req_t, ctypes.c_void_p, size_t, ctypes.c_char_p,
                     stat_p, off_t)
notify_inval_inode = _bind("fuse_lowlevel_notify_inval_inode", ctypes.c_int, ctypes.c_void_p, ino_t, off_t, off_t)

# fuse_req_ctx only reads the request: called keeping the GIL (PYFUNCTYPE), as most callbacks ask it.
_req_ctx = ctypes.PYFUNCTYPE(ctypes.POINTER(Ctx), req_t)(("fuse_req_ctx", lib))


def request_context(req: int) -> tuple[int, int, int]:
    """(uid, gid, pid) of the process that made request ``req``."""
    ctx = _req_ctx(req).contents
    return ctx.uid, ctx.gid, ctx.pid


_session_new = _bind("fuse_session_new", ctypes.c_void_p, ctypes.POINTER(Args), ctypes.POINTER(LowLevelOps),
                     size_t, ctypes.c_void_p)
_session_mount = _bind("fuse_session_mount", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)
_session_unmount = _bind("fuse_session_unmount", None, ctypes.c_void_p)
_session_destroy = _bind("fuse_session_destroy", None, ctypes.c_void_p)
_set_signal_handlers = _bind("fuse_set_signal_handlers", ctypes.c_int, ctypes.c_void_p)
_remove_signal_handlers = _bind("fuse_remove_signal_handlers", None, ctypes.c_void_p)
_loop_cfg_create = _bind("fuse_loop_cfg_create", ctypes.c_void_p)
_loop_cfg_destroy = _bind("fuse_loop_cfg_destroy", None, ctypes.c_void_p)
_loop_cfg_set_max_threads = _bind("fuse_loop_cfg_set_max_threads", None, ctypes.c_void_p, ctypes.c_uint)
_loop_cfg_set_idle_threads = _bind("fuse_loop_cfg_set_idle_threads", None, ctypes.c_void_p, ctypes.c_uint)
# the 3.12 ABI: the config is opaque, made by fuse_loop_cfg_create
_session_loop_mt = _bind("fuse_session_loop_mt_312", ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def mount_option_string(options: dict[str, Any]) -> str:
    """``-o`` text for fuse_session_new: ``True`` values as bare flags, others as key=value."""
    parts = []
    for k, v in options.items():
        if v is False or v is None:
            continue
        parts.append(k if v is True else f"{k}={v}")
    return ",".join(parts)


class Session:
    """One mounted low-level FUSE session: ``run`` mounts, serves until unmounted or
    signalled (SIGTERM, SIGINT, SIGHUP), and tears down."""

    def __init__(self, callbacks: dict[str, Callable[..., None]], mountpoint: str, options: dict[str, Any],
                 *, debug: bool = False, max_threads: int = 64, max_idle_threads: int = 64) -> None:
        self._ops = LowLevelOps()
        self._keep: list[Any] = []  # the CFUNCTYPE objects must outlive the session
        for name, typ in OP_TYPES:
            fn = callbacks.get(name)
            if fn is not None and typ is not ctypes.c_void_p:
                cfn = typ(fn)
                self._keep.append(cfn)
                setattr(self._ops, name, cfn)
        argv = [b"dynlog"] + ([b"-d"] if debug else [])
        opt = mount_option_string(options)
        if opt:
            argv += [b"-o", os.fsencode(opt)]
        self._argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
        self._args = Args(len(argv), self._argv, 0)
        self.mountpoint = mountpoint
        self.max_threads = max_threads
        self.max_idle_threads = max_idle_threads
        self.handle: int | None = None  # struct fuse_session *, for notifications

    def run(self) -> int:
        """Mount and serve; returns the loop's status (0, or the signal that ended it).
        Raises RuntimeError when libfuse cannot set up or mount (it has printed why)."""
        se = _session_new(ctypes.byref(self._args), ctypes.byref(self._ops), ctypes.sizeof(self._ops), None)
        if not se:
            raise RuntimeError("fuse_session_new failed")
        # libfuse takes a signal only while it has its default handler, and Python's SIGINT handler
        # could not run anyway while this thread is inside libfuse's loop
        old_sigint = signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            if _set_signal_handlers(se) != 0:
                raise RuntimeError("fuse_set_signal_handlers failed")
            try:
                if _session_mount(se, os.fsencode(self.mountpoint)) != 0:
                    raise RuntimeError(f"fuse_session_mount({self.mountpoint}) failed")
                self.handle = se
                cfg = _loop_cfg_create()
                try:
                    _loop_cfg_set_max_threads(cfg, self.max_threads)
                    _loop_cfg_set_idle_threads(cfg, self.max_idle_threads)
                    status = _session_loop_mt(se, cfg)
                finally:
                    _loop_cfg_destroy(cfg)
                    self.handle = None
                    _session_unmount(se)
            finally:
                _remove_signal_handlers(se)
        finally:
            signal.signal(signal.SIGINT, old_sigint)
            _session_destroy(se)  # calls the destroy callback if init ran
        return status
