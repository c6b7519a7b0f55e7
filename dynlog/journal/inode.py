"""The inode: a file's attributes as they live embedded in its directory's journal.

Frozen: a view never mutates an inode in place, it replaces it, so a reader holding one
sees a consistent set of attributes without taking the directory's lock.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field, replace
from typing import Any

# A run of the block map: blocks [start, start+count) live under block version ``wid``.
Run = tuple[int, int, str]


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
        return replace(self, xattrs=rest if value is None else tuple(sorted(rest + ((key, value),))))

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
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Inode":
        return cls(
            ino=d["i"], mode=d["m"], uid=d.get("u", 0), gid=d.get("g", 0), size=d.get("s", 0),
            atime=d.get("a", 0), mtime=d.get("mt", 0), ctime=d.get("c", 0), nlink=d.get("n", 1),
            rdev=d.get("r", 0), target=d.get("t", ""),
            xattrs=tuple(sorted((k, bytes.fromhex(v)) for k, v in d.get("x", {}).items())),
            blocks=tuple((r[0], r[1], r[2]) for r in d.get("b", ())), linked=bool(d.get("l", 0)),
        )


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
