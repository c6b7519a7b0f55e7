"""File data in the blocks table: immutable block versions, a shared clean-block cache,
parallel batch writes and batched reads with readahead.

A block item is (blockId = "<ino>.<wid>", blockNum = index) with the bytes in ``data``,
zlib-compressed when the item has ``z`` (dynlog/compress.py). A
flush writes all its blocks under one fresh write id ``wid``; they become part of the file only
when the metadata event that maps them commits. A block never changes once written, so a
cached block is never stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable

from .. import schema
from ..compress import pack, unpack
from ..store.base import Store

BlockKey = tuple[str, int]


class BlockCache:
    """LRU of clean blocks by key, bounded in bytes."""

    def __init__(self, budget_bytes: int = 128 * 1024 * 1024) -> None:
        self.budget = budget_bytes
        self._items: OrderedDict[BlockKey, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: BlockKey) -> bytes | None:
        with self._lock:
            v = self._items.get(key)
            if v is not None:
                self._items.move_to_end(key)
            return v

    def put(self, key: BlockKey, data: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.budget and self._items:
                _, v = self._items.popitem(last=False)
                self._bytes -= len(v)


WRITE_BATCH = 25  # BatchWriteItem's limit: 25 items (25 x 128 KiB blocks = 3.2 MB, under its 16 MB)
READ_BATCH = 16  # blocks per BatchGetItem: 2 MiB at 128 KiB, so one large read fans out over the pool
WORKERS = 16  # concurrent block requests per mount: at 8 ms a round trip, 16 in flight hide the latency


class BlockStore:
    """Block I/O for one mount. Uploads and fetches run on a pool of ``workers`` threads, so a
    large file moves as many requests in flight; a fetch already on its way (readahead) is
    joined, never repeated."""

    def __init__(self, store: Store, block_size: int, cache: BlockCache | None = None, workers: int = WORKERS,
                 compress: bool = False) -> None:
        """``compress``: store blocks zlib-compressed where that pays (dynlog/compress.py); the
        superblock says whether this file system's writers do. Reads understand both always."""
        self.store = store
        self.block_size = block_size
        self.compress = compress
        self.cache = cache or BlockCache()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dynlog-blocks")
        self._fetching: dict[BlockKey, Future[dict[BlockKey, bytes]]] = {}
        self._fetching_lock = threading.Lock()

    def write(self, ino: int, wid: str, blocks: dict[int, bytes]) -> None:
        """Write one flush's blocks, in parallel batches of 25."""
        self.write_async(ino, wid, blocks).result()

    def write_async(self, ino: int, wid: str, blocks: dict[int, bytes]) -> "Future[None]":
        """Start writing blocks under version ``wid``; the future completes when all are stored
        (or fails with the first error). The bytes go into the cache at once: they are immutable."""
        bid = schema.block_id(ino, wid)
        ordered = [(idx, bytes(data)) for idx, data in sorted(blocks.items())]
        for idx, data in ordered:
            self.cache.put((bid, idx), data)
        parts = [self._pool.submit(self._write_batch, bid, ordered[i : i + WRITE_BATCH])
                 for i in range(0, len(ordered), WRITE_BATCH)]
        return _all_of(parts)

    def _write_batch(self, bid: str, blocks: list[tuple[int, bytes]]) -> None:
        """One BatchWriteItem, its blocks compressed here on the pool's thread (zlib lets go of
        the GIL, so the batches of one flush compress in parallel)."""
        items = []
        for idx, data in blocks:
            stored, packed = pack(data) if self.compress else (data, False)
            items.append({"blockId": bid, "blockNum": idx, "data": stored, **({"z": 1} if packed else {})})
        self.store.batch_write("blocks", items)

    def read(self, keys: Iterable[BlockKey]) -> dict[BlockKey, bytes]:
        """Fetch blocks: cache first, then fetches already in flight, then BatchGetItems of
        ``READ_BATCH`` keys in parallel. Absent keys read as holes."""
        wanted = list(keys)
        out: dict[BlockKey, bytes] = {}
        waits: list[Future[dict[BlockKey, bytes]]] = []
        missing: list[BlockKey] = []
        for k in wanted:
            v = self.cache.get(k)
            if v is not None:
                out[k] = v
                continue
            with self._fetching_lock:
                f = self._fetching.get(k)
            if f is not None:
                waits.append(f)
            else:
                missing.append(k)
        if len(missing) <= READ_BATCH:
            if missing:
                out.update(self._fetch(missing))
        else:
            waits += self._start_fetches(missing)
        for f in dict.fromkeys(waits):
            got = f.result()
            out.update((k, got[k]) for k in wanted if k in got and k not in out)
        return out

    def prefetch(self, keys: Iterable[BlockKey]) -> None:
        """Readahead: start fetching blocks not cached nor already on their way; don't wait."""
        todo = []
        for k in keys:
            if self.cache.get(k) is None:
                with self._fetching_lock:
                    if k in self._fetching:
                        continue
                todo.append(k)
        if todo:
            self._start_fetches(todo)

    def _start_fetches(self, keys: list[BlockKey]) -> list["Future[dict[BlockKey, bytes]]"]:
        futures = []
        for i in range(0, len(keys), READ_BATCH):
            chunk = keys[i : i + READ_BATCH]
            with self._fetching_lock:
                f: Future[dict[BlockKey, bytes]] = self._pool.submit(self._fetch, chunk)
                for k in chunk:
                    self._fetching.setdefault(k, f)
            futures.append(f)
        return futures

    def _fetch(self, keys: list[BlockKey]) -> dict[BlockKey, bytes]:
        """One eventually consistent BatchGetItem, at half the read units of a consistent one:
        a block never changes once written, so such a read returns it whole or not at all. A
        block it misses was written too recently to be visible everywhere yet (another mount's
        close just before this open), and is read again consistently; one still missing then
        is a hole."""
        out: dict[BlockKey, bytes] = {}
        try:
            items = self.store.batch_get("blocks", keys, consistent=False)
            if len(items) < len(set(keys)):
                got = {(it["blockId"], int(it["blockNum"])) for it in items}
                items += self.store.batch_get("blocks", [k for k in keys if k not in got])
            for it in items:
                key = (it["blockId"], int(it["blockNum"]))
                data = unpack(bytes(it.get("data", b"")), bool(it.get("z")))
                self.cache.put(key, data)
                out[key] = data
        finally:
            with self._fetching_lock:
                for k in keys:
                    self._fetching.pop(k, None)
        return out

    def delete_version(self, ino: int, wid: str, indexes: Iterable[int]) -> None:
        bid = schema.block_id(ino, wid)
        self.store.batch_write("blocks", deletes=[(bid, i) for i in indexes])

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _all_of(parts: list["Future[None]"]) -> "Future[None]":
    """One future for several: done when all are, failed with the first failure."""
    if len(parts) == 1:
        return parts[0]
    done: Future[None] = Future()
    left = [len(parts)]
    lock = threading.Lock()

    def one(f: "Future[None]") -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if f.exception() is not None and not done.done():
            try:
                done.set_exception(f.exception())  # type: ignore[arg-type]
            except Exception:  # another part failed first
                pass
        elif last and not done.done():
            done.set_result(None)

    if not parts:
        done.set_result(None)
    for f in parts:
        f.add_done_callback(one)
    return done
