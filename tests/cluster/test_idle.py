"""What an idle mount costs: the follower's poll interval grows while quiet and snaps back on
``wake()`` or a notice; ``confirmed_at`` never vouches for a change the view has not got;
sessions write their lease into their item and beat rarely when idle, but keep the short lease
while they hold locks; an idle mount makes few requests. Runs on both stores, without a kernel.
Counts, not times, are asserted (the timed measurements are in benchmarks/idle_cost.py)."""

from __future__ import annotations

import time

import pytest

from dynlog import schema
from dynlog.cluster.cadence import BULLETIN, LOCAL, STREAM, Backoff, Cadence
from dynlog.cluster.locks import EOF_
from dynlog.cluster.sessions import HEARTBEAT_INTERVAL, LEASE, LEASE_MARGIN, Session, list_sessions
from dynlog.core.attrs import Caller
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.store.base import Store

from .conftest import wait_for

C = Caller(0, 0, 1)


def test_backoff_grows_with_quiet_and_stays_between_fast_and_slow() -> None:
    b = Backoff(fast=0.1, slow=30.0, hold=2.0, ratio=1.0)
    assert b.interval(0) == b.interval(1.9) == 0.1
    seq = [b.interval(q) for q in (2.0, 2.5, 5, 10, 20, 40, 1000)]
    assert seq == sorted(seq) and seq[0] == 0.1 and seq[-1] == 30.0
    for backoff in (BULLETIN, STREAM, LOCAL):
        assert backoff.interval(0) == backoff.fast <= backoff.interval(3600) == backoff.slow
    assert LOCAL.slow < 1.0  # the local feed keeps views inside the core's 1 s bound even idle


def test_cadence_wake_cuts_a_long_wait_short() -> None:
    c = Cadence(Backoff(fast=0.01, slow=60.0, hold=0.0, ratio=1.0))
    c.last_activity -= 100  # quiet for 100 s: the next wait would be a minute
    assert c.interval() == 60.0
    import threading

    woke: list[bool] = []
    t = threading.Thread(target=lambda: woke.append(c.wait()))
    t.start()
    assert wait_for(lambda: c._waiting == 60.0, 5)
    c.wake()
    t.join(timeout=5)
    assert woke == [True] and c.interval() == 0.01


def test_follower_backs_off_and_snaps_back_on_wake_and_on_a_notice(clients) -> None:
    a, b = clients(), clients()
    short = Backoff(fast=b.follower.cadence.backoff.fast, slow=0.5, hold=1.0, ratio=1.0)
    for fs in (a, b):
        fs.follower._fixed_backoff = short
        fs.follower.cadence.backoff = short
        fs.follower.cadence.last_activity -= 100
    assert b.follower.interval == 0.5
    woken = b.follower.cadence.last_activity
    b.follower.wake()
    assert b.follower.cadence.last_activity > woken  # the quiet starts over: fast for `hold` seconds
    assert wait_for(lambda: b.follower.interval == 0.5, 10), "the interval did not grow back while quiet"
    quiet_since = b.follower.cadence.last_activity
    a.mkdir("/notice", 0o755, C)  # another mount's change reaches b as a notice (or a change row)
    assert wait_for(lambda: b.follower.cadence.last_activity > quiet_since, 10), "a notice did not wake b"
    assert b.follower.cadence.backoff.interval(0.0) == short.fast


