"""``dynlog diff``: what changed under a path between two times.

Both trees are rebuilt from the journals and compared by inode number, so a rename is seen as
a rename (not as a removal plus an addition), even across directories and for directories with
everything below them. Changes:

  added     a name whose inode did not exist under PATH at T1
  removed   a name whose inode is no longer under PATH at T2
  renamed   the same inode under another path
  modified  the same inode with other contents (size, blocks, symlink target), mode, owner,
            xattrs or modification time; a directory counts as modified only for mode, owner and
            xattrs (its times change with every entry, which the entries already show)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..journal.inode import Inode
from .walk import Journals, NotFound, Tree, type_name


@dataclass(frozen=True)
class Change:
    kind: str  # added, removed, renamed, modified
    path: str
    ino: int
    type: str
    old_path: str = ""
    what: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"change": self.kind, "path": self.path, "ino": self.ino, "type": self.type}
        if self.old_path:
            d["from"] = self.old_path
        if self.what:
            d["what"] = list(self.what)
        return d

    def to_text(self) -> str:
        mark = {"added": "A", "removed": "D", "renamed": "R", "modified": "M"}[self.kind]
        slash = "/" if self.type == "dir" else ""
        if self.kind == "renamed":
            text = f"{mark} {self.old_path}{slash} -> {self.path}{slash}"
        else:
            text = f"{mark} {self.path}{slash}"
        if self.what:
            text += f"  ({', '.join(self.what)})"
        return text


@dataclass
class DiffResult:
    changes: list[Change] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)


def _collect(tree: Tree, path: str) -> dict[int, tuple[list[str], Inode]]:
    """inode -> (paths relative to the tree's PATH, inode) for everything below ``path``."""
    out: dict[int, tuple[list[str], Inode]] = {}
    try:
        top = tree.lookup(path)
    except NotFound:
        return out
    base = top.path.rstrip("/")
    for e in tree.walk(top):
        if e is top:
            continue
        rel = e.path[len(base):] if base else e.path
        paths, _ = out.setdefault(e.ino, ([], e.inode))
        paths.append(rel)
    for paths, _ in out.values():
        paths.sort()
    return out


def modified(a: Inode, b: Inode) -> tuple[str, ...]:
    what = []
    if not a.is_dir:
        if a.size != b.size or a.blocks != b.blocks or a.data != b.data or a.target != b.target or a.rdev != b.rdev:
            what.append("content")
        elif a.mtime != b.mtime:
            what.append("mtime")
    if a.mode != b.mode:
        what.append("mode")
    if a.uid != b.uid or a.gid != b.gid:
        what.append("owner")
    if a.xattrs != b.xattrs:
        what.append("xattrs")
    return tuple(what)


def diff(journals: Journals, path: str, t1: int, t2: int) -> DiffResult:
    before = _collect(Tree(journals, t1), path)
    after = _collect(Tree(journals, t2), path)
    top = "/" + "/".join(p for p in path.split("/") if p)
    prefix = "" if top == "/" else top

    def full(rel: str) -> str:
        return prefix + rel

    out: list[Change] = []
    for ino, (paths2, ino2) in after.items():
        kind = type_name(ino2.mode)
        old = before.get(ino)
        if old is None:
            out.extend(Change("added", full(p), ino, kind) for p in paths2)
            continue
        paths1, ino1 = old
        if type_name(ino1.mode) != kind:  # an inode number reused? treat as a new file
            out.extend(Change("removed", full(p), ino, type_name(ino1.mode)) for p in paths1)
            out.extend(Change("added", full(p), ino, kind) for p in paths2)
            continue
        gone = [p for p in paths1 if p not in paths2]
        new = [p for p in paths2 if p not in paths1]
        pairs = list(zip(gone, new))
        out.extend(Change("renamed", full(n), ino, kind, old_path=full(o)) for o, n in pairs)
        out.extend(Change("removed", full(p), ino, kind) for p in gone[len(pairs):])
        out.extend(Change("added", full(p), ino, kind) for p in new[len(pairs):])
        what = modified(ino1, ino2)
        if what:
            out.append(Change("modified", full(paths2[0]), ino, kind, what=what))
    for ino, (paths1, ino1) in before.items():
        if ino not in after:
            out.extend(Change("removed", full(p), ino, type_name(ino1.mode)) for p in paths1)
    order = {"removed": 0, "renamed": 1, "added": 2, "modified": 3}
    out.sort(key=lambda c: (c.path, order[c.kind]))
    return DiffResult(out)
