"""The event catalogue: typed, versioned, frozen. A journal record carries a list of these.

Names are kept as Python strings in which bytes that are not UTF-8 appear as lone
surrogates (os.fsdecode's surrogateescape); the codec writes JSON with ensure_ascii, so
they are stored as ``\\udcXX`` escapes: pure ASCII, valid in a DynamoDB string, and exactly
reversible. ``name == ""`` addresses the journal's own subject: the directory itself in
``d/<ino>``, the inode itself in ``i/<ino>``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .inode import Inode, Run, b64, unb64

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type["Event"]]] = {}
    # Fields added after format 1 shipped: left out of the JSON while None, so records written
    # before them re-encode byte for byte and their hash chains still verify.
    optional: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        Event.registry[cls.kind] = cls

    def to_json(self, inline_ref: bool = False) -> dict[str, Any]:
        """``inline_ref``: the record stores ``data`` apart (as raw bytes) and puts a reference
        here in its place: skip encoding it."""
        d: dict[str, Any] = {"k": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.name in self.optional:
                continue
            if inline_ref and f.name == "data":
                continue
            if isinstance(v, Inode):
                v = v.to_json()
            elif isinstance(v, bytes) and f.name in self.optional:
                v = {"b64": b64(v)}
            elif isinstance(v, bytes):
                v = {"hex": v.hex()}
            elif isinstance(v, tuple):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            d[f.name] = v
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> "Event":
        cls = Event.registry[d["k"]]
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name)
            if f.type in ("Inode", "Inode | None") and isinstance(v, dict):
                v = Inode.from_json(v)
            elif isinstance(v, dict) and "hex" in v:
                v = bytes.fromhex(v["hex"])
            elif isinstance(v, dict) and "b64" in v:
                v = unb64(v["b64"])
            elif f.name == "blocks" and v is not None:
                v = tuple((r[0], r[1], r[2]) for r in v)
            kw[f.name] = v
        return cls(**kw)


@dataclass(frozen=True)
class Create(Event):
    """A new entry, its inode embedded (file, directory, symlink, fifo, socket, device)."""

    kind: ClassVar[str] = "create"
    name: str
    inode: Inode


@dataclass(frozen=True)
class Remove(Event):
    """An entry removed (unlink, rmdir)."""

    kind: ClassVar[str] = "remove"
    name: str
    ino: int


@dataclass(frozen=True)
class Rename(Event):
    """Within one directory: ``name`` becomes ``new``, replacing whatever ``new`` was."""

    kind: ClassVar[str] = "rename"
    name: str
    new: str
    ino: int


@dataclass(frozen=True)
class MoveOut(Event):
    """Source half of a rename across directories (committed with its MoveIn in one transaction)."""

    kind: ClassVar[str] = "move_out"
    name: str
    ino: int
    to_dir: int
    to_name: str


@dataclass(frozen=True)
class MoveIn(Event):
    """Destination half of a rename across directories: the entry arrives, replacing ``name``."""

    kind: ClassVar[str] = "move_in"
    name: str
    inode: Inode
    from_dir: int
    from_name: str


@dataclass(frozen=True)
class SetAttr(Event):
    """Attribute changes: absolute values for mode, uid, gid, size, atime, mtime, ctime, nlink;
    ``blocks``: runs written over the block map (a smaller size also cuts the map); ``data``: the
    whole contents of a small file, inline (no block items). A file's close commits its size,
    contents, times, owner and mode as one SetAttr: one event per logical change."""

    kind: ClassVar[str] = "setattr"
    optional: ClassVar[tuple[str, ...]] = ("data",)
    name: str
    attrs: dict[str, int]
    blocks: tuple[Run, ...] | None = None
    block_size: int = 0
    data: bytes | None = None


@dataclass(frozen=True)
class SetXattr(Event):
    """An extended attribute set (value) or removed (value None)."""

    kind: ClassVar[str] = "setxattr"
    name: str
    key: str
    value: bytes | None
    ctime: int = 0


@dataclass(frozen=True)
class Detach(Event):
    """The entry's inode moved to its own journal ``i/<ino>`` (it gets a second name);
    the entry stays as a reference."""

    kind: ClassVar[str] = "detach"
    name: str
    ino: int


@dataclass(frozen=True)
class Link(Event):
    """A new name for an inode that lives in ``i/<ino>`` (a hard link)."""

    kind: ClassVar[str] = "link"
    name: str
    ino: int
    mode: int


@dataclass(frozen=True)
class InodeInit(Event):
    """First event of an ``i/<ino>`` journal: the inode, with its link count."""

    kind: ClassVar[str] = "inode_init"
    inode: Inode


@dataclass(frozen=True)
class Orphaned(Event):
    """An inode lost its last name while a session still had it open: its blocks must be kept
    until that session closes it or dies (compact collects it then)."""

    kind: ClassVar[str] = "orphaned"
    ino: int
    session: str
    blocks: tuple[Run, ...] = ()


@dataclass(frozen=True)
class Stamp(Event):
    """In a write-behind batch (docs/ARCHITECTURE.md, "Write-behind directories"): the events
    after it, up to the next stamp, are one operation ``op`` made at ``ts`` by ``uid`` (the
    record's own ts/uid/op are its first operation's). Folds use the stamp's ts, so a batch
    folds exactly as the synchronous commits it replaces would have; replay and ``--at`` see
    each operation with its own time."""

    kind: ClassVar[str] = "stamp"
    ts: int
    uid: int
    op: str


@dataclass(frozen=True)
class Lease(Event):
    """Session ``session`` holds the directory's write-behind lease until ``until`` (ns, its
    clock): no other mount appends to this journal before a Release or that time."""

    kind: ClassVar[str] = "lease"
    session: str
    until: int


@dataclass(frozen=True)
class Release(Event):
    """The write-behind lease of ``session`` ends: everything it acknowledged is committed."""

    kind: ClassVar[str] = "release"
    session: str


NAMESPACE_EVENTS = (Create, Remove, Rename, MoveOut, MoveIn, Link)
