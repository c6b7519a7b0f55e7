"""Fixtures of the write-behind tests: file systems with write-behind on, driven directly.

  ``wb_client``  ``wb_client(session, **settings)`` opens a FileSystem with write-behind on, on
                 its own store object over the shared tables (mkfs done once); closed at the end.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.store.base import Store
from dynlog.writebehind import Settings


@pytest.fixture
def wb_client(store: Store, store_factory: Callable[[], Store]) -> Iterator[Callable[..., FileSystem]]:
    mkfs(store, uid=0, gid=0)
    made: list[FileSystem] = []

    def make(session: str, writebehind: bool = True, **settings: Any) -> FileSystem:
        f = FileSystem(store_factory(), session=session, writebehind=writebehind,
                       writebehind_settings=Settings(**settings))
        f.allocator.prefetch()
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()
