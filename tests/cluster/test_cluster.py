"""Many clients on one store, without a kernel: change-feed freshness, the relay, sessions,
distributed locks, and open-unlinked files. Runs on both stores."""

from __future__ import annotations

import os
import threading
import time

import pytest

from dynlog import schema
from dynlog.cluster.locks import EOF_, LockManager
from dynlog.cluster.sessions import LEASE, Session, list_sessions
from dynlog.core.attrs import Caller
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.errors import FsError
from dynlog.journal.log import JournalStore
from dynlog.journal.record import Record
from dynlog.store.base import Change, Store

from .conftest import wait_for

C = Caller(0, 0, 1)


def names(fs: FileSystem, path: str) -> set[str]:
    return {n for n, _ in fs.readdir(path)} - {".", ".."}


def test_changes_reach_other_clients_through_the_feed(clients) -> None:
    a, b, c = clients(), clients(), clients()
    for fs in (a, b, c):
        assert names(fs, "/") == set()  # cache the root view everywhere
    time.sleep(0.3)  # let the relay (DynamoDB) be elected
    a.mkdir("/d", 0o755, C)
    fh = a.create("/d/f", 0o644, os.O_WRONLY, C)
    a.write(fh, b"payload", 0, C)
    a.release(fh, C)
    for other in (b, c):
        assert wait_for(lambda: "d" in names(other, "/")), "directory did not propagate"
        assert wait_for(lambda: "f" in names(other, "/d"))
        fh = other.open("/d/f", os.O_RDONLY, C)
        assert other.read(fh, 100, 0) == b"payload"
        other.release(fh, C)
    a.rename("/d/f", "/d/g", 0, C)
    assert wait_for(lambda: names(b, "/d") == {"g"})
    a.unlink("/d/g", C)
    assert wait_for(lambda: names(c, "/d") == set())
    delays = [d for fs in (b, c) for d in fs.follower.delays_ms]
    assert delays, "the follower applied nothing"


def test_without_a_feed_views_revalidate_after_the_ttl(clients) -> None:
    a = clients(services=False)
    b = clients(services=False)
    b.ns.ttl = 0.2
    assert names(b, "/") == set()
    a.mkdir("/late", 0o755, C)
    assert wait_for(lambda: "late" in names(b, "/"), timeout=3)


def test_a_commit_noticed_while_a_view_loads_is_not_missed(clients) -> None:
    """Another mount commits right after this mount's first read of a directory, and the change
    feed's notice of it arrives before that view is cached. The view must not then pass for
    fresh while the feed vouches for the moment: the notice marks it stale, and the listing
    reads the tail. Before, a notice for a view not yet cached was dropped, and the mount could
    miss the name for as long as the feed went on vouching for the view (a stress run's "mounts
    disagree after 15 s")."""
    a = clients(services=False)
    b = clients(services=False)
    b.mkdir("/d", 0o755, C)
    assert names(a, "/") == {"d"}
    jid = schema.dir_journal(a.ns.resolve("/d").ino)
    a.ns.ttl = 3600.0  # as a running change feed does: a cached view counts as fresh unless marked stale
    journals = a.cache.journals
    load_latest = journals.load_latest

    def load_then_b_commits(j: str) -> tuple[dict | None, list[Record]]:
        snap, recs = load_latest(j)
        if j == jid:
            journals.load_latest = load_latest  # once
            fh = b.create("/d/late", 0o644, os.O_WRONLY, C)
            b.release(fh, C)
            for r in JournalStore(b.store).read_after(jid, recs[-1].seq if recs else snap["head"] if snap else 0):
                a.cache.on_change(Change(jid, schema.record_key(r.seq), r.to_item()))  # as the follower does
        return snap, recs

    journals.load_latest = load_then_b_commits  # type: ignore[method-assign]
    assert names(a, "/d") == {"late"}


def test_a_view_committed_to_counts_as_read_when_its_put_was_sent(clients) -> None:
    """Another mount appends right after this mount's put lands, before its reply arrives. A
    view of a journal this mount just committed to must then count as read from when the put
    was sent, not from when the reply came: a directory move asks its target's ancestry to be
    read after the rename sentinel, and a view dated too late would pass for fresh while it
    lacked a move. A directory cycle, seen once in some 200 runs of the concurrency test
    under load, fits that."""
    a = clients(services=False)
    b = clients(services=False)
    a.mkdir("/d", 0o755, C)
    b.mkdir("/d/seen", 0o755, C)  # b's view of /d is cached
    jid = schema.dir_journal(a.ns.resolve("/d").ino)
    journals = a.committer.journals
    append = journals.append
    after_b: list[float] = []

    def append_then_b_commits(rec: Record) -> None:
        append(rec)
        if rec.jid == jid and not after_b:
            b.mkdir("/d/late", 0o755, C)
            after_b.append(time.monotonic())  # a moment after b's commit, before a's reply

    journals.append = append_then_b_commits  # type: ignore[method-assign]
    a.mkdir("/d/mine", 0o755, C)
    journals.append = append
    assert after_b, "a's commit did not go through the wrapper"
    view = a.cache.get(jid, max_age=time.monotonic() - after_b[0])  # read after that moment
    assert {"seen", "late", "mine"} <= set(view.entries)


