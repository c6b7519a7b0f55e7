"""FUSE callbacks: each one resolves the caller, calls FileSystem, and maps errors through one
errno table. No store calls here: everything goes through dynlog.core.filesystem.FileSystem.

Kernel caches (docs/OPERATIONS.md, "Kernel caches and the consistency model"): entries and
attributes are cached by the kernel for ``ENTRY_TIMEOUT``/``ATTR_TIMEOUT`` seconds, negative
lookups not at all. Page cache is dropped on every open (no ``keep_cache``), and when open()
finds that a file changed since the kernel last saw its attributes, the kernel's attributes and
pages for it are invalidated before open returns, so open() after another mount's close() sees
the new size and bytes (close-to-open). Changes the change feed brings in are passed on to the
kernel the same way (``on_invalidate``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import itertools
import os
import stat
import threading
import time
from typing import Any, Callable, TypeVar

import structlog

import mfusepy  # dynlog.fuse (our package __init__) has pointed it at libfuse 3
from mfusepy import FuseOSError, Operations, overrides

from ..cluster.locks import EOF_
from ..core.attrs import Caller
from ..core.filesystem import UTIME_NOW, FileSystem
from ..errors import FsError, JournalConflict, StoreError, TransientStoreError
from ..store.metrics import OPERATIONS
from .threadstate import pin_thread_state

log = structlog.get_logger(__name__)

# Kernel cache timeouts, in seconds. dynlog is not the only writer (other mounts write the same
# store), so these stay short: one second bounds how long a stat, lookup or ls -l on this mount
# may show a name or attributes another mount changed, while still sparing the daemon a round
# trip for every stat of a busy build (make, git status stat each file several times a second).
# Negative lookups are never cached: a file another mount creates is visible at once.
ENTRY_TIMEOUT = 1.0
ATTR_TIMEOUT = 1.0
NEGATIVE_TIMEOUT = 0.0

LOCK_TYPES = {fcntl.F_RDLCK: "r", fcntl.F_WRLCK: "w", fcntl.F_UNLCK: "u"}

# libfuse capability bits (fuse_common.h)
FUSE_CAP_HANDLE_KILLPRIV = 1 << 20

# struct timespec tv_nsec sentinels of utimensat(2)
UTIME_NOW_NSEC = (1 << 30) - 1
UTIME_OMIT_NSEC = (1 << 30) - 2

# xattr namespaces a name may be in (the kernel checks who may use trusted.* and user.*)
XATTR_NAMESPACES = ("user.", "trusted.", "security.")

# Directory handles live far above file handles (FileSystem counts those from 1), so a handle
# number never means both.
DIR_HANDLE_BASE = 1 << 62

# How many inodes' last reported (path, size, mtime) are remembered (about 200 bytes each).
SEEN_MAX = 200_000

# libfuse counts a file as open until a moment after our release() returns (it decrements its
# open count afterwards, on the release thread), so an unlink racing a close may still be turned
# into a "hide" of a file we already closed. For this long after its last release, a hide of an
# inode is still taken for one (a true unlink), never for a rename to a .fuse_hidden name.
RELEASED_GRACE = 5.0

# The one errno table: exception class -> errno (None: the exception carries its own errno).
# Checked in order; the first class the exception is an instance of wins.
ERRNO_TABLE: tuple[tuple[type[BaseException], int | None], ...] = (
    (FuseOSError, None),
    (FsError, None),
    (JournalConflict, errno.EAGAIN),  # a commit that kept losing races past the retry bound
    (TransientStoreError, errno.EIO),  # the store stayed unreachable past the retry bound
    (StoreError, errno.EIO),
    (NotImplementedError, errno.ENOSYS),
)


def errno_of(exc: BaseException) -> int | None:
    """The errno for an exception per ERRNO_TABLE, or None when it is unexpected (a bug)."""
    for cls, code in ERRNO_TABLE:
        if isinstance(exc, cls):
            return code if code is not None else getattr(exc, "errno", None) or errno.EIO
    return None


F = TypeVar("F", bound=Callable[..., Any])

# Callbacks that change nothing a getattr shows. Every other callback ends a change (see
# DynlogOperations._changed): a getattr reply left by a callback (see _offer_reply) is only used
# when no change of this mount ended between its making and the getattr that takes it.
READ_ONLY_OPS = frozenset({"getattr", "getxattr", "xattr_value", "listxattr", "readdir", "readlink", "access",
                           "statfs", "opendir", "releasedir", "read"})


def fuse_op(func: F) -> F:
    """Map errors of one callback: known ones to their errno, anything else logged and EIO.
    Also keeps the libfuse thread's Python thread state alive across callbacks (threadstate)."""
    changes = func.__name__ not in READ_ONLY_OPS

    @functools.wraps(func)
    def wrapper(self: "DynlogOperations", *args: Any, **kwargs: Any) -> Any:
        pin_thread_state()
        try:
            return func(self, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the boundary: nothing may escape into libfuse
            code = errno_of(e)
            if code is None:
                log.exception("fuse.unexpected_error", op=func.__name__)
                code = errno.EIO
            elif isinstance(e, StoreError):
                log.warning("fuse.store_error", op=func.__name__, error=str(e))
            raise FuseOSError(code) from None
        finally:
            if changes:
                self._changed()

    return wrapper  # type: ignore[return-value]


# libfuse's fuse_get_context, called keeping the GIL (PYFUNCTYPE). It only reads a thread-local;
# through the CDLL (as mfusepy.fuse_get_context calls it) ctypes releases the GIL for the call and
# takes it back after, a chance for every other thread to run first. Most callbacks ask it.
_fuse_get_context = ctypes.PYFUNCTYPE(ctypes.POINTER(mfusepy.fuse_context))(("fuse_get_context", mfusepy._libfuse))


def context() -> tuple[int, int, int]:
    """(uid, gid, pid) of the request this libfuse thread is serving."""
    ctx = _fuse_get_context().contents
    return ctx.uid, ctx.gid, ctx.pid


def caller() -> Caller:
    uid, gid, pid = context()
    return Caller(uid, gid, pid)


class DynlogOperations(Operations):
    """The mfusepy callbacks over one FileSystem.

    libfuse runs these on many threads at once; FileSystem does its own locking. Paths are
    surrogate-escaped strings (mfusepy decodes with ``surrogateescape``), which FileSystem stores
    losslessly. With ``nullpath_ok`` the path is None for calls on an open handle (read, write,
    flush, release, fsync, readdir, and getattr/truncate given a handle): those use the handle, so
    a file unlinked while open keeps working until its last close.

    Unlinked while open: libfuse's ``hard_remove`` would make every path-based call on such a
    file fail with ESTALE, and the kernel sends fstat(2) as a path-based getattr. So hard_remove
    stays off, and libfuse "hides" the file by renaming it to ``.fuse_hidden<hex>``. That rename
    never reaches the store: it is turned into the real unlink (the name is gone for every
    mount, and from listings here too), while this object remembers the hidden path, answers
    getattr on it from the open handle (st_nlink 0), and forgets it when libfuse unlinks the
    hidden name at the last close.
    """

    use_ns = True

    def __init__(self, fs: FileSystem, *, entry_timeout: float = ENTRY_TIMEOUT,
                 attr_timeout: float = ATTR_TIMEOUT) -> None:
        self.fs = fs
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self._append: set[int] = set()  # handles opened with O_APPEND
        self._dirs: dict[int, str] = {}  # directory handle -> path at opendir
        self._dir_fh = itertools.count(DIR_HANDLE_BASE)
        # ino -> (a path, size, mtime) as last reported to the kernel: open() compares to spot
        # changes made elsewhere, and remote invalidations need a path to name the inode by.
        self._seen: dict[int, tuple[str, int, int]] = {}
        self._fuse_ptr: int | None = None  # struct fuse *, for invalidations from other threads
        self._fh_ino: dict[int, int] = {}  # open file handle -> inode number
        self._hidden: dict[str, int] = {}  # libfuse's hidden path of a file unlinked while open -> ino
        self._released: dict[int, float] = {}  # ino -> time of its last release here (see RELEASED_GRACE)
        # Paths whose names the change feed reported changed by another mount while the kernel
        # may still hold them as cached entries (path -> when): see getattr.
        self._remote: dict[str, float] = {}
        # Inodes with several names. libfuse's high-level API gives the kernel one inode per
        # name, so a change made through one name must drop the kernel's cache of the others.
        self._links: dict[int, set[str]] = {}
        self._link_ino: dict[str, int] = {}
        self._lock = threading.Lock()
        # libfuse thread -> hidden path whose setattr it is completing (see _setattr). Keyed by
        # thread id: a threading.local does not last from one callback of a libfuse thread to the next.
        self._setattr_of: dict[int, str] = {}
        # getattr replies left for libfuse's getattr that follows create, chmod, chown and
        # utimens on the same thread (see _offer_reply): thread id -> (path, fh, generation, stat).
        # The generation counts changes this mount's callbacks (and the change feed) ended.
        self._replies: dict[int, tuple[str | None, int | None, int, dict[str, int]]] = {}
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._closed = False
        self.initialized = False  # libfuse called init: the file system was mounted

    # -- getattr replies -----------------------------------------------------------------------
    # libfuse's high-level API answers create and every setattr (chmod, chown, utimens) with a
    # getattr of the same path and handle, on the same thread, right after our callback returns:
    # about half the getattrs tar causes. A callback that already holds the file's attributes
    # leaves them here, and that getattr takes them instead of resolving the file again. A reply
    # is taken at most once, only by that thread for that (path, handle), and only if no other
    # change ended on this mount since it was made (the generation; the change feed's remote
    # changes count too): so it is exactly what a getattr would have computed then, never
    # older than this mount's own changes.
    def _changed(self) -> None:
        """A callback that may change what getattr shows has ended (fuse_op calls this)."""
        with self._gen_lock:
            self._generation += 1

    def _offer_reply(self, path: str | None, fh: int | None, st: dict[str, int] | None, start: int) -> None:
        """Leave ``st`` (computed inside the change this callback makes) for libfuse's getattr.
        ``start``: the generation when the callback began; if another change ended since, ``st``
        may not show it, and nothing is left. The reply carries the generation the callback's own
        _changed will set, so a change ending after this makes it unusable too."""
        if st is not None:
            with self._gen_lock:
                if self._generation == start:
                    self._replies[threading.get_ident()] = (path, fh, start + 1, st)

    def _take_reply(self, path: str | None, fh: int | None) -> dict[str, int] | None:
        reply = self._replies.pop(threading.get_ident(), None)
        if reply is None or reply[0] != path or reply[1] != fh or reply[2] != self._generation:
            return None
        return reply[3]

    # -- lifecycle -----------------------------------------------------------------------------
    @overrides(Operations)
    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        self._fuse_ptr = mfusepy._libfuse.fuse_get_context().contents.fuse
        self.initialized = True
        if config_3 is not None:
            config_3.entry_timeout = self.entry_timeout
            config_3.attr_timeout = self.attr_timeout
            config_3.negative_timeout = NEGATIVE_TIMEOUT
            config_3.use_ino = 1  # st_ino is dynlog's stable inode number
            config_3.hard_remove = 0  # hidden files stay local: see the class docstring
            config_3.nullpath_ok = 1
        if conn_info is not None:
            # Let the kernel clear setuid/setgid on write and truncate (a setattr we then apply).
            conn_info.want &= ~FUSE_CAP_HANDLE_KILLPRIV

    @overrides(Operations)
    def destroy(self, path: str) -> None:
        self.close()

    def close(self) -> None:
        """Flush open files, stop the session and change feed, release the file system (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.fs.close()
        except Exception:  # noqa: BLE001 - unmounting must finish
            log.exception("fuse.close_failed")

    # -- metadata ------------------------------------------------------------------------------
    @overrides(Operations)
    @fuse_op
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        if self._replies:
            st = self._take_reply(path, fh)
            if st is not None:
                OPERATIONS.add("getattr")  # still one the kernel asked: dynlog stats counts it
                self._remember(path, st)
                return st
        if fh is None and path in self._hidden:
            st = self.fs.getattr(None, self._handle_of(self._hidden[path], path))
            with self._lock:
                in_setattr = self._setattr_of.get(threading.get_ident()) == path
                if in_setattr:
                    del self._setattr_of[threading.get_ident()]
            if not in_setattr:  # (a setattr's reply: libfuse passes it on unchanged)
                st["st_nlink"] += 1  # libfuse's getattr subtracts the hidden name's link it believes in
            return st
        if fh is not None and fh < DIR_HANDLE_BASE or path is None:
            st = self.fs.getattr(path, fh)
        else:
            try:
                st = self.fs.lookup(path)
            except FsError as e:
                if e.errno == errno.ENOENT and self._stale_entry(path):
                    raise FsError(errno.ESTALE, f"{path}: removed by another mount") from None
                raise
        self._remember(path, st)
        return st

    def _stale_entry(self, path: str) -> bool:
        """Whether a name that is gone may still be a cached entry of the kernel, removed by
        another mount: then the kernel's question is a GETATTR of that stale entry (libfuse's
        LOOKUP asks the same getattr), and ENOENT would fail the caller's system call even when
        it was open(O_CREAT), which must create the name: the kernel checks permissions with a
        GETATTR before it would create, and does not treat ENOENT there as "entry gone".
        ESTALE makes it walk the path again with LOOKUP_REVAL, whose LOOKUP then gets ENOENT
        and drops the entry. Once per remote change, so a true LOOKUP pays one extra round."""
        with self._lock:
            when = self._remote.pop(path, None)
        return when is not None and time.monotonic() - when < self.entry_timeout + 1.0

    def _handle_of(self, ino: int, path: str) -> int:
        with self._lock:
            for fh, i in self._fh_ino.items():
                if i == ino:
                    return fh
        raise FsError(errno.ENOENT, path)

    def _track(self, fh: int, path: str) -> dict[str, int] | None:
        """Note which inode a new handle is on; returns its attributes."""
        try:
            st = self.fs.getattr(None, fh)
        except FsError:
            return None
        with self._lock:
            self._fh_ino[fh] = st["st_ino"]
        return st

    def _remember(self, path: str | None, st: dict[str, int]) -> None:
        ino = st["st_ino"]
        if path is None:
            seen = self._seen.get(ino)
            if seen is None:
                return
            path = seen[0]
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()  # forgetting only costs invalidations we could have made
        self._seen[ino] = (path, st["st_size"], st["st_mtime"])
        if st["st_nlink"] > 1 and not stat.S_ISDIR(st["st_mode"]):
            with self._lock:
                if len(self._link_ino) >= SEEN_MAX:
                    self._links.clear()
                    self._link_ino.clear()
                self._links.setdefault(ino, set()).add(path)
                self._link_ino[path] = ino

    def _sync_links(self, path: str | None = None, fh: int | None = None, gone: bool = False) -> None:
        """After a change to an inode through ``path`` (or handle ``fh``): if it has other names,
        drop the kernel's cached attributes and pages under them. ``gone``: ``path`` was removed."""
        with self._lock:
            ino = self._link_ino.get(path) if path is not None else self._fh_ino.get(fh or 0)
            if ino is None or ino not in self._links:
                return
            names = self._links[ino]
            others = [p for p in names if p != path]
            if gone and path is not None:
                names.discard(path)
                self._link_ino.pop(path, None)
        for p in others:
            invalidate_path(p)

    def on_invalidate(self, jid: str | None, names: list[str]) -> None:
        """The change feed saw remote changes to journal ``jid`` (``d/<ino>`` or ``i/<ino>``),
        touching ``names`` in it: drop the kernel's cached attributes and pages of those inodes
        (entries themselves expire within ENTRY_TIMEOUT). Runs on the follower's thread."""
        self._changed()  # a getattr reply left before this may not show the change
        if self._fuse_ptr is None or self._closed or jid is None:
            return  # None means "everything": the kernel's short timeouts bound that case
        kind, _, ino = jid.partition("/")
        try:
            seen = self._seen.get(int(ino))
        except ValueError:
            return
        if seen is None:
            return  # never shown to the kernel: nothing cached there
        base = seen[0]
        paths = [base]
        if kind == "d":
            children = [(base.rstrip("/") + "/" + n) for n in names if n]
            paths += children
            now = time.monotonic()
            with self._lock:
                if len(self._remote) >= SEEN_MAX:
                    self._remote.clear()
                self._remote.update((p, now) for p in children)
        for p in paths:
            invalidate_path(p, self._fuse_ptr)

    @overrides(Operations)
    @fuse_op
    def opendir(self, path: str) -> int:
        st = self.fs.getattr(path)
        if not stat.S_ISDIR(st["st_mode"]):
            raise FsError(errno.ENOTDIR, path)
        fh = next(self._dir_fh)
        self._dirs[fh] = path
        return fh

    @overrides(Operations)
    @fuse_op
    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int] | None, int]]:
        where = path if path is not None else self._dirs.get(fh)
        if where is None:
            raise FsError(errno.EBADF, "no such directory handle")
        return [(name, attrs, 0) for name, attrs in self.fs.readdir(where)]

    @overrides(Operations)
    @fuse_op
    def releasedir(self, path: str | None, fh: int) -> int:
        self._dirs.pop(fh, None)
        return 0

    @overrides(Operations)
    @fuse_op
    def readlink(self, path: str) -> str:
        return self.fs.readlink(path)

    @overrides(Operations)
    @fuse_op
    def access(self, path: str, amode: int) -> int:
        self.fs.access(path, amode)
        return 0

    @overrides(Operations)
    @fuse_op
    def statfs(self, path: str) -> dict[str, int]:
        return self.fs.statfs()

    # -- creating and removing -----------------------------------------------------------------
    @overrides(Operations)
    @fuse_op
    def mknod(self, path: str, mode: int, dev: int) -> int:
        self.fs.mknod(path, mode, dev, caller())
        return 0

    @overrides(Operations)
    @fuse_op
    def mkdir(self, path: str, mode: int) -> int:
        self.fs.mkdir(path, mode, caller())
        return 0

    @overrides(Operations)
    @fuse_op
    def symlink(self, target: str, source: str) -> int:
        """``target`` is the new link's path, ``source`` what it points to (mfusepy's names)."""
        self.fs.symlink(source, target, caller())
        return 0

    @overrides(Operations)
    @fuse_op
    def link(self, target: str, source: str) -> int:
        """``target`` is the new name, ``source`` the existing file (mfusepy's names)."""
        self.fs.link(source, target, caller())
        st = self.fs.getattr(source)
        self._remember(source, st)  # now known as a file with several names
        self._sync_links(source)  # its link count and ctime changed under every other name too
        invalidate_path(source)
        return 0

    @overrides(Operations)
    @fuse_op
    def unlink(self, path: str) -> int:
        with self._lock:
            if self._hidden.pop(path, None) is not None:
                return 0  # libfuse's last-close cleanup of a hidden name: the store never had it
        self.fs.unlink(path, caller())
        self._sync_links(path, gone=True)
        return 0

    @overrides(Operations)
    @fuse_op
    def rmdir(self, path: str) -> int:
        self.fs.rmdir(path, caller())
        return 0

    @overrides(Operations)
    @fuse_op
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        if is_hidden_name(new) and not flags:
            return self._hide(old, new)
        self.fs.rename(old, new, flags, caller())
        self._sync_links(new, gone=True)  # a name it replaced
        self._sync_links(old, gone=True)
        return 0

    def _hide(self, old: str, hidden: str) -> int:
        """libfuse hides ``old`` (open here) instead of unlinking it: unlink it for real. That
        includes a file whose last release libfuse has not finished counting yet (an unlink
        racing the close): renamed for real, the hidden name would stay in the directory, since
        libfuse unlinks it only at a release still to come, and none is."""
        st = self.fs.getattr(old)
        with self._lock:
            ino = st["st_ino"]
            open_here = ino in self._fh_ino.values()
            closing = time.monotonic() - self._released.get(ino, float("-inf")) < RELEASED_GRACE
        if not (open_here or closing) or stat.S_ISDIR(st["st_mode"]):
            self.fs.rename(old, hidden, 0, caller())  # someone really wants that name
            return 0
        self.fs.unlink(old, caller())
        self._sync_links(old, gone=True)
        with self._lock:
            self._hidden[hidden] = st["st_ino"]
        return 0

    # -- attributes ----------------------------------------------------------------------------
    def _setattr(self, path: str | None, fh: int | None,
                 call: Callable[[str | None, int | None], dict[str, int] | None]) -> int:
        """Run ``call(path, fh)``, one of chmod, chown, utimens, which may return the stat after
        it for libfuse's getattr (_offer_reply). fchmod, fchown and futimens of a file unlinked
        while open reach us by libfuse's hidden path (the kernel sends no handle for them):
        those are answered through the open handle."""
        start = self._generation
        hidden = path if fh is None and path is not None and path in self._hidden else None
        if hidden is not None:
            path, fh = None, self._handle_of(self._hidden[hidden], hidden)
        st = call(path, fh)
        if hidden is not None:
            # libfuse ends its setattr with a getattr of the hidden path, on this thread, whose
            # st_nlink it does not adjust for the hidden name (its getattr does): see getattr
            with self._lock:
                self._setattr_of[threading.get_ident()] = hidden
        else:
            self._offer_reply(path, fh, st, start)
        self._sync_links(path, fh)
        return 0

    @overrides(Operations)
    @fuse_op
    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> int:
        return self._setattr(path, fh, lambda p, h: self.fs.chmod(p, mode, caller(), h))

    @overrides(Operations)
    @fuse_op
    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> int:
        return self._setattr(path, fh, lambda p, h: self.fs.chown(p, uid, gid, caller(), h))

    @overrides(Operations)
    @fuse_op
    def utimens(self, path: str | None, times: tuple[Any, Any] | None = None, fh: int | None = None) -> int:
        """``times`` is (atime, mtime), each nanoseconds, UTIME_NOW ("now") or None (omit)."""
        atime, mtime = times if times is not None else (UTIME_NOW, UTIME_NOW)
        return self._setattr(path, fh, lambda p, h: self.fs.utimens(p, atime, mtime, caller(), h))

    @overrides(Operations)
    @fuse_op
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self.fs.truncate(path, length, caller(), fh)
        self._sync_links(path, fh)
        return 0

    # -- xattrs --------------------------------------------------------------------------------
    @overrides(Operations)
    @fuse_op
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        value = self.xattr_value(path, name)
        if value is None:
            raise FsError(errno.ENODATA, name)
        return value

    @fuse_op
    def xattr_value(self, path: str, name: str) -> bytes | None:
        """getxattr without the exception for "not there" (None): the kernel asks for
        ``security.capability`` before every write to a file (FUSE caches no xattrs), and it is
        almost never there."""
        fh = self._hidden_handle(path)
        return self.fs.xattr_value(None if fh else path, name, fh)

    @overrides(Operations)
    @fuse_op
    def listxattr(self, path: str) -> list[str]:
        fh = self._hidden_handle(path)
        names = self.fs.listxattr(None if fh else path, fh)
        if caller().uid != 0:  # as local file systems do: trusted.* is listed to the privileged only
            names = [n for n in names if not n.startswith("trusted.")]
        return names

    @overrides(Operations)
    @fuse_op
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        if not name.startswith(XATTR_NAMESPACES):
            raise FsError(errno.EOPNOTSUPP, f"xattr namespace of {name!r}")  # as local file systems do
        fh = self._hidden_handle(path)
        self.fs.setxattr(None if fh else path, name, value, options, caller(), fh)
        self._sync_links(path)
        return 0

    @overrides(Operations)
    @fuse_op
    def removexattr(self, path: str, name: str) -> int:
        fh = self._hidden_handle(path)
        self.fs.removexattr(None if fh else path, name, caller(), fh)
        self._sync_links(path)
        return 0

    def _hidden_handle(self, path: str | None) -> int | None:
        """The open handle of a file unlinked while open, when ``path`` is libfuse's hidden name
        for it (fgetxattr and the like come by path)."""
        if path is not None and path in self._hidden:
            return self._handle_of(self._hidden[path], path)
        return None

    # -- files ---------------------------------------------------------------------------------
    @overrides(Operations)
    @fuse_op
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        start = self._generation
        fh = self.fs.create(path, mode, flags, caller())
        if flags & os.O_APPEND:
            self._append.add(fh)
        st = self._track(fh, path)
        if st is not None:
            self._remember(path, st)
            self._offer_reply(path, fh, st, start)  # libfuse's lookup after create asks for it
        return fh

    @overrides(Operations)
    @fuse_op
    def open(self, path: str, flags: int) -> int:
        try:
            fh = self.fs.open(path, flags, caller())
        except FsError as e:
            if e.errno != errno.ENOENT:
                raise
            # The kernel still believed in this name (a cached entry, up to entry_timeout old)
            # but another mount has removed it. ENOENT would be wrong for open(O_CREAT), which
            # must then create the file (the kernel does not pass O_CREAT on): ESTALE makes the
            # kernel walk the path again with LOOKUP_REVAL, asking us, and then create or fail.
            raise FsError(errno.ESTALE, f"{path}: removed by another mount") from None
        if flags & os.O_APPEND:
            self._append.add(fh)
        try:
            self._revalidate_kernel(path, fh)
        except Exception:  # noqa: BLE001 - the open itself succeeded; never leak its handle
            log.exception("fuse.revalidate_failed", path=path)
        return fh

    def _revalidate_kernel(self, path: str, fh: int) -> None:
        """Close-to-open: if the file changed since the kernel last saw its attributes (another
        mount wrote it), drop the kernel's cached attributes and pages before open returns."""
        st = self._track(fh, path)
        if st is None:
            return
        seen = self._seen.get(st["st_ino"])
        self._remember(path, st)
        if seen is not None and seen[1:] != (st["st_size"], st["st_mtime"]):
            invalidate_path(path)

    @overrides(Operations)
    @fuse_op
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self.fs.read(fh, size, offset)

    @overrides(Operations)
    @fuse_op
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return self.fs.write(fh, data, offset, caller(), append=fh in self._append)

    @overrides(Operations)
    @fuse_op
    def flush(self, path: str | None, fh: int) -> int:
        self.fs.flush(fh, caller())
        self._sync_links(fh=fh)
        return 0

    @overrides(Operations)
    @fuse_op
    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        self.fs.fsync(fh, caller())
        self._sync_links(fh=fh)
        return 0

    @overrides(Operations)
    @fuse_op
    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        """fsync of a directory (and syncfs through it): commit the write-behind queues."""
        self.fs.syncfs()
        return 0

    @overrides(Operations)
    @fuse_op
    def release(self, path: str | None, fh: int) -> int:
        self._append.discard(fh)
        with self._lock:
            ino = self._fh_ino.pop(fh, None)
            if ino is not None:
                if len(self._released) >= SEEN_MAX:
                    self._released.clear()
                self._released[ino] = time.monotonic()
        self.fs.release(fh, caller())
        return 0

    # -- locks ---------------------------------------------------------------------------------
    @overrides(Operations)
    @fuse_op
    def lock(self, path: str | None, fh: int, cmd: int, lock: Any, owner: int = 0) -> int:
        """fcntl byte-range locks, seen by every mount. libfuse also calls this with F_UNLCK over
        the whole file on every close (POSIX: any close by the owner releases its locks)."""
        lk = lock.contents
        start = lk.l_start
        end = EOF_ if lk.l_len == 0 else start + lk.l_len
        if cmd == fcntl.F_GETLK:
            blocker = self.fs.getlk(fh, owner, LOCK_TYPES.get(lk.l_type, "w"), start, end)
            if blocker is None:
                lk.l_type = fcntl.F_UNLCK
            else:
                lk.l_type = fcntl.F_WRLCK if blocker.type == "w" else fcntl.F_RDLCK
                lk.l_whence = os.SEEK_SET
                lk.l_start = blocker.start
                lk.l_len = 0 if blocker.end >= EOF_ else blocker.end - blocker.start
                lk.l_pid = blocker.pid
            return 0
        type_ = LOCK_TYPES.get(lk.l_type)
        if type_ is None:
            raise FsError(errno.EINVAL, f"lock type {lk.l_type}")
        if type_ == "u" and start == 0 and end == EOF_:
            self.fs.release_locks(fh, owner, "p", caller())  # no request unless it holds some
            return 0
        self._set_lock(fh, owner, type_, start, end, cmd == fcntl.F_SETLKW, "p")
        return 0

    @overrides(Operations)
    @fuse_op
    def flock(self, path: str | None, fh: int, op: int, owner: int = 0) -> int:
        """BSD flock: whole-file, per open file description (the kernel's lock owner)."""
        if op & fcntl.LOCK_UN:
            self.fs.release_locks(fh, owner, "f", caller())
            return 0
        type_ = "w" if op & fcntl.LOCK_EX else "r"
        self._set_lock(fh, owner, type_, 0, EOF_, not op & fcntl.LOCK_NB, "f")
        return 0

    def release_flock(self, fh: int, owner: int) -> None:
        """The last close of an open file description that took a flock lock: the kernel's
        release carries FUSE_RELEASE_FLOCK_UNLOCK and the description's lock owner, and the lock
        goes with it (flock(2)). libfuse's high-level API leaves this to the file system."""
        try:
            self.fs.release_locks(fh, owner, "f", caller())
        except Exception as e:  # noqa: BLE001 - the release itself must go on; the lease is the floor
            log.warning("fuse.flock_release_failed", fh=fh, error=str(e))

    def _set_lock(self, fh: int, owner: int, type_: str, start: int, end: int, wait: bool, kind: str) -> None:
        who = caller()
        if self.fs.setlk(fh, owner, type_, start, end, who.pid, wait, kind, who):
            st = self.fs.getattr(None, fh)  # the file changed elsewhere: drop the kernel's pages
            seen = self._seen.get(st["st_ino"])
            if seen is not None:
                invalidate_path(seen[0])

    @overrides(Operations)
    @fuse_op
    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> int:
        self.fs.fallocate(fh, mode, offset, size, caller())
        return 0


