"""Write-behind directories, engine level, on both stores (docs/ARCHITECTURE.md, "Write-behind
directories"): operations acknowledged without a request, seen by another mount once it asks,
history exact per operation, fsck clean, and the write requests per 1,000 small files."""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import Callable

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.errors import FsError
from dynlog.history.fsck import fsck
from dynlog.history.replay import Replayer
from dynlog.history.walk import Journals, Point
from dynlog.journal.events import Lease, Release, Stamp
from dynlog.journal.log import JournalStore
from dynlog.journal.record import Record
from dynlog.store.base import Change

WRITE_CALLS = {"PutItem", "TransactWriteItems", "BatchWriteItem", "UpdateItem", "DeleteItem"}
NEVER = 3600.0  # a window or idle time the test never reaches: only asks and sync points flush


def write_small(fs: FileSystem, path: str, data: bytes) -> None:
    """tar's sequence for one small file: create, write, close."""
    fh = fs.create(path, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ROOT)
    fs.write(fh, data, 0)
    fs.release(fh)


def read_all(fs: FileSystem, path: str) -> bytes:
    fh = fs.open(path, os.O_RDONLY, ROOT)
    try:
        return fs.read(fh, 1 << 20, 0)
    finally:
        fs.release(fh)


def writes(fs: FileSystem) -> int:
    return sum(n for c, n in fs.store.metrics.by_call().items() if c in WRITE_CALLS)


def names(fs: FileSystem, path: str) -> set[str]:
    return {n for n, _ in fs.readdir(path)} - {".", ".."}


def test_acknowledged_without_requests_then_seen_after_revocation(wb_client: Callable[..., FileSystem]) -> None:
    a = wb_client("alpha", take_after=2, window_s=NEVER, idle_s=NEVER, lease_s=60.0, max_ops=10_000,
                  max_bytes=10**7)
    b = wb_client("bravo", writebehind=False)
    a.mkdir("/d", 0o755, ROOT)
    write_small(a, "/d/first", b"0")  # /d was just made here and is empty: the lease is taken at once
    assert a.wb.held() == [schema.dir_journal(a.ns.resolve("/d").ino)]
    a.store.metrics.reset()
    for i in range(300):
        write_small(a, f"/d/f{i:03d}", b"x%d" % i)
    assert writes(a) == 0, f"acknowledged operations must not wait for the store: {a.store.metrics.by_call()}"
    assert a.wb.pending() == 602  # a create and the close's setattr each, first's two included
    assert a.getattr("/d/f299")["st_size"] == len(b"x299")

    # another mount that looks a name up asks the holder, which flushes and releases
    assert b.lookup("/d/f123")["st_size"] == len(b"x123")
    assert a.wb.held() == [] and a.wb.pending() == 0
    assert names(b, "/d") == {"first"} | {f"f{i:03d}" for i in range(300)}
    assert read_all(b, "/d/f042") == b"x42"
    assert a.wb.records == 1  # 600 operations, one record
    report = fsck(a.store)
    assert report.clean, report.lines()


def test_records_keep_to_the_byte_bound(wb_client: Callable[..., FileSystem]) -> None:
    """A batch stops before its events' JSON passes ``max_bytes``: small files' bytes travel
    inline, so the operation count alone does not bound a record's size (a DynamoDB item may not
    pass 400 KB). Each operation is measured once, by the flusher."""
    bound = 6_000
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=60.0, max_ops=10_000,
                  max_bytes=bound)
    a.mkdir("/d", 0o755, ROOT)
    for i in range(40):
        write_small(a, f"/d/f{i:02d}", bytes([65 + i % 26]) * 1000)  # inline: about 1.4 KB of JSON a close
    a.wb.sync_all()
    jid = schema.dir_journal(a.ns.resolve("/d").ino)
    records = [r for r in JournalStore(a.store).read_after(jid, 0)
               if any(not isinstance(e, (Stamp, Lease, Release)) for e in r.events)]
    assert len(records) > 1, "forty 1 KB files cannot fit one 6 KB record"
    for r in records:
        body, blob = r.encoded()
        assert len(body) + len(blob) <= bound, (r.seq, len(body), len(blob))
    assert read_all(a, "/d/f39") == b"N" * 1000


