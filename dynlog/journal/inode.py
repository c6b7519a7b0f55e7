"""The inode: a file's attributes as they live embedded in its directory's journal.

Frozen: a view never mutates an inode in place, it replaces it, so a reader holding one
sees a consistent set of attributes without taking the directory's lock.
"""

from __future__ import annotations

import base64
import stat
from dataclasses import dataclass, fields
from typing import Any

# A run of the block map: blocks [start, start+count) live under block version ``wid``.
Run = tuple[int, int, str]

# Files of at most this many bytes keep their contents inline, in the journal record itself,
# with no block item at all (docs/ARCHITECTURE.md, "Inline data"). DynamoDB bills a write unit
# per started KB of an item: the record stores the bytes raw in a binary attribute, so inline
# never costs more write units than a block item of its own plus the record (it saves one unit
# and a round trip). The cap is set by the read side: a cold listing reads the directory's
# journal, inline bytes included, at a read unit per 4 KB, and views keep the bytes in memory.
# 8 KiB covers most source files and keeps a listing of N small files within about 2N units.
INLINE_MAX = 8192


@dataclass(frozen=True)
class Inode:
    ino: int
    mode: int  # full st_mode, type bits included
    uid: int = 0
    gid: int = 0
    size: int = 0
    atime: int = 0  # nanoseconds since the epoch
    mtime: int = 0
    ctime: int = 0
    nlink: int = 1  # files only; a directory's is derived from its view
    rdev: int = 0
    target: str = ""  # symlink target (surrogate-escaped like every name)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    blocks: tuple[Run, ...] = ()  # block map, sorted by start, non-overlapping
    linked: bool = False  # True: this entry is a reference; the inode lives in journal i/<ino>
    data: bytes | None = None  # inline contents (len == size, at most INLINE_MAX); None: in blocks

    @property
    def inline(self) -> bool:
        return self.data is not None

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def xattr(self, key: str) -> bytes | None:
        for k, v in self.xattrs:
            if k == key:
                return v
        return None

    def with_xattr(self, key: str, value: bytes | None) -> "Inode":
        rest = tuple((k, v) for k, v in self.xattrs if k != key)
        return evolve(self, xattrs=rest if value is None else tuple(sorted(rest + ((key, value),))))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"i": self.ino, "m": self.mode}
        for name, short in (("uid", "u"), ("gid", "g"), ("size", "s"), ("atime", "a"), ("mtime", "mt"),
                            ("ctime", "c"), ("rdev", "r")):
            v = getattr(self, name)
            if v:
                d[short] = v
        if self.nlink != 1:
            d["n"] = self.nlink
        if self.target:
            d["t"] = self.target
        if self.xattrs:
            d["x"] = {k: v.hex() for k, v in self.xattrs}
        if self.blocks:
            d["b"] = [list(r) for r in self.blocks]
        if self.linked:
            d["l"] = 1
        if self.data is not None:
            d["d"] = b64(self.data)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Inode":
        return cls(
            ino=d["i"], mode=d["m"], uid=d.get("u", 0), gid=d.get("g", 0), size=d.get("s", 0),
            atime=d.get("a", 0), mtime=d.get("mt", 0), ctime=d.get("c", 0), nlink=d.get("n", 1),
            rdev=d.get("r", 0), target=d.get("t", ""),
            xattrs=tuple(sorted((k, bytes.fromhex(v)) for k, v in d.get("x", {}).items())),
            blocks=tuple((r[0], r[1], r[2]) for r in d.get("b", ())), linked=bool(d.get("l", 0)),
            data=unb64(d["d"]) if "d" in d else None,
        )


_FIELDS = frozenset(f.name for f in fields(Inode))


def evolve(inode: Inode, **changes: Any) -> Inode:
    """``dataclasses.replace(inode, **changes)``, about five times faster. Why: stat, the fold of
    every event and the attributes of an open file each make new inodes, several per FUSE
    callback, and ``replace`` (which goes through the generated ``__init__`` and its frozen
    ``__setattr__`` guards field by field) was a tenth of the daemon's CPU per small file. Inode has
    no ``__post_init__``, so copying the fields is all ``__init__`` would do."""
    if not _FIELDS.issuperset(changes):
        raise TypeError(f"Inode has no field(s) {sorted(set(changes) - _FIELDS)}")
    out = object.__new__(Inode)
    d = out.__dict__
    d.update(inode.__dict__)
    d.update(changes)
    return out


def b64(data: bytes) -> str:
    """Inline bytes as JSON carries them: base64 (a third larger; hex would double them)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def with_contents(inode: Inode, size: int, blocks: tuple[Run, ...] | None, data: bytes | None,
                  block_size: int) -> Inode:
    """The inode after a change of its contents: ``data`` makes (or keeps) it inline; ``blocks``
    runs move it to blocks (the writer put its inline bytes into those blocks); a size change
    alone cuts the block map, or cuts or zero-extends the inline bytes."""
    if data is not None:
        return evolve(inode, size=size, data=bytes(data[:size]).ljust(size, b"\0"), blocks=())
    runs = inode.blocks
    if size < inode.size and block_size:
        runs = map_truncate(runs, -(-size // block_size))
    if blocks:
        return evolve(inode, size=size, blocks=map_overlay(runs, blocks), data=None)
    if inode.data is not None:
        if size <= INLINE_MAX:
            return evolve(inode, size=size, data=inode.data[:size].ljust(size, b"\0"))
        # grown past the inline limit with no blocks given (not written by dynlog, which moves
        # the bytes to blocks first): the bytes past the old end read as a hole, as in blocks
        return evolve(inode, size=size, data=None, blocks=runs)
    return evolve(inode, size=size, blocks=runs)


def reference(inode: Inode) -> Inode:
    """The entry a name keeps once its inode has moved to its own journal (a hard link)."""
    return Inode(ino=inode.ino, mode=stat.S_IFMT(inode.mode), linked=True)


# -- block maps ------------------------------------------------------------------------

def map_overlay(runs: tuple[Run, ...], new: tuple[Run, ...]) -> tuple[Run, ...]:
    """The block map after writing ``new`` runs over ``runs`` (later runs win)."""
    out = list(runs)
    for start, count, wid in new:
        end = start + count
        cut: list[Run] = []
        for s, c, w in out:
            e = s + c
            if e <= start or s >= end:
                cut.append((s, c, w))
                continue
            if s < start:
                cut.append((s, start - s, w))
            if e > end:
                cut.append((end, e - end, w))
        cut.append((start, count, wid))
        out = sorted(cut)
    return _merge(tuple(out))


def map_truncate(runs: tuple[Run, ...], nblocks: int) -> tuple[Run, ...]:
    """Drop every block at index ``nblocks`` and beyond."""
    out = []
    for s, c, w in runs:
        if s >= nblocks:
            continue
        out.append((s, min(c, nblocks - s), w))
    return tuple(out)


def map_lookup(runs: tuple[Run, ...], index: int) -> str | None:
    """The block version holding block ``index``, or None for a hole."""
    lo, hi = 0, len(runs)
    while lo < hi:
        mid = (lo + hi) // 2
        s, c, w = runs[mid]
        if index < s:
            hi = mid
        elif index >= s + c:
            lo = mid + 1
        else:
            return w
    return None


def _merge(runs: tuple[Run, ...]) -> tuple[Run, ...]:
    out: list[Run] = []
    for s, c, w in runs:
        if out and out[-1][2] == w and out[-1][0] + out[-1][1] == s:
            ps, pc, pw = out[-1]
            out[-1] = (ps, pc + c, pw)
        else:
            out.append((s, c, w))
    return tuple(out)
