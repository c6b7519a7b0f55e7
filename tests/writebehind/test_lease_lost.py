"""A holder that stalls past its lease (docs/ARCHITECTURE.md, "Expiry and clocks"), on both
stores: its batch is in flight when the lease ends, another mount appends to the directory, and
the batch then finds its seq taken. What the holder had acknowledged and not committed is dropped
whole, as a crash would drop it; nothing of it is half-applied, the holder's view is re-read and
agrees with the other mount's, and the journals stay clean."""

from __future__ import annotations

import threading
import time
from typing import Callable

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.history.fsck import fsck
from dynlog.journal.record import Record

from .test_engine import NEVER, names, read_all, write_small

LEASE_S = 1.0


def test_a_holder_that_stalls_past_its_lease_drops_its_queue_whole(wb_client: Callable[..., FileSystem]) -> None:
    a = wb_client("alpha", take_after=1, window_s=NEVER, idle_s=NEVER, lease_s=LEASE_S, margin_s=0.2, skew_s=0.1)
    b = wb_client("bravo", writebehind=False, skew_s=0.1)
    a.mkdir("/d", 0o755, ROOT)
    write_small(a, "/d/kept", b"k")
    jid = schema.dir_journal(a.ns.resolve("/d").ino)
    assert jid in a.wb.held()
    a.syncfs()  # "kept" is committed; the lease stays
    journals = a.wb.journals
    in_flight, network_back = threading.Event(), threading.Event()

    class Stalled:
        """The journal store, with the holder's next batch in /d held up in flight (an outage
        between the put leaving and arriving) until the test lets it go."""

        def append(self, rec: Record) -> None:
            if rec.jid == jid:
                in_flight.set()
                network_back.wait(30)
            journals.append(rec)

        def __getattr__(self, name: str) -> object:
            return getattr(journals, name)

    a.wb.journals = Stalled()  # type: ignore[assignment]
    for i in range(3):
        write_small(a, f"/d/q{i}", b"q%d" % i)  # acknowledged, queued
    assert a.wb.pending() == 6  # a create and the close's setattr each
    # half the lease gone, the flusher renews it in a batch with the queue: that batch stalls
    assert in_flight.wait(10), "the flusher never sent its renewal"
    time.sleep(LEASE_S + 0.3)  # the lease is over, by both clocks
    fh = b.create("/d/theirs", 0o644, 0, ROOT)  # the lease has expired: b appends at head+1
    b.release(fh)
    network_back.set()
    deadline = time.monotonic() + 10
    while a.wb.lost == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.wb.lost == 6 and a.wb.pending() == 0
    assert jid not in a.wb.held()
    a.wb.journals = journals  # type: ignore[assignment]
    # the holder's view was re-read: it lists what the store holds, as the other mount does
    assert names(a, "/d") == names(b, "/d") == {"kept", "theirs"}
    assert read_all(a, "/d/kept") == b"k"
    a.syncfs()  # nothing dropped comes back at a later durability point
    assert names(b, "/d") == {"kept", "theirs"}
    report = fsck(a.store)
    assert report.clean, report.lines()