_fuse_invalidate_path = getattr(mfusepy._libfuse, "fuse_invalidate_path", None)  # libfuse >= 3.1
if _fuse_invalidate_path is not None:
    _fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    _fuse_invalidate_path.restype = ctypes.c_int


def invalidate_path(path: str, fuse_ptr: int | None = None) -> None:
    """Ask the kernel to drop its cached attributes and pages of ``path`` (libfuse's
    fuse_invalidate_path; a path libfuse does not know is no error). ``fuse_ptr`` is the
    struct fuse *; without it this must run inside a callback, to take it from the context."""
    if _fuse_invalidate_path is None:
        return
    if fuse_ptr is None:
        fuse_ptr = mfusepy._libfuse.fuse_get_context().contents.fuse
    rc = _fuse_invalidate_path(fuse_ptr, os.fsencode(path))
    if rc not in (0, -errno.ENOENT):
        log.debug("fuse.invalidate_failed", path=path, rc=rc)


def is_hidden_name(path: str) -> bool:
    """libfuse's name for a file unlinked while open: .fuse_hidden + 16 hex digits."""
    name = path.rpartition("/")[2]
    return (len(name) == 28 and name.startswith(".fuse_hidden")
            and all(c in "0123456789abcdef" for c in name[12:]))


_ZERO_STAT = mfusepy.c_stat()


