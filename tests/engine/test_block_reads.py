"""Block reads are eventually consistent (half the read units), and a block such a read misses
is read again consistently: on both stores, with the store's replication lag played by hiding
blocks from eventually consistent reads (neither DynamoDB Local nor SQLite ever lags)."""

from __future__ import annotations

import os
from typing import Any, Sequence

from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.store.base import Store

from .test_compression import write_file
from .test_operations import read_all


def test_cold_reads_are_eventually_consistent(store: Store, store_factory) -> None:
    mkfs(store, uid=0, gid=0)
    data = os.urandom(1 << 20)
    write_file(FileSystem(store), "/f", data)
    reader = FileSystem(store_factory())
    asked: list[bool] = []
    real = reader.store.batch_get

    def watched(table: str, keys: Sequence[tuple[Any, Any]], consistent: bool = True) -> list[dict]:
        asked.append(consistent)
        return real(table, keys, consistent)

    reader.store.batch_get = watched  # type: ignore[method-assign]
    assert read_all(reader, "/f") == data
    assert asked and not any(asked), asked  # every block read at half the units
    reader.close()


def test_a_block_not_visible_yet_is_read_again_consistently(store: Store, store_factory) -> None:
    """Another mount closed the file just before: an eventually consistent read may not see its
    newest blocks yet. They are read again consistently, never taken for holes."""
    mkfs(store, uid=0, gid=0)
    writer = FileSystem(store)
    data = os.urandom(1 << 20)  # 8 blocks
    write_file(writer, "/f", data)
    reader = FileSystem(store_factory())
    real = reader.store.batch_get
    calls: list[tuple[bool, int, int]] = []

    def lagging(table: str, keys: Sequence[tuple[Any, Any]], consistent: bool = True) -> list[dict]:
        items = real(table, keys, consistent)
        shown = items if consistent else [it for it in items if it["blockNum"] % 2 == 0]  # odd ones lag
        calls.append((consistent, len(keys), len(shown)))
        return shown

    reader.store.batch_get = lagging  # type: ignore[method-assign]
    fh = reader.open("/f", os.O_RDONLY, ROOT)
    assert reader.read(fh, len(data), 0) == data
    reader.release(fh)
    eventual = [(asked, seen) for c, asked, seen in calls if not c]
    again = [(asked, found) for c, asked, found in calls if c]
    assert eventual and again, calls
    # only the missing ones are asked again, and all of them are found
    assert sum(a for a, _ in again) == sum(a - s for a, s in eventual) == 4
    assert all(a == f for a, f in again)
    reader.close()
    writer.close()
