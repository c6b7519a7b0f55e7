"""The file system's metadata operations, with POSIX semantics, over journals and views.

Every mutation is a build function handed to the Committer: it validates against drafts of
the journals it touches (so validation always sees the freshest state the commit will be
judged against) and emits events. See docs/ARCHITECTURE.md for the request count of each.
"""

from __future__ import annotations

import errno
import functools
import stat
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from .. import schema
from ..errors import FsError, JournalConflict
from ..journal.append import Committer, NeedJournal, Tx
from ..journal.events import Create, Detach, InodeInit, Link, MoveIn, MoveOut, Remove, Rename, SetAttr, SetXattr
from ..journal.inode import Inode, evolve
from ..materialize.cache import ViewCache
from ..materialize.draft import Draft
from ..materialize.view import View
from ..store.base import ABSENT, Cond, Put, Store
from ..store.retry import backoff_delay
from .allocator import InodeAllocator
from .attrs import Caller, check_name, components, split_path
from .superblock import Superblock

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_SENTINEL = "rename"
RENAME_ATTEMPTS = 30  # a directory move re-resolves after any conflict: bounded, with backoff
T = TypeVar("T")


@dataclass(frozen=True)
class Node:
    """A resolved name: the directory it is in (None for the root), its name, its entry there."""

    parent: int | None
    name: str
    entry: Inode
    chain: tuple[int, ...] = ()  # inode numbers of the directories from the root down to ``parent``

    @property
    def ino(self) -> int:
        return self.entry.ino


class ParentRemoved(FsError):
    """The directory an operation works in was removed (its journal is sealed). The path led
    there through a cached view: the operation is retried once on paths resolved afresh."""

    def __init__(self, detail: str = "directory was removed") -> None:
        super().__init__(errno.ENOENT, detail)


