"""The superblock (``fs``/``super``): format version, block size, the root's creation inode.

mkfs is idempotent: the superblock is written with attribute_not_exists, so two clients
racing to format the same tables agree on one superblock.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from .. import schema
from ..errors import JournalConflict, StoreError
from ..journal.inode import Inode
from ..store.base import ABSENT, Put, Store

# Format 2: file contents may be stored compressed (``compression``). A file system made
# without compression stays format 1, so a dynlog from before compression still mounts it.
FORMAT = 2
FORMAT_UNCOMPRESSED = 1
COMPRESSIONS = ("zlib", "none")
DEFAULT_COMPRESSION = "zlib"
DEFAULT_BLOCK_SIZE = 128 * 1024
MAX_BLOCK_SIZE = 384 * 1024  # a block item must fit the 400 KB item limit with its key
MIN_BLOCK_SIZE = 4096


@dataclass(frozen=True)
class Superblock:
    format: int
    block_size: int
    root: Inode
    created: int
    compression: str = "none"  # how this file system's writers store file contents (dynlog/compress.py)

    @property
    def compresses(self) -> bool:
        return self.compression != "none"

    def to_item(self) -> dict:
        import json

        item = {"path": schema.FS_PARTITION, "name": schema.SUPER, "format": self.format,
                "block_size": self.block_size, "root": json.dumps(self.root.to_json()), "created": self.created}
        if self.compresses:
            item["compression"] = self.compression
        return item

    @classmethod
    def from_item(cls, item: dict) -> "Superblock":
        import json

        return cls(int(item["format"]), int(item["block_size"]), Inode.from_json(json.loads(item["root"])),
                   int(item["created"]), item.get("compression", "none"))


def mkfs(store: Store, block_size: int = DEFAULT_BLOCK_SIZE, uid: int | None = None, gid: int | None = None,
         compression: str = DEFAULT_COMPRESSION) -> tuple[Superblock, bool]:
    """Create the tables and the superblock if missing. Returns (superblock, created)."""
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE or block_size % 4096:
        raise StoreError(f"block size {block_size}: must be a multiple of 4096 from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}")
    if compression not in COMPRESSIONS:
        raise StoreError(f"compression {compression!r}: must be one of {', '.join(COMPRESSIONS)}")
    store.create_tables()
    now = time.time_ns()
    root = Inode(ino=schema.ROOT_INO, mode=stat.S_IFDIR | 0o755, uid=os.getuid() if uid is None else uid,
                 gid=os.getgid() if gid is None else gid, atime=now, mtime=now, ctime=now)
    sb = Superblock(FORMAT if compression != "none" else FORMAT_UNCOMPRESSED, block_size, root, now, compression)
    try:
        store.put(Put("meta", sb.to_item(), ABSENT))
        store.put(Put("meta", {"path": schema.FS_PARTITION, "name": schema.INO_COUNTER, "n": schema.ROOT_INO}, ABSENT))
        return sb, True
    except JournalConflict:
        return load_superblock(store), False


def load_superblock(store: Store) -> Superblock:
    item = store.get("meta", (schema.FS_PARTITION, schema.SUPER))
    if item is None:
        raise StoreError(f"{store.source}: tables exist but hold no dynlog file system (run: dynlog mkfs {store.source})")
    sb = Superblock.from_item(item)
    if sb.format > FORMAT:
        raise StoreError(f"{store.source}: format {sb.format} is newer than this dynlog ({FORMAT})")
    if sb.compression not in COMPRESSIONS:
        raise StoreError(f"{store.source}: compression {sb.compression!r} is unknown to this dynlog")
    return sb
