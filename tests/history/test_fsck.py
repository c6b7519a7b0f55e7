"""fsck: clean on a sound file system; finds altered records, broken snapshots, wrong link
counts, lost blocks, cycles, unreachable directories and overdue garbage; --repair fixes what
is safe."""

from __future__ import annotations

import json
import zlib

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.history.compact import GC_PARTITION, CompactOptions, compact
from dynlog.history.fsck import fsck
from dynlog.journal.events import Create, SetAttr
from dynlog.journal.inode import Inode
from dynlog.journal.log import JournalStore
from dynlog.journal.record import Record
from dynlog.materialize.view import View
from dynlog.store.base import Put

from .conftest import read_file, write_file
from .script import run_script


def _dir_jid(fs, path: str) -> str:
    return schema.dir_journal(fs.ns.resolve(path).ino)


def test_clean_after_a_scripted_history(fs, cli):
    run_script(fs)
    rc, out, err = cli("fsck")
    assert rc == 0, out + err
    assert out.splitlines()[-1] == "clean"
    rc, out, _ = cli("fsck", "--json")
    assert json.loads(out)["clean"] is True


def test_detects_an_altered_record(fs, cli, store):
    run_script(fs)
    jid = _dir_jid(fs, "/docs")
    item = store.get("meta", (jid, schema.record_key(2)))
    item["ev"] = item["ev"].replace("a.txt", "z.txt")
    store.put(Put("meta", item))
    rc, out, _ = cli("fsck")
    assert rc == 1
    assert f"PROBLEM: {jid} record 2: content does not match its hash" in out
    # --repair does not rewrite history
    rc, out, _ = cli("fsck", "--repair")
    assert rc == 1 and "does not match its hash" in out


def test_detects_a_record_that_does_not_decode(fs, cli, store):
    fs.mkdir("/a", 0o755, ROOT)
    item = store.get("meta", ("d/1", schema.record_key(1)))
    item["ev"] = "[{not json"
    store.put(Put("meta", item))
    rc, out, _ = cli("fsck")
    assert rc == 1 and "record cannot be read" in out


def test_detects_a_removed_record(fs, cli, store):
    for n in "abc":
        fs.mkdir(f"/{n}", 0o755, ROOT)
    store.batch_write("meta", deletes=[("d/1", schema.record_key(2))])
    rc, out, _ = cli("fsck")
    assert rc == 1 and "records 2..2 are missing" in out


def test_detects_and_repairs_a_snapshot_that_differs_from_its_journal(fs, cli, store):
    run_script(fs)
    compact(store, CompactOptions(retain=10**15, settle=0))  # snapshots at the heads, history kept
    jid = _dir_jid(fs, "/docs")
    js = JournalStore(store)
    snap = js.load_snapshot(jid)
    v = View.from_snapshot(snap)
    v.drop_entry("link")  # a snapshot that lies about the directory (same seq, same hash)
    js.delete_snapshot(jid, snap["head"])
    js.write_snapshot(jid, v.to_snapshot())
    rc, out, _ = cli("fsck")
    assert rc == 1 and f"{jid} snapshot at {snap['head']}: differs from the replay" in out
    rc, out, _ = cli("fsck", "--repair")
    assert rc == 0 and "repaired: rewrote it" in out, out
    rc, out, _ = cli("fsck")
    assert rc == 0, out
    assert "link" in dict(View.from_snapshot(js.load_snapshot(jid)).entries)


def test_detects_an_incomplete_and_a_corrupt_snapshot(fs, cli, store):
    run_script(fs)
    compact(store, CompactOptions(retain=10**15, settle=0))
    jid = _dir_jid(fs, "/docs")
    js = JournalStore(store)
    head = js.load_snapshot(jid)["head"]
    key = (jid, schema.snapshot_key(head, 0))
    item = store.get("meta", key)
    item["data"] = zlib.compress(b"{broken")
    store.put(Put("meta", item))
    rc, out, _ = cli("fsck")
    assert rc == 1 and f"{jid} snapshot at {head}: incomplete or unreadable" in out
    store.batch_write("meta", deletes=[key])  # now a part is missing altogether
    item["name"] = schema.snapshot_key(head, 1)
    item["of"] = 2
    store.put(Put("meta", item))
    rc, out, _ = cli("fsck", "--repair")
    assert rc == 0, out
    assert "rewrote it" in out
    rc, _, _ = cli("fsck")
    assert rc == 0