def test_o_excl_across_mounts_sees_an_acknowledged_create(wb_client: Callable[..., FileSystem]) -> None:
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=60.0)
    b = wb_client("bravo", writebehind=False)
    a.mkdir("/d", 0o755, ROOT)
    write_small(a, "/d/x", b"a")
    write_small(a, "/d/y", b"a")
    assert a.wb.pending() > 0
    b.lookup("/d")  # as the kernel does before the create: /d's own mkdir was acknowledged too
    assert a.wb.pending() > 0  # /d's queue is still there
    try:
        b.create("/d/y", 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ROOT)
    except FsError as e:
        assert e.errno == errno.EEXIST
    else:
        raise AssertionError("O_EXCL create of a name another mount acknowledged succeeded")
    assert a.wb.pending() == 0


def test_a_change_that_lands_while_the_lease_is_being_released_is_not_lost(
        wb_client: Callable[..., FileSystem]) -> None:
    """The holder puts its ``release``; before it has dropped the lease (its view still "ours"),
    the asker appends and the holder's change feed brings that record: it is ignored, as the
    feed's records of a held journal are the holder's own. The view must not then pass for
    fresh: the mount listed the directory without the asker's name for as long as the feed
    vouched for the view (the write-behind stress run: "mounts disagree after 15 s")."""
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=60.0)
    b = wb_client("bravo", writebehind=False)
    a.ns.ttl = NEVER  # as a running change feed does: the view counts as fresh unless marked stale
    a.mkdir("/d", 0o755, ROOT)
    write_small(a, "/d/x", b"a")
    jid = schema.dir_journal(a.ns.resolve("/d").ino)
    assert jid in a.wb.held()
    journals = a.wb.journals

    class BetweenPutAndDrop:
        """The journal store, with b's create landing (and a's feed seeing it) right after a's
        ``release`` is put, before a's flusher goes on."""

        def append(self, rec: Record) -> None:
            journals.append(rec)
            if any(isinstance(e, Release) for e in rec.events):
                fh = b.create("/d/y", 0o644, os.O_WRONLY | os.O_CREAT, ROOT)
                b.release(fh)
                for r in JournalStore(b.store).read_after(jid, rec.seq):
                    a.cache.on_change(Change(jid, schema.record_key(r.seq), r.to_item()))

        def __getattr__(self, name: str) -> object:
            return getattr(journals, name)

    a.wb.journals = BetweenPutAndDrop()  # type: ignore[assignment]
    a.wb.flush_jid(jid, release=True)
    assert jid not in a.wb.held()
    assert names(a, "/d") == {"x", "y"}


def test_a_thread_that_finds_the_lease_taken_meanwhile_shares_it(wb_client: Callable[..., FileSystem]) -> None:
    """Two threads of one mount both find no lease on a busy directory and both go to take it;
    the second, once it has the view's lock, must use the first's lease. Taking its own (a second
    ``lease`` record) cost a request and left the first thread's lease orphaned."""
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=60.0)
    a.mkdir("/d", 0o755, ROOT)
    jid = schema.dir_journal(a.ns.resolve("/d").ino)
    taken = a.wb.taken  # the root's lease, taken for the mkdir
    first = a.wb._acquire(jid)  # as the two threads do, one after the other, past submit's check
    second = a.wb._acquire(jid)
    assert first is not None and second is first
    assert jid in a.wb.held() and a.wb.taken == taken + 1
    recs = JournalStore(a.store).read_after(jid, 0)
    assert [type(e) for r in recs for e in r.events] == [Lease]