def fill_stat(buf: Any, attrs: dict[str, int]) -> None:
    """Write FileSystem's stat dict (times in ns) into libfuse's ``struct stat``: every field
    libfuse passes on to the kernel (convert_stat), the rest zeroed. Zeroed by assigning a zero
    struct, not ctypes.memset: a foreign call releases the GIL and has to win it back."""
    buf[0] = _ZERO_STAT
    st = buf.contents
    st.st_mode = attrs["st_mode"]
    st.st_ino = attrs["st_ino"]
    st.st_nlink = attrs["st_nlink"]
    st.st_uid = attrs["st_uid"]
    st.st_gid = attrs["st_gid"]
    st.st_size = attrs["st_size"]
    st.st_rdev = attrs.get("st_rdev", 0)
    st.st_blocks = attrs.get("st_blocks", 0)
    st.st_blksize = attrs.get("st_blksize", 0)
    ts = st.st_atimespec
    ts.tv_sec, ts.tv_nsec = divmod(attrs["st_atime"], 10**9)
    ts = st.st_mtimespec
    ts.tv_sec, ts.tv_nsec = divmod(attrs["st_mtime"], 10**9)
    ts = st.st_ctimespec
    ts.tv_sec, ts.tv_nsec = divmod(attrs["st_ctime"], 10**9)


