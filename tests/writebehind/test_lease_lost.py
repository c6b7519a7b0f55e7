"""A holder that stalls past its lease (docs/ARCHITECTURE.md, "A lease found lost"), on both
stores: its batch is in flight when the lease ends, another mount appends to the directory, and
the batch then finds its seq taken. The queued operations that touch no name the other mount
touched are committed as acknowledged; those that do, and those built on them, are dropped whole,
as a crash would drop them (dynlog/writebehind/rescue.py). Nothing is half-applied, both mounts
list the same, and the journals stay clean."""

from __future__ import annotations

import errno
import threading
import time
from typing import Callable, Iterator

import pytest

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.errors import FsError, StoreError
from dynlog.history.fsck import fsck
from dynlog.journal.record import Record

from .test_engine import NEVER, names, read_all, write_small

# The holder's lease: short, so that the tests wait little for it to run out.
LEASE_S = 1.0


@pytest.fixture
def stalled(wb_client: Callable[..., FileSystem]) -> Iterator[tuple[FileSystem, FileSystem, "Stall"]]:
    """Mount a (write-behind, a 1 s lease) holding /d with "kept" committed, and b (synchronous)."""
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=LEASE_S, margin_s=0.2, skew_s=0.1,
                  contention_s=0.0)
    b = wb_client("bravo", writebehind=False, skew_s=0.1)
    b.mkdir("/d", 0o755, ROOT)  # made by b: a's only lease is the one on /d
    write_small(a, "/d/kept", b"k")
    jid = schema.dir_journal(a.ns.resolve("/d").ino)
    assert jid in a.wb.held()
    a.syncfs()  # "kept" is committed; the lease stays
    stall = Stall(a, jid)
    yield a, b, stall
    stall.go.set()
    a.wb.journals = stall.journals  # type: ignore[assignment]


class Stall:
    """The holder's journal store, with its next batch in the directory held up in flight (an
    outage between the put leaving and arriving) until ``go`` is set."""

    def __init__(self, fs: FileSystem, jid: str) -> None:
        self.fs, self.jid, self.journals = fs, jid, fs.wb.journals
        self.in_flight, self.go = threading.Event(), threading.Event()
        fs.wb.journals = self  # type: ignore[assignment]

    def append(self, rec: Record) -> None:
        if rec.jid == self.jid and not self.go.is_set():
            self.in_flight.set()
            self.go.wait(30)
        self.journals.append(rec)

    def __getattr__(self, name: str) -> object:
        return getattr(self.journals, name)

    def until_the_lease_is_over(self) -> None:
        """Half the lease gone, the flusher renews it in a batch with the queue: that batch
        stalls; then the lease runs out, by both mounts' clocks."""
        assert self.in_flight.wait(10), "the flusher never sent its renewal"
        time.sleep(LEASE_S + 0.3)

    def release_and_settle(self) -> None:
        """Let the batch arrive (its seq is taken by then) and wait until the flusher has dealt
        with the loss."""
        self.go.set()
        wb = self.fs.wb
        deadline = time.monotonic() + 15
        while wb.rescues == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wb.rescues == 1 and self.jid not in wb.held() and wb.pending() == 0


def test_a_lost_lease_commits_what_nobody_else_touched(stalled: tuple[FileSystem, FileSystem, Stall],
                                                      wb_client: Callable[..., FileSystem]) -> None:
    a, b, stall = stalled
    for name in ("q0", "q1", "q2", "clash"):
        write_small(a, f"/d/{name}", name.encode())  # acknowledged, queued
    a.rename("/d/q2", "/d/q2.moved", 0, ROOT)
    a.chmod("/d/clash", 0o600, ROOT)  # built on a's "clash": goes with it
    assert a.wb.pending() == 10  # a create and the close's setattr each, the rename, the chmod
    stall.until_the_lease_is_over()
    write_small(b, "/d/clash", b"bravo's")  # b appends at head+1: the lease has expired
    write_small(b, "/d/theirs", b"t")
    stall.release_and_settle()
    assert a.wb.lost == 3  # a's create of "clash", its close and its chmod
    want = {"kept", "q0", "q1", "q2.moved", "clash", "theirs"}
    fresh = wb_client("charlie", writebehind=False)  # what the store holds
    assert names(a, "/d") == names(fresh, "/d") == want
    for name, data in (("q0", b"q0"), ("q2.moved", b"q2"), ("clash", b"bravo's"), ("kept", b"k")):
        assert read_all(fresh, f"/d/{name}") == data and read_all(a, f"/d/{name}") == data, name
    assert fresh.getattr("/d/clash")["st_mode"] & 0o777 == 0o644
    report = fsck(a.store)
    assert report.clean, report.lines()