def test_a_rename_whose_source_became_a_directory_meanwhile_moves_the_directory(clients) -> None:
    """This client plans to move a file, but another mount has replaced that name with a
    directory (unlink, then mkdir). The first attempt finds a directory where it planned for a
    file and starts again. It must then resolve the source again: it resolved it only once, so
    every attempt met the directory, until the rename gave up with EAGAIN ("an operation gave
    up under light contention" in the concurrency test, in CI)."""
    a = clients(services=False)
    b = clients(services=False)
    a.mkdir("/s", 0o755, C)
    a.mkdir("/t", 0o755, C)
    a.release(a.create("/s/x", 0o644, os.O_WRONLY, C), C)
    assert names(b, "/s") == {"x"}
    a.ns.ttl = 3600.0  # a's view of /s passes for fresh: it still says /s/x is a file
    b.unlink("/s/x", C)
    b.mkdir("/s/x", 0o755, C)
    a.rename("/s/x", "/t/x", 0, C)
    assert names(a, "/s") == set() and a.getattr("/t/x")["st_mode"] & 0o170000 == 0o040000


def test_close_to_open_sees_the_newest_bytes(clients) -> None:
    a, b = clients(services=False), clients(services=False)
    fh = a.create("/f", 0o644, os.O_WRONLY, C)
    a.write(fh, b"one", 0, C)
    a.release(fh, C)
    fh = b.open("/f", os.O_RDONLY, C)
    assert b.read(fh, 10, 0) == b"one"
    b.release(fh, C)
    fh = a.open("/f", os.O_WRONLY, C)
    a.write(fh, b"two!", 0, C)
    a.release(fh, C)
    fh = b.open("/f", os.O_RDONLY, C)  # no feed, TTL 1 s: open alone must see the change
    assert b.read(fh, 10, 0) == b"two!"
    b.release(fh, C)


def test_nocto_opens_trust_the_feed(clients) -> None:
    """-o nocto (as NFS's): open() and a lookup that misses cost no request while the change feed
    vouches for the directory; another client's new name still arrives, through the feed. A
    default client pays its close-to-open Query."""
    a = clients()
    b = clients(fs_kw={"close_to_open": False})
    cto = clients()
    a.mkdir("/d", 0o755, C)
    fh = a.create("/d/f", 0o644, os.O_WRONLY, C)
    a.write(fh, b"one", 0, C)
    a.release(fh, C)
    for fs in (b, cto):
        assert wait_for(lambda fs=fs: "f" in names(fs, "/d"), 15)

    def open_read(fs: FileSystem) -> bytes:
        fh = fs.open("/d/f", os.O_RDONLY, C)
        try:
            return fs.read(fh, 10, 0)
        finally:
            fs.release(fh, C)

    for fs in (b, cto):
        assert open_read(fs) == b"one"
    time.sleep(0.5)  # the feed's notices of a's commits are in: nothing marks /d stale now
    for fs in (b, cto):
        fs.store.metrics.reset()
        assert open_read(fs) == b"one"
        with pytest.raises(FsError):
            fs.lookup("/d/missing")
    assert b.store.metrics.by_call("open") == {} and b.store.metrics.by_call("lookup") == {}
    assert cto.store.metrics.by_call("open") == {"Query": 1} == cto.store.metrics.by_call("lookup")
    a.release(a.create("/d/g", 0o644, os.O_WRONLY, C), C)

    def finds_g() -> bool:
        try:
            b.lookup("/d/g")
            return True
        except FsError:
            return False

    assert wait_for(finds_g, 15)


def test_sessions_are_listed_and_removed(clients, store: Store) -> None:
    a = clients()
    live = {s.id: s for s in list_sessions(store)}
    assert a.session in live and live[a.session].alive()
    assert live[a.session].mountpoint == "/mnt/test"
    a.stop_services()
    assert a.session not in {s.id for s in list_sessions(store)}


