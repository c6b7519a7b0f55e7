"""``dynlog restore``: bring back a file or a tree as it was at a time, into a path of the same
file system, through the ordinary file-system API (so the restore is itself journaled).

The historic inode carries everything: mode, owner, times, xattrs, symlink target, device
number and the block map. Old block versions are immutable and are kept for the retention
window, so the bytes come back exactly; holes stay holes (only mapped blocks are written, then
the size is set). Names of one inode inside the restored tree come back as hard links. The
change time (ctime) cannot be set through POSIX calls: it is the time of the restore.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Callable

from .. import schema
from ..core.attrs import ROOT, Caller
from ..core.filesystem import FileSystem
from ..errors import DynlogError, FsError
from ..journal.inode import Inode
from .walk import Entry, Journals, Tree, join

READ_BATCH = 64  # blocks read (one BatchGetItem) and written per step


class RestoreError(DynlogError):
    pass


@dataclass
class RestoreReport:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    other: int = 0
    links: int = 0
    bytes: int = 0
    paths: list[tuple[str, str]] = field(default_factory=list)  # (source path, restored path)


def restore(fs: FileSystem, journals: Journals, path: str, ts: int, dest: str,
            caller: Caller = ROOT, progress: Callable[[str], None] | None = None) -> RestoreReport:
    """Restore ``path`` as it was at ``ts`` to ``dest`` (which must not exist, or be a directory to
    restore into). Returns what was restored."""
    tree = Tree(journals, ts)
    src = tree.lookup(path)
    dest = "/" + "/".join(p for p in dest.split("/") if p)
    try:
        st = fs.getattr(dest)
        if stat.S_ISDIR(st["st_mode"]) and src.name:
            dest = join(dest, src.name)
            fs.getattr(dest)
        raise RestoreError(f"{dest} exists: restore into a new name")
    except FsError as e:
        if e.errno != errno.ENOENT:
            raise
    report = RestoreReport()
    r = _Restorer(fs, tree, caller, report, progress)
    r.restore(src, dest)
    return report


class _Restorer:
    def __init__(self, fs: FileSystem, tree: Tree, caller: Caller, report: RestoreReport,
                 progress: Callable[[str], None] | None) -> None:
        self.fs = fs
        self.tree = tree
        self.caller = caller
        self.report = report
        self.progress = progress
        self.linked: dict[int, str] = {}  # ino -> first restored path (hard links)
        self.seen_dirs: set[int] = set()

    def restore(self, entry: Entry, dest: str) -> None:
        inode = entry.inode
        self.report.paths.append((entry.path, dest))
        if self.progress:
            self.progress(dest)
        if not inode.is_dir and inode.linked and inode.ino in self.linked:
            self.fs.link(self.linked[inode.ino], dest, self.caller)
            self.report.links += 1
            return
        if inode.is_dir:
            if inode.ino in self.seen_dirs:
                raise RestoreError(f"{entry.path}: directory cycle")
            self.seen_dirs.add(inode.ino)
            self.fs.mkdir(dest, inode.mode & 0o7777 | 0o700, self.caller)  # owner access while filling it
            for child in self.tree.children(entry):
                self.restore(child, join(dest, child.name))
            self.report.dirs += 1
        elif inode.is_link:
            self.fs.symlink(inode.target, dest, self.caller)
            self.report.symlinks += 1
        elif inode.is_reg:
            self._file(inode, dest)
            self.report.files += 1
        else:
            self.fs.mknod(dest, inode.mode, inode.rdev, self.caller)
            self.report.other += 1
        if inode.linked:
            self.linked[inode.ino] = dest
        self._attrs(inode, dest)

    def _file(self, inode: Inode, dest: str) -> None:
        fs = self.fs
        fh = fs.create(dest, 0o600, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.caller)
        try:
            bs = fs.block_size
            if inode.data is not None:  # inline: the bytes are in the record itself
                fs.write(fh, inode.data, 0, self.caller)
                self.report.bytes += len(inode.data)
            todo = [(i, w) for s, c, w in inode.blocks for i in range(s, s + c) if i * bs < inode.size]
            for k in range(0, len(todo), READ_BATCH):
                chunk = todo[k : k + READ_BATCH]
                keys = [(schema.block_id(inode.ino, w), i) for i, w in chunk]
                got = fs.data.blocks.read(keys)
                for (i, w), key in zip(chunk, keys):
                    data = got.get(key)
                    if data is None:
                        raise RestoreError(f"block {i} of inode {inode.ino} (version {key[0]}) is gone: "
                                           "it was collected by compact after the retention window")
                    data = data[: max(0, min(bs, inode.size - i * bs))]
                    if data:
                        fs.write(fh, data, i * bs, self.caller)
                        self.report.bytes += len(data)
            fs.truncate(None, inode.size, self.caller, fh)
        finally:
            fs.release(fh, self.caller)

    def _attrs(self, inode: Inode, dest: str) -> None:
        fs, caller = self.fs, self.caller
        for key, value in inode.xattrs:
            fs.setxattr(dest, key, value, 0, caller)
        fs.chown(dest, inode.uid, inode.gid, caller)
        if not inode.is_link:
            fs.chmod(dest, inode.mode & 0o7777, caller)
        fs.utimens(dest, inode.atime, inode.mtime, caller)
