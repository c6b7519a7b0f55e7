"""FUSE callbacks on libfuse's low-level API (dynlog.fuse.lowlevel): each turns the inode the
kernel names into a path (dynlog.fuse.inodes), calls FileSystem, and replies. No store calls
here: everything goes through dynlog.core.filesystem.FileSystem.

Kernel caches (docs/OPERATIONS.md, "Kernel caches and the consistency model"): entries and
attributes are cached by the kernel for ``ENTRY_TIMEOUT``/``ATTR_TIMEOUT`` seconds, negative
lookups not at all. Page cache is dropped on every open (no ``keep_cache``), and when open()
finds that a file changed since the kernel last saw its attributes, the kernel's attributes and
pages for it are invalidated before open returns, so open() after another mount's close() sees
the new size and bytes (close-to-open). Changes the change feed brings in are passed on to the
kernel the same way (``on_invalidate``), by inode.

What the kernel's inode numbers give:
- Each file is one inode in the kernel, whatever its names: a change through one hard link
  shows under every other.
- A file unlinked while open keeps its inode; calls on it (fstat, fchmod, fgetxattr) come by
  inode and are answered through one of its open handles.
- A name another mount removed or moved, still cached by the kernel, no longer leads to its
  inode: such calls answer ESTALE, on which the kernel walks the path again and asks LOOKUP.

Every callback replies exactly once: the work returns a reply (a function of the request),
and only then is it sent. An error before that becomes the errno reply (dynlog.fuse.kernel's
one errno table).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import os
import stat
import threading
from dataclasses import dataclass
from typing import Any, Callable

import mfusepy
import structlog

from ..cluster.locks import EOF_
from ..core.attrs import Caller
from ..core.filesystem import UTIME_NOW, FileSystem
from ..errors import FsError, StoreError
from ..schema import ROOT_INO
from . import lowlevel as ll
from .inodes import KernelInodes
from .kernel import (ATTR_TIMEOUT, DIR_HANDLE_BASE, ENTRY_TIMEOUT, LOCK_TYPES, SEEN_MAX, XATTR_NAMESPACES, errno_of,
                     fill_stat)
from .threadstate import pin_thread_state

log = structlog.get_logger(__name__)

Reply = Callable[[int], Any]  # sends the answer to one request
OK: Reply = lambda req: ll.reply_err(req, 0)  # noqa: E731 - the plain success reply
NO_DATA: Reply = lambda req: ll.reply_err(req, errno.ENODATA)  # noqa: E731 - no such xattr

# Names of the inode lookups that mean "this name is not (or no longer) that inode"
GONE = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE)


@dataclass
class DirHandle:
    """An open directory: listed when read from its start, and the kernel's later offsets are
    indexes into that listing, so a directory changing meanwhile never skips or repeats a name."""
    ino: int
    path: str
    entries: list[tuple[str, int, int]] | None = None  # (name, mode, ino) as readdir listed them


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _ns(ts: Any) -> int:
    return ts.tv_sec * 10**9 + ts.tv_nsec


def _lock_range(lk: Any) -> tuple[int, int]:
    """[start, end) of a struct flock (l_len 0: to the end of the file, however far it grows)."""
    return lk.l_start, EOF_ if lk.l_len == 0 else lk.l_start + lk.l_len


class DynlogOperations:
    """The low-level callbacks over one FileSystem. libfuse runs them on many threads at once;
    FileSystem does its own locking, and the tables here are guarded by ``_lock``."""

    def __init__(self, fs: FileSystem, *, entry_timeout: float = ENTRY_TIMEOUT,
                 attr_timeout: float = ATTR_TIMEOUT) -> None:
        self.fs = fs
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self.inodes = KernelInodes()
        self.session: ll.Session | None = None  # set before the loop runs: notifications go through it
        self._lock = threading.Lock()
        self._append: set[int] = set()  # handles opened with O_APPEND
        self._fh_ino: dict[int, int] = {}  # open file handle -> inode
        self._ino_fhs: dict[int, set[int]] = {}  # inode -> its open handles here
        self._dirs: dict[int, DirHandle] = {}
        self._dir_fh = itertools.count(DIR_HANDLE_BASE)
        # inode -> (size, mtime) as last told to the kernel: open() compares, for close-to-open
        self._seen: dict[int, tuple[int, int]] = {}
        self._closed = False
        self.initialized = False  # libfuse called init: the file system was mounted
        self.max_read = 0  # the max_read mount option, which init must repeat to libfuse (0: none)

    # -- plumbing --------------------------------------------------------------------------------
    def callbacks(self) -> dict[str, Callable[..., None]]:
        """The C-callable functions for the op table, by libfuse's names."""
        table: dict[str, Callable[..., None]] = {"init": self._init, "destroy": self._destroy,
                                                 "forget": self._forget, "forget_multi": self._forget_multi}
        for name, _ in ll.OP_TYPES:
            work = getattr(self, f"op_{name}", None)
            if work is not None:
                table[name] = self._serving(name, work)
        return table

    def _serving(self, name: str, work: Callable[..., Reply]) -> Callable[..., None]:
        """``work`` as a libfuse callback: the one boundary where an exception becomes an errno
        reply (logged when unexpected), and where the reply it returns is sent."""
        def callback(req: int, *args: Any) -> None:
            pin_thread_state()
            try:
                reply = work(req, *args)
            except Exception as e:  # noqa: BLE001 - the boundary: nothing may escape into libfuse
                code = errno_of(e)
                if code is None:
                    log.exception("fuse.unexpected_error", op=name)
                    code = errno.EIO
                elif isinstance(e, StoreError):
                    log.warning("fuse.store_error", op=name, error=str(e))
                ll.reply_err(req, code)
                return
            try:
                reply(req)
            except Exception:  # noqa: BLE001 - replied or not, the request is over
                log.exception("fuse.reply_failed", op=name)

        callback.__name__ = f"fuse_{name}"
        return callback

    @staticmethod
    def caller(req: int) -> Caller:
        return Caller(*ll.request_context(req))

    def _path(self, ino: int) -> str:
        path = self.inodes.path(ino)
        if path is None:
            raise FsError(errno.ESTALE, f"inode {ino}: no name known here")
        return path

    def _child(self, parent: int, name: bytes) -> str:
        base = self._path(parent)
        return ("/" if base == "/" else base + "/") + _name(name)

    def _open_handle(self, ino: int) -> int | None:
        with self._lock:
            fhs = self._ino_fhs.get(ino)
            return next(iter(fhs)) if fhs else None

    def _target(self, ino: int, fi: Any = None) -> tuple[str | None, int | None]:
        """(path, handle) to reach ``ino`` by: the request's handle, else a handle open on it here
        (it follows the inode whatever happens to its names, and costs no path walk; for a file
        unlinked while open it is the only way), else its name."""
        if fi:
            fh = fi.contents.fh
            if fh in self._fh_ino:
                return None, fh
        fh = self._open_handle(ino)
        if fh is not None:
            return None, fh
        return self._path(ino), None

    def _names_and_handle(self, ino: int) -> tuple[str | None, int | None]:
        """(path, handle) for the xattr calls, which FileSystem answers by name, and through the
        handle only once the file is unlinked."""
        path, fh = self.inodes.path(ino), self._open_handle(ino)
        if path is None and fh is None:
            raise FsError(errno.ESTALE, f"inode {ino}: no name known here")
        return path, fh

    def _stat_of(self, ino: int) -> dict[str, int]:
        """The attributes of node ``ino`` for the kernel's GETATTR without a handle."""
        path = self.inodes.path(ino)
        if path is not None:
            try:
                st = self.fs.lookup(path)
                if st["st_ino"] == self.inodes.ino_of(ino):
                    return st
            except FsError as e:
                if e.errno not in GONE:
                    raise
        fh = self._open_handle(ino)
        if fh is None:
            raise FsError(errno.ESTALE, f"inode {ino}: its name is gone")
        return self.fs.getattr(None, fh)

    def _remember(self, st: dict[str, int]) -> None:
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()  # forgetting only costs invalidations we could have made
        self._seen[st["st_ino"]] = (st["st_size"], st["st_mtime"])

    def _attr_reply(self, st: dict[str, int]) -> Reply:
        self._remember(st)
        buf = mfusepy.c_stat()
        fill_stat(ctypes.pointer(buf), st)
        timeout = self.attr_timeout
        return lambda req: ll.reply_attr(req, ctypes.byref(buf), timeout)

    def _entry(self, parent: int, name: str, st: dict[str, int]) -> ll.EntryParam:
        """An entry for the kernel, counted as one lookup of its node (given back if the reply
        fails)."""
        self._remember(st)
        e = ll.EntryParam()
        fill_stat(ctypes.pointer(e.attr), st)
        e.attr_timeout = self.attr_timeout
        e.entry_timeout = self.entry_timeout
        e.ino = self.inodes.learned(st["st_ino"], parent, name, stat.S_ISDIR(st["st_mode"]))
        return e

    def _entry_reply(self, parent: int, name: str, st: dict[str, int]) -> Reply:
        e = self._entry(parent, name, st)

        def send(req: int) -> None:
            if ll.reply_entry(req, ctypes.byref(e)) != 0:
                self.inodes.forget(e.ino, 1)  # interrupted: the kernel never got it
        return send

    def invalidate(self, ino: int) -> None:
        """Drop the kernel's cached attributes and pages of inode ``ino`` (if it holds any)."""
        se = self.session.handle if self.session is not None else None
        if se is None or self._closed:
            return
        for nodeid in self.inodes.nodeids(ino):
            rc = ll.notify_inval_inode(se, nodeid, 0, 0)
            if rc not in (0, -errno.ENOENT):
                log.debug("fuse.invalidate_failed", ino=ino, nodeid=nodeid, rc=rc)

    def on_invalidate(self, jid: str | None, names: list[str]) -> None:
        """The change feed saw remote changes to journal ``jid`` (``d/<ino>`` or ``i/<ino>``),
        touching ``names`` in it: drop the kernel's cached attributes and pages of those inodes
        (entries themselves expire within ENTRY_TIMEOUT). Runs on the follower's thread."""
        if jid is None:
            return  # "everything": the kernel's short timeouts bound that case
        kind, _, num = jid.partition("/")
        try:
            ino = int(num)
        except ValueError:
            return
        self.invalidate(ino)
        if kind == "d":
            for parent in self.inodes.nodeids(ino):
                for n in names:
                    child = self.inodes.child(parent, n) if n else None
                    if child is not None:
                        self.invalidate(child)

    # -- lifecycle -------------------------------------------------------------------------------
    def _init(self, userdata: Any, conn: Any) -> None:
        pin_thread_state()
        self.initialized = True
        if conn:
            # Let the kernel clear setuid/setgid on write and truncate (a setattr we then apply).
            conn.contents.want &= ~ll.CAP_HANDLE_KILLPRIV
            if self.max_read:
                conn.contents.max_read = self.max_read

    def _destroy(self, userdata: Any) -> None:
        pin_thread_state()
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

    def _forget(self, req: int, ino: int, nlookup: int) -> None:
        pin_thread_state()
        self.inodes.forget(ino, nlookup)
        ll.reply_none(req)

    def _forget_multi(self, req: int, count: int, forgets: Any) -> None:
        pin_thread_state()
        for i in range(count):
            self.inodes.forget(forgets[i].ino, forgets[i].nlookup)
        ll.reply_none(req)

    # -- names -----------------------------------------------------------------------------------
    def op_lookup(self, req: int, parent: int, name: bytes) -> Reply:
        path = self._child(parent, name)
        return self._entry_reply(parent, _name(name), self.fs.lookup(path))

    def op_getattr(self, req: int, ino: int, fi: Any) -> Reply:
        fh = fi.contents.fh if fi else None
        if fh is not None and fh in self._fh_ino:
            return self._attr_reply(self.fs.getattr(None, fh))
        return self._attr_reply(self._stat_of(ino))

    def op_readlink(self, req: int, ino: int) -> Reply:
        target = os.fsencode(self.fs.readlink(self._path(ino)))
        return lambda req: ll.reply_readlink(req, target)

    def op_mknod(self, req: int, parent: int, name: bytes, mode: int, rdev: int) -> Reply:
        path = self._child(parent, name)
        self.fs.mknod(path, mode, rdev, self.caller(req))
        return self._entry_reply(parent, _name(name), self.fs.getattr(path))

    def op_mkdir(self, req: int, parent: int, name: bytes, mode: int) -> Reply:
        path = self._child(parent, name)
        self.fs.mkdir(path, mode, self.caller(req))
        return self._entry_reply(parent, _name(name), self.fs.getattr(path))

    def op_symlink(self, req: int, target: bytes, parent: int, name: bytes) -> Reply:
        path = self._child(parent, name)
        self.fs.symlink(_name(target), path, self.caller(req))
        return self._entry_reply(parent, _name(name), self.fs.getattr(path))

    def op_link(self, req: int, ino: int, newparent: int, newname: bytes) -> Reply:
        new = self._child(newparent, newname)
        self.fs.link(self._path(ino), new, self.caller(req))
        return self._entry_reply(newparent, _name(newname), self.fs.getattr(new))

    def op_unlink(self, req: int, parent: int, name: bytes) -> Reply:
        self.fs.unlink(self._child(parent, name), self.caller(req))
        self.inodes.removed(parent, _name(name))
        return OK

    def op_rmdir(self, req: int, parent: int, name: bytes) -> Reply:
        self.fs.rmdir(self._child(parent, name), self.caller(req))
        self.inodes.removed(parent, _name(name))
        return OK

    def op_rename(self, req: int, parent: int, name: bytes, newparent: int, newname: bytes, flags: int) -> Reply:
        old, new = self._child(parent, name), self._child(newparent, newname)
        self.fs.rename(old, new, flags, self.caller(req))
        self.inodes.moved(parent, _name(name), newparent, _name(newname), exchange=bool(flags & 2))
        return OK

    # -- attributes ------------------------------------------------------------------------------
    def op_setattr(self, req: int, ino: int, attr: Any, to_set: int, fi: Any) -> Reply:
        path, fh = self._target(ino, fi)
        try:
            return self._setattr(path, fh, attr.contents, to_set, self.caller(req))
        except FsError as e:
            if e.errno != errno.EBADF or fh is None or (fi and fi.contents.fh == fh):
                raise
            # the handle was borrowed from another open and released meanwhile (close returns
            # before the kernel's RELEASE arrives): go by the name (each change sets a value, so
            # one already made is made again to the same effect)
            return self._setattr(self._path(ino), None, attr.contents, to_set, self.caller(req))

    def _setattr(self, path: str | None, fh: int | None, a: Any, to_set: int, who: Caller) -> Reply:
        st: dict[str, int] | None = None
        if to_set & ll.SET_ATTR_SIZE:
            self.fs.truncate(path, a.st_size, who, fh)
        if to_set & ll.SET_ATTR_MODE:
            st = self.fs.chmod(path, a.st_mode, who, fh)
        if to_set & (ll.SET_ATTR_UID | ll.SET_ATTR_GID):
            uid = a.st_uid if to_set & ll.SET_ATTR_UID else -1
            gid = a.st_gid if to_set & ll.SET_ATTR_GID else -1
            st = self.fs.chown(path, uid, gid, who, fh)
        times = ll.SET_ATTR_ATIME | ll.SET_ATTR_MTIME | ll.SET_ATTR_ATIME_NOW | ll.SET_ATTR_MTIME_NOW
        if to_set & times:
            atime = (UTIME_NOW if to_set & ll.SET_ATTR_ATIME_NOW
                     else _ns(a.st_atimespec) if to_set & ll.SET_ATTR_ATIME else None)
            mtime = (UTIME_NOW if to_set & ll.SET_ATTR_MTIME_NOW
                     else _ns(a.st_mtimespec) if to_set & ll.SET_ATTR_MTIME else None)
            st = self.fs.utimens(path, atime, mtime, who, fh)
        if st is None:  # (chmod, chown and utimens return the stat after them; truncate does not)
            st = self.fs.getattr(path, fh)
        return self._attr_reply(st)

    def op_setxattr(self, req: int, ino: int, name: bytes, value: int, size: int, flags: int) -> Reply:
        key = _name(name)
        if not key.startswith(XATTR_NAMESPACES):
            raise FsError(errno.EOPNOTSUPP, f"xattr namespace of {key!r}")  # as local file systems do
        data = ctypes.string_at(value, size) if size else b""
        path, fh = self._names_and_handle(ino)
        self.fs.setxattr(path, key, data, flags, self.caller(req), fh)
        return OK

    def op_getxattr(self, req: int, ino: int, name: bytes, size: int) -> Reply:
        path, fh = self._names_and_handle(ino)
        value = self.fs.xattr_value(path, _name(name), fh)
        if value is None:  # the usual answer (the kernel asks for security.capability before writes)
            return NO_DATA
        return self._xattr_reply(value, size)

    def op_listxattr(self, req: int, ino: int, size: int) -> Reply:
        path, fh = self._names_and_handle(ino)
        names = self.fs.listxattr(path, fh)
        if self.caller(req).uid != 0:  # as local file systems do: trusted.* is listed to the privileged only
            names = [n for n in names if not n.startswith("trusted.")]
        return self._xattr_reply(b"".join(os.fsencode(n) + b"\0" for n in names), size)

    @staticmethod
    def _xattr_reply(data: bytes, size: int) -> Reply:
        if size == 0:
            return lambda req: ll.reply_xattr(req, len(data))  # a size query
        if len(data) > size:
            raise FsError(errno.ERANGE, "xattr buffer too small")
        return lambda req: ll.reply_buf(req, data, len(data))

    def op_removexattr(self, req: int, ino: int, name: bytes) -> Reply:
        path, fh = self._names_and_handle(ino)
        self.fs.removexattr(path, _name(name), self.caller(req), fh)
        return OK

    def op_access(self, req: int, ino: int, mask: int) -> Reply:
        self.fs.access(self._path(ino), mask)
        return OK

    def op_statfs(self, req: int, ino: int) -> Reply:
        buf = mfusepy.c_statvfs()
        for k, v in self.fs.statfs().items():
            setattr(buf, k, v)
        return lambda req: ll.reply_statfs(req, ctypes.byref(buf))

    # -- files -----------------------------------------------------------------------------------
    def _adopt(self, fh: int, fi: Any) -> dict[str, int]:
        """A handle FileSystem just opened for the kernel's request ``fi``: noted as open on its
        inode and handed to the kernel; returns its attributes. Released again if they cannot
        be read (the kernel will never close it)."""
        try:
            st = self.fs.getattr(None, fh)
        except BaseException:
            self.fs.release(fh)
            raise
        flags = fi.contents.flags
        with self._lock:
            self._fh_ino[fh] = st["st_ino"]
            self._ino_fhs.setdefault(st["st_ino"], set()).add(fh)
            if flags & os.O_APPEND:
                self._append.add(fh)
        fi.contents.fh = fh
        return st

    def _abandon(self, fh: int) -> None:
        """The kernel never got the reply that handed it ``fh``: no release will come for it."""
        self._closed_handle(fh)
        self.fs.release(fh)

    def op_create(self, req: int, parent: int, name: bytes, mode: int, fi: Any) -> Reply:
        path = self._child(parent, name)
        fh = self.fs.create(path, mode, fi.contents.flags, self.caller(req))
        e = self._entry(parent, _name(name), self._adopt(fh, fi))

        def send(req: int) -> None:
            if ll.reply_create(req, ctypes.byref(e), fi) != 0:  # interrupted: no release will come
                self.inodes.forget(e.ino, 1)
                self._abandon(fh)
        return send

    def op_open(self, req: int, ino: int, fi: Any) -> Reply:
        path = self._path(ino)
        flags = fi.contents.flags
        try:
            fh = self.fs.open(path, flags, self.caller(req))
        except FsError as e:
            if e.errno != errno.ENOENT:
                raise
            # The kernel still believed in this name (a cached entry, up to entry_timeout old)
            # but another mount has removed it. ENOENT would be wrong for open(O_CREAT), which
            # must then create the file (the kernel does not pass O_CREAT on): ESTALE makes the
            # kernel walk the path again with LOOKUP_REVAL, asking us, and then create or fail.
            raise FsError(errno.ESTALE, f"{path}: removed by another mount") from None
        st = self._adopt(fh, fi)
        # Close-to-open: if the file changed since the kernel last saw its attributes (another
        # mount wrote it), drop the kernel's cached attributes and pages before open returns.
        seen = self._seen.get(st["st_ino"])
        self._remember(st)
        if seen is not None and seen != (st["st_size"], st["st_mtime"]):
            self.invalidate(st["st_ino"])

        def send(req: int) -> None:
            if ll.reply_open(req, fi) != 0:  # interrupted: no release will come
                self._abandon(fh)
        return send

    def op_read(self, req: int, ino: int, size: int, off: int, fi: Any) -> Reply:
        data = self.fs.read(fi.contents.fh, size, off)
        return lambda req: ll.reply_buf(req, data, len(data))

    def op_write(self, req: int, ino: int, buf: int, size: int, off: int, fi: Any) -> Reply:
        fh = fi.contents.fh
        n = self.fs.write(fh, ctypes.string_at(buf, size), off, self.caller(req), append=fh in self._append)
        return lambda req: ll.reply_write(req, n)

    def op_flush(self, req: int, ino: int, fi: Any) -> Reply:
        """close(2): commit the file, and drop the closing owner's fcntl locks (POSIX: any close
        by the owner releases them; costs nothing unless it holds some)."""
        f = fi.contents
        who = self.caller(req)
        self.fs.flush(f.fh, who)
        self.fs.release_locks(f.fh, f.lock_owner, "p", who)
        return OK

    def op_fsync(self, req: int, ino: int, datasync: int, fi: Any) -> Reply:
        self.fs.fsync(fi.contents.fh, self.caller(req))
        return OK

    def _closed_handle(self, fh: int) -> None:
        with self._lock:
            self._append.discard(fh)
            ino = self._fh_ino.pop(fh, None)
            fhs = self._ino_fhs.get(ino) if ino is not None else None
            if fhs is not None:
                fhs.discard(fh)
                if not fhs:
                    del self._ino_fhs[ino]

    def op_release(self, req: int, ino: int, fi: Any) -> Reply:
        f = fi.contents
        who = self.caller(req)
        if f.flock_release:
            # the last close of an open file description that took a flock lock: it goes with it
            try:
                self.fs.release_locks(f.fh, f.lock_owner, "f", who)
            except Exception as e:  # noqa: BLE001 - the release itself must go on; the lease is the floor
                log.warning("fuse.flock_release_failed", fh=f.fh, error=str(e))
        self._closed_handle(f.fh)
        self.fs.release(f.fh, who)
        return OK

    def op_fallocate(self, req: int, ino: int, mode: int, off: int, length: int, fi: Any) -> Reply:
        self.fs.fallocate(fi.contents.fh, mode, off, length, self.caller(req))
        return OK

    # -- directories -----------------------------------------------------------------------------
    def op_opendir(self, req: int, ino: int, fi: Any) -> Reply:
        path = self._path(ino)
        if not stat.S_ISDIR(self.fs.getattr(path)["st_mode"]):
            raise FsError(errno.ENOTDIR, path)
        fh = next(self._dir_fh)
        self._dirs[fh] = DirHandle(ino, path)
        fi.contents.fh = fh
        return lambda req: ll.reply_open(req, fi)

    def op_readdir(self, req: int, ino: int, size: int, off: int, fi: Any) -> Reply:
        d = self._dirs.get(fi.contents.fh)
        if d is None:
            raise FsError(errno.EBADF, "no such directory handle")
        if off == 0 or d.entries is None:  # (re)started, or not listed yet: list it now; later offsets come from it
            d.path = self.inodes.path(ino) or d.path
            parent = self._parent_of(ino)
            d.entries = [(n, a["st_mode"], a["st_ino"]) if a is not None
                         else (n, stat.S_IFDIR, self.inodes.ino_of(ino) if n == "." else parent)
                         for n, a in self.fs.readdir(d.path)]
        buf = ctypes.create_string_buffer(size)
        base = ctypes.addressof(buf)
        pos = 0
        st = mfusepy.c_stat()
        for i in range(off, len(d.entries)):
            name, mode, child = d.entries[i]
            st.st_ino, st.st_mode = child, mode
            n = ll.add_direntry(req, base + pos, size - pos, os.fsencode(name), ctypes.byref(st), i + 1)
            if n > size - pos:
                break
            pos += n
        return lambda req: ll.reply_buf(req, buf, pos)

    def _parent_of(self, ino: int) -> int:
        path = self.inodes.path(ino)
        if ino == ROOT_INO or path is None:
            return ROOT_INO
        try:
            return self.fs.getattr(path.rpartition("/")[0] or "/")["st_ino"]
        except FsError:
            return ROOT_INO

    def op_releasedir(self, req: int, ino: int, fi: Any) -> Reply:
        self._dirs.pop(fi.contents.fh, None)
        return OK

    def op_fsyncdir(self, req: int, ino: int, datasync: int, fi: Any) -> Reply:
        """fsync of a directory (and syncfs through it): commit the write-behind queues."""
        self.fs.syncfs()
        return OK

    # -- locks -----------------------------------------------------------------------------------
    def op_getlk(self, req: int, ino: int, fi: Any, lock: Any) -> Reply:
        f, lk = fi.contents, lock.contents
        start, end = _lock_range(lk)
        blocker = self.fs.getlk(f.fh, f.lock_owner, LOCK_TYPES.get(lk.l_type, "w"), start, end)
        if blocker is None:
            lk.l_type = fcntl.F_UNLCK
        else:
            lk.l_type = fcntl.F_WRLCK if blocker.type == "w" else fcntl.F_RDLCK
            lk.l_whence = os.SEEK_SET
            lk.l_start = blocker.start
            lk.l_len = 0 if blocker.end >= EOF_ else blocker.end - blocker.start
            lk.l_pid = blocker.pid
        return lambda req: ll.reply_lock(req, lock)

    def op_setlk(self, req: int, ino: int, fi: Any, lock: Any, sleep: int) -> Reply:
        """fcntl byte-range locks, seen by every mount."""
        f, lk = fi.contents, lock.contents
        start, end = _lock_range(lk)
        type_ = LOCK_TYPES.get(lk.l_type)
        if type_ is None:
            raise FsError(errno.EINVAL, f"lock type {lk.l_type}")
        if type_ == "u" and start == 0 and end == EOF_:
            self.fs.release_locks(f.fh, f.lock_owner, "p", self.caller(req))
            return OK
        self._set_lock(req, ino, f.fh, f.lock_owner, type_, start, end, bool(sleep), "p")
        return OK

    def op_flock(self, req: int, ino: int, fi: Any, op: int) -> Reply:
        """BSD flock: whole-file, per open file description (the kernel's lock owner)."""
        f = fi.contents
        if op & fcntl.LOCK_UN:
            self.fs.release_locks(f.fh, f.lock_owner, "f", self.caller(req))
            return OK
        type_ = "w" if op & fcntl.LOCK_EX else "r"
        self._set_lock(req, ino, f.fh, f.lock_owner, type_, 0, EOF_, not op & fcntl.LOCK_NB, "f")
        return OK

    def _set_lock(self, req: int, ino: int, fh: int, owner: int, type_: str, start: int, end: int,
                  wait: bool, kind: str) -> None:
        who = self.caller(req)
        if self.fs.setlk(fh, owner, type_, start, end, who.pid, wait, kind, who):
            self.invalidate(self.inodes.ino_of(ino))  # the file changed elsewhere: drop the kernel's pages
