"""Sibling prefetch (dynlog/materialize/prefetch.py), on both stores: once a walk through a
directory is evident, its subdirectories' and hard-linked files' views load in the background,
so the walker's stats cost no request of their own; without that evidence nothing is loaded;
each view is loaded once however the walker and the prefetcher meet; and a prefetched view is
revalidated like any other."""

from __future__ import annotations

import os
import time
from typing import Callable

import pytest

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.materialize import prefetch
from dynlog.store.base import Store

LONG_TTL = 3600.0
DIRS = [f"d{i:02d}" for i in range(12)]


@pytest.fixture
def tree(store: Store) -> FileSystem:
    """/t with 12 subdirectories (each holding a file), a hard-linked file and a plain file."""
    mkfs(store, uid=0, gid=0)
    fs = FileSystem(store, ttl=LONG_TTL)
    fs.mkdir("/t", 0o755, ROOT)
    for d in DIRS:
        fs.mkdir(f"/t/{d}", 0o750, ROOT)
        fs.release(fs.create(f"/t/{d}/f", 0o644, os.O_WRONLY | os.O_CREAT, ROOT))
    fs.release(fs.create("/t/linked", 0o644, os.O_WRONLY | os.O_CREAT, ROOT))
    fs.link("/t/linked", "/t/d00/other-name", ROOT)
    for g in ("d01/g0", "d01/g1", "d02/h0"):
        fs.mkdir(f"/t/{g}", 0o755, ROOT)
    fs.release(fs.create("/t/plain", 0o644, os.O_WRONLY | os.O_CREAT, ROOT))
    return fs


def walker(store_factory: Callable[[], Store], workers: int = 4, ttl: float = LONG_TTL) -> FileSystem:
    fs = FileSystem(store_factory(), ttl=ttl, prefetch_workers=workers)
    fs.getattr("/t")  # the root and /t resolved: what is measured starts below /t
    return fs


def jids(fs: FileSystem, names: list[str]) -> list[str]:
    return [schema.dir_journal(fs.getattr(f"/t/{n}")["st_ino"]) for n in names]


