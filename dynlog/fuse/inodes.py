"""The inodes the kernel holds, and the names it knows them by.

With libfuse's low-level API the kernel names a file by a node id that we hand out, and asks
about a child by (parent node id, name). FileSystem works on paths, so this table turns a node
id into the path it was last reached by. It also keeps the kernel's lookup count of each node:
one for every entry we hand out (lookup, create, mkdir, link...), given back by FORGET. A node
the kernel forgot is dropped here, so the table never holds more than the kernel's own cache.

A file's node id is its inode number, whatever its names (hard links): the kernel then sees one
inode, and a change through one name shows under all. A file answers to the last name it was
reached by. A directory's node id is its inode number too, until another mount moves it: the
kernel may still hold the directory's old entry, and seen again elsewhere under the same node
id, the kernel refuses the new place when the old one looks like its ancestor ("would have
caused loop": ELOOP). So a directory found at a new place by a lookup gets a node id of its
own there, as libfuse's high-level API does for every path; the old node answers ESTALE until
the kernel drops it. A rename made through this mount keeps the node id: the kernel moved its
entry itself.

Another mount may rename or remove a name without the kernel knowing: a path built from such a
name no longer leads to the inode, and callers treat that as a stale handle (ESTALE), on which
the kernel walks the path again.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from ..schema import ROOT_INO

Key = tuple[int, str]  # (parent node id, name)

MAX_DEPTH = 4096  # more components than any path can have: a cycle of stale names
ALIAS_BASE = 1 << 63  # node ids of directories seen at a second place: above every inode number


@dataclass
class Node:
    ino: int  # dynlog's inode number (st_ino)
    is_dir: bool
    nlookup: int = 0
    names: dict[Key, None] = field(default_factory=dict)  # the latest last


class KernelInodes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[int, Node] = {}
        self._at: dict[Key, int] = {}  # (parent, name) -> node id
        self._dir_nodes: dict[int, set[int]] = {}  # a directory's inode number -> its node ids
        self._aliases = itertools.count(ALIAS_BASE)

    def __len__(self) -> int:
        return len(self._nodes)

    def knows(self, nodeid: int) -> bool:
        return nodeid == ROOT_INO or nodeid in self._nodes

    def ino_of(self, nodeid: int) -> int:
        node = self._nodes.get(nodeid)
        return node.ino if node is not None else nodeid

    def nodeids(self, ino: int) -> list[int]:
        """The node ids the kernel may hold for inode ``ino``."""
        if ino == ROOT_INO:
            return [ROOT_INO]
        with self._lock:
            return list(self._dir_nodes.get(ino, ())) or ([ino] if ino in self._nodes else [])

    def child(self, parent: int, name: str) -> int | None:
        """The inode number the kernel knows as ``name`` in node ``parent``, if any."""
        nodeid = self._at.get((parent, name))
        return None if nodeid is None else self.ino_of(nodeid)

    def path(self, nodeid: int) -> str | None:
        """The path ``nodeid`` was last reached by, or None if it has no name left here."""
        parts: list[str] = []
        with self._lock:
            while nodeid != ROOT_INO:
                node = self._nodes.get(nodeid)
                if node is None or not node.names or len(parts) > MAX_DEPTH:
                    return None
                nodeid, name = next(reversed(node.names))
                parts.append(name)
        return "/" + "/".join(reversed(parts))

    def learned(self, ino: int, parent: int, name: str, is_dir: bool) -> int:
        """An entry for inode ``ino`` as ``name`` in node ``parent`` is being handed to the
        kernel: one more lookup of the node id returned. Called before the reply goes out: the
        kernel may forget it at once."""
        key = (parent, name)
        with self._lock:
            nodeid = ino
            if is_dir:
                here = self._at.get(key)
                if here is not None and self._nodes[here].ino == ino:
                    nodeid = here  # the place the kernel knows it at
                elif self._dir_nodes.get(ino):
                    nodeid = next(self._aliases)  # known elsewhere: the kernel may still hold that
                self._dir_nodes.setdefault(ino, set()).add(nodeid)
            node = self._nodes.get(nodeid)
            if node is None:
                node = self._nodes[nodeid] = Node(ino, is_dir)
            node.nlookup += 1
            self._name(nodeid, node, key)
        return nodeid

    def _name(self, nodeid: int, node: Node, key: Key) -> None:
        old = self._at.get(key)
        if old is not None and old != nodeid and old in self._nodes:
            self._nodes[old].names.pop(key, None)
        if node.is_dir:  # one name
            for k in node.names:
                if self._at.get(k) == nodeid:
                    del self._at[k]
            node.names.clear()
        node.names.pop(key, None)
        node.names[key] = None
        self._at[key] = nodeid

    def forget(self, nodeid: int, n: int) -> None:
        """The kernel dropped ``n`` of its lookups of ``nodeid`` (FORGET, or an entry reply it
        never got)."""
        if nodeid == ROOT_INO:
            return
        with self._lock:
            node = self._nodes.get(nodeid)
            if node is None:
                return
            node.nlookup -= n
            if node.nlookup > 0:
                return
            del self._nodes[nodeid]
            if node.is_dir:
                ids = self._dir_nodes.get(node.ino)
                if ids is not None:
                    ids.discard(nodeid)
                    if not ids:
                        del self._dir_nodes[node.ino]
            for key in node.names:
                if self._at.get(key) == nodeid:
                    del self._at[key]

    def removed(self, parent: int, name: str) -> None:
        """``name`` in ``parent`` was unlinked or removed: the node keeps its other names."""
        with self._lock:
            nodeid = self._at.pop((parent, name), None)
            if nodeid is not None and nodeid in self._nodes:
                self._nodes[nodeid].names.pop((parent, name), None)

    def moved(self, parent: int, name: str, newparent: int, newname: str, exchange: bool = False) -> None:
        """A rename made through this mount: the node at ``name`` now answers to ``newname``;
        with ``exchange`` the two swapped (RENAME_EXCHANGE), else whatever ``newname`` named
        lost it."""
        with self._lock:
            src = self._at.pop((parent, name), None)
            dst = self._at.pop((newparent, newname), None)
            for nodeid, key in ((src, (parent, name)), (dst, (newparent, newname))):
                if nodeid is not None and nodeid in self._nodes:
                    self._nodes[nodeid].names.pop(key, None)
            if src is not None and src in self._nodes:
                self._name(src, self._nodes[src], (newparent, newname))
            if exchange and dst is not None and dst in self._nodes:
                self._name(dst, self._nodes[dst], (parent, name))
