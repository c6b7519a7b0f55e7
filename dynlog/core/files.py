"""Open files: a write-back buffer per inode, flushed on fsync, close or a size threshold.

All descriptors of one inode on this mount share one OpenFile, so they see each other's
writes at once. A flush writes the dirty blocks as a new block version, then commits one
SetAttr event mapping them (size, mtime, block runs): until that event commits, no reader
anywhere can see the new bytes, and a writer killed mid-flush leaves the old content whole.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from dataclasses import dataclass, field

from .. import schema
from ..data.blocks import BlockStore
from ..errors import FsError
from ..journal.inode import Inode, map_lookup, map_overlay, map_truncate

DIRTY_LIMIT = 16 * 1024 * 1024
READAHEAD_BLOCKS = 8


@dataclass
class OpenFile:
    ino: int
    inode: Inode  # last committed (or locally known) inode
    parent: int | None  # where it is named, for commits (None once unlinked everywhere we know)
    name: str
    size: int
    refs: int = 0
    dirty: dict[int, bytearray] = field(default_factory=dict)
    mtime: int | None = None  # set by writes not yet flushed
    lock: threading.RLock = field(default_factory=threading.RLock)
    unlinked: bool = False
    accessed: bool = False  # read since the last atime update (relatime: committed at close)
    sequential_until: int = 0  # readahead: the next block a sequential reader will want

    @property
    def pending(self) -> bool:
        return bool(self.dirty) or self.mtime is not None

    def dirty_bytes(self) -> int:
        return sum(len(b) for b in self.dirty.values())


_wid_counter = itertools.count(1)


def new_write_id(session: str) -> str:
    """Unique per flush across all clients: session id, a local counter and the time."""
    return f"{session}{next(_wid_counter):x}{time.time_ns() % 10**6:05x}"


class FileData:
    """Reads and writes of file contents for one mount."""

    def __init__(self, blocks: BlockStore, session: str) -> None:
        self.blocks = blocks
        self.block_size = blocks.block_size
        self.session = session

    # -- reading ----------------------------------------------------------------------------------
    def read(self, f: OpenFile, offset: int, size: int) -> bytes:
        with f.lock:
            end = min(offset + size, f.size)
            if offset >= end:
                return b""
            bs = self.block_size
            first, last = offset // bs, (end - 1) // bs
            want = [i for i in range(first, last + 1) if i not in f.dirty]
            if first == f.sequential_until or first == f.sequential_until - 1:
                extra = range(last + 1, min(last + 1 + READAHEAD_BLOCKS, -(-f.size // bs)))
                want += [i for i in extra if i not in f.dirty]
            keys = {}
            for i in want:
                wid = map_lookup(f.inode.blocks, i)
                if wid is not None:
                    keys[i] = (schema.block_id(f.ino, wid), i)
            fetched = self.blocks.read(keys.values()) if keys else {}
            out = bytearray()
            for i in range(first, last + 1):
                if i in f.dirty:
                    block = bytes(f.dirty[i])
                else:
                    block = fetched.get(keys[i], b"") if i in keys else b""
                lo = offset - i * bs if i == first else 0
                hi = end - i * bs if i == last else bs
                piece = block[lo:hi]
                out += piece + b"\0" * (hi - lo - len(piece))
            f.sequential_until = last + 1
            return bytes(out)

    def _block_for_write(self, f: OpenFile, i: int) -> bytearray:
        buf = f.dirty.get(i)
        if buf is not None:
            return buf
        wid = map_lookup(f.inode.blocks, i)
        data = b""
        if wid is not None and i * self.block_size < f.size:
            key = (schema.block_id(f.ino, wid), i)
            data = self.blocks.read([key]).get(key, b"")
            data = data[: max(0, f.size - i * self.block_size)]
        buf = bytearray(data)
        f.dirty[i] = buf
        return buf

    # -- writing ----------------------------------------------------------------------------------
    def write(self, f: OpenFile, offset: int, data: bytes) -> int:
        with f.lock:
            bs = self.block_size
            pos = 0
            while pos < len(data):
                at = offset + pos
                i, lo = divmod(at, bs)
                n = min(bs - lo, len(data) - pos)
                if lo == 0 and n == bs:
                    f.dirty[i] = bytearray(data[pos : pos + n])
                else:
                    buf = self._block_for_write(f, i)
                    if len(buf) < lo:
                        buf.extend(b"\0" * (lo - len(buf)))
                    buf[lo : lo + n] = data[pos : pos + n]
                pos += n
            f.size = max(f.size, offset + len(data))
            f.mtime = time.time_ns()
            return len(data)

    def truncate_local(self, f: OpenFile, size: int) -> None:
        """Apply a truncate to the buffer: drop dirty blocks past the end, cut the last one."""
        with f.lock:
            bs = self.block_size
            for i in [i for i in f.dirty if i * bs >= size]:
                del f.dirty[i]
            last = (size - 1) // bs if size else -1
            if size % bs and last in f.dirty:
                del f.dirty[last][size - last * bs :]
            elif size % bs and size < f.size and map_lookup(f.inode.blocks, last) is not None:
                buf = self._block_for_write(f, last)  # rewrite the partial block so its tail reads as zeros
                del buf[size - last * bs :]
            f.size = size
            f.inode = Inode(**{**f.inode.__dict__, "blocks": map_truncate(f.inode.blocks, -(-size // bs)), "size": size})

    def take_dirty(self, f: OpenFile) -> tuple[str, dict[int, bytes], tuple]:
        """Write the dirty blocks as a new version; return (wid, blocks, runs) for the commit."""
        wid = new_write_id(self.session)
        blocks = {i: bytes(b) for i, b in f.dirty.items()}
        if blocks:
            self.blocks.write(f.ino, wid, blocks)
        runs: list[tuple[int, int, str]] = []
        for i in sorted(blocks):
            if runs and runs[-1][0] + runs[-1][1] == i:
                s, c, w = runs[-1]
                runs[-1] = (s, c + 1, w)
            else:
                runs.append((i, 1, wid))
        return wid, blocks, tuple(runs)

    def after_commit(self, f: OpenFile, committed: Inode, runs: tuple) -> None:
        f.dirty.clear()
        f.mtime = None
        f.inode = committed
        f.size = committed.size

    def local_commit(self, f: OpenFile, runs: tuple) -> None:
        """For an inode with no name left: keep the new blocks mapped in memory only."""
        f.inode = Inode(**{**f.inode.__dict__, "blocks": map_overlay(f.inode.blocks, runs), "size": f.size})
        f.dirty.clear()
        f.mtime = None


def check_size(size: int) -> None:
    if size < 0:
        raise FsError(errno.EINVAL, "negative size")
    if size > 2**63 - 1:
        raise FsError(errno.EFBIG, "file too large")


def getpid() -> int:
    return os.getpid()