def test_posix_locks_exclude_across_clients(clients) -> None:
    a, b = clients(), clients()
    fh = a.create("/lockme", 0o644, os.O_RDWR, C)
    fb = b.open("/lockme", os.O_RDWR, C)
    a.setlk(fh, owner=1, type_="w", start=0, end=100, pid=11, wait=False)
    with pytest.raises(FsError) as e:
        b.setlk(fb, owner=2, type_="r", start=50, end=60, pid=22, wait=False)
    assert e.value.errno == 11  # EAGAIN
    blocker = b.getlk(fb, owner=2, type_="w", start=0, end=EOF_)
    assert blocker is not None and blocker.pid == 11 and (blocker.start, blocker.end) == (0, 100)
    b.setlk(fb, owner=2, type_="w", start=100, end=200, pid=22, wait=False)  # no overlap: fine
    a.setlk(fh, owner=1, type_="u", start=0, end=50, pid=11, wait=False)  # split the range
    b.setlk(fb, owner=2, type_="r", start=10, end=20, pid=22, wait=False)
    with pytest.raises(FsError):
        b.setlk(fb, owner=2, type_="r", start=60, end=70, pid=22, wait=False)
    a.release_locks(fh, owner=1)  # close by the owner releases everything it holds
    b.setlk(fb, owner=2, type_="w", start=0, end=EOF_, pid=22, wait=False)
    a.release(fh, C)
    b.release(fb, C)


def test_blocking_lock_waits_for_the_holder(clients) -> None:
    a, b = clients(), clients()
    fh = a.create("/wait", 0o644, os.O_RDWR, C)
    fb = b.open("/wait", os.O_RDWR, C)
    a.setlk(fh, 1, "w", 0, EOF_, 1, wait=False)
    got = threading.Event()

    def waiter() -> None:
        b.setlk(fb, 2, "w", 0, EOF_, 2, wait=True)
        got.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    assert not got.is_set()
    a.setlk(fh, 1, "u", 0, EOF_, 1, wait=False)
    t.join(timeout=10)
    assert got.is_set()


def test_flock_and_posix_locks_do_not_interact(clients) -> None:
    a, b = clients(), clients()
    fh = a.create("/both", 0o644, os.O_RDWR, C)
    fb = b.open("/both", os.O_RDWR, C)
    a.setlk(fh, 1, "w", 0, EOF_, 1, wait=False, kind="f")
    with pytest.raises(FsError):
        b.setlk(fb, 2, "r", 0, EOF_, 2, wait=False, kind="f")
    b.setlk(fb, 2, "w", 0, EOF_, 2, wait=False)  # a POSIX lock is a different family


def test_locks_of_a_dead_session_expire(store: Store, store_factory) -> None:
    mkfs(store)
    dead = Session(store_factory(), "deadbeef")
    dead.beat()
    LockManager(store_factory(), "deadbeef").set(42, 1, "w", 0, EOF_, 1)
    other = LockManager(store_factory(), "alive001")
    Session(other.store, "alive001").beat()
    with pytest.raises(FsError):
        other.set(42, 2, "w", 0, 10, 2)
    # Age the dead session's heartbeat past the lease instead of waiting 30 s.
    item = store.get("meta", ("sess", "deadbeef"))
    from dynlog.store.base import Put

    item["hb"] = time.time_ns() - int((LEASE + 1) * 1e9)
    store.put(Put("meta", item))
    other.liveness._seen.clear()
    other.set(42, 2, "w", 0, 10, 2)


def test_lock_is_a_synchronisation_point(clients) -> None:
    """Writer commits before it unlocks; the next locker sees its bytes even on an open file."""
    a, b = clients(services=False), clients(services=False)
    fh = a.create("/db", 0o644, os.O_RDWR, C)
    a.write(fh, b"v1", 0, C)
    a.release(fh, C)
    fa = a.open("/db", os.O_RDWR, C)
    fb = b.open("/db", os.O_RDWR, C)
    assert b.read(fb, 10, 0) == b"v1"
    a.setlk(fa, 1, "w", 0, EOF_, 1, wait=False)
    a.write(fa, b"v2", 0, C)
    a.setlk(fa, 1, "u", 0, EOF_, 1, wait=False)
    assert b.setlk(fb, 2, "r", 0, EOF_, 2, wait=False) is True  # data changed: drop page cache
    assert b.read(fb, 10, 0) == b"v2"


def test_open_unlinked_file_stays_readable_on_another_client(clients) -> None:
    a, b = clients(), clients()
    fh = a.create("/orphan", 0o644, os.O_WRONLY, C)
    a.write(fh, b"x" * 300_000, 0, C)
    a.release(fh, C)
    fb = b.open("/orphan", os.O_RDONLY, C)
    a.unlink("/orphan", C)
    assert wait_for(lambda: "orphan" not in names(b, "/"))
    assert b.read(fb, 10, 299_995) == b"xxxxx"
    held = b.open_block_versions()
    assert held and all(held.values())  # advertised in the session for compact
    b.release(fb, C)
