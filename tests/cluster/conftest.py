"""Fixtures of the cluster tests: several clients (FileSystem objects, each on its own store
object over the same tables) with or without their cluster services (session, follower)."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import pytest

from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.store.base import Store


@pytest.fixture
def clients(store: Store, store_factory: Callable[[], Store]) -> Iterator[Callable[..., FileSystem]]:
    """``clients(services=True, fs_kw=None, **start_services_kw)`` makes one more client (FileSystem
    keywords in ``fs_kw``); all are closed after."""
    mkfs(store)
    made: list[FileSystem] = []

    def make(services: bool = True, fs_kw: dict | None = None, **kw) -> FileSystem:
        fs = FileSystem(store_factory(), **(fs_kw or {}))
        if services:
            fs.start_services("/mnt/test", **kw)
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.close()


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` passes; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()
