"""Write-behind mounts (``-o writebehind``) whose every DynamoDB request goes through the fault
proxy at the issue's rates: a batch commit, a lease, an ask or a release whose reply is lost,
throttled or answered 500 is retried without losing or duplicating an acknowledged operation.
Checked on a fresh mount without faults (exact bytes and names), by fsck, and in the journals
(write-behind batches and leases were really used, not synchronous commits)."""

from __future__ import annotations

import os
from dataclasses import replace
import threading
import time
from pathlib import Path

import pytest

from dynlog import schema
from dynlog.faults.proxy import FaultRates
from dynlog.journal.events import Lease, Stamp
from dynlog.journal.log import JournalStore
from dynlog.store.source import open_store
from mounted.conftest import Mounter, Source, fsync_dir
from programs.treeutil import compare

from .conftest import PRODUCTION_FAULTS, FaultyFs, assert_every_fault_hit, report_faults
from .workloads import small_tree, tar_in

pytestmark = pytest.mark.dynamodb  # DynamoDB Local, behind the fault proxy

# A write-behind mount makes few requests (a batch a flush window), so lost replies and resets
# are made more likely than PRODUCTION_FAULTS's 3% and 2%: each kind must hit some batch commits.
WB_FAULTS = replace(PRODUCTION_FAULTS, lost_reply=0.10, reset=0.05)
DIRS = 8
FILES = 60  # per directory: enough operations in a row to take a lease in each


def content(tag: str, d: int, i: int) -> bytes:
    return f"{tag}/{d}/{i}\n".encode() * (1 + i % 40)


def write_files(root: Path, tag: str) -> dict[str, bytes]:
    """DIRS directories of FILES small files through plain system calls, then a rename and an
    unlink in each: what the directories must hold afterwards, by relative path."""
    want: dict[str, bytes] = {}
    for d in range(DIRS):
        sub = root / f"{tag}{d}"
        sub.mkdir()
        for i in range(FILES):
            data = content(tag, d, i)
            (sub / f"f{i:03d}").write_bytes(data)
            want[f"{tag}{d}/f{i:03d}"] = data
        os.rename(sub / "f000", sub / "renamed")
        want[f"{tag}{d}/renamed"] = want.pop(f"{tag}{d}/f000")
        os.unlink(sub / "f001")
        del want[f"{tag}{d}/f001"]
    return want


def assert_holds(root: Path, want: dict[str, bytes], dirs: list[str]) -> None:
    got = {f"{d}/{n}" for d in dirs for n in os.listdir(root / d)}
    assert got == set(want), (sorted(got - set(want))[:5], sorted(set(want) - got)[:5])
    for rel, data in want.items():
        assert (root / rel).read_bytes() == data, rel