def test_confirmed_at_never_vouches_for_a_change_the_view_lacks(clients) -> None:
    """Every create that returned before b's confirmed_at is in b's cached root view (or that
    view is marked stale): the contract the core's freshness bound rests on."""
    a, b = clients(), clients()
    assert {n for n, _ in b.readdir("/")} >= {".", ".."}  # b caches the root view
    made: list[tuple[float, str]] = []
    checked = 0
    end = time.monotonic() + 6.0
    i = 0
    while time.monotonic() < end or not checked:
        name = f"f{i}"
        i += 1
        fh = a.create("/" + name, 0o644, 0o1, C)
        a.release(fh, C)
        made.append((time.monotonic(), name))
        conf = b.follower.confirmed_at
        view = b.cache.peek(schema.dir_journal(schema.ROOT_INO))
        if view is None or view.stale:
            continue
        with view.lock:
            present = set(view.entries)
            stale = view.stale
        for done, n in made:
            if done < conf and not stale:
                assert n in present, f"{n} committed before confirmed_at but missing from the view"
                checked += 1
        time.sleep(0.05)
        if time.monotonic() > end + 20:
            break
    assert checked, "confirmed_at never passed a create"
    assert b.follower.healthy


def test_session_lease_is_in_the_item_and_grows_while_idle(store: Store) -> None:
    mkfs(store)
    s = Session(store, "idle0001", "/mnt/x")
    s.beat()
    info = {i.id: i for i in list_sessions(store)}["idle0001"]
    assert info.lease() == pytest.approx(HEARTBEAT_INTERVAL + LEASE_MARGIN) == pytest.approx(LEASE)
    s._quiet_since -= 3600  # an hour without locks
    s.beat()
    info = {i.id: i for i in list_sessions(store)}["idle0001"]
    assert s.next_interval == s.backoff.slow > HEARTBEAT_INTERVAL
    assert info.lease() == pytest.approx(s.backoff.slow + LEASE_MARGIN)
    assert info.alive(time.time_ns() + int((LEASE + 1) * 1e9))  # the long lease covers the idle beat
    s.hold_short_lease(True)  # taking a lock: beats at once with the short lease
    info = {i.id: i for i in list_sessions(store)}["idle0001"]
    assert info.lease() == pytest.approx(LEASE) and s.next_interval == HEARTBEAT_INTERVAL
    assert not info.alive(time.time_ns() + int((LEASE + 1) * 1e9))


def test_taking_a_lock_shortens_an_idle_sessions_lease(clients, store: Store) -> None:
    a = clients()
    sess = a.session_item
    sess._quiet_since -= 3600
    sess.beat()
    assert sess.lease_written > LEASE
    fh = a.create("/locked", 0o644, 0o2, C)
    a.setlk(fh, 1, "w", 0, EOF_, 1, wait=False)
    info = {i.id: i for i in list_sessions(store)}[a.session]
    assert info.lease() == pytest.approx(LEASE), "a lock holder must keep the short lease"
    a.setlk(fh, 1, "u", 0, EOF_, 1, wait=False)
    assert not sess._pinned
    a.release(fh, C)


def test_an_idle_mount_makes_few_requests(clients) -> None:
    """Two mounts, both made to look quiet for an hour: over a few seconds they make a handful
    of requests between them (the fixed 0.1 s polls made 10 a second each)."""
    a, b = clients(), clients()
    time.sleep(0.5)  # the relay is elected
    for fs in (a, b):
        fs.follower.cadence.last_activity -= 3600
        fs.session_item._quiet_since -= 3600
        fs.session_item.beat()
        fs.follower.cadence.kick()  # end the fast wait in progress; the next one is long
    time.sleep(0.5)
    before = [_counts(fs) for fs in (a, b)]
    time.sleep(4.0)
    after = [_counts(fs) for fs in (a, b)]
    requests = sum(x[0] - y[0] for x, y in zip(after, before))
    stream_reads = sum(x[1] - y[1] for x, y in zip(after, before))
    # At most one bulletin poll, one lease renewal and one heartbeat already planned per mount.
    assert requests <= 6, f"idle DynamoDB/SQLite requests in 4 s: {requests}"
    assert stream_reads <= 3, f"idle stream reads in 4 s: {stream_reads}"


def _counts(fs: FileSystem) -> tuple[int, int]:
    """(store requests, stream reads) made by this client so far."""
    calls = fs.store.metrics.by_call()
    streams = sum(n for c, n in calls.items() if c.startswith("Streams."))
    return sum(calls.values()) - streams, streams
