"""SIGKILL of a ``-o writebehind`` mount daemon at random points of an extraction into it, through
real FUSE, 10 times per store (20 in all). After each kill the file system is mounted again and:

- fsck is clean;
- every file whose fsync returned is there with exactly the bytes written;
- every name acknowledged before a directory fsync that returned is there (a durability point);
- no directory lists a name whose mkdir or create was never asked for, nor one asked for but not
  acknowledged except the single one in flight at the kill (its reply may have been lost with
  the daemon, after the batch holding it was committed);
- each directory's journal, folded event by event without breaking an invariant (no name twice,
  nothing after a seal: no half batch), lists exactly what the mount lists.

Why through a mount: the engine-level crash test (test_crash.py) kills a process that calls the
file system directly; here the kernel, libfuse and the daemon's threads are all in the path, and
the kill lands wherever the daemon happens to be (in a batch put, between a create's reply and
its queueing, in a flush of a close)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.helpers import strict_replay
from mounted.conftest import Mount, Mounter, Source, fs_source, mounter  # noqa: F401 (fixtures)

from dynlog.fuse import mounttab
from dynlog.history.fsck import fsck
from dynlog.journal.log import JournalStore
from dynlog.store.source import open_store

pytestmark = pytest.mark.mounted

WRITER = Path(__file__).with_name("mounted_writer.py")
KILLS = 10


def _env() -> dict[str, str]:
    """Short leases: the remount waits for the dead holder's leases to expire before it may append."""
    return {**os.environ, "DYNLOG_WRITEBEHIND_LEASE_S": "2"}


class Log:
    """What the writer said before the daemon died."""

    def __init__(self, lines: list[str]) -> None:
        self.acked: list[str] = []
        self.tried: list[str] = []
        self.fsynced: dict[str, str] = {}
        self.synced = 0
        for line in lines:
            word, *rest = line.split()
            if word == "try":
                self.tried.append(rest[0])
            elif word == "ack":
                self.acked.append(rest[0])
            elif word == "fsync":
                self.fsynced[rest[0]] = rest[1]
            elif word == "sync":
                self.synced = max(self.synced, int(rest[0]))

    @property
    def in_flight(self) -> set[str]:
        """Asked for, never acknowledged: at most the last one (the writer is sequential)."""
        return set(self.tried[len(self.acked):])


def _extract_and_kill(mounter: Mounter, source: Source, root: str, rng: random.Random) -> Log:
    """Mount with write-behind, start the extraction into ``root``, SIGKILL the daemon at a random
    moment once it is under way, and take the mount down."""
    m = mounter.mount(source, options="writebehind", env=_env())
    os.mkdir(os.path.join(m.path, root))
    proc = subprocess.Popen([sys.executable, str(WRITER), m.path, root, str(rng.randrange(1 << 30)), "100000"],
                            stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # under way: the first directory and file acknowledged
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if sum(ln.startswith("ack") for ln in lines) >= 2:
                break
        time.sleep(rng.uniform(0.05, 1.5))
    finally:
        os.kill(m.proc.pid, signal.SIGKILL)
        # Not communicate(): it reads the pipe's descriptor and would lose the lines readline()
        # already buffered (then names the writer acknowledged look never acknowledged). The
        # writer ends at its first ENOTCONN.
        out = proc.stdout.read()
        proc.wait(timeout=60)
        m.proc.wait(timeout=30)
        mounttab.force_unmount(m.path)
        mounter.mounts.remove(m)
    lines += (out or "").splitlines()
    assert any(ln.startswith("ack") for ln in lines), "".join(lines)
    return Log([ln for ln in lines if ln.strip()])


def _check(m: Mount, source: Source, root: str, said: Log) -> int:
    """The checks of the module docstring on the remounted file system; returns the names listed."""
    top = Path(m.path)
    listed: set[str] = set()
    dirs = [top / root]
    while dirs:
        d = dirs.pop()
        for name in os.listdir(d):
            p = d / name
            listed.add(str(p.relative_to(top)))
            if p.is_dir():
                dirs.append(p)
    unasked = listed - set(said.acked) - said.in_flight
    assert not unasked, f"listed, never acknowledged: {sorted(unasked)[:5]}"
    lost = set(said.acked[:said.synced]) - listed
    assert not lost, f"acknowledged before a directory fsync returned, and gone: {sorted(lost)[:5]}"
    for p, sha in said.fsynced.items():
        assert hashlib.sha256((top / p).read_bytes()).hexdigest() == sha, f"{p}: not what was fsynced"
    store = open_store(source.source, endpoint_url=source.endpoint)
    try:
        journals = JournalStore(store)
        for d in [top / root] + [top / x for x in listed if (top / x).is_dir()]:
            jid = f"d/{os.stat(d).st_ino}"
            replayed = strict_replay(journals.read_after(jid, 0), jid)
            assert set(replayed.entries) == set(os.listdir(d)), f"{d.relative_to(top)}: journal != listing"
        report = fsck(store)
        assert report.clean, report.lines()
    finally:
        store.close()
    return len(listed)


@pytest.mark.timeout(300)
def test_sigkill_of_a_writebehind_mount_mid_extraction(fs_source: Source, mounter: Mounter) -> None:  # noqa: F811
    rng = random.Random(9)
    totals = {"acked": 0, "fsynced": 0, "durable": 0, "listed": 0}
    for k in range(KILLS):
        root = f"r{k}"
        said = _extract_and_kill(mounter, fs_source, root, rng)
        m = mounter.mount(fs_source, options="writebehind", env=_env())
        try:
            totals["listed"] += _check(m, fs_source, root, said)
        finally:
            mounter.unmount(m, timeout=60)
            mounter.mounts.remove(m)
        totals["acked"] += len(said.acked)
        totals["fsynced"] += len(said.fsynced)
        totals["durable"] += said.synced
    print(f"\n{KILLS} kills ({fs_source.backend}): {totals}")
    assert totals["fsynced"] > 0 and totals["durable"] > 0, totals  # the kills came after durability points too
