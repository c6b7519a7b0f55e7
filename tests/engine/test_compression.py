"""File contents compressed at rest (dynlog/compress.py), on both stores: what is stored, that
every reader gets the bytes back, and what it saves in write units."""

from __future__ import annotations

import os

import pytest

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import load_superblock, mkfs
from dynlog.errors import StoreError
from dynlog.journal.inode import INLINE_MAX
from dynlog.journal.log import JournalStore
from dynlog.store.base import Put, Store

from .test_operations import read_all


def source_text(n: int) -> bytes:
    """Text as a source tree holds it: lines that repeat with variations."""
    lines = [f"    def method_{i}(self, value):\n        return self.table[{i % 17}] + value * {i % 5}\n".encode()
             for i in range(n // 60 + 1)]
    return b"".join(lines)[:n]


def write_file(fs: FileSystem, path: str, data: bytes) -> None:
    fh = fs.create(path, 0o644, os.O_WRONLY | os.O_CREAT, ROOT)
    for off in range(0, len(data), 1 << 20):
        fs.write(fh, data[off : off + (1 << 20)], off)
    fs.release(fh)


def block_items(store: Store, fs: FileSystem, path: str) -> list[dict]:
    ino = fs.getattr(path)["st_ino"]
    out = []
    for bid in store.scan_partitions("blocks"):
        if bid.startswith(f"{ino}."):
            out += list(store.query("blocks", bid))
    return out


def record_items(store: Store, fs: FileSystem, parent: str) -> list[dict]:
    jid = schema.dir_journal(fs.getattr(parent)["st_ino"])
    return list(store.query("meta", jid, start="j/", stop="j/~"))


def test_a_new_file_system_compresses(store: Store) -> None:
    sb, _ = mkfs(store, uid=0, gid=0)
    assert sb.compression == "zlib" and sb.format == 2
    assert load_superblock(store).compresses


def test_text_blocks_are_stored_compressed_and_read_back_cold(store: Store, store_factory) -> None:
    mkfs(store, uid=0, gid=0)
    fs = FileSystem(store)
    text, noise = source_text(600 * 1024), os.urandom(300 * 1024)
    write_file(fs, "/text", text)
    write_file(fs, "/noise", noise)
    stored = block_items(store, fs, "/text")
    assert len(stored) == 5 and all(it.get("z") == 1 for it in stored)
    assert sum(len(it["data"]) for it in stored) < len(text) // 3
    assert not any(it.get("z") for it in block_items(store, fs, "/noise"))
    fresh = FileSystem(store_factory())  # no block cache: the bytes come from the store
    assert read_all(fresh, "/text") == text
    assert read_all(fresh, "/noise") == noise
    fresh.close()
    fs.close()


def test_inline_bytes_are_stored_compressed_in_the_record(store: Store, store_factory) -> None:
    mkfs(store, uid=0, gid=0)
    fs = FileSystem(store)
    small = source_text(INLINE_MAX)
    write_file(fs, "/small", small)
    (closing,) = [it for it in record_items(store, fs, "/") if it.get("inl")]
    assert closing.get("inlz") == 1 and closing["v"] == 2 and len(closing["inl"]) < len(small) // 3
    fresh = FileSystem(store_factory())
    assert read_all(fresh, "/small") == small
    # the history reads it too: the record's hash is that of the bytes themselves
    (rec,) = [r for r in JournalStore(store).read_after(schema.dir_journal(1), 0) if r.op == "write"]
    assert rec.verify() and rec.version == 2
    fresh.close()
    fs.close()


def test_compression_halves_the_write_units_of_text(store: Store) -> None:
    """The same text files written with compression and then without (as on a file system made
    with ``--compression none``): the write units of the compressed ones are well under half
    (small files inline, and a file of several blocks)."""
    mkfs(store, uid=0, gid=0)
    fs = FileSystem(store)
    units = {}
    for compressing in (True, False):
        fs.journals.compress = fs.data.blocks.compress = compressing
        top = f"/{compressing}"
        fs.mkdir(top, 0o755, ROOT)
        store.metrics.reset()
        for i in range(20):
            write_file(fs, f"{top}/m{i}.py", source_text(3000 + 200 * i))
        write_file(fs, f"{top}/big.log", source_text(400 * 1024))
        units[compressing] = store.metrics.capacity_by_kind()[1]  # write units
    print("write units, compressed and not:", units)
    assert units[True] < units[False] / 2, units
    fs.close()


def test_without_compression_nothing_is_compressed(store: Store, store_factory) -> None:
    """``mkfs --compression none``: format 1, which a dynlog from before compression mounts, and
    items exactly as such a dynlog wrote them."""
    sb, _ = mkfs(store, uid=0, gid=0, compression="none")
    assert (sb.format, sb.compression) == (1, "none")
    fs = FileSystem(store)
    text = source_text(300 * 1024)
    write_file(fs, "/t", text)
    write_file(fs, "/s", source_text(4000))
    assert not any(it.get("z") for it in block_items(store, fs, "/t"))
    assert all("inlz" not in it and it.get("v", 1) == 1 for it in record_items(store, fs, "/"))
    assert read_all(FileSystem(store_factory()), "/s") == source_text(4000)
    fs.close()


def test_an_unknown_compression_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="compression 'lz9'"):
        mkfs(store, compression="lz9")
    mkfs(store, uid=0, gid=0)
    item = store.get("meta", (schema.FS_PARTITION, schema.SUPER))
    store.put(Put("meta", {**item, "compression": "lz9"}))
    with pytest.raises(StoreError, match="unknown to this dynlog"):
        load_superblock(store)