def wait_cached(fs: FileSystem, want: list[str], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(fs.cache.peek(j) is not None for j in want):
            return True
        time.sleep(0.02)
    return False


def test_a_listing_then_a_stat_loads_the_siblings(tree: FileSystem, store_factory) -> None:
    fs = walker(store_factory)
    try:
        names = [n for n, _ in fs.readdir("/t")]
        assert set(DIRS) | {"linked", "plain"} <= set(names)
        fs.getattr("/t/d00")  # the walker's first step: a miss that triggers the rest
        want = jids(tree, DIRS) + [schema.inode_journal(tree.getattr("/t/linked")["st_ino"])]
        assert wait_cached(fs, want), "the siblings were not prefetched"
        # each of the 11 other subdirectories and the linked file's inode journal: its snapshot
        # read and its tail, counted as operation "prefetch"
        assert fs.store.metrics.by_call("prefetch") == {"Query": 2 * 12}
        fs.store.metrics.reset()
        stats = {d: fs.getattr(f"/t/{d}") for d in DIRS}
        linked = fs.getattr("/t/linked")
        assert fs.store.metrics.by_call("getattr") == {}  # the walk's stats cost nothing of their own
        for d in DIRS:
            assert stats[d] == tree.getattr(f"/t/{d}")
        assert linked["st_nlink"] == 2 == tree.getattr("/t/linked")["st_nlink"]
        assert fs.cache.prefetch.loaded == 12
    finally:
        fs.close()


def test_a_walk_going_down_is_followed(tree: FileSystem, store_factory) -> None:
    """Listing a directory that the prefetcher loaded (find and du descend into what they list)
    queues its subdirectories at once, before any miss in it, and from then on the walk counts as
    recursive: the level below the other subdirectories loads before the walk gets there."""
    fs = walker(store_factory)
    try:
        list(fs.readdir("/t"))
        fs.getattr("/t/d00")
        assert wait_cached(fs, jids(tree, ["d01"]))
        below = [schema.dir_journal(tree.getattr(f"/t/{g}")["st_ino"]) for g in ("d01/g0", "d01/g1", "d02/h0")]
        assert all(fs.cache.peek(j) is None for j in below)  # one level at a time
        list(fs.readdir("/t/d01"))
        assert wait_cached(fs, below)  # d02/h0 too: d02 was not listed yet
        fs.store.metrics.reset()
        assert fs.getattr("/t/d01/g1")["st_nlink"] == 2
        assert fs.store.metrics.by_call("getattr") == {}  # (the workers may still be loading the other siblings)
    finally:
        fs.close()


def test_no_walk_no_prefetch(tree: FileSystem, store_factory) -> None:
    """A listing alone (plain ls), or a stat of one subdirectory (cd), loads nothing else."""
    fs = walker(store_factory)
    try:
        list(fs.readdir("/t"))
        fs2 = walker(store_factory)
        try:
            fs2.getattr("/t/d03")
            time.sleep(0.3)
            assert fs.store.metrics.requests(op="prefetch") == 0
            assert fs2.store.metrics.requests(op="prefetch") == 0
            assert fs2.cache.peek(jids(tree, ["d04"])[0]) is None
        finally:
            fs2.close()
    finally:
        fs.close()


def test_misses_in_name_order_start_a_walk(tree: FileSystem, store_factory) -> None:
    """git status lstat()s paths from its index, in name order, without listing: misses of the
    next uncached subdirectory after the one before (MISS_RUN of them in a row, each within
    MISS_WINDOW) are evidence enough."""
    fs = walker(store_factory)
    try:
        fs.getattr("/t/d03/f")
        fs.getattr("/t/d04/f")
        time.sleep(0.2)
        assert fs.store.metrics.requests(op="prefetch") == 0  # one step in order may be chance
        fs.getattr("/t/d05/f")
        assert wait_cached(fs, jids(tree, DIRS))  # after d05, then wrapping round to d00
        assert fs.cache.prefetch.triggers == 1
    finally:
        fs.close()


def test_misses_in_no_order_start_nothing(tree: FileSystem, store_factory) -> None:
    """Lookups in a hashed directory (git's objects/xx) come in no order: no walk, no prefetch."""
    fs = walker(store_factory)
    try:
        for d in ("d07", "d03", "d04", "d09", "d01", "d02"):  # two steps in order, but not in a row
            fs.getattr(f"/t/{d}/f")
        time.sleep(0.3)
        assert fs.store.metrics.requests(op="prefetch") == 0
        assert fs.cache.peek(jids(tree, ["d05"])[0]) is None
    finally:
        fs.close()


def test_each_view_is_loaded_once(tree: FileSystem, store_factory) -> None:
    """The walker racing the prefetcher through the same directories: a view being prefetched is
    waited for, not read twice, and a view already read is not prefetched."""
    fs = walker(store_factory, workers=8)
    try:
        list(fs.readdir("/t"))
        loads = fs.cache.loads
        for d in DIRS + ["d01/g0", "d01/g1", "d02/h0"]:
            fs.getattr(f"/t/{d}")
            list(fs.readdir(f"/t/{d}"))
        fs.getattr("/t/linked")
        fs.cache.prefetch.close()  # let the workers finish what they hold
        assert fs.cache.loads - loads == len(DIRS) + 3 + 1
    finally:
        fs.close()


def test_a_prefetched_view_is_revalidated_like_any_other(tree: FileSystem, store_factory) -> None:
    fs = walker(store_factory, ttl=0.2)
    try:
        list(fs.readdir("/t"))
        fs.getattr("/t/d00")
        assert wait_cached(fs, jids(tree, DIRS))
        tree.mkdir("/t/d05/made-after", 0o755, ROOT)  # another client, after the prefetch
        time.sleep(0.3)
        assert fs.getattr("/t/d05")["st_nlink"] == 3
        assert fs.getattr("/t/d05/made-after")["st_mode"] & 0o777 == 0o755
    finally:
        fs.close()


def test_no_prefetch_past_half_the_entry_budget(tree: FileSystem, store_factory) -> None:
    fs = FileSystem(store_factory(), ttl=LONG_TTL, prefetch_workers=4, entry_budget=20)
    try:
        list(fs.readdir("/t"))  # 14 entries cached: more than half of 20
        fs.getattr("/t/d00")
        time.sleep(0.3)
        assert fs.store.metrics.requests(op="prefetch") == 0
    finally:
        fs.close()


def test_the_mount_default_depends_on_the_store() -> None:
    from dynlog.cli.mountcmd import parse_options, prefetch_workers

    assert prefetch_workers(None, "aws:eu-west-1/t") == prefetch.DEFAULT_WORKERS
    assert prefetch_workers(None, "local:/x.db") == 0
    assert prefetch_workers(parse_options(["prefetch=3"]).prefetch, "local:/x.db") == 3
    assert prefetch_workers(parse_options(["prefetch=0"]).prefetch, "aws:eu-west-1/t") == 0
