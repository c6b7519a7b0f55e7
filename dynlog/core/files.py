"""Open files: a write-back buffer per inode, committed as one event at close, fsync or a lock.

All descriptors of one inode on this mount share one OpenFile, so they see each other's writes
at once. What a writer does to the file before it closes it (the bytes, and the times, owner
and mode that tar, cp -a and rsync set through the descriptor) is held here and committed as
ONE SetAttr event: a small file written by tar costs its create and this one put.

Contents travel one of two ways:
- **inline**: a file of at most ``INLINE_MAX`` bytes (with no block mapped) is committed with
  its whole contents inside the event: no block item at all;
- **blocks**: larger files are written as immutable block versions, uploaded in the background
  while the writer goes on (bounded in flight), and mapped by the commit. Until the event
  commits no reader anywhere sees the new bytes, so a writer killed mid-way leaves the old
  contents whole.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from .. import schema
from ..data.blocks import READ_BATCH, WRITE_BATCH, BlockKey, BlockStore
from ..data.siblings import SiblingReadahead
from ..errors import FsError
from ..journal.inode import INLINE_MAX, Inode, Run, evolve, map_lookup, with_contents

DIRTY_LIMIT = 64 * 1024 * 1024  # uncommitted bytes that force a commit (bounds what a crash loses)
UPLOAD_INFLIGHT = 32 * 1024 * 1024  # bytes of background uploads in flight before a writer waits
READAHEAD_MIN = 8  # blocks fetched ahead once a reader is sequential ...
READAHEAD_MAX = 128  # ... doubling per sequential read up to this (16 MiB at 128 KiB blocks: 8 BatchGetItems in flight)


@dataclass
class OpenFile:
    ino: int
    inode: Inode  # last committed (or locally known) inode
    parent: int | None  # where it is named, for commits (None once unlinked everywhere we know)
    name: str
    size: int
    refs: int = 0
    writers: int = 0  # handles open for writing: while any is, attribute changes wait for the commit
    dirty: dict[int, bytearray] = field(default_factory=dict)
    mtime: int | None = None  # set by writes not yet committed
    attrs: dict[str, int] = field(default_factory=dict)  # chmod/chown/utimens waiting for the commit
    staged: dict[int, str] = field(default_factory=dict)  # block -> version uploaded, not yet committed
    uploads: list[tuple["Future[None]", str, dict[int, bytes]]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    unlinked: bool = False
    accessed: bool = False  # read since the last atime update (relatime: committed at close)
    sequential_until: int = 0  # readahead: the next block a sequential reader will want
    readahead: int = 0  # current readahead window in blocks (0: not sequential)
    prefetched_until: int = 0  # readahead has been asked for every block below this

    @property
    def pending(self) -> bool:
        return bool(self.dirty or self.staged or self.uploads or self.attrs) or self.mtime is not None

    def dirty_bytes(self, block_size: int = 0) -> int:
        """Bytes written here and not committed yet: buffered, uploading and uploaded."""
        n = sum(len(b) for b in self.dirty.values())
        return n + block_size * (len(self.staged) + sum(len(b) for _, _, b in self.uploads))

    def commit_attrs(self) -> dict[str, int]:
        """What the file's next commit sets besides its contents: the size, the last write's
        time, and the chmod/chown/utimens made while it was open (ctime: the latest change)."""
        attrs = {"size": self.size}
        if self.mtime is not None:
            attrs["mtime"] = attrs["ctime"] = self.mtime
        if self.attrs:
            attrs.update(self.attrs)
            attrs["ctime"] = max(self.attrs.get("ctime", 0), self.mtime or 0)
        return attrs

    def shown(self, inode: Inode) -> Inode:
        """``inode`` (as committed) with what this mount has not committed yet: stat shows it."""
        if not self.pending and self.size == inode.size:
            return inode
        changes: dict[str, object] = {"size": self.size}
        ctime = inode.ctime
        if self.mtime is not None:
            changes["mtime"] = changes["ctime"] = ctime = self.mtime
        if self.attrs:
            changes.update(self.attrs)
            changes["ctime"] = max(self.attrs.get("ctime", 0), ctime)
        return evolve(inode, **changes)  # one copy: stat asks this several times per small file


_wid_counter = itertools.count(1)


def new_write_id(session: str) -> str:
    """Unique per upload round across all clients: session id, a local counter and the time."""
    return f"{session}{next(_wid_counter):x}{time.time_ns() % 10**6:05x}"


def runs_of(versions: dict[int, str]) -> tuple[Run, ...]:
    """Block runs ``(start, count, wid)`` for a map of block index -> version."""
    runs: list[Run] = []
    for i in sorted(versions):
        w = versions[i]
        if runs and runs[-1][0] + runs[-1][1] == i and runs[-1][2] == w:
            s, c, _ = runs[-1]
            runs[-1] = (s, c + 1, w)
        else:
            runs.append((i, 1, w))
    return tuple(runs)


def first_block(inode: Inode) -> BlockKey | None:
    """The key of a plain regular file's first block, or None: inline contents, a hole, no
    blocks, or a hard-linked file (its name here is a reference; its inode is in its own journal)."""
    if not inode.is_reg or inode.linked or inode.data is not None or not inode.blocks:
        return None
    wid = map_lookup(inode.blocks, 0)
    return None if wid is None else (schema.block_id(inode.ino, wid), 0)


class FileData:
    """Reads and writes of file contents for one mount."""

    def __init__(self, blocks: BlockStore, session: str) -> None:
        self.blocks = blocks
        self.siblings = SiblingReadahead(blocks)  # the next files' first blocks, for readers going through a directory
        self.block_size = blocks.block_size
        self.session = session

    # -- where a block's bytes are -----------------------------------------------------------------
    def _source(self, f: OpenFile, i: int) -> tuple[str, int] | bytes | None:
        """Block ``i`` as this mount knows it: its bytes (inline, or being uploaded), its key in
        the blocks table, or None for a hole."""
        for _, _, blocks in f.uploads:
            if i in blocks:
                return blocks[i]
        wid = f.staged.get(i)
        if wid is None and f.inode.data is not None:
            return f.inode.data[i * self.block_size : (i + 1) * self.block_size]
        if wid is None:
            wid = map_lookup(f.inode.blocks, i)
        return (schema.block_id(f.ino, wid), i) if wid is not None else None

    # -- reading ----------------------------------------------------------------------------------
    def read(self, f: OpenFile, offset: int, size: int) -> bytes:
        with f.lock:
            end = min(offset + size, f.size)
            if offset >= end:
                return b""
            bs = self.block_size
            first, last = offset // bs, (end - 1) // bs
            sources = {i: self._source(f, i) for i in range(first, last + 1) if i not in f.dirty}
            keys = {i: s for i, s in sources.items() if isinstance(s, tuple)}
            sequential = first in (f.sequential_until, f.sequential_until - 1)
            f.readahead = min(READAHEAD_MAX, max(READAHEAD_MIN, 2 * f.readahead)) if sequential else 0
            ahead = []
            window_end = min(last + 1 + f.readahead, -(-f.size // bs))
            start = max(last + 1, f.prefetched_until)
            # ask for readahead in batches (one BatchGetItem of READ_BATCH keys), not a block per read
            if f.readahead and (window_end - start >= READ_BATCH or (window_end > start and window_end * bs >= f.size)):
                for i in range(start, window_end):
                    s = self._source(f, i) if i not in f.dirty else None
                    if isinstance(s, tuple):
                        ahead.append(s)
                f.prefetched_until = window_end
            fetched = self.blocks.read(keys.values()) if keys else {}
            if ahead:
                self.blocks.prefetch(ahead)
            out = bytearray()
            for i in range(first, last + 1):
                if i in f.dirty:
                    block = bytes(f.dirty[i])
                else:
                    s = sources[i]
                    block = fetched.get(s, b"") if isinstance(s, tuple) else (s or b"")
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
        data = b""
        if i * self.block_size < f.size:
            s = self._source(f, i)
            if isinstance(s, tuple):
                data = self.blocks.read([s]).get(s, b"")
            elif s is not None:
                data = s
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
            f.attrs.pop("mtime", None)  # a write after utimens: the write's time wins, as on ext4
            self._upload_full(f, (offset + len(data)) // bs)
            return len(data)

    def _upload_full(self, f: OpenFile, before: int) -> None:
        """Start uploading the full dirty blocks a sequential writer has moved past, a batch at a
        time, so a large file streams out while it is written instead of at close."""
        bs = self.block_size
        full = [i for i, b in f.dirty.items() if i < before and len(b) == bs]
        if len(full) < WRITE_BATCH:
            return
        self._wait_uploads(f, UPLOAD_INFLIGHT - len(full) * bs)
        # A fresh version (so a fresh partition key, blockId "<ino>.<wid>") per batch: DynamoDB
        # serves about 1,000 write units a second per partition, so one key for a whole large
        # file would cap its upload near 1 MB/s in a region (docs/SCALING.md).
        wid = new_write_id(self.session)
        blocks = {i: bytes(f.dirty.pop(i)) for i in sorted(full)}
        f.uploads.append((self.blocks.write_async(f.ino, wid, blocks), wid, blocks))

    def _wait_uploads(self, f: OpenFile, keep_bytes: int = 0) -> None:
        """Wait for background uploads until at most ``keep_bytes`` remain in flight; raise the
        first failure (the file's commit then fails, and nothing half-written becomes visible)."""
        bs = self.block_size
        while f.uploads and len(f.uploads) * WRITE_BATCH * bs > keep_bytes:
            fut, wid, blocks = f.uploads.pop(0)
            try:
                fut.result()
            except BaseException:
                for i, b in blocks.items():  # keep the bytes: a later commit retries them
                    f.dirty.setdefault(i, bytearray(b))
                raise
            for i in blocks:
                if i not in f.dirty:
                    f.staged[i] = wid

    def truncate_local(self, f: OpenFile, size: int) -> None:
        """Apply a truncate to the buffer: drop what lies past the end, cut the last block."""
        with f.lock:
            self._wait_uploads(f)
            bs = self.block_size
            if f.inode.data is not None:  # inline: its bytes become block 0's; contents() decides again
                if f.inode.data and 0 not in f.dirty:
                    f.dirty[0] = bytearray(f.inode.data)
                f.inode = evolve(f.inode, data=None)
            for i in [i for i in f.dirty if i * bs >= size]:
                del f.dirty[i]
            for i in [i for i in f.staged if i * bs >= size]:
                del f.staged[i]
            last = (size - 1) // bs if size else -1
            if size % bs and size < f.size and last not in f.dirty and self._source(f, last) is not None:
                self._block_for_write(f, last)  # rewrite the partial block so its tail reads as zeros
            if size % bs and last in f.dirty:
                del f.dirty[last][size - last * bs :]
            f.size = size
            f.inode = with_contents(f.inode, size, None, None, bs)

    # -- committing ---------------------------------------------------------------------------------
    def contents(self, f: OpenFile) -> tuple[tuple[Run, ...], bytes | None]:
        """Make the file's new contents durable for its commit: (block runs to map, or inline
        bytes). Waits for background uploads and writes what is still buffered."""
        self._wait_uploads(f)
        bs = self.block_size
        if f.size <= INLINE_MAX and not f.staged and not f.inode.blocks:
            if f.dirty or f.inode.data is not None or f.size:
                first = f.dirty.get(0)
                base = bytes(first) if first is not None else (f.inode.data or b"")
                return (), base[: f.size].ljust(f.size, b"\0")
            return (), None
        if f.inode.data is not None and f.size and 0 not in f.dirty and 0 not in f.staged:
            f.dirty[0] = bytearray(f.inode.data)  # leaving inline: its bytes move into block 0
        if f.dirty:
            wid = new_write_id(self.session)
            blocks = {i: bytes(b) for i, b in f.dirty.items()}
            self.blocks.write(f.ino, wid, blocks)
            f.dirty.clear()
            for i in blocks:
                f.staged[i] = wid
        return runs_of({i: w for i, w in f.staged.items() if i * bs < max(f.size, 1)}), None

    def after_commit(self, f: OpenFile, committed: Inode) -> None:
        f.dirty.clear()
        f.staged.clear()
        f.mtime = None
        f.attrs.clear()
        f.inode = committed
        f.size = committed.size

    def local_commit(self, f: OpenFile) -> None:
        """For an inode with no name left: keep its new contents in memory only."""
        runs, data = self.contents(f)
        attrs = f.commit_attrs()
        inode = with_contents(f.inode, attrs.pop("size"), runs or None, data, self.block_size)
        self.after_commit(f, evolve(inode, **attrs))


def check_size(size: int) -> None:
    if size < 0:
        raise FsError(errno.EINVAL, "negative size")
    if size > 2**63 - 1:
        raise FsError(errno.EFBIG, "file too large")


def getpid() -> int:
    return os.getpid()
