"""Block reads are eventually consistent (half the read units), and a block such a read misses
is read again consistently: on both stores, with the store's replication lag played by hiding
blocks from eventually consistent reads (neither DynamoDB Local nor SQLite ever lags)."""

from __future__ import annotations

import os
from typing import Any, Sequence

from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.files import first_block
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


def test_an_open_for_reading_asks_for_the_first_block_at_once(store: Store, store_factory) -> None:
    """Close-to-open makes an open wait for its directory's tail; the file's first block (from
    the view as cached) is asked for meanwhile, so the first read finds it on its way or there.
    An open for writing asks for nothing."""
    mkfs(store, uid=0, gid=0)
    writer = FileSystem(store)
    writer.mkdir("/d", 0o755, ROOT)
    data = {name: os.urandom(300_000) for name in ("a", "b")}
    for name, body in data.items():
        write_file(writer, f"/d/{name}", body)
    reader = FileSystem(store_factory())
    reader.getattr("/d/b")  # the directory's view, cached; no listing (that would read ahead by itself)
    blocks = reader.data.blocks

    def first_key(name: str) -> tuple[str, int]:
        key = first_block(reader.ns.dir_view(reader.getattr("/d")["st_ino"], None).entries[name])
        assert key is not None
        return key

    fh = reader.open("/d/a", os.O_WRONLY, ROOT)
    reader.release(fh)
    assert blocks.cache.get(first_key("a")) is None and first_key("a") not in blocks._fetching
    fh = reader.open("/d/b", os.O_RDONLY, ROOT)
    key = first_key("b")
    assert blocks.cache.get(key) is not None or key in blocks._fetching
    assert reader.read(fh, len(data["b"]), 0) == data["b"]
    reader.release(fh)
    reader.close()
    writer.close()