def _fresh_paths_on_removed(*path_args: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Retry a namespace operation once, after re-walking the parents of its path arguments
    (positions ``path_args``) through fresh views, when its directory turned out removed."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(self: "Namespace", *a: Any, **kw: Any) -> Any:
            try:
                return fn(self, *a, **kw)
            except ParentRemoved:
                for i in path_args:
                    try:
                        self.resolve(split_path(a[i])[0], 0.0)
                    except FsError:
                        pass
                return fn(self, *a, **kw)

        return wrapper

    return deco


class Namespace:
    def __init__(self, store: Store, sb: Superblock, cache: ViewCache, committer: Committer,
                 allocator: InodeAllocator, ttl: float = 1.0) -> None:
        self.store = store
        self.sb = sb
        self.cache = cache
        self.committer = committer
        self.allocator = allocator
        self.ttl = ttl
        self.root = Node(None, "", sb.root)
        self._sentinel: int | None = None
        self._sentinel_read_at = 0.0

    # -- resolution ------------------------------------------------------------------------------
    def dir_view(self, ino: int, max_age: float | None = None, parent: int | None = None) -> View:
        """``parent``: the directory in which the caller met this one (for the prefetcher)."""
        return self.cache.get(schema.dir_journal(ino), self.ttl if max_age is None else max_age,
                              None if parent is None else schema.dir_journal(parent))

    def inode_view(self, ino: int, max_age: float | None = None, parent: int | None = None) -> View:
        return self.cache.get(schema.inode_journal(ino), self.ttl if max_age is None else max_age,
                              None if parent is None else schema.dir_journal(parent))

    def resolve(self, path: str, max_age: float | None = None) -> Node:
        try:
            return self._resolve(path, max_age)
        except ParentRemoved:
            if max_age == 0.0:
                raise
            # A cached view led into a directory since removed (perhaps re-created under the
            # same name by another client): walk the path again through fresh views.
            return self._resolve(path, 0.0)

    def _resolve(self, path: str, max_age: float | None) -> Node:
        # Hot: every FUSE callback by path walks here (several per small file tar writes), so the
        # walk keeps locals and builds one Node at the end instead of one per component.
        comps = components(path)
        if not comps:
            return self.root
        get = self.cache.get
        age = self.ttl if max_age is None else max_age
        entry = self.root.entry
        chain: list[int] = []
        parent: str | None = None
        for comp in comps:
            if not stat.S_ISDIR(entry.mode):
                raise FsError(errno.ENOTDIR, path)
            jid = schema.dir_journal(entry.ino)
            view = get(jid, age, parent)
            parent = jid
            with view.lock:
                if view.removed:
                    raise ParentRemoved(path)
                ent = view.entries.get(comp)
            if ent is None:
                if len(comp.encode("utf-8", "surrogateescape")) > 255:
                    raise FsError(errno.ENAMETOOLONG, path)
                raise FsError(errno.ENOENT, path)
            chain.append(entry.ino)
            entry = ent
        return Node(chain[-1], comps[-1], entry, tuple(chain))

    def resolve_dir(self, path: str, max_age: float | None = None) -> Node:
        node = self.resolve(path, max_age)
        if not node.entry.is_dir:
            raise FsError(errno.ENOTDIR, path)
        return node

    def attrs(self, node: Node, max_age: float | None = None) -> Inode:
        """The node's full inode: a directory's own changes applied, a hard link's shared inode."""
        ent = node.entry
        if ent.is_dir:
            view = self.dir_view(ent.ino, max_age, node.parent)
            with view.lock:
                return view.own_inode(ent)
        if ent.linked:
            view = self.inode_view(ent.ino, max_age, node.parent)
            with view.lock:
                if view.subject is None:
                    # The name says the inode has a journal: a cached view older than the link
                    # (e.g. one seeded or read empty before another client linked) is stale.
                    self.cache.refresh(view)
                if view.subject is None:
                    raise FsError(errno.ENOENT, f"inode {ent.ino} has no journal")
                return view.subject
        return ent

    def listing(self, node: Node, max_age: float | None = None) -> list[tuple[str, Inode]]:
        view = self.dir_view(node.ino, max_age)
        with view.lock:
            return list(view.entries.items())

    def cached_entry(self, pino: int, name: str) -> Inode | None:
        """Entry ``name`` of directory ``pino`` as its view is cached, for a guess: no request,
        and no wait for the view's lock (a refresh in flight holds it; one dict lookup is atomic)."""
        view = self.cache.peek(schema.dir_journal(pino))
        return view.entries.get(name) if view is not None else None

    def pick_after(self, pino: int, after: str, n: int, pick: Callable[[Inode], T | None]) -> list[tuple[str, T]]:
        """View.pick_after on directory ``pino``'s view as cached: no request is made, and nothing
        is found in a view not cached."""
        view = self.cache.peek(schema.dir_journal(pino))
        if view is None:
            return []
        with view.lock:
            return view.pick_after(after, pick, n)

    # -- helpers for builds ------------------------------------------------------------------------
    @staticmethod
    def _parent_draft(tx: Tx, pino: int) -> Draft:
        d = tx.draft(schema.dir_journal(pino))
        if d.removed:
            raise ParentRemoved("directory was removed")
        return d

    def _commit(self, jids: list[str], build: Callable[[Tx], Any], op: str, caller: Caller, weight: int = 0) -> Any:
        return self.committer.commit(jids, build, op, caller.uid, weight)

    def _new_inode(self, mode: int, caller: Caller, parent: Inode, ts: int, **kw: Any) -> Inode:
        gid = caller.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        return Inode(ino=self.allocator.allocate(), mode=mode, uid=caller.uid, gid=gid, atime=ts, mtime=ts, ctime=ts, **kw)

    # -- creating ------------------------------------------------------------------------------------
    @_fresh_paths_on_removed(0)
    def create_entry(self, path: str, mode: int, caller: Caller, op: str, **kw: Any) -> Inode:
        """mknod, mkdir, create, symlink: one conditional put in the parent's journal."""
        ppath, name = split_path(path)
        check_name(name)
        pnode = self.resolve_dir(ppath)
        pattrs = self.attrs(pnode)
        pj = schema.dir_journal(pnode.ino)
        slot: list[Inode] = []

        def build(tx: Tx) -> Inode:
            d = self._parent_draft(tx, pnode.ino)
            if name in d.entries:
                raise FsError(errno.EEXIST, path)
            if not slot:
                slot.append(self._new_inode(mode, caller, pattrs, tx.ts, **kw))
            inode = evolve(slot[0], atime=tx.ts, mtime=tx.ts, ctime=tx.ts)
            d.emit(Create(name, inode))
            return inode

        inode = self._commit([pj], build, op, caller)
        if inode.is_dir:
            self.cache.seed_empty(schema.dir_journal(inode.ino))
        return inode

    # -- removing ------------------------------------------------------------------------------------
    @_fresh_paths_on_removed(0)
    def unlink(self, path: str, caller: Caller) -> Inode:
        ppath, name = split_path(path)
        pnode = self.resolve_dir(ppath)

        def build(tx: Tx) -> Inode:
            d = self._parent_draft(tx, pnode.ino)
            ent = d.entries.get(name)
            if ent is None:
                raise FsError(errno.ENOENT, path)
            if ent.is_dir:
                raise FsError(errno.EISDIR, path)
            if ent.linked:
                self._drop_link(tx, ent)
            d.emit(Remove(name, ent.ino))
            return ent

        return self._commit([schema.dir_journal(pnode.ino)], build, "unlink", caller)

    def _drop_link(self, tx: Tx, ent: Inode) -> None:
        i = tx.draft(schema.inode_journal(ent.ino))
        _require_subject(i)
        i.emit(SetAttr("", {"nlink": i.subject.nlink - 1, "ctime": tx.ts}))

    @_fresh_paths_on_removed(0)
    def rmdir(self, path: str, caller: Caller) -> None:
        ppath, name = split_path(path)
        if not name:
            raise FsError(errno.EBUSY, "cannot remove the root")
        if name in (".", ".."):
            raise FsError(errno.EINVAL if name == "." else errno.ENOTEMPTY, path)
        pnode = self.resolve_dir(ppath)
        node = self.resolve(path)
        if not node.entry.is_dir:
            raise FsError(errno.ENOTDIR, path)

        def build(tx: Tx) -> None:
            d = self._parent_draft(tx, pnode.ino)
            ent = d.entries.get(name)
            if ent is None:
                raise FsError(errno.ENOENT, path)
            if not ent.is_dir:
                raise FsError(errno.ENOTDIR, path)
            c = tx.draft(schema.dir_journal(ent.ino))
            if not c.is_empty():
                raise FsError(errno.ENOTEMPTY, path)
            d.emit(Remove(name, ent.ino))
            c.emit(Remove("", ent.ino))  # seal: a racing create in it now conflicts and fails

        self._commit([schema.dir_journal(pnode.ino), schema.dir_journal(node.ino)], build, "rmdir", caller)

    # -- rename ----------------------------------------------------------------------------------------
    @_fresh_paths_on_removed(0, 1)
    def rename(self, old: str, new: str, flags: int, caller: Caller) -> Inode:
        if flags & RENAME_EXCHANGE:
            raise FsError(errno.EINVAL, "RENAME_EXCHANGE is not supported")
        if flags & ~RENAME_NOREPLACE:  # RENAME_WHITEOUT or unknown: refuse rather than ignore
            raise FsError(errno.EINVAL, f"rename flags {flags:#x} are not supported")
        sp, sname = split_path(old)
        dp, dname = split_path(new)
        if not sname or not dname:
            raise FsError(errno.EBUSY, "cannot rename the root")
        check_name(dname)
        for attempt in range(RENAME_ATTEMPTS):
            if attempt:
                time.sleep(backoff_delay(attempt - 1, base=0.005, cap=0.5))
            fresh = attempt > 0 or None
            # The source too is resolved again on every attempt: another thread or mount may
            # have replaced a file of that name by a directory meanwhile (unlink, then mkdir),
            # and a move planned for a file would meet a directory on every attempt. Its walk
            # also gives the source directory (``src.parent``), which needs no walk of its own.
            src = self.resolve(old, 0.0 if fresh else None)
            spino = src.parent
            assert spino is not None  # the root was refused above
            if src.entry.is_dir and (new + "/").startswith(old.rstrip("/") + "/") and new != old:
                raise FsError(errno.EINVAL, "cannot move a directory into itself")
            dnode = self.resolve_dir(dp, 0.0 if fresh else None)
            if spino == dnode.ino:
                return self._rename_within(spino, sname, dname, flags, caller, old)
            moving_dir = src.entry.is_dir
            if moving_dir:
                self._ensure_sentinel()
                # The target's ancestry must be at least as fresh as the sentinel we condition on.
                import time as _time

                age = max(0.0, _time.monotonic() - self._sentinel_read_at)
                dnode = self.resolve_dir(dp, min(age, self.ttl))
            retry: list[bool] = []
            try:
                return self._rename_across(spino, sname, dnode, dname, flags, caller, old, moving_dir, retry)
            except _Reresolve:
                self._sentinel = None
                continue
        raise FsError(errno.EAGAIN, "rename: the tree kept changing")

    def _rename_within(self, pino: int, sname: str, dname: str, flags: int, caller: Caller, old: str) -> Inode:
        def build(tx: Tx) -> Inode:
            d = self._parent_draft(tx, pino)
            ent = d.entries.get(sname)
            if ent is None:
                raise FsError(errno.ENOENT, old)
            if sname == dname:
                return ent
            tgt = d.entries.get(dname)
            if tgt is not None:
                if flags & RENAME_NOREPLACE:
                    raise FsError(errno.EEXIST, dname)
                if tgt.ino == ent.ino:
                    return ent  # two names of one inode: POSIX says do nothing
                self._replace_target(tx, ent, tgt, dname)
            d.emit(Rename(sname, dname, ent.ino))
            return ent

        return self._commit([schema.dir_journal(pino)], build, "rename", caller)

    def _replace_target(self, tx: Tx, ent: Inode, tgt: Inode, dname: str) -> None:
        if ent.is_dir and not tgt.is_dir:
            raise FsError(errno.ENOTDIR, dname)
        if not ent.is_dir and tgt.is_dir:
            raise FsError(errno.EISDIR, dname)
        if tgt.is_dir:
            c = tx.draft(schema.dir_journal(tgt.ino))
            if not c.is_empty():
                raise FsError(errno.ENOTEMPTY, dname)
            c.emit(Remove("", tgt.ino))
        elif tgt.linked:
            self._drop_link(tx, tgt)

    def _rename_across(self, spino: int, sname: str, dnode: Node, dname: str, flags: int, caller: Caller,
                       old: str, moving_dir: bool, retry: list[bool]) -> Inode:
        dpino = dnode.ino
        sentinel_seen = self._sentinel

        def build(tx: Tx) -> Inode:
            s = self._parent_draft(tx, spino)
            t = self._parent_draft(tx, dpino)
            ent = s.entries.get(sname)
            if ent is None:
                raise FsError(errno.ENOENT, old)
            if ent.is_dir and (ent.ino == dpino or ent.ino in dnode.chain):
                raise FsError(errno.EINVAL, "cannot move a directory into its own subtree")
            tgt = t.entries.get(dname)
            if tgt is not None:
                if flags & RENAME_NOREPLACE:
                    raise FsError(errno.EEXIST, dname)
                if tgt.ino == ent.ino:
                    return ent
                self._replace_target(tx, ent, tgt, dname)
            s.emit(MoveOut(sname, ent.ino, dpino, dname))
            t.emit(MoveIn(dname, ent, spino, sname))
            if ent.is_dir:
                if not moving_dir:
                    raise _Reresolve()
                m = tx.draft(schema.dir_journal(ent.ino))
                m.emit(SetAttr("", {"ctime": tx.ts}))
                v = sentinel_seen or 0
                cond = ABSENT if v == 0 else (Cond("eq", "v", v),)
                tx.extra.append(Put("meta", {"path": schema.FS_PARTITION, "name": RENAME_SENTINEL, "v": v + 1}, cond))

                def sentinel_lost() -> None:
                    retry.append(True)

                tx.on_conflict.append(sentinel_lost)
            return ent

        jids = [schema.dir_journal(spino), schema.dir_journal(dpino)]
        if moving_dir:
            jids.append(schema.dir_journal(self.resolve_child_ino(spino, sname)))
            before = len(retry)
            result = self._commit_once_for_sentinel(jids, build, caller, retry, before)
            self._sentinel = (sentinel_seen or 0) + 1
            import time as _time

            self._sentinel_read_at = min(self._sentinel_read_at, _time.monotonic())
            return result
        return self._commit(jids, build, "rename", caller)

    def _commit_once_for_sentinel(self, jids: list[str], build: Callable[[Tx], Any], caller: Caller,
                                  retry: list[bool], before: int) -> Any:
        """A directory move commits against the rename sentinel we read; if the sentinel moved on,
        another directory move happened: re-read it and re-resolve the target afresh."""

        def guarded(tx: Tx) -> Any:
            if len(retry) > before:
                raise _Reresolve()
            return build(tx)

        return self._commit(jids, guarded, "rename", caller)

    def resolve_child_ino(self, pino: int, name: str) -> int:
        view = self.dir_view(pino)
        with view.lock:
            ent = view.entries.get(name)
        if ent is None:
            raise FsError(errno.ENOENT, name)
        return ent.ino

    def _ensure_sentinel(self) -> None:
        import time as _time

        if self._sentinel is None:
            item = self.store.get("meta", (schema.FS_PARTITION, RENAME_SENTINEL))
            self._sentinel = int(item["v"]) if item else 0
            self._sentinel_read_at = _time.monotonic()

    # -- links ------------------------------------------------------------------------------------------
    @_fresh_paths_on_removed(0, 1)
    def link(self, old: str, new: str, caller: Caller) -> Inode:
        sp, sname = split_path(old)
        dp, dname = split_path(new)
        check_name(dname)
        snode = self.resolve_dir(sp)
        src = self.resolve(old)
        if src.entry.is_dir:
            raise FsError(errno.EPERM, "hard links to directories are not allowed")
        dnode = self.resolve_dir(dp)
        ino = src.ino
        if not src.entry.linked:
            # Its first second name: the inode's journal cannot exist yet (the InodeInit put is
            # conditional on j/1 being absent, so a racing link still conflicts): read nothing.
            self.cache.seed_empty(schema.inode_journal(ino))

        def build(tx: Tx) -> Inode:
            s = self._parent_draft(tx, snode.ino)
            t = self._parent_draft(tx, dnode.ino)
            ent = s.entries.get(sname)
            if ent is None:
                raise FsError(errno.ENOENT, old)
            if ent.is_dir:
                raise FsError(errno.EPERM, old)
            if dname in t.entries:
                raise FsError(errno.EEXIST, new)
            i = tx.draft(schema.inode_journal(ent.ino))
            if ent.linked:
                _require_subject(i)
                i.emit(SetAttr("", {"nlink": i.subject.nlink + 1, "ctime": tx.ts}))
                shared = i.subject
            else:
                shared = evolve(ent, nlink=2, ctime=tx.ts, linked=False)
                i.emit(InodeInit(shared))
                s.emit(Detach(sname, ent.ino))
            t.emit(Link(dname, ent.ino, stat.S_IFMT(ent.mode)))
            return shared

        jids = sorted({schema.dir_journal(snode.ino), schema.dir_journal(dnode.ino), schema.inode_journal(ino)})
        return self._commit(jids, build, "link", caller)

    # -- attributes ------------------------------------------------------------------------------------
    def locate(self, node: Node) -> tuple[str, str]:
        """Where a node's attributes are changed: (journal, name in it)."""
        if node.entry.is_dir:
            return schema.dir_journal(node.ino), ""
        if node.entry.linked:
            return schema.inode_journal(node.ino), ""
        assert node.parent is not None
        return schema.dir_journal(node.parent), node.name

    def set_attrs(self, node: Node, attrs: dict[str, int], caller: Caller, op: str,
                  blocks: tuple | None = None, check: Callable[[Inode], dict[str, int]] | None = None,
                  touch_ctime: bool = True, data: bytes | None = None) -> Inode:
        """Change attributes (one conditional put). ``check`` may derive the changes from the
        current inode inside the build (so they are validated against the freshest state).
        ``blocks`` maps new block versions; ``data`` replaces the contents inline."""
        jid, name = self.locate(node)
        ino = node.ino

        def build(tx: Tx) -> Inode:
            d, at = self._where(tx, jid, name, ino)
            cur = self._current(d, at, ino, node)
            changes = dict(attrs)
            if check is not None:
                changes.update(check(cur))
            if touch_ctime:
                changes.setdefault("ctime", tx.ts)
            d.emit(SetAttr(at, changes, blocks, self.sb.block_size if (blocks or "size" in changes) else 0, data))
            return self._current(d, at, ino, node)

        return self._commit([jid], build, op, caller, len(data) if data else 0)

    @staticmethod
    def _where(tx: Tx, jid: str, name: str, ino: int) -> tuple[Draft, str]:
        """The draft and name where the attributes of ``ino`` change now: its entry in the
        directory, or, if the entry has meanwhile become a reference (another client linked the
        file), the inode's own journal (the first time, NeedJournal brings it into the commit)."""
        d = tx.draft(jid)
        if name:
            ent = d.entries.get(name)
            if ent is not None and ent.ino == ino and ent.linked:
                return tx.draft(schema.inode_journal(ino)), ""
        return d, name

    def _current(self, d: Draft, name: str, ino: int, node: Node) -> Inode:
        if name == "":
            if d.subject is not None:
                return d.subject
            if d.removed:
                raise FsError(errno.ENOENT, f"inode {ino}")
            return d.own_inode(node.entry)
        ent = d.entries.get(name)
        if ent is None or ent.ino != ino:
            raise FsError(errno.ESTALE if ent is not None else errno.ENOENT, name)
        if ent.linked:
            raise NeedJournal(schema.inode_journal(ino))
        return ent

    def set_xattr(self, node: Node, key: str, value: bytes | None, mode: int, caller: Caller) -> None:
        """mode: 0, XATTR_CREATE (1) or XATTR_REPLACE (2); value None removes."""
        jid, name = self.locate(node)
        ino = node.ino

        def build(tx: Tx) -> None:
            d, at = self._where(tx, jid, name, ino)
            cur = self._current(d, at, ino, node)
            exists = cur.xattr(key) is not None
            if value is None and not exists:
                raise FsError(errno.ENODATA, key)
            if mode & 1 and exists:  # XATTR_CREATE (with XATTR_REPLACE too, as ext4: always fails)
                raise FsError(errno.EEXIST, key)
            if mode & 2 and not exists:  # XATTR_REPLACE
                raise FsError(errno.ENODATA, key)
            d.emit(SetXattr(at, key, value, tx.ts))

        self._commit([jid], build, "setxattr" if value is not None else "removexattr", caller)


class _Reresolve(Exception):
    """The namespace changed under a directory move: resolve the paths again, freshly."""


def _require_subject(draft: Draft) -> None:
    """A name says its inode lives in ``i/<ino>``, but this client's view of that journal has no
    inode yet: the view is older than the link that made it (e.g. seeded empty by a link of this
    client that failed, while another client's link succeeded). A conflict makes the committer
    read the journal again and rebuild, as for any lost race."""
    if draft.subject is None:
        raise JournalConflict(f"{draft.jid}: the cached view predates its inode", keys=((draft.jid, ""),))