def test_snapshot_hash_checked_when_records_are_gone(fs, cli, store):
    run_script(fs)
    compact(store, CompactOptions(retain=0, settle=0))
    jid = _dir_jid(fs, "/docs")
    js = JournalStore(store)
    snap = js.load_snapshot(jid)
    fs.mkdir("/docs/later", 0o755, ROOT)  # a record after the snapshot, chained to its hash
    snap["hash"] = "f" * 32
    js.delete_snapshot(jid, snap["head"])
    js.write_snapshot(jid, snap)
    rc, out, _ = cli("fsck")
    # compact keeps the newest record, whose hash the snapshot must carry
    assert rc == 1 and f"snapshot at {snap['head']}: hash differs from record {snap['head']}'s" in out
    store.batch_write("meta", deletes=[(jid, schema.record_key(snap["head"]))])
    rc, out, _ = cli("fsck")
    assert rc == 1 and f"does not chain to the snapshot at {snap['head']}" in out


def test_link_counts_and_repair(fs, cli, store, new_fs):
    write_file(fs, "/f", b"shared")
    fs.link("/f", "/g", ROOT)
    rc, _, _ = cli("fsck")
    assert rc == 0
    ino = fs.ns.resolve("/f").ino
    js = JournalStore(store)
    jid = schema.inode_journal(ino)
    recs = js.read_after(jid, 0)
    bad = Record(jid, recs[-1].seq + 1, (SetAttr("", {"nlink": 5}),), recs[-1].ts + 1, "x", 0, "test",
                 recs[-1].hash).sealed()
    js.append(bad)
    rc, out, _ = cli("fsck")
    assert rc == 1 and f"inode {ino}: link count 5, but 2 names refer to it" in out
    rc, out, _ = cli("fsck", "--repair")
    assert rc == 0 and "set the link count to 2" in out
    assert new_fs().getattr("/g")["st_nlink"] == 2


def test_detects_a_lost_block_and_an_unreachable_directory(fs, cli, store):
    write_file(fs, "/f", b"data" * 3000)  # past the inline limit: stored in a block
    bid = next(iter(store.scan_partitions("blocks")))
    store.batch_write("blocks", deletes=[(bid, 0)])
    js = JournalStore(store)
    lost = Record("d/999", 1, (Create("orphan", Inode(ino=1000, mode=0o100644)),), 1, "x", 0, "test",
                  "0" * 32).sealed()
    js.append(lost)
    rc, out, _ = cli("fsck")
    assert rc == 1
    assert f"block version {bid} is mapped by a live file but is not stored" in out
    assert "directory journal d/999 (1 entries) is not reachable from the root" in out


def test_detects_a_directory_cycle(fs, cli, store):
    fs.mkdir("/a", 0o755, ROOT)
    fs.mkdir("/a/b", 0o755, ROOT)
    a = fs.ns.resolve("/a")
    b = fs.ns.resolve("/a/b")
    js = JournalStore(store)
    recs = js.read_after(schema.dir_journal(b.ino), 0)
    prev = recs[-1].hash if recs else "0" * 32
    loop = Record(schema.dir_journal(b.ino), len(recs) + 1, (Create("up", a.entry),), 1, "x", 0, "test", prev).sealed()
    js.append(loop)
    rc, out, _ = cli("fsck")
    assert rc == 1 and "a cycle or a second parent" in out


def test_garbage_blocks_past_the_grace_period(fs, cli, store, new_fs):
    write_file(fs, "/f", b"one" * 3000)  # past the inline limit: block versions
    write_file(fs, "/f", b"two" * 3000)
    compact(store, CompactOptions(retain=0, settle=0))  # marks the old version as a candidate
    rc, out, _ = cli("fsck")
    assert rc == 0 and "wait for collection" in out
    for it in store.query("meta", GC_PARTITION):  # pretend it was marked long ago
        store.put(Put("meta", {**it, "seen": 1}))
    rc, out, _ = cli("fsck")
    assert rc == 1 and "unreferenced for longer than the grace period" in out
    rc, out, _ = cli("fsck", "--repair")
    assert rc == 0 and "deleted 1 block versions" in out
    assert len(list(store.scan_partitions("blocks"))) == 1
    assert read_file(new_fs(), "/f") == b"two" * 3000
    rc, _, _ = cli("fsck")
    assert rc == 0


def test_unseen_unreferenced_blocks_are_a_note(fs, cli, store):
    store.batch_write("blocks", puts=[{"blockId": "77.zzz", "blockNum": 0, "data": b"in flight"}])
    rc, out, _ = cli("fsck")
    assert rc == 0 and "not yet seen by compact" in out


def test_inline_contents_are_checked(fs, cli, store):
    write_file(fs, "/small", b"tiny")
    rc, out, _ = cli("fsck")
    assert rc == 0, out
    # a record (not written by dynlog) that puts more than the inline limit inline
    jid = schema.dir_journal(schema.ROOT_INO)
    js = JournalStore(store)
    recs = js.read_after(jid, 0)
    bad = Record(jid, recs[-1].seq + 1, (SetAttr("small", {"size": 9000}, None, 0, b"x" * 9000),), 1, "x", 0,
                 "test", recs[-1].hash).sealed()
    js.append(bad)
    rc, out, _ = cli("fsck")
    assert rc == 1 and "/small: inline contents of 9000 bytes" in out
