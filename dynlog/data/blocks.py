"""File data in the blocks table: immutable block versions, a shared clean-block cache,
parallel batch writes and batched reads with readahead.

A block item is (blockId = "<ino>.<wid>", blockNum = index) with the bytes in ``data``. A
flush writes all its blocks under one fresh write id ``wid``; they become part of the file only
when the metadata event that maps them commits. A block never changes once written, so a
cached block is never stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from .. import schema
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


class BlockStore:
    def __init__(self, store: Store, block_size: int, cache: BlockCache | None = None, workers: int = 8) -> None:
        self.store = store
        self.block_size = block_size
        self.cache = cache or BlockCache()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dynlog-blocks")

    def write(self, ino: int, wid: str, blocks: dict[int, bytes]) -> None:
        """Write one flush's blocks, in parallel batches of 25."""
        bid = schema.block_id(ino, wid)
        items = [{"blockId": bid, "blockNum": idx, "data": bytes(data)} for idx, data in sorted(blocks.items())]
        chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
        if len(chunks) <= 1:
            for c in chunks:
                self.store.batch_write("blocks", puts=c)
        else:
            for f in [self._pool.submit(self.store.batch_write, "blocks", c) for c in chunks]:
                f.result()
        for idx, data in blocks.items():
            self.cache.put((bid, idx), bytes(data))

    def read(self, keys: Iterable[BlockKey]) -> dict[BlockKey, bytes]:
        """Fetch blocks (cache first, then one BatchGetItem per 100 misses); absent keys read as holes."""
        out: dict[BlockKey, bytes] = {}
        missing: list[BlockKey] = []
        for k in keys:
            v = self.cache.get(k)
            if v is None:
                missing.append(k)
            else:
                out[k] = v
        if missing:
            chunks = [missing[i : i + 100] for i in range(0, len(missing), 100)]
            results = ([self.store.batch_get("blocks", chunks[0])] if len(chunks) == 1
                       else [f.result() for f in [self._pool.submit(self.store.batch_get, "blocks", c) for c in chunks]])
            for items in results:
                for it in items:
                    key = (it["blockId"], int(it["blockNum"]))
                    data = bytes(it.get("data", b""))
                    self.cache.put(key, data)
                    out[key] = data
        return out

    def delete_version(self, ino: int, wid: str, indexes: Iterable[int]) -> None:
        bid = schema.block_id(ino, wid)
        self.store.batch_write("blocks", deletes=[(bid, i) for i in indexes])

    def close(self) -> None:
        self._pool.shutdown(wait=False)