def test_history_shows_each_operation_with_its_own_time(wb_client: Callable[..., FileSystem]) -> None:
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=60.0)
    a.mkdir("/h", 0o755, ROOT)
    stamps: list[int] = []
    for i in range(20):
        write_small(a, f"/h/n{i:02d}", b"v%d" % i)
        stamps.append(time.time_ns())
        time.sleep(0.002)
    a.rename("/h/n00", "/h/renamed", 0, ROOT)
    a.unlink("/h/n01", ROOT)
    a.syncfs()
    jid = schema.dir_journal(a.ns.resolve("/h").ino)
    recs = JournalStore(a.store).read_after(jid, 0)
    batch = [r for r in recs if any(isinstance(e, Stamp) for e in r.events)]
    assert len(batch) == 1 and sum(isinstance(e, Stamp) for e in batch[0].events) == 42
    assert any(isinstance(e, Lease) for r in recs for e in r.events)

    lines = [ln for ln in Replayer(a.store).history() if ln.jid == jid and not ln.internal]
    creates = [ln for ln in lines if ln.op == "create"]
    assert [ln.path for ln in creates] == [f"/h/n{i:02d}" for i in range(20)]
    assert len({ln.ts for ln in creates}) == 20, "each operation keeps its own time"
    assert all(x.ts < y.ts for x, y in zip(creates, creates[1:]))
    assert [ln.op for ln in lines[-2:]] == ["rename", "unlink"]
    # a point inside the batch: the tree as it was after the 10th file
    view = Journals(a.store).view_at(jid, Point(ts=stamps[9]))
    assert set(view.entries) == {f"n{i:02d}" for i in range(10)}
    assert view.entries["n09"].size == 2
    a.close()
    recs = JournalStore(a.store).read_after(jid, 0)
    assert isinstance(recs[-1].events[-1], Release)
    report = fsck(a.store)
    assert report.clean, report.lines()


def test_directory_operations_flush_first(wb_client: Callable[..., FileSystem]) -> None:
    """rmdir, a rename across directories, link: the synchronous path, after the queue; a
    directory created in a leased directory is committed before anything inside it."""
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=60.0)
    b = wb_client("bravo", writebehind=False)
    a.mkdir("/p", 0o755, ROOT)
    a.mkdir("/q", 0o755, ROOT)
    a.mkdir("/p/sub", 0o755, ROOT)
    a.mkdir("/p/sub/deeper", 0o755, ROOT)
    write_small(a, "/p/sub/deeper/f", b"deep")
    write_small(a, "/p/g", b"g")
    a.rename("/p/g", "/q/g", 0, ROOT)  # across: flushes /p first
    a.link("/q/g", "/p/sub/h", ROOT)
    a.mkdir("/p/gone", 0o755, ROOT)
    a.rmdir("/p/gone", ROOT)
    a.syncfs()
    assert a.wb.pending() == 0
    assert read_all(b, "/p/sub/deeper/f") == b"deep"
    assert read_all(b, "/p/sub/h") == b"g"
    assert names(b, "/p") == {"sub"}
    assert stat.S_ISREG(b.getattr("/q/g")["st_mode"]) and b.getattr("/q/g")["st_nlink"] == 2
    report = fsck(a.store)
    assert report.clean, report.lines()


def test_requests_per_1000_small_files(wb_client: Callable[..., FileSystem], backend: str) -> None:
    a = wb_client("alpha")  # the default settings
    a.mkdir("/k", 0o755, ROOT)
    a.store.metrics.reset()
    started = time.monotonic()
    for i in range(1000):
        write_small(a, f"/k/file{i:04d}", b"small %d\n" % i)
    elapsed = time.monotonic() - started
    a.close()
    n = writes(a)
    print(f"\nwritebehind {backend}: {n} write requests for 1000 small files, {1000 / elapsed:.0f} files/s")
    assert n <= 50
    b = wb_client("bravo", writebehind=False)
    assert len(names(b, "/k")) == 1000
    assert read_all(b, "/k/file0999") == b"small 999\n"
