"""compact: shorter journals, same state, history kept inside the retention window, blocks
collected after the grace period, dead sessions expired, safe while another client writes."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.history.compact import GC_PARTITION, HOUR, CompactOptions, compact
from dynlog.history.fsck import fsck
from dynlog.history.timeparse import format_time
from dynlog.history.walk import Journals, Tree
from dynlog.store.base import Put

from .conftest import read_file, tick, tree_of, write_file
from .script import B_V2, run_script


def _records(store) -> int:
    n = 0
    for jid in list(store.scan_partitions("meta", "d/")) + list(store.scan_partitions("meta", "i/")):
        n += sum(1 for _ in store.query_prefix("meta", jid, "j/"))
    return n


def _items(store) -> list:
    out = []
    for table in ("meta", "blocks"):
        for p in store.scan_partitions(table):
            out += [(table, p, tuple(sorted((k, repr(v)) for k, v in it.items()))) for it in store.query(table, p)]
    return sorted(out)


def test_compact_keeps_state_and_shortens_journals(fs, new_fs, cli):
    run_script(fs)
    before = tree_of(new_fs())
    assert _records(fs.store) > 10
    rc, out, err = cli("compact", "--retain", "0", "--settle", "0")
    assert rc == 0, err
    assert "records: delete" in out and "saved:" in out
    journals = len(Journals(fs.store).list())
    assert _records(fs.store) == journals  # each keeps only its newest record
    cold = new_fs()
    assert tree_of(cold) == before
    assert read_file(cold, "/docs/b.txt") == B_V2
    assert fsck(fs.store).clean
    # and it still works afterwards, from the snapshots
    write_file(cold, "/docs/after.txt", b"after")
    assert read_file(new_fs(), "/docs/after.txt") == b"after"


def test_compact_dry_run_changes_nothing(fs, cli):
    run_script(fs)
    snap = _items(fs.store)
    rc, out, _ = cli("compact", "--retain", "0", "--grace", "0", "--settle", "0", "--dry-run")
    assert rc == 0 and "would delete" in out
    assert _items(fs.store) == snap


def test_history_inside_the_retention_window_survives(fs, new_fs):
    sc = run_script(fs)
    mid = sc.step("rename across").at
    # keep everything from "mid" on: the states at mid and later are still there
    now = time.time_ns()
    rep = compact(fs.store, CompactOptions(retain=now - mid, settle=0, now=now))
    assert rep.records_deleted > 0 and not rep.problems
    j = Journals(fs.store)
    for step in sc.steps[sc.steps.index(sc.step("rename across")):]:
        t = Tree(j, step.at)
        got = {e.path: e.inode.size for e in t.walk(t.root()) if e.path != "/"}
        assert set(got) == set(step.tree), step.what
    # before the window: refused, saying how far back it goes
    from dynlog.history.walk import HistoryUnavailable

    with pytest.raises(HistoryUnavailable, match="compacted away"):
        Tree(Journals(fs.store), sc.step("create a").at).lookup("/docs/a.txt")
    # restoring the deleted main.c from inside the window still works
    from dynlog.history.restore import restore

    restore(fs, Journals(fs.store), "/docs/main.c", sc.step("symlink").at, "/main-again")
    from .script import MAIN

    assert read_file(new_fs(), "/main-again") == MAIN


def test_blocks_are_collected_only_after_the_grace_period(fs, new_fs, store):
    write_file(fs, "/f", os.urandom(200_000))  # incompressible: stored as 200,000 bytes
    write_file(fs, "/f", b"B" * 200_000)  # the A version is now referenced only by history
    write_file(fs, "/g", b"G" * 10_000)  # past the inline limit: a block of its own
    assert len(list(store.scan_partitions("blocks"))) == 3
    now = time.time_ns()
    rep = compact(store, CompactOptions(retain=0, grace=HOUR, settle=0, now=now))
    assert rep.candidates_new == 1 and rep.blocks_collected == 0
    assert len(list(store.query("meta", GC_PARTITION))) == 1
    # a run within the grace period leaves it alone
    rep = compact(store, CompactOptions(retain=0, grace=HOUR, settle=0, now=now + HOUR // 2))
    assert rep.blocks_collected == 0 and rep.candidates_waiting == 1
    # past the grace period it goes, with its bytes
    rep = compact(store, CompactOptions(retain=0, grace=HOUR, settle=0, now=now + 2 * HOUR))
    assert rep.blocks_collected == 1 and rep.block_items_deleted == 2 and rep.block_bytes_deleted == 200_000
    assert len(list(store.scan_partitions("blocks"))) == 2
    assert list(store.query("meta", GC_PARTITION)) == []
    c = new_fs()
    assert read_file(c, "/f") == b"B" * 200_000 and read_file(c, "/g") == b"G" * 10_000
    assert fsck(store).clean


def test_history_protects_blocks(fs, new_fs, store):
    write_file(fs, "/f", b"A" * 10)
    t = tick()
    write_file(fs, "/f", b"B" * 10)
    rep = compact(store, CompactOptions(retain=HOUR, grace=0, settle=0))
    assert rep.blocks_collected == 0  # the A version is inside the retention window
    from dynlog.history.restore import restore

    restore(new_fs(), Journals(store), "/f", t, "/f-old")
    assert read_file(new_fs(), "/f-old") == b"A" * 10


def test_unreferenced_candidate_that_gets_referenced_is_cleared(fs, store):
    write_file(fs, "/f", b"x" * 10_000)  # past the inline limit: stored in a block
    bid = next(iter(store.scan_partitions("blocks")))
    store.put(Put("meta", {"path": GC_PARTITION, "name": bid, "seen": 1}))  # a stale candidate
    rep = compact(store, CompactOptions(retain=0, grace=1, settle=0))
    assert rep.candidates_cleared == 1 and rep.blocks_collected == 0
    assert list(store.scan_partitions("blocks")) == [bid]


def test_removed_directories_journals_are_dropped(fs, store):
    fs.mkdir("/d", 0o755, ROOT)
    write_file(fs, "/d/x", b"data" * 3000)  # past the inline limit: stored in a block
    fs.unlink("/d/x", ROOT)
    fs.rmdir("/d", ROOT)
    assert len(list(store.scan_partitions("meta", "d/"))) == 2
    rep = compact(store, CompactOptions(retain=0, grace=0, settle=0))
    assert rep.journals_dropped == 1 and rep.blocks_collected == 1
    assert list(store.scan_partitions("meta", "d/")) == ["d/1"]
    assert list(store.scan_partitions("blocks")) == []
    assert fsck(store).clean


def test_dead_sessions_expire(fs, store):
    now = time.time_ns()
    store.put(Put("meta", {"path": schema.SESSIONS, "name": "dead1", "host": "h", "hb": now - 3600 * 10**9}))
    store.put(Put("meta", {"path": schema.SESSIONS, "name": "live1", "host": "h", "hb": now}))
    rep = compact(store, CompactOptions(settle=0, now=now))
    assert rep.sessions_expired == 1
    assert [it["name"] for it in store.query("meta", schema.SESSIONS)] == ["live1"]


def test_one_compact_at_a_time(fs, store, cli):
    store.put(Put("meta", {"path": "fs", "name": "compact", "owner": "elsewhere", "until": time.time_ns() + 10**12}))
    rc, _, err = cli("compact", "--settle", "0")
    assert rc == 1 and "another compact is running" in err
    store.put(Put("meta", {"path": "fs", "name": "compact", "owner": "elsewhere", "until": 5}))  # expired
    rc, _, err = cli("compact", "--settle", "0")
    assert rc == 0, err
    assert store.get("meta", ("fs", "compact")) is None


def test_interrupted_compact_is_finished_by_the_next_run(fs, new_fs, store, monkeypatch):
    run_script(fs)
    before = tree_of(new_fs())
    from dynlog.history import compact as mod

    real = mod.Compactor._delete_items
    calls = {"n": 0}

    def flaky(self, jid, prefix, stop, records):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("interrupted")
        return real(self, jid, prefix, stop, records)

    monkeypatch.setattr(mod.Compactor, "_delete_items", flaky)
    with pytest.raises(KeyboardInterrupt):
        compact(store, CompactOptions(retain=0, settle=0))
    monkeypatch.setattr(mod.Compactor, "_delete_items", real)
    assert tree_of(new_fs()) == before
    assert fsck(store).clean
    rep = compact(store, CompactOptions(retain=0, settle=0))
    assert not rep.problems
    assert _records(store) == len(Journals(store).list())
    assert tree_of(new_fs()) == before
    assert fsck(store).clean


def test_listing_after_compact_costs_two_requests_whatever_the_history(fs, new_fs, store):
    # /long: over 1 MB of records (two query pages), in 300 records of 3 KB values
    for d, n_events in (("/short", 20), ("/long", 300)):
        fs.mkdir(d, 0o755, ROOT)
        for i in range(10):
            write_file(fs, f"{d}/f{i}", b"")
        for i in range(n_events):
            fs.setxattr(f"{d}/f{i % 10}", "user.note", b"%04d" % i * 750, 0, ROOT)
    costs = {}
    for phase in ("before", "after"):
        if phase == "after":
            compact(store, CompactOptions(retain=0, settle=0))
        for d in ("/short", "/long"):
            c = new_fs()
            list(c.readdir("/"))  # warm the root
            c.store.metrics.reset()
            names = [n for n, _ in c.readdir(d)]
            costs[(phase, d)] = c.store.metrics.requests()
            assert len(names) == 12
    assert costs[("after", "/short")] == 2 and costs[("after", "/long")] == 2
    assert costs[("before", "/long")] > costs[("after", "/long")]


def test_compact_while_another_client_writes(fs, new_fs, store):
    """A writer thread with its own FileSystem creates, overwrites, renames and deletes files
    while compact runs again and again; afterwards nothing is lost and fsck is clean."""
    run_script(fs)
    assert fsck(store).clean
    writer = new_fs(session="writer")
    writer.mkdir("/w", 0o755, ROOT)
    model: dict[str, bytes] = {}
    stop = threading.Event()
    errors: list[BaseException] = []
    rng = random.Random(1)

    def write_loop() -> None:
        try:
            i = 0
            while not stop.is_set() or i < 60:
                i += 1
                op = rng.random()
                names = sorted(model)
                if op < 0.45 or not names:
                    p = f"/w/f{i}"
                    data = rng.randbytes(rng.choice([10, 5000, 140_000]))
                    write_file(writer, p, data)
                    model[p] = data
                elif op < 0.65:
                    p = rng.choice(names)
                    data = rng.randbytes(rng.choice([7, 3000, 200_000]))
                    write_file(writer, p, data)
                    model[p] = data
                elif op < 0.8:
                    p = rng.choice(names)
                    q = f"/w/r{i}" if rng.random() < 0.5 else f"/w/sub{i % 3}/r{i}"
                    if q.count("/") == 3:
                        try:
                            writer.mkdir(q.rsplit("/", 1)[0], 0o755, ROOT)
                        except Exception:  # noqa: BLE001 - exists
                            pass
                    writer.rename(p, q, 0, ROOT)
                    model[q] = model.pop(p)
                else:
                    p = rng.choice(names)
                    writer.unlink(p, ROOT)
                    del model[p]
                if i > 400:
                    break
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    before = _records(store)
    t = threading.Thread(target=write_loop)
    t.start()
    runs = 0
    while t.is_alive() and runs < 6:
        rep = compact(store, CompactOptions(retain=0, grace=HOUR, settle=0))
        assert not rep.problems, rep.problems
        runs += 1
    stop.set()
    t.join()
    assert not errors, errors
    assert runs >= 2
    rep = compact(store, CompactOptions(retain=0, grace=HOUR, settle=0))
    assert not rep.problems
    assert _records(store) < before  # journals got shorter although the writer added to them
    cold = new_fs()
    got = {p: s for p, s in tree_of(cold, "/w").items() if s[0] == "file"}
    assert set(got) == set(model)
    for p, data in model.items():
        assert read_file(cold, p) == data, p
    report = fsck(store)
    assert report.clean, report.lines()
    # and history since the writer started is still replayable
    assert format_time(time.time_ns())


def test_open_unlinked_file_keeps_its_blocks_while_its_session_lives(fs, new_fs, store):
    import os

    from dynlog.cluster.sessions import Session

    write_file(fs, "/tmpfile", b"still open" * 1000)
    holder = new_fs(session="holder1")
    fh = holder.open("/tmpfile", os.O_RDONLY, ROOT)
    sess = Session(store, holder.session, open_files=holder.open_block_versions)
    sess.beat()
    fs.unlink("/tmpfile", ROOT)
    rep = compact(store, CompactOptions(retain=0, grace=0, settle=0))
    assert rep.blocks_collected == 0
    assert len(list(store.scan_partitions("blocks"))) == 1
    assert fsck(store).clean
    holder.data.blocks.cache = type(holder.data.blocks.cache)()  # make the read go to the store
    assert holder.read(fh, 100, 0) == b"still open" * 10
    holder.release(fh, ROOT)
    # the session dies without closing: its blocks go on the next run
    store.put(Put("meta", {**store.get("meta", (schema.SESSIONS, "holder1")), "hb": 1}))
    rep = compact(store, CompactOptions(retain=0, grace=0, settle=0))
    assert rep.blocks_collected == 1 and rep.sessions_expired == 1
    assert list(store.scan_partitions("blocks")) == []


def test_progress_line_and_json_summary(fs, cli):
    import json

    run_script(fs)
    rc, out, err = cli("compact", "--retain", "0", "--settle", "0", "--progress", "--json")
    assert rc == 0
    assert "compact: reading journals, writing snapshots [" in err and err.endswith("\r")
    summary = json.loads(out)
    assert summary["records_deleted"] > 0 and summary["snapshots_written"] >= 3 and summary["problems"] == []


def test_expired_relay_notices_are_deleted(fs, store):
    now = time.time_ns()
    store.put(Put("meta", {"path": "nb/0", "name": f"{now - 10**12:020d}-s-1", "ch": "[]", "ttl": now // 10**9 - 400}))
    store.put(Put("meta", {"path": "nb/0", "name": f"{now:020d}-s-2", "ch": "[]", "ttl": now // 10**9 + 600}))
    rep = compact(store, CompactOptions(settle=0, now=now))
    assert rep.notices_expired == 1
    assert [it["name"] for it in store.query("meta", "nb/0")] == [f"{now:020d}-s-2"]


def test_a_cold_load_racing_a_trim_retries(fs, new_fs, store, monkeypatch):
    """A client reads the old snapshot, compact trims the records after it, the client then reads
    the records: it must retry from the newer snapshot, not fail."""
    from dynlog.journal.log import JournalStore

    fs.mkdir("/d", 0o755, ROOT)
    for i in range(5):
        write_file(fs, f"/d/f{i}", b"")
    compact(store, CompactOptions(retain=0, settle=0))
    for i in range(5, 9):
        write_file(fs, f"/d/f{i}", b"")
    reader = new_fs()
    list(reader.readdir("/"))
    real = JournalStore.load_snapshot
    raced = []

    def load_then_compact(self, jid, at_or_before=None):
        snap = real(self, jid, at_or_before)
        if jid != "d/1" and not raced:
            raced.append(jid)
            compact(store, CompactOptions(retain=0, settle=0))  # trims what this snapshot needs
        return snap

    monkeypatch.setattr(JournalStore, "load_snapshot", load_then_compact)
    assert sorted(n for n, _ in reader.readdir("/d") if n[0] == "f") == [f"f{i}" for i in range(9)]
    assert raced