def listed_in_time(path: Path, names: set[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := set(os.listdir(path))) != names and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == names, (sorted(got - names)[:5], sorted(names - got)[:5])


def journal_events(direct: Source, path: Path) -> tuple[int, list[object]]:
    """The records of the directory at ``path`` (a mount's path: st_ino is dynlog's inode) and
    all their events, read straight from the store."""
    store = open_store(direct.source, endpoint_url=direct.endpoint)
    try:
        recs = JournalStore(store).read_after(schema.dir_journal(os.stat(path).st_ino), 0)
    finally:
        store.close()
    return len(recs), [ev for r in recs for ev in r.events]


def unmount_clean(mounter: Mounter, m: object) -> None:
    mounter.unmount(m)
    log = m.log_text()
    # (a flush that failed after the store's retries stays queued and is retried: not an error)
    for bad in ("Traceback", "store.unreachable", "writebehind.lease_lost", "writebehind.release_failed"):
        assert bad not in log, f"{bad} in the mount's log:\n{log[-3000:]}"


@pytest.mark.timeout(300)
def test_writebehind_mount_under_faults(faulty_fs: FaultyFs, mounter: Mounter, tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree")
    m = mounter.mount(faulty_fs.source, options="writebehind")
    faulty_fs.proxy.set(rates=WB_FAULTS)
    root = Path(m.path)
    tar_in(tree, root / "tar")
    want = write_files(root, "w")
    assert_holds(root, want, [f"w{d}" for d in range(DIRS)])
    fsync_dir(root / "w0")
    faulty_fs.proxy.set(rates=FaultRates())
    unmount_clean(mounter, m)
    report_faults("writebehind", faulty_fs.proxy, workloads=["tar", f"{DIRS}x{FILES} files, rename, unlink"])
    assert_every_fault_hit(faulty_fs.proxy)
    faulty_fs.fsck()

    fresh = mounter.mount(faulty_fs.direct)
    froot = Path(fresh.path)
    assert compare(tree, froot / "tar") == []
    assert_holds(froot, want, [f"w{d}" for d in range(DIRS)])
    records, events = journal_events(faulty_fs.direct, froot / "w0")
    stamps = sum(isinstance(ev, Stamp) for ev in events)
    # the directory's FILES creates, rename and unlink: most of them in write-behind batches
    assert any(isinstance(ev, Lease) for ev in events)
    assert stamps >= FILES // 2 and records < FILES, (records, stamps)


@pytest.mark.timeout(300)
def test_two_writebehind_mounts_alternate_under_faults(faulty_fs: FaultyFs, mounter: Mounter) -> None:
    """Both mounts write bursts into one directory in turn; each burst takes a lease there and the
    other mount's next operation asks for it back, all through lost replies and throttling."""
    a = mounter.mount(faulty_fs.source, options="writebehind")
    b = mounter.mount(faulty_fs.source, options="writebehind")
    (Path(a.path) / "shared").mkdir()
    faulty_fs.proxy.set(rates=WB_FAULTS)
    want: dict[str, bytes] = {}
    errors: list[BaseException] = []
    for r in range(8):
        me = Path((a if r % 2 == 0 else b).path) / "shared"

        def burst(me: Path = me, r: int = r) -> None:
            try:
                for i in range(12):
                    data = content("s", r, i)
                    (me / f"r{r}-{i:02d}").write_bytes(data)
                    want[f"shared/r{r}-{i:02d}"] = data
                if r:  # the other mount's file: it must see it first (its lease is asked back)
                    os.unlink(me / f"r{r - 1}-00")
                    del want[f"shared/r{r - 1}-00"]
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=burst)  # a hung mount must fail the test, not hang it
        t.start()
        t.join(timeout=120)
        assert not t.is_alive(), f"burst {r} hung"
        assert not errors, errors
    for m in (a, b):
        # A listing does not revoke the other mount's lease: it sees the holder's batches through
        # the change feed, within the flush window and the feed's delay (docs/ARCHITECTURE.md).
        listed_in_time(Path(m.path) / "shared", {k.split("/", 1)[1] for k in want})
        assert_holds(Path(m.path), want, ["shared"])
    faulty_fs.proxy.set(rates=FaultRates())
    unmount_clean(mounter, a)
    unmount_clean(mounter, b)
    report_faults("writebehind_alternate", faulty_fs.proxy)
    assert_every_fault_hit(faulty_fs.proxy)
    faulty_fs.fsck()

    fresh = mounter.mount(faulty_fs.direct)
    assert_holds(Path(fresh.path), want, ["shared"])
    _, events = journal_events(faulty_fs.direct, Path(fresh.path) / "shared")
    holders = {ev.session for ev in events if isinstance(ev, Lease)}
    assert len(holders) == 2, holders  # both mounts held the lease in turn


@pytest.mark.timeout(180)
def test_a_holder_cut_off_past_its_lease_keeps_what_nobody_else_touched(
        faulty_fs: FaultyFs, mounter: Mounter) -> None:
    """Mount a (write-behind, through the proxy) fills a directory; the network between a and
    DynamoDB goes down with a batch of a's on its way, for longer than a's lease; mount b (no
    proxy) writes into the same directory once the lease has expired. When a's network comes
    back, its batch finds its seq taken: the files it acknowledged touch no name of b's, so they
    are committed after all (dynlog/writebehind/rescue.py). Nothing acknowledged is lost."""
    env = {**os.environ, "DYNLOG_WRITEBEHIND_LEASE_S": "2"}
    a = mounter.mount(faulty_fs.source, options="writebehind", env=env)
    b = mounter.mount(faulty_fs.direct)
    shared_a, shared_b = Path(a.path) / "shared", Path(b.path) / "shared"
    shared_a.mkdir()
    acked: dict[str, bytes] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                data = content("a", 0, i)
                (shared_a / f"a{i:04d}").write_bytes(data)
                acked[f"a{i:04d}"] = data
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    while len(acked) < 100 and not errors:
        time.sleep(0.01)
    faulty_fs.proxy.outage(True)  # a's requests, its next batch among them, now go nowhere
    time.sleep(2.0 + 1.0)  # a's lease (2 s from its last renewal) and b's skew run out
    mine = {f"b{i}": content("b", 0, i) for i in range(5)}
    for name, data in mine.items():
        (shared_b / name).write_bytes(data)  # b may append now: the lease has expired
    faulty_fs.proxy.outage(False)
    stop.set()
    t.join(timeout=120)
    assert not t.is_alive() and not errors, errors
    fsync_dir(shared_a)
    unmount_clean(mounter, a)
    rescued = [line for line in a.log_text().splitlines() if "writebehind.rescued" in line]
    assert rescued, a.log_text()[-3000:]
    print(f"\nRESCUE {len(acked)} files acknowledged by a, {len(mine)} written by b: {rescued[0].split(']', 1)[1]}")

    fresh = Path(mounter.mount(faulty_fs.direct).path) / "shared"
    want = {**acked, **mine}
    assert set(os.listdir(fresh)) == set(want)
    for name, data in want.items():
        assert (fresh / name).read_bytes() == data, name
    faulty_fs.fsck()
