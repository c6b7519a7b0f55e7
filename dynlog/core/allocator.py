"""Inode numbers without a hot spot: each client takes a range with one atomic ADD and hands
numbers out locally, so a create costs no allocator request on the common path."""

from __future__ import annotations

import threading

from .. import schema
from ..store.base import Store

RANGE = 1024


class InodeAllocator:
    def __init__(self, store: Store, range_size: int = RANGE) -> None:
        self.store = store
        self.range_size = range_size
        self._next = 0
        self._end = 0
        self._lock = threading.Lock()

    def allocate(self) -> int:
        with self._lock:
            self._refill()
            ino = self._next
            self._next += 1
            return ino

    def prefetch(self) -> None:
        """Take a range now (at mount), so the first create pays only its own write."""
        with self._lock:
            self._refill()

    def _refill(self) -> None:
        if self._next >= self._end:
            high = self.store.add("meta", (schema.FS_PARTITION, schema.INO_COUNTER), "n", self.range_size)
            self._next, self._end = high - self.range_size + 1, high + 1
