"""Fixtures of the engine tests: file systems driven directly (no kernel) on both stores.

  ``fs``          mkfs on the fresh ``store``, then a FileSystem on it (allocator warmed).
  ``new_client``  ``new_client()`` opens another FileSystem on ANOTHER store object over the
                  same backing tables: a second mount, with its own caches and metrics.
  ``backing``     a picklable description of the backing tables (for worker processes).
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.store.base import Store

from .helpers import backing_of






@pytest.fixture
def backing(store: Store, backend: str, request: pytest.FixtureRequest) -> dict:
    endpoint = request.getfixturevalue("ddb_local").endpoint if backend == "dynamodb" else None
    return backing_of(store, endpoint)
