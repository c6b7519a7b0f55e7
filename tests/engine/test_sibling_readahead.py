"""Readahead across files (dynlog/data/siblings.py), on both stores: a reader opening a
directory's files in name order gets the next files' first blocks in batches (one BatchGetItem
for many files); opens in no order fetch nothing ahead; what is read is always the file's own
newest bytes."""

from __future__ import annotations

import os

import pytest

from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.data.siblings import AHEAD
from dynlog.store.base import Store

FILES = 40
NEXT_DIR_FILES = 10
SIZE = 20_000  # past the inline limit: one block each


def contents(i: int) -> bytes:
    return bytes([i % 251]) * SIZE


@pytest.fixture
def directory(store: Store) -> FileSystem:
    mkfs(store, uid=0, gid=0)
    fs = FileSystem(store)
    fs.mkdir("/r", 0o755, ROOT)
    for i in range(FILES):
        fh = fs.create(f"/r/f{i:03d}", 0o644, os.O_WRONLY | os.O_CREAT, ROOT)
        fs.write(fh, contents(i), 0, ROOT)
        fs.release(fh, ROOT)
        if i % 5 == 0:  # small files between them: inline, nothing to fetch
            fs.release(fs.create(f"/r/f{i:03d}-small", 0o644, os.O_WRONLY | os.O_CREAT, ROOT))
    fs.mkdir("/s", 0o755, ROOT)
    for i in range(NEXT_DIR_FILES):
        fh = fs.create(f"/s/g{i:03d}", 0o644, os.O_WRONLY | os.O_CREAT, ROOT)
        fs.write(fh, contents(i), 0, ROOT)
        fs.release(fh, ROOT)
    return fs


def read_all(fs: FileSystem, order: list[int]) -> None:
    for i in order:
        fh = fs.open(f"/r/f{i:03d}", os.O_RDONLY, ROOT)
        try:
            assert fs.read(fh, SIZE + 10, 0) == contents(i)
        finally:
            fs.release(fh, ROOT)


@pytest.mark.parametrize("listed", [True, False])
def test_reading_a_directory_in_order_fetches_the_next_files_ahead(directory: FileSystem, store_factory,
                                                                   listed: bool) -> None:
    """Listed first (grep -r, cp -r): the first file's open starts it. Not listed: the third
    open in name order does."""
    fs = FileSystem(store_factory())
    try:
        fs.getattr("/r")
        if listed:
            list(fs.readdir("/r"))
        fs.store.metrics.reset()
        read_all(fs, list(range(FILES)))
        gets = fs.store.metrics.by_call().get("BatchGetItem", 0)
        alone = 1 if listed else 3  # files read before the run starts, each a BatchGetItem
        assert gets <= alone + -(-(FILES - alone) // AHEAD) + 2, gets
        assert fs.data.siblings.fetched == FILES - alone
    finally:
        fs.close()


def test_opens_in_no_order_fetch_nothing_ahead(directory: FileSystem, store_factory) -> None:
    fs = FileSystem(store_factory())
    try:
        list(fs.readdir("/r"))
        # zigzag (39, 0, 38, 1, ...): never three in name order in a row
        order = [i for pair in zip(range(FILES - 1, FILES // 2 - 1, -1), range(FILES // 2)) for i in pair]
        assert sorted(order) == list(range(FILES))
        fs.store.metrics.reset()
        read_all(fs, order)
        assert fs.data.siblings.fetched == 0
        assert fs.store.metrics.by_call().get("BatchGetItem", 0) == len(order)
    finally:
        fs.close()


def test_a_file_rewritten_after_its_block_was_fetched_ahead_reads_new(directory: FileSystem, store_factory) -> None:
    """Blocks are immutable versions: one fetched ahead for the old contents is never read for
    the new (close-to-open gives the open the new block map)."""
    fs = FileSystem(store_factory())
    try:
        read_all(fs, [0, 1, 2])  # starts the run: f003 onwards fetched ahead
        fh = directory.open("/r/f005", os.O_WRONLY | os.O_TRUNC, ROOT)
        directory.write(fh, b"new " * 6000, 0, ROOT)
        directory.release(fh, ROOT)
        read_all(fs, [3, 4])
        fh = fs.open("/r/f005", os.O_RDONLY, ROOT)
        assert fs.read(fh, 30_000, 0) == b"new " * 6000
        fs.release(fh, ROOT)
    finally:
        fs.close()


def test_a_walk_reading_files_gets_the_next_directory_fetched_as_it_is_listed(directory: FileSystem,
                                                                               store_factory) -> None:
    """grep -r: while a reader goes through one directory's files, listing the next directory
    fetches its first files at once, so reading them costs no request of their own."""
    fs = FileSystem(store_factory())
    try:
        fs.getattr("/s")
        list(fs.readdir("/r"))
        read_all(fs, list(range(FILES)))
        fs.store.metrics.reset()
        list(fs.readdir("/s"))
        for i in range(NEXT_DIR_FILES):
            fh = fs.open(f"/s/g{i:03d}", os.O_RDONLY, ROOT)
            assert fs.read(fh, SIZE, 0) == contents(i)
            fs.release(fh, ROOT)
        assert fs.store.metrics.by_call().get("BatchGetItem", 0) == 1  # the listing's, for all ten
    finally:
        fs.close()
