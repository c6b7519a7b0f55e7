"""Two mounts alternating in one directory, both with write-behind on: each burst takes a lease,
the other mount's next operation revokes it. No entry lost or duplicated, on both stores."""

from __future__ import annotations

import threading
from typing import Callable

from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.history.fsck import fsck

from .test_engine import names, read_all, write_small


def settle(fs: FileSystem, parent: str) -> None:
    """What open() does to the parent (close-to-open): re-read its tail, and have another mount
    that holds a lease there flush and release it first."""
    fs.wb.settle_read(fs.ns.dir_view(fs.ns.resolve(parent).ino, 0.0))

ROUNDS = 30
BURST = 8


def test_two_mounts_alternate(wb_client: Callable[..., FileSystem]) -> None:
    knobs = dict(take_after=3, cooldown_s=0.0, contention_s=0.0, idle_s=30.0, window_s=0.05, lease_s=10.0)
    a = wb_client("alpha", **knobs)
    b = wb_client("bravo", **knobs)
    a.mkdir("/shared", 0o755, ROOT)
    expected: dict[str, bytes] = {}
    for r in range(ROUNDS):
        me = a if r % 2 == 0 else b
        for i in range(BURST):
            name = f"r{r:02d}-{i}"
            write_small(me, f"/shared/{name}", name.encode())
            expected[name] = name.encode()
        if r:  # remove one of the other mount's files and rename another: it must see them first
            gone = f"r{r - 1:02d}-0"
            me.unlink(f"/shared/{gone}", ROOT)
            del expected[gone]
            moved = f"r{r - 1:02d}-1"
            me.rename(f"/shared/{moved}", f"/shared/{moved}.moved", 0, ROOT)
            expected[moved + ".moved"] = expected.pop(moved)
    a.syncfs()
    settle(b, "/shared")  # asks a to release, if it still holds the lease
    assert names(b, "/shared") == set(expected)
    settle(a, "/shared")
    assert names(a, "/shared") == set(expected)
    for name in list(expected)[::7]:
        assert read_all(a, f"/shared/{name}") == expected[name]
        assert read_all(b, f"/shared/{name}") == expected[name]
    taken = a.wb.taken + b.wb.taken
    revoked = a.wb.revoked + b.wb.revoked
    print(f"\nleases taken {taken}, revoked {revoked}")
    assert taken >= ROUNDS // 2 and revoked >= ROUNDS // 3
    assert a.wb.lost == b.wb.lost == 0
    report = fsck(a.store)
    assert report.clean, report.lines()


def test_two_mounts_at_once_fall_back_without_starving(wb_client: Callable[..., FileSystem]) -> None:
    """Both mounts create in one directory at the same time: contention sends them back to
    synchronous commits (with a lease now and then); both finish, nothing lost."""
    a = wb_client("alpha", take_after=4, cooldown_s=0.2, contention_s=0.2, window_s=0.02, lease_s=10.0)
    b = wb_client("bravo", take_after=4, cooldown_s=0.2, contention_s=0.2, window_s=0.02, lease_s=10.0)
    a.mkdir("/both", 0o755, ROOT)
    errors: list[BaseException] = []

    def run(fs: FileSystem, tag: str) -> None:
        try:
            for i in range(150):
                write_small(fs, f"/both/{tag}{i:03d}", tag.encode())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(a, "a")), threading.Thread(target=run, args=(b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    a.syncfs()
    b.syncfs()
    settle(b, "/both")
    settle(a, "/both")
    want = {f"a{i:03d}" for i in range(150)} | {f"b{i:03d}" for i in range(150)}
    assert names(a, "/both") == want and names(b, "/both") == want
    report = fsck(a.store)
    assert report.clean, report.lines()
