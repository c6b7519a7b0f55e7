"""The inodes the kernel holds, and the names it knows them by.

With libfuse's low-level API the kernel names a file by inode number (dynlog's own) and asks
about a child by (parent inode, name). FileSystem works on paths, so this table turns an inode
into the path it was last reached by. It also keeps the kernel's lookup count of each inode:
one for every entry we hand out (lookup, create, mkdir, link...), given back by FORGET. An inode
the kernel forgot is dropped here, so the table never holds more than the kernel's own cache.

A directory has one name, the last it was reached by. A file may have several (hard links):
the last one used names it. Another mount may rename or remove a name without the kernel
knowing; a path built from such a name no longer leads to the inode, and callers treat that as
a stale handle (ESTALE), on which the kernel walks the path again.
"""

from __future__ import annotations

import threading

from ..schema import ROOT_INO

Key = tuple[int, str]  # (parent inode, name)

MAX_DEPTH = 4096  # more components than any path can have: a cycle of stale names


class KernelInodes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nlookup: dict[int, int] = {}
        self._names: dict[int, dict[Key, None]] = {}  # ino -> its names, the latest last
        self._at: dict[Key, int] = {}  # (parent, name) -> ino
        self._dirs: set[int] = set()

    def __len__(self) -> int:
        return len(self._nlookup)

    def knows(self, ino: int) -> bool:
        return ino == ROOT_INO or ino in self._nlookup

    def child(self, parent: int, name: str) -> int | None:
        """The inode the kernel knows as ``name`` in ``parent``, if any."""
        return self._at.get((parent, name))

    def path(self, ino: int) -> str | None:
        """The path ``ino`` was last reached by, or None if it has no name left here."""
        parts: list[str] = []
        with self._lock:
            while ino != ROOT_INO:
                names = self._names.get(ino)
                if not names or len(parts) > MAX_DEPTH:
                    return None
                ino, name = next(reversed(names))
                parts.append(name)
        return "/" + "/".join(reversed(parts))

    def learned(self, ino: int, parent: int, name: str, is_dir: bool) -> None:
        """An entry for ``ino`` as ``name`` in ``parent`` is being handed to the kernel: one
        more lookup. Called before the reply goes out: the kernel may forget it at once."""
        with self._lock:
            self._nlookup[ino] = self._nlookup.get(ino, 0) + 1
            self._name(ino, (parent, name), is_dir)

    def _name(self, ino: int, key: Key, is_dir: bool) -> None:
        old = self._at.get(key)
        if old is not None and old != ino:
            self._names.get(old, {}).pop(key, None)
        names = self._names.setdefault(ino, {})
        if is_dir:
            self._dirs.add(ino)
            for k in names:
                if self._at.get(k) == ino:
                    del self._at[k]
            names.clear()
        names.pop(key, None)
        names[key] = None
        self._at[key] = ino

    def forget(self, ino: int, n: int) -> None:
        """The kernel dropped ``n`` of its lookups of ``ino`` (FORGET, or an entry reply it never
        got)."""
        if ino == ROOT_INO:
            return
        with self._lock:
            left = self._nlookup.get(ino, 0) - n
            if left > 0:
                self._nlookup[ino] = left
                return
            self._nlookup.pop(ino, None)
            self._dirs.discard(ino)
            for key in self._names.pop(ino, {}):
                if self._at.get(key) == ino:
                    del self._at[key]

    def removed(self, parent: int, name: str) -> None:
        """``name`` in ``parent`` was unlinked or removed: the inode keeps its other names."""
        with self._lock:
            ino = self._at.pop((parent, name), None)
            if ino is not None:
                self._names.get(ino, {}).pop((parent, name), None)

    def moved(self, parent: int, name: str, newparent: int, newname: str, exchange: bool = False) -> None:
        """A rename: the inode at ``name`` now answers to ``newname``; with ``exchange`` the two
        swapped (RENAME_EXCHANGE), else whatever ``newname`` named lost it."""
        with self._lock:
            src = self._at.pop((parent, name), None)
            dst = self._at.pop((newparent, newname), None)
            for ino, key in ((src, (parent, name)), (dst, (newparent, newname))):
                if ino is not None:
                    self._names.get(ino, {}).pop(key, None)
            if src is not None:
                self._name(src, (newparent, newname), src in self._dirs)
            if exchange and dst is not None:
                self._name(dst, (parent, name), dst in self._dirs)