def test_a_lost_lease_in_a_removed_directory_drops_everything(
        stalled: tuple[FileSystem, FileSystem, Stall]) -> None:
    a, b, stall = stalled
    for name in ("q0", "q1"):
        write_small(a, f"/d/{name}", name.encode())
    stall.until_the_lease_is_over()
    b.unlink("/d/kept", ROOT)
    b.rmdir("/d", ROOT)  # seals the directory's journal
    stall.release_and_settle()
    assert a.wb.lost == 4
    assert "d" not in names(b, "/")
    with pytest.raises(FsError) as e:
        a.getattr("/d/q0")
    assert e.value.errno == errno.ENOENT
    report = fsck(a.store)
    assert report.clean, report.lines()


def test_a_store_failure_during_the_rescue_leaves_nothing_unaccounted(
        stalled: tuple[FileSystem, FileSystem, Stall]) -> None:
    """The rescue's own reads fail (the outage is back): what it had not committed counts as
    dropped, and the failure reaches the flusher, which logs it; nothing is half-applied."""
    a, b, stall = stalled
    for name in ("q0", "q1"):
        write_small(a, f"/d/{name}", name.encode())
    stall.until_the_lease_is_over()
    write_small(b, "/d/theirs", b"t")

    def unreachable(jid: str, seq: int, until: int | None = None) -> list[Record]:
        raise StoreError("DynamoDB unreachable (injected)")

    stall.read_after = unreachable  # type: ignore[method-assign]
    stall.release_and_settle()
    assert a.wb.lost == 4
    del stall.read_after
    report = fsck(a.store)
    assert report.clean, report.lines()


def test_a_commit_during_the_rescue_waits_for_it(stalled: tuple[FileSystem, FileSystem, Stall],
                                                 wb_client: Callable[..., FileSystem]) -> None:
    """Between the lease's loss and the rescue's re-commit, the holder's view still holds its
    queued operations. A synchronous operation on one of them (a close, a chmod of a file whose
    create is queued) must wait for the rescue: committed before it, it would precede the create
    it depends on (a fresh-clone run saw a file's last close land so, and the file read empty)."""
    a, b, stall = stalled
    write_small(a, "/d/q0", b"q0")  # acknowledged, queued
    stall.until_the_lease_is_over()
    write_small(b, "/d/theirs", b"t")
    rescue = a.wb._rescue
    during: list[BaseException] = []

    def chmod_meanwhile() -> None:
        try:
            a.chmod("/d/q0", 0o600, ROOT)
        except BaseException as e:  # noqa: BLE001 - reported below
            during.append(e)

    chmodder = threading.Thread(target=chmod_meanwhile)

    def rescue_with_a_commit_racing_it(*args: object) -> bool:
        chmodder.start()
        time.sleep(0.5)  # time enough for the chmod to commit, were it let through
        return rescue(*args)  # type: ignore[arg-type]

    a.wb._rescue = rescue_with_a_commit_racing_it  # type: ignore[method-assign]
    stall.release_and_settle()
    chmodder.join(timeout=30)
    assert not chmodder.is_alive() and not during, during
    assert a.wb.lost == 0
    fresh = wb_client("charlie", writebehind=False)
    assert read_all(fresh, "/d/q0") == b"q0"
    assert fresh.getattr("/d/q0")["st_mode"] & 0o777 == 0o600
    report = fsck(a.store)
    assert report.clean, report.lines()
