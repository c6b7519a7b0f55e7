"""The file system a mount serves: namespace + file data + handles, behind one small API.

The FUSE layer (dynlog/fuse/) calls only this class; tests call it directly to exercise the
operations without a kernel. Paths are strings in which non-UTF-8 bytes are surrogate-escaped.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import stat
import threading
import time
from typing import Callable, Iterator

import structlog

from .. import schema
from ..data.blocks import BlockCache, BlockKey, BlockStore
from ..data.siblings import Following
from ..errors import FsError
from ..journal.append import Committer
from ..journal.inode import Inode, evolve
from ..journal.log import JournalStore
from ..materialize.cache import ViewCache
from ..store.base import Store
from ..store.metrics import operation
from .allocator import InodeAllocator
from .attrs import ROOT, Caller, split_path, to_stat
from . import files
from .files import FileData, OpenFile, check_size, first_block
from .namespace import Namespace, Node
from .superblock import load_superblock
from ..writebehind import Settings, WriteBehind

if False:  # typing only
    from ..cluster.follower import Follower, Invalidate
    from ..cluster.locks import Lock, LockManager
    from ..store.base import ChangeFeed

log = structlog.get_logger(__name__)

UTIME_NOW = "now"
ATIME_REFRESH_NS = 24 * 3600 * 10**9  # relatime: refresh an atime older than a day
# Freshness bound of a followed mount (docs/ARCHITECTURE.md, "Freshness"): a view is used as it
# is while the change feed vouches for it (Follower.confirmed_at) or it was read within this
# many seconds; otherwise the operation that needs it re-reads the journal's tail (one Query).
FRESH_BOUND = 1.0
# A lookup that misses believes the parent's view only if this mount committed to it this
# recently: then the directory is one this mount is busy writing in (tar's lookup before each
# create, right after its previous file's commit) and the miss costs nothing. Otherwise the
# tail is re-read first, so a name another mount created and closed just before is found
# (close-to-open: the kernel looks a name up before it opens it).
MISS_BOUND = 0.25
XATTR_CREATE, XATTR_REPLACE = 1, 2
FALLOC_FL_KEEP_SIZE = 1


def without_setid(mode: int) -> int:
    """``mode`` as a change by someone without CAP_FSETID leaves it: S_ISUID dropped, and S_ISGID
    when the group may execute (without, it marks mandatory locking and stays)."""
    out = mode & ~stat.S_ISUID
    if mode & stat.S_IXGRP:
        out &= ~stat.S_ISGID
    return out


class FileSystem:
    def __init__(self, store: Store, *, session: str | None = None, ttl: float = 1.0, atime_policy: str = "noatime",
                 entry_budget: int = 500_000, block_cache_bytes: int = 128 * 1024 * 1024,
                 writebehind: bool = False, writebehind_settings: "Settings | None" = None,
                 prefetch_workers: int = 0, close_to_open: bool = True) -> None:
        """``writebehind``: take write-behind leases on directories this mount is busy in
        (docs/ARCHITECTURE.md, "Write-behind directories"). Off or on, other mounts' leases are
        honoured. ``prefetch_workers``: views a walk loads at once (dynlog/materialize/prefetch.py);
        0: none (the mount's default depends on the store: dynlog/cli/mountcmd.py).
        ``close_to_open`` False (``-o nocto``, as NFS's): open() and a lookup that misses trust a
        view the change feed vouches for instead of re-reading its tail (one Query each)."""
        self.store = store
        self.atime_policy = atime_policy
        self.session = session or secrets.token_hex(4)
        self.sb = load_superblock(store)
        # a cold view's two reads go out at once where each waits on a round trip
        self.journals = JournalStore(store, parallel_loads=not store.local,
                                     compress=self.sb.compresses)
        self.cache = ViewCache(self.journals, entry_budget=entry_budget, prefetch_workers=prefetch_workers)
        self.committer = Committer(self.journals, self.cache, self.session)
        self.allocator = InodeAllocator(store)
        self.wb = WriteBehind(store, self.journals, self.cache, self.committer, self.session, enabled=writebehind,
                              settings=writebehind_settings)
        self.ns = Namespace(store, self.sb, self.cache, self.committer, self.allocator, ttl=ttl)
        self.data = FileData(BlockStore(store, self.sb.block_size, BlockCache(block_cache_bytes),
                                        compress=self.sb.compresses), self.session)
        self.block_size = self.sb.block_size
        self.cache.prefetch.on_loaded = self._view_prefetched
        self.close_to_open = close_to_open
        # close-to-open: open() re-reads the parent's tail; nocto: a view fresh within the TTL will do
        self.open_max_age: float | None = 0.0 if close_to_open else None
        self.follower: "Follower | None" = None
        self._files: dict[int, OpenFile] = {}
        self._handles: dict[int, OpenFile] = {}
        self._writable: set[int] = set()  # handles open for writing
        self._fh = itertools.count(1)
        self._lock = threading.Lock()

    # -- cluster services: session heartbeat and change-feed freshness ----------------------------
    def start_services(self, mountpoint: str = "", on_invalidate: "Invalidate | None" = None,
                       freshness: str = "auto", bulletin_copies: int = 1) -> None:
        """Register this mount's session and keep views fresh: ``direct`` reads the store's change
        feed (the SQLite change table; DynamoDB Streams, fine for up to two mounts), ``relay``
        reads notices from the lease-elected relay (DynamoDB at any scale), ``ttl`` only
        revalidates after the TTL. ``auto``: direct for local stores, relay for DynamoDB."""
        from ..cluster.follower import Follower
        from ..cluster.relay import RelayFeed
        from ..cluster.sessions import Session

        self.session_item = Session(self.store, self.session, mountpoint, open_files=self.open_block_versions)
        self.session_item.start()
        if freshness == "auto":
            freshness = "direct" if self.store.local else "relay"
        feed: "ChangeFeed | None" = None
        if freshness == "direct":
            feed = self.store.change_feed()
        elif freshness == "relay":
            feed = RelayFeed(self.store, self.session, copies=bulletin_copies)
        elif freshness != "ttl":
            raise FsError(errno.EINVAL, f"freshness must be auto, direct, relay or ttl, not {freshness!r}")
        self.freshness = freshness if feed is not None else "ttl"
        if feed is not None:
            feed = self.wb.watch(feed)  # asks for this mount's write-behind leases arrive with the feed
            follower = self.follower = Follower(self.cache, feed, on_invalidate)
            self.cache.confirmed = lambda: follower.confirmed_at if follower.healthy else float("-inf")
            follower.start()
            self.ns.ttl = FRESH_BOUND

    def open_block_versions(self) -> dict[int, list[str]]:
        """For the session heartbeat: the block versions of every regular file open here."""
        with self._lock:
            files = list(self._files.values())
        return {f.ino: sorted({w for _, _, w in f.inode.blocks}) for f in files if f.inode.blocks}

    def stop_services(self) -> None:
        if getattr(self, "_locks", None) is not None:
            self._locks.release_all()
        follower = self.follower
        if follower is not None:
            follower.stop()
            self.follower = None
            self.cache.confirmed = lambda: float("-inf")
        sess = getattr(self, "session_item", None)
        if sess is not None:
            sess.stop(remove=True)
            self.session_item = None

    def close(self) -> None:
        for f in list(self._files.values()):
            try:
                self._flush_file(f, ROOT)
            except FsError as e:
                log.warning("flush.failed_at_unmount", ino=f.ino, error=str(e))
        self.wb.close()  # a durability point: every queued operation committed, leases released
        self.stop_services()
        self.cache.prefetch.close()
        self.journals.close()
        self.data.blocks.close()

    def _op(self, name: str) -> "contextlib.AbstractContextManager[None]":
        """Count the store requests made inside as file-system operation ``name``, and tell the
        change-feed follower the mount is busy (it polls at its fast rate again)."""
        follower = self.follower
        if follower is not None:
            follower.wake()
        return operation(name)

    # -- reading metadata -------------------------------------------------------------------------
    def _node_attrs(self, node: Node) -> Inode:
        inode = self.ns.attrs(node)
        f = self._files.get(inode.ino)
        if f is not None and not inode.is_dir:
            with f.lock:
                inode = f.shown(inode)
        return inode

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        with self._op("getattr"):
            f = self._handles.get(fh) if fh is not None else None
            if f is not None:
                node = self._file_node(f)
                if node is not None:
                    return to_stat(self._node_attrs(node), self.block_size)
                with f.lock:  # no name left (unlinked while open): what this handle holds
                    return to_stat(evolve(f.shown(f.inode), nlink=0), self.block_size)
            if path is None:
                raise FsError(errno.EBADF, f"bad handle {fh}")
            return to_stat(self._node_attrs(self.ns.resolve(path)), self.block_size)

    def lookup(self, path: str) -> dict[str, int]:
        """getattr as the kernel's lookup of a name needs it (the FUSE layer's getattr by path).
        The kernel looks a name up before it opens it, so for close-to-open a miss re-reads the
        tail of the parent's journal (one Query) before it is believed: a name another mount
        created and closed just before is found. Unless this mount committed to that journal
        within ``MISS_BOUND``: in a directory it is filling (tar, cp, a build's outputs) the
        lookup before each create costs nothing. Hits cost nothing, as in getattr."""
        began = time.monotonic()
        try:
            return self.getattr(path)
        except FsError as e:
            if e.errno != errno.ENOENT:
                raise
        with self._op("lookup"):
            ppath, _ = split_path(path)
            self._parent_exact(self.ns.resolve_dir(ppath).ino, began)
            return to_stat(self._node_attrs(self.ns.resolve(path)), self.block_size)

    def _parent_exact(self, pino: int, began: float) -> None:
        """Before a lookup miss is believed: re-read the tail of directory ``pino``, unless this
        mount committed to it within ``MISS_BOUND`` (it is filling that directory, and its own
        commits keep the view exact), or a read of it began after this lookup did (``began``)."""
        view = self.ns.dir_view(pino)
        if self.close_to_open and time.monotonic() - view.committed > MISS_BOUND:
            log.debug("lookup.miss_reread", dir=pino, committed_ago=round(time.monotonic() - view.committed, 3))
            self.cache.refresh(view, not_before=began)
        self.wb.settle_read(view)  # another mount's lease: it may have acknowledged the name

    def readdir(self, path: str) -> Iterator[tuple[str, dict[str, int] | None]]:
        with self._op("readdir"):
            node = self.ns.resolve_dir(path)
            self.cache.prefetch.listed(schema.dir_journal(node.ino))
            self.data.siblings.listed(node.ino, self._files_with_blocks(node.ino))
            yield ".", None
            yield "..", None
            for name, ent in self.ns.listing(node):
                yield name, {"st_mode": ent.mode, "st_ino": ent.ino}

    def readlink(self, path: str) -> str:
        with self._op("readlink"):
            node = self.ns.resolve(path)
            inode = self.ns.attrs(node)
            if not inode.is_link:
                raise FsError(errno.EINVAL, path)
            return inode.target

    def access(self, path: str, amode: int) -> None:
        with self._op("access"):
            self.ns.resolve(path)  # permission bits are checked by the kernel (default_permissions)

    def statfs(self) -> dict[str, int]:
        bs = self.block_size
        total = (1 << 50) // bs
        return {"f_bsize": bs, "f_frsize": bs, "f_blocks": total, "f_bfree": total, "f_bavail": total,
                "f_files": 1 << 40, "f_ffree": 1 << 40, "f_favail": 1 << 40, "f_namemax": 255}

    # -- creating ---------------------------------------------------------------------------------
    def mknod(self, path: str, mode: int, rdev: int, caller: Caller) -> None:
        with self._op("mknod"):
            if stat.S_IFMT(mode) == 0:
                mode |= stat.S_IFREG
            self.ns.create_entry(path, mode, caller, "mknod", rdev=rdev)

    def mkdir(self, path: str, mode: int, caller: Caller) -> None:
        with self._op("mkdir"):
            self.ns.create_entry(path, stat.S_IFDIR | (mode & 0o7777), caller, "mkdir")

    def symlink(self, target: str, path: str, caller: Caller) -> None:
        with self._op("symlink"):
            if len(os.fsencode(target)) > 4095:
                raise FsError(errno.ENAMETOOLONG, "symlink target too long")
            self.ns.create_entry(path, stat.S_IFLNK | 0o777, caller, "symlink", target=target)

    def link(self, old: str, new: str, caller: Caller) -> None:
        with self._op("link"):
            shared = self.ns.link(old, new, caller)
            self._relocate_open(shared.ino, None, "")

    def create(self, path: str, mode: int, flags: int, caller: Caller) -> int:
        with self._op("create"):
            try:
                inode = self.ns.create_entry(path, stat.S_IFREG | (mode & 0o7777), caller, "create")
            except FsError as e:
                if e.errno != errno.EEXIST or flags & os.O_EXCL:
                    raise
                return self.open(path, flags & ~os.O_CREAT, caller)
            ppath, name = split_path(path)
            node = Node(self.ns.resolve_dir(ppath).ino, name, inode)
            return self._open_node(node, inode, flags)

    # -- removing and renaming --------------------------------------------------------------------
    def unlink(self, path: str, caller: Caller) -> None:
        with self._op("unlink"):
            ent = self.ns.unlink(path, caller)
            f = self._files.get(ent.ino)
            if f is not None and not ent.linked:
                f.unlinked = True

    def rmdir(self, path: str, caller: Caller) -> None:
        with self._op("rmdir"):
            self.ns.rmdir(path, caller)

    def rename(self, old: str, new: str, flags: int, caller: Caller) -> None:
        with self._op("rename"):
            ent = self.ns.rename(old, new, flags, caller)
            dp, dname = split_path(new)
            if ent.ino in self._files:
                self._relocate_open(ent.ino, self.ns.resolve_dir(dp).ino, dname)

    def _relocate_open(self, ino: int, parent: int | None, name: str) -> None:
        f = self._files.get(ino)
        if f is not None:
            with f.lock:
                f.parent, f.name = parent, name

    # -- attributes -------------------------------------------------------------------------------
    def _target(self, path: str | None, fh: int | None) -> Node:
        if fh is not None and fh in self._handles:
            f = self._handles[fh]
            node = self._file_node(f)
            if node is not None:
                return node
        if path is None:
            raise FsError(errno.EBADF, "no path and no handle")
        return self.ns.resolve(path)

    def _file_node(self, f: OpenFile, max_age: float | None = None) -> Node | None:
        """Where an open file is named now (following renames seen in the parent's view)."""
        if f.unlinked:
            return None
        if f.parent is None:  # several names: the inode lives in its own journal, named by none
            iview = self.ns.inode_view(f.ino, max_age)
            with iview.lock:
                subject = iview.subject
            if subject is None or subject.nlink < 1:
                return None
            return Node(None, "", evolve(subject, linked=True))
        # Follows the file from directory to directory (``moved_out``), taking each view's lock
        # only while reading it: a thread holding a view lock may wait for another view's only
        # in sorted journal-id order (commits to several journals take them so), and waiting for
        # the new directory's under the old one's deadlocked against a rename across the two.
        seen: set[int] = set()
        while True:
            if f.parent in seen:
                # Back in a directory it was followed from: one of the views missed a later move
                # (it went B -> A -> B; our A says "to B", our older B still "to A"). Fresh views
                # settle it.
                seen.clear()
                max_age = 0.0
            seen.add(f.parent)
            view = self.ns.dir_view(f.parent, max_age)
            with view.lock:
                ent = view.entries.get(f.name)
                if ent is None or ent.ino != f.ino:
                    name = view.by_ino.get(f.ino)
                    if name is None:
                        moved = view.moved_out.get(f.ino)
                        if moved is None:
                            return None
                        f.parent, f.name = moved
                        continue
                    f.name = name
                    ent = view.entries[name]
            return Node(f.parent, f.name, ent)

    def _set_attrs(self, node: Node, fh: int | None, attrs: dict[str, int], caller: Caller, op: str,
                   check: Callable[[Inode], dict[str, int]] | None = None) -> Inode:
        """set_attrs on a resolved node; for an open handle whose name another client renamed
        or replaced meanwhile, follow the inode in fresh views and apply it there."""
        try:
            return self.ns.set_attrs(node, attrs, caller, op, check=check)
        except FsError as e:
            f = self._handles.get(fh) if fh is not None else None
            if f is None or e.errno not in (errno.ENOENT, errno.ESTALE):
                raise
            found = self._file_node(f, 0.0)
            if found is None:
                raise
            return self.ns.set_attrs(found, attrs, caller, op, check=check)

    def _writing(self, node: Node) -> OpenFile | None:
        """The open file of ``node`` when a handle has it open for writing here: its attribute
        changes then wait for the commit at close (or fsync), one put for the file's whole
        life instead of one per call (tar's futimens, fchown, fchmod after its write)."""
        f = self._files.get(node.ino)
        return f if f is not None and f.writers > 0 and not node.entry.is_dir else None

    def _fold_attrs(self, f: OpenFile, node: Node, changes: dict[str, int],
                    check: Callable[[Inode], dict[str, int]] | None = None) -> dict[str, int]:
        """Hold a chmod, chown or utimens of a file open for writing for its commit. Returns
        its stat afterwards, as getattr would give it (libfuse asks for it right after)."""
        with f.lock:
            base = self.ns.attrs(node)
            cur = f.shown(base)
            attrs = dict(changes)
            if check is not None:
                attrs.update(check(cur))
            f.attrs.update(attrs)
            f.attrs["ctime"] = max(time.time_ns(), cur.ctime)
            return to_stat(f.shown(base), self.block_size)

    def _setattr_target(self, path: str | None, fh: int | None) -> tuple[OpenFile | None, Node | None]:
        """(the open file, None) when ``fh`` is a file unlinked while open (see _unlinked), else
        (None, its node) as _target finds it: one resolution for both questions."""
        f = self._handles.get(fh) if fh is not None else None
        if f is not None:
            node = self._file_node(f)
            if node is None:
                return f, None
            return None, node
        if path is None:
            raise FsError(errno.EBADF, "no path and no handle")
        return None, self.ns.resolve(path)

    def _unlinked(self, fh: int | None) -> OpenFile | None:
        """The open file behind ``fh`` when no name is left for it (unlinked while open)."""
        f = self._handles.get(fh) if fh is not None else None
        if f is None or self._file_node(f) is not None:
            return None
        return f

    @staticmethod
    def _set_local(f: OpenFile, changes: dict[str, int], check: Callable[[Inode], dict[str, int]] | None = None) -> None:
        """chmod, chown, utimens of a file unlinked while open: no journal holds its inode any
        more, so the change lives in the open file (fstat shows it) until the last close."""
        with f.lock:
            attrs = dict(changes)
            if check is not None:
                attrs.update(check(f.inode))
            attrs.setdefault("ctime", time.time_ns())
            f.inode = evolve(f.inode, **attrs)

    def chmod(self, path: str | None, mode: int, caller: Caller, fh: int | None = None) -> dict[str, int] | None:
        """Returns the file's stat afterwards when that came for free (a file open for writing
        here, whose change waits for its commit), else None. So do chown and utimens."""
        with self._op("chmod"):
            check = lambda cur: {"mode": stat.S_IFMT(cur.mode) | (mode & 0o7777)}  # noqa: E731
            gone, node = self._setattr_target(path, fh)
            if node is None:
                self._set_local(gone, {}, check)
                return None
            f = self._writing(node)
            if f is not None:
                return self._fold_attrs(f, node, {}, check)
            self._set_attrs(node, fh, {}, caller, "chmod", check=check)
            return None

    def chown(self, path: str | None, uid: int, gid: int, caller: Caller,
              fh: int | None = None) -> dict[str, int] | None:
        with self._op("chown"):
            changes = {}
            if uid != -1 and uid != 0xFFFFFFFF:
                changes["uid"] = uid
            if gid != -1 and gid != 0xFFFFFFFF:
                changes["gid"] = gid

            def kill_suid(cur: Inode) -> dict[str, int]:
                out = {}
                if changes and not cur.is_dir and cur.mode & (stat.S_ISUID | stat.S_ISGID):
                    keep = cur.mode & ~stat.S_ISUID
                    if cur.mode & stat.S_IXGRP:
                        keep &= ~stat.S_ISGID
                    out["mode"] = keep
                return out

            gone, node = self._setattr_target(path, fh)
            if node is None:
                self._set_local(gone, changes, kill_suid if caller.uid != 0 else None)
                return None
            f = self._writing(node)
            if f is not None:
                return self._fold_attrs(f, node, changes, kill_suid if caller.uid != 0 else None)
            self._set_attrs(node, fh, changes, caller, "chown", check=kill_suid if caller.uid != 0 else None)
            return None

    def utimens(self, path: str | None, atime: int | str | None, mtime: int | str | None, caller: Caller,
                fh: int | None = None) -> dict[str, int] | None:
        """Times in ns; UTIME_NOW ("now") or None (UTIME_OMIT) for either."""
        with self._op("utimens"):
            now = time.time_ns()
            changes = {}
            if atime is not None:
                changes["atime"] = now if atime == UTIME_NOW else int(atime)
            if mtime is not None:
                changes["mtime"] = now if mtime == UTIME_NOW else int(mtime)
            gone, node = self._setattr_target(path, fh)
            if node is None:
                self._set_local(gone, changes)
                return None
            f = self._writing(node)
            if f is not None:
                return self._fold_attrs(f, node, changes)
            f = self._files.get(node.ino)
            if f is not None and "mtime" in changes:
                self._flush_file(f, caller)  # pending writes must not overwrite the time set here
            self._set_attrs(node, fh, changes, caller, "utimens")
            return None

    def truncate(self, path: str | None, size: int, caller: Caller, fh: int | None = None) -> None:
        with self._op("truncate"):
            check_size(size)
            g = self._handles.get(fh) if fh is not None else None
            node = None
            if g is None or not g.unlinked:
                try:
                    node = self._target(path, fh)
                except FsError as e:
                    if g is None or e.errno != errno.EBADF:
                        raise
            if node is None:
                # ftruncate of a file unlinked while open, here or by another mount (also
                # open(O_TRUNC) of a name another mount removed meanwhile): local only, as its
                # writes are
                with g.lock:
                    self.data.truncate_local(g, size)
                    g.mtime = time.time_ns()
                    self._flush_file(g, caller, force=True)
                return
            if node.entry.is_dir:
                raise FsError(errno.EISDIR, str(path))
            f = self._files.get(node.ino)
            if f is not None:
                with f.lock:
                    self.data.truncate_local(f, size)
                    f.mtime = time.time_ns()
                    if f.writers == 0:
                        self._flush_file(f, caller, force=True)
                return
            cur = self.ns.attrs(node)
            if not cur.is_reg:
                raise FsError(errno.EINVAL, str(path))
            tmp = OpenFile(cur.ino, cur, node.parent, node.name, cur.size)
            self.data.truncate_local(tmp, size)
            tmp.mtime = time.time_ns()
            self._commit_file(tmp, node, caller)

    # -- xattrs -------------------------------------------------------------------------------------
    def getxattr(self, path: str | None, key: str, fh: int | None = None) -> bytes:
        """``fh``: a handle, for a file unlinked while open (no path names it any more)."""
        v = self.xattr_value(path, key, fh)
        if v is None:
            raise FsError(errno.ENODATA, key)
        return v

    def xattr_value(self, path: str | None, key: str, fh: int | None = None) -> bytes | None:
        """getxattr's value, or None when the inode has no such attribute (ENODATA)."""
        with self._op("getxattr"):
            gone = self._unlinked(fh)
            return (gone.inode if gone is not None else self.ns.attrs(self.ns.resolve(str(path)))).xattr(key)

    def listxattr(self, path: str | None, fh: int | None = None) -> list[str]:
        with self._op("listxattr"):
            gone = self._unlinked(fh)
            return [k for k, _ in (gone.inode if gone is not None else self.ns.attrs(self.ns.resolve(str(path)))).xattrs]

    def setxattr(self, path: str | None, key: str, value: bytes, flags: int, caller: Caller,
                 fh: int | None = None) -> None:
        with self._op("setxattr"):
            if len(key.encode("utf-8", "surrogateescape")) > 255:
                raise FsError(errno.ERANGE, "xattr name too long")
            if len(value) > 64 * 1024:
                raise FsError(errno.E2BIG, "xattr value too large")
            gone = self._unlinked(fh)
            if gone is not None:
                self._set_xattr_local(gone, key, value, flags & 3)
                return
            self.ns.set_xattr(self.ns.resolve(str(path)), key, value, flags & 3, caller)

    def removexattr(self, path: str | None, key: str, caller: Caller, fh: int | None = None) -> None:
        with self._op("removexattr"):
            gone = self._unlinked(fh)
            if gone is not None:
                self._set_xattr_local(gone, key, None, 0)
                return
            self.ns.set_xattr(self.ns.resolve(str(path)), key, None, 0, caller)

    @staticmethod
    def _set_xattr_local(f: OpenFile, key: str, value: bytes | None, mode: int) -> None:
        """An xattr change of a file unlinked while open: it lives in the open file (as _set_local)."""
        with f.lock:
            exists = f.inode.xattr(key) is not None
            if (value is None or mode & XATTR_REPLACE) and not exists:
                raise FsError(errno.ENODATA, key)
            if mode & XATTR_CREATE and exists:
                raise FsError(errno.EEXIST, key)
            f.inode = evolve(f.inode.with_xattr(key, value), ctime=time.time_ns())

    # -- files ----------------------------------------------------------------------------------------
    def open(self, path: str, flags: int, caller: Caller) -> int:
        with self._op("open"):
            ppath, name = split_path(path)
            if name:  # close-to-open: every change committed before this open is seen
                pino = self.ns.resolve_dir(ppath).ino
                if flags & os.O_ACCMODE == os.O_RDONLY:
                    self._first_block_early(pino, name)
                pview = self.ns.dir_view(pino, self.open_max_age)
                self.wb.settle_read(pview)
            node = self.ns.resolve(path)
            inode = self.ns.attrs(node, self.open_max_age if node.entry.linked else None)
            if inode.is_dir and flags & os.O_ACCMODE != os.O_RDONLY:
                raise FsError(errno.EISDIR, path)
            fh = self._open_node(node, inode, flags)
            if flags & os.O_ACCMODE == os.O_RDONLY and first_block(inode) is not None and node.parent is not None:
                self._read_ahead_siblings(node.parent, node.name)
            if flags & os.O_TRUNC and inode.is_reg:  # even when empty: POSIX marks mtime and ctime
                self.truncate(None, 0, caller, fh)
                if caller.uid != 0 and without_setid(inode.mode) != inode.mode:
                    # as truncate(2) and write(2) by someone without CAP_FSETID; for an O_TRUNC
                    # open the kernel leaves it to us (it truncated nothing itself: atomic_o_trunc)
                    self.chmod(None, without_setid(inode.mode), caller, fh)
            return fh

    def _first_block_early(self, pino: int, name: str) -> None:
        """An open for reading waits a round trip for its directory's tail (close-to-open), and
        then the first read waits another for the file's first block. The block is asked for
        now, from the view as cached, so the two round trips overlap. Blocks are immutable: if
        the tail shows the file rewritten, the read asks for the new version's block and this
        one cost read units only. A file not in the cached view, inline, or cached fetches
        nothing."""
        inode = self.ns.cached_entry(pino, name)
        key = first_block(inode) if inode is not None else None
        if key is not None:
            self.data.blocks.prefetch([key])

    def _read_ahead_siblings(self, pino: int, name: str) -> None:
        """A file with blocks opened for reading: readers going through a directory in name order
        (tar c, cp -r, grep -r) get the next files' first blocks fetched ahead (data/siblings.py)."""
        self.data.siblings.opened(pino, name, self._files_with_blocks(pino))

    def _view_prefetched(self, jid: str) -> None:
        """A directory's view was loaded ahead of a walk: if the walk reads files, its files too."""
        if jid.startswith("d/"):
            ino = schema.journal_ino(jid)
            self.data.siblings.ahead(ino, self._files_with_blocks(ino))

    def _files_with_blocks(self, pino: int) -> Following:
        """For data/siblings.py: the files of directory ``pino`` with blocks, after a name, with
        their first block's key (from the view as cached: no request)."""
        def following(after: str, n: int) -> list[tuple[str, BlockKey]]:
            return self.ns.pick_after(pino, after, n, first_block)

        return following

    def _open_node(self, node: Node, inode: Inode, flags: int) -> int:
        with self._lock:
            f = self._files.get(inode.ino)
            if f is None:
                parent = None if inode.linked or node.entry.linked else node.parent
                f = OpenFile(inode.ino, inode, parent, node.name if parent is not None else "", inode.size)
                self._files[inode.ino] = f
            elif not f.pending and f.refs == 0:
                f.inode, f.size = inode, inode.size
            elif not f.pending:
                f.inode, f.size = inode, inode.size  # re-open sees the newest committed version
            f.refs += 1
            fh = next(self._fh)
            self._handles[fh] = f
            if flags & os.O_ACCMODE != os.O_RDONLY:
                f.writers += 1
                self._writable.add(fh)
            return fh

    def _handle(self, fh: int) -> OpenFile:
        f = self._handles.get(fh)
        if f is None:
            raise FsError(errno.EBADF, f"bad handle {fh}")
        return f

    def read(self, fh: int, size: int, offset: int) -> bytes:
        with self._op("read"):
            f = self._handle(fh)
            f.accessed = True
            return self.data.read(f, offset, size)

    def write(self, fh: int, data: bytes, offset: int, caller: Caller = ROOT, append: bool = False) -> int:
        """``append``: the handle was opened with O_APPEND, so write at the end of the file as
        this mount knows it (the kernel's offset comes from its cached size, which another
        mount's appends may have outdated)."""
        with self._op("write"):
            f = self._handle(fh)
            with f.lock:
                if append:
                    offset = f.size
                check_size(offset + len(data))
                n = self.data.write(f, offset, data)
                # under the file's lock: another handle's write or commit changes ``dirty`` meanwhile
                over = f.dirty_bytes(self.block_size) >= files.DIRTY_LIMIT
            if over:
                self._flush_file(f, caller)
            return n

    def flush(self, fh: int, caller: Caller = ROOT) -> None:
        """close(): commit the file, and (relatime) its atime, before close() returns. The
        kernel's RELEASE comes after close() has returned, too late for a reader that stats
        the file right after closing it."""
        with self._op("flush"):
            f = self._handle(fh)
            self._flush_file(f, caller)
            self._update_atime(f, caller)

    def fsync(self, fh: int, caller: Caller = ROOT) -> None:
        with self._op("fsync"):
            self._flush_file(self._handle(fh), caller)
            self.wb.sync_all()  # a durability point: the file's create and its parents' too

    def syncfs(self) -> None:
        """fsync of a directory, sync(2), syncfs(2): commit every write-behind operation queued."""
        with self._op("syncfs"):
            self.wb.sync_all()

    def release(self, fh: int, caller: Caller = ROOT) -> None:
        with self._op("release"):
            with self._lock:
                f = self._handles.pop(fh, None)
                writer = fh in self._writable
                self._writable.discard(fh)
            if f is None:
                return
            try:
                if writer:
                    with f.lock:
                        f.writers -= 1
                self._flush_file(f, caller)
                self._update_atime(f, caller)
            finally:
                with self._lock:
                    f.refs -= 1
                    if f.refs <= 0 and self._files.get(f.ino) is f:
                        del self._files[f.ino]

    def _update_atime(self, f: OpenFile, caller: Caller) -> None:
        """relatime, as Linux mounts by default: a file read since its last change (or not read
        for a day) gets its atime set when the reader closes it. One put, only on the first
        close after a change: what CI-cache cleaners and ``find -atime`` need, at a cost bounded
        by the writes. ``-o noatime`` turns it off."""
        if not f.accessed or self.atime_policy == "noatime":
            return
        f.accessed = False
        inode = f.inode
        now = time.time_ns()
        if inode.atime > max(inode.mtime, inode.ctime) and now - inode.atime < ATIME_REFRESH_NS:
            return
        node = self._file_node(f)
        if node is None:
            return
        try:
            with self._op("atime"):
                committed = self.ns.set_attrs(node, {"atime": now}, caller, "atime", touch_ctime=False)
        except FsError as e:
            log.debug("atime.skipped", ino=f.ino, error=str(e))
            return
        with f.lock:
            if not f.pending:
                f.inode = committed

    def fallocate(self, fh: int, mode: int, offset: int, length: int, caller: Caller = ROOT) -> None:
        with self._op("fallocate"):
            if mode & ~FALLOC_FL_KEEP_SIZE:
                raise FsError(errno.EOPNOTSUPP, "only plain and KEEP_SIZE fallocate are supported")
            f = self._handle(fh)
            check_size(offset + length)
            if not mode & FALLOC_FL_KEEP_SIZE and offset + length > f.size:
                with f.lock:
                    f.size = offset + length
                    f.mtime = time.time_ns()
                self._flush_file(f, caller, force=True)

    # -- locks ----------------------------------------------------------------------------------------
    @property
    def locks(self) -> "LockManager":
        lm = getattr(self, "_locks", None)
        if lm is None:
            from ..cluster.locks import LockManager

            lm = self._locks = LockManager(self.store, self.session)
        return lm

    def getlk(self, fh: int, owner: int, type_: str, start: int, end: int) -> "Lock | None":
        return self.locks.test(self._handle(fh).ino, owner, type_, start, end)

    def setlk(self, fh: int, owner: int, type_: str, start: int, end: int, pid: int, wait: bool,
              kind: str = "p", caller: Caller = ROOT) -> bool:
        """Take or release a lock. A lock is a synchronisation point, as in NFS: before a release
        this mount's writes to the file are committed, and after an acquire the file's metadata is
        re-read, so the next reader under the lock sees what the last writer wrote. Returns True
        when the caller should drop the kernel's cached pages of the file."""
        f = self._handle(fh)
        if type_ == "u":
            self._flush_file(f, caller)
            self.locks.set(f.ino, owner, "u", start, end, pid, kind=kind)
            return False
        self.locks.set(f.ino, owner, type_, start, end, pid, wait=wait, kind=kind)
        return self._revalidate_file(f)

    def release_locks(self, fh: int, owner: int, kind: str = "p", caller: Caller = ROOT) -> None:
        f = self._handles.get(fh)
        if f is not None:
            if f.pending:
                self._flush_file(f, caller)
            self.locks.release_owner(f.ino, owner, kind)

    def _revalidate_file(self, f: OpenFile) -> bool:
        with self._op("revalidate"):
            with f.lock:
                if f.pending:
                    return False
                if f.parent is not None:
                    self.ns.dir_view(f.parent, 0.0)
                node = self._file_node(f)
                if node is None:
                    return False
                inode = self.ns.attrs(node, 0.0 if node.entry.linked else None)
                changed = inode.blocks != f.inode.blocks or inode.size != f.inode.size or inode.data != f.inode.data
                f.inode, f.size = inode, inode.size
                return changed

    def _flush_file(self, f: OpenFile, caller: Caller, force: bool = False) -> None:
        with f.lock:
            if not f.pending and not force:
                return
            node = self._file_node(f)
            if node is None:
                self.data.local_commit(f)
                return
            self._commit_file(f, node, caller)

    def _commit_file(self, f: OpenFile, node: Node, caller: Caller) -> None:
        """One SetAttr for everything the file went through since its last commit: its new
        contents (inline bytes or block runs), size, times, and any chmod, chown or utimens
        made while it was open for writing."""
        runs, data = self.data.contents(f)
        attrs = f.commit_attrs()
        for attempt in range(4):
            try:
                committed = self.ns.set_attrs(node, attrs, caller, "write", blocks=runs or None, data=data)
                break
            except FsError as e:
                if e.errno not in (errno.ENOENT, errno.ESTALE) or attempt == 3:
                    raise
                # Another client renamed or unlinked the name we knew: follow the inode in fresh
                # views (by_ino, moved_out); with no name left, keep the data for our handles.
                found = self._file_node(f, 0.0)
                if found is None:
                    self.data.local_commit(f)
                    return
                node = found
        self.data.after_commit(f, committed)
