"""The relay when its mount is alone: it publishes no notices while no other session is alive,
starts again when one appears, and a reader it stopped announcing to misses nothing. Runs on
both stores (on SQLite the relay reads the change table as its stream, which carries no images,
so it lists the sessions instead). Counts and contents are asserted, not times."""

from __future__ import annotations

import time

from dynlog import schema
from dynlog.cluster.relay import bulletin
from dynlog.cluster.sessions import Session
from dynlog.core.attrs import Caller
from dynlog.core.filesystem import FileSystem
from dynlog.store.base import Store

from .conftest import wait_for

C = Caller(0, 0, 1)


def leader(*mounts: FileSystem) -> FileSystem:
    """The mount that holds the relay lease, once one does."""
    assert wait_for(lambda: any(fs.follower.feed.leading for fs in mounts)), "no relay was elected"
    return next(fs for fs in mounts if fs.follower.feed.leading)


def notices(store: Store) -> list[dict]:
    return list(store.query("meta", bulletin(0)))


def touch(fs: FileSystem, path: str) -> float:
    """Create an empty file; the monotonic time its create returned."""
    fh = fs.create(path, 0o644, 0o1, C)
    fs.release(fh, C)
    return time.monotonic()


def test_a_lone_relay_publishes_no_notices(clients, store: Store) -> None:
    a = leader(clients(freshness="relay"))
    for i in range(5):
        a.mkdir(f"/d{i}", 0o755, C)
        touch(a, f"/d{i}/f")
    assert wait_for(lambda: a.follower.feed.notices_skipped >= 1), "the relay never saw its own commits"
    time.sleep(0.5)  # a few more stream polls
    assert notices(store) == []
    assert a.follower.feed.alone()


def test_a_mount_that_arrives_gets_notices(clients, store: Store) -> None:
    a = leader(clients(freshness="relay"))
    a.mkdir("/before", 0o755, C)
    assert wait_for(lambda: a.follower.feed.notices_skipped >= 1)
    b = clients(freshness="relay")
    assert {n for n, _ in b.readdir("/")} >= {"before"}  # read on demand: nothing was announced
    assert wait_for(lambda: not a.follower.feed.alone()), "the relay did not learn of the new mount"
    a.mkdir("/after", 0o755, C)
    assert wait_for(lambda: "after" in b.cache.peek(schema.dir_journal(schema.ROOT_INO)).entries), \
        "the change did not reach the new mount through the feed"
    assert b.follower.delays_ms, "the new mount applied no notice"
    assert notices(store), "the relay published nothing once another mount was alive"


def test_a_reader_the_relay_stopped_announcing_to_misses_nothing(clients) -> None:
    """b's session goes away (as if its lease had run out) while b keeps its cached view of /q;
    the relay, alone, keeps a's creates in /q to itself. When b beats again the relay publishes
    with a new ``since``, so b marks its views stale: once its ``confirmed_at`` passes those
    creates (carried on by notices of changes elsewhere), its view of /q has them or is stale."""
    a = leader(clients(freshness="relay"))
    a.mkdir("/q", 0o755, C)
    a.mkdir("/elsewhere", 0o755, C)
    b = clients(freshness="relay")
    list(b.readdir("/q"))  # b caches the (empty) view of /q
    q_view = schema.dir_journal(b.ns.resolve("/q").entry.ino)
    relay = a.follower.feed
    assert wait_for(lambda: not relay.alone())
    b.session_item.stop(remove=True)
    assert wait_for(relay.alone), "the relay did not see the session end"
    skipped = relay.notices_skipped
    unannounced = [touch(a, f"/q/quiet{i}") for i in range(3)][-1]
    assert wait_for(lambda: relay.notices_skipped > skipped)
    b.session_item = Session(b.store, b.session, "/mnt/test")
    b.session_item.start()
    assert wait_for(lambda: not relay.alone()), "the relay did not see the session come back"
    n = 0
    while b.follower.confirmed_at <= unannounced and n < 200:
        touch(a, f"/elsewhere/f{n}")  # announced: b's freshness moves on with the notices
        n += 1
        time.sleep(0.05)
    assert b.follower.confirmed_at > unannounced, "b's freshness never passed the unannounced creates"
    view = b.cache.peek(q_view)
    if view is not None:
        with view.lock:
            present, stale = set(view.entries), view.stale
        missing = {f"quiet{i}" for i in range(3)} - present
        assert stale or not missing, f"b vouches for a view of /q that lacks {sorted(missing)}"
    assert {n for n, _ in b.readdir("/q")} >= {"quiet0", "quiet1", "quiet2"}