def _timespec_value(ts: Any) -> int | str | None:
    if ts.tv_nsec == UTIME_NOW_NSEC:
        return UTIME_NOW
    if ts.tv_nsec == UTIME_OMIT_NSEC:
        return None
    return ts.tv_sec * 10**9 + ts.tv_nsec


class DynlogFUSE(mfusepy.FUSE):
    """mfusepy.FUSE with the libfuse 3 callbacks it simplifies passed through whole: rename
    keeps its flags (RENAME_NOREPLACE, RENAME_EXCHANGE), utimens keeps UTIME_NOW/UTIME_OMIT and
    the file handle, chmod/chown/truncate keep the file handle (their path is None under
    nullpath_ok when the kernel sends one), opendir hands out our directory handles."""

    def _dec(self, path: bytes | None) -> str | None:
        return None if path is None else path.decode(self.encoding, self.errors)

    @staticmethod
    def _fh(fip: Any) -> int | None:
        return fip.contents.fh if fip else None

    # The three callbacks below replace mfusepy's versions on tar's hot path (about 8 getattrs, 2
    # getxattrs and a create per small file): mfusepy fills the stat field by field through
    # getattr/setattr on names, asks inspect.signature on every create, and turns the ENODATA of
    # an xattr that is not there into an exception that it logs and formats at debug level.
    def getattr_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        attrs = self.operations.getattr(self._dec(path), self._fh(fip))
        fill_stat(buf, attrs)
        return 0

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.create(self._dec(path), mode, fi.flags)
        return 0

    def getxattr(self, path: bytes, name: bytes, value: Any, size: int, *args: Any) -> int:
        ret = self.operations.xattr_value(self._dec(path), self._dec(name))
        if ret is None:
            return -errno.ENODATA
        if not value:
            return len(ret)  # a size query
        if len(ret) > size:
            return -errno.ERANGE
        ctypes.memmove(value, ret, len(ret))
        return len(ret)

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename(self._dec(old), self._dec(new), flags)

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        times = (_timespec_value(buf.contents.actime), _timespec_value(buf.contents.modtime)) if buf else None
        return self.operations.utimens(self._dec(path), times, self._fh(fip))

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return self.operations.chmod(self._dec(path), mode, self._fh(fip))

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip: Any) -> int:
        if mfusepy.c_uid_t(uid + 1).value == 0:
            uid = -1
        if mfusepy.c_gid_t(gid + 1).value == 0:
            gid = -1
        return self.operations.chown(self._dec(path), uid, gid, self._fh(fip))

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        return self.operations.truncate(self._dec(path), length, self._fh(fip))

    def opendir(self, path: bytes, fip: Any) -> int:
        fip.contents.fh = self.operations.opendir(self._dec(path))
        return 0

    def lock(self, path: bytes | None, fip: Any, cmd: int, lock: Any) -> int:
        fi = fip.contents
        return self.operations.lock(self._dec(path), fi.fh, cmd, lock, fi.lock_owner)

    def flock(self, path: bytes | None, fip: Any, op: int) -> int:
        fi = fip.contents
        return self.operations.flock(self._dec(path), fi.fh, op, fi.lock_owner)

    def release(self, path: bytes | None, fip: Any) -> int:
        fi = fip.contents
        if fi.flock_release:
            self.operations.release_flock(fi.fh, fi.lock_owner)
        return super().release(path, fip)
