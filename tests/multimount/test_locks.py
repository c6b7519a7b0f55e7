"""fcntl and flock locks across mounts, held by separate processes (lockctl.py), one per mount:
exclusion (EAGAIN/EWOULDBLOCK without waiting), F_GETLK naming the holder, F_SETLKW and blocking
flock waiting for the release, POSIX's "any close releases the process's locks", and the locks
of a client whose daemon was SIGKILLed expiring with its session lease.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import BOUND, env_with, until

WOULD_BLOCK = (errno.EAGAIN, errno.EACCES)  # fcntl(2): either, for F_SETLK on a held range
LEASE = 4.0  # DYNLOG_SESSION_LEASE for the mounts of the SIGKILL test (the default is 30 s)
HEARTBEAT = 0.5


def ok(reply: dict) -> dict:
    assert reply.get("ok"), reply
    return reply


def blocked(reply: dict) -> None:
    assert reply.get("errno") in WOULD_BLOCK, reply


def lk(reply: dict) -> tuple:
    """An F_GETLK answer as (type, start, len, pid)."""
    return reply["type"], reply["start"], reply["len"], reply["pid"]


@pytest.fixture
def pair(fs_source, mount_all) -> tuple[Path, Path]:
    a, b = mount_all(fs_source, 2)
    Path(a.path, "f").write_bytes(b"0123456789" * 30)
    until(lambda: os.path.exists(Path(b.path, "f")), what="file visible on B")
    return Path(a.path), Path(b.path)


def test_fcntl_exclusion_across_mounts(pair, procs) -> None:
    a, b = pair
    pa, pb = procs("lockctl.py"), procs("lockctl.py")
    ok(pa.ask("open", "x", a / "f"))
    ok(pb.ask("open", "x", b / "f"))

    ok(pa.ask("lock", "x", "w", 0, 100, 0))  # A: write lock on [0, 100)
    blocked(pb.ask("lock", "x", "w", 0, 10, 0))
    blocked(pb.ask("lock", "x", "r", 50, 10, 0))  # a read lock conflicts with a write lock too
    blocked(pb.ask("lock", "x", "w", 99, 0, 0))  # [99, EOF) overlaps
    ok(pb.ask("lock", "x", "w", 100, 100, 0))  # [100, 200) does not
    assert lk(pb.ask("getlk", "x", "w", 0, 0)) == ("w", 0, 100, pa.pid)  # the holder, by its pid
    assert pb.ask("getlk", "x", "r", 300, 10)["type"] == "u"  # nothing held there
    assert lk(pa.ask("getlk", "x", "w", 150, 1)) == ("w", 100, 100, pb.pid)

    # F_SETLKW on B waits for A's unlock, and gets the lock right after it
    pb.send("lock", "x", "w", 0, 10, 1)
    assert not pb.ready(1.0), "F_SETLKW returned while A held the range"
    ok(pa.ask("lock", "x", "u", 0, 100, 0))
    t0 = time.monotonic()
    ok(pb.reply(BOUND))
    print(f"\nF_SETLKW on B returned {time.monotonic() - t0:.3f} s after A's unlock")
    blocked(pa.ask("lock", "x", "r", 5, 1, 0))

    # shared locks: both read-lock one range; a write lock then conflicts with either
    ok(pa.ask("lock", "x", "r", 1000, 10, 0))
    ok(pb.ask("lock", "x", "r", 1000, 10, 0))
    blocked(pa.ask("lock", "x", "w", 1005, 1, 0))

    # POSIX: closing ANY descriptor of the file releases all the process's locks on it
    ok(pb.ask("open", "y", b / "f"))
    ok(pb.ask("close", "y"))
    ok(pa.ask("lock", "x", "w", 0, 0, 0))  # the whole file, all of B's ranges are gone
    assert lk(pb.ask("getlk", "x", "r", 0, 0)) == ("w", 0, 0, pa.pid)
    ok(pa.ask("close", "x"))  # and on A: the close alone releases
    ok(pb.ask("lock", "x", "w", 0, 0, 0))


def test_flock_exclusion_across_mounts(pair, procs) -> None:
    a, b = pair
    pa, pb = procs("lockctl.py"), procs("lockctl.py")
    ok(pa.ask("open", "x", a / "f"))
    ok(pb.ask("open", "x", b / "f"))
    ok(pa.ask("flock", "x", "ex", 1))
    for op in ("ex", "sh"):
        assert pb.ask("flock", "x", op, 1).get("errno") == errno.EWOULDBLOCK
    pb.send("flock", "x", "ex", 0)  # blocking flock waits for A
    assert not pb.ready(1.0), "blocking flock returned while A held the lock"
    ok(pa.ask("flock", "x", "un", 0))
    ok(pb.reply(BOUND))
    assert pa.ask("flock", "x", "sh", 1).get("errno") == errno.EWOULDBLOCK
    ok(pb.ask("flock", "x", "sh", 0))  # a downgrade to shared lets A share it
    ok(pa.ask("flock", "x", "sh", 1))
    assert pb.ask("flock", "x", "ex", 1).get("errno") == errno.EWOULDBLOCK  # no upgrade past A's share
    # Closing the last descriptor of A's open file releases its flock. The kernel sends FUSE's
    # RELEASE after close() has returned (unlike FLUSH, which carries POSIX unlocks and which
    # close() waits for), so B may find the lock still held for a moment: it waits for it.
    ok(pa.ask("close", "x"))
    t0 = time.monotonic()
    ok(pb.ask("flock", "x", "ex", 0, timeout=BOUND))
    print(f"\nflock released by A's close reached B after {time.monotonic() - t0:.3f} s")


def test_locks_of_a_killed_client_expire(fs_source, mount_all, procs) -> None:
    """Mount A's daemon is SIGKILLed while a process on A holds an fcntl and a flock lock. Nobody
    unlocks anything: B gets both locks once A's session lease has run out, not before."""
    env = env_with(DYNLOG_SESSION_LEASE=str(LEASE), DYNLOG_HEARTBEAT_INTERVAL=str(HEARTBEAT))
    ma, mb = mount_all(fs_source, 2, env=env)
    a, b = Path(ma.path), Path(mb.path)
    (a / "f").write_bytes(b"data")
    until(lambda: os.path.exists(b / "f"), what="file visible on B")
    pa, pb = procs("lockctl.py"), procs("lockctl.py")
    ok(pa.ask("open", "x", a / "f"))
    ok(pb.ask("open", "x", b / "f"))
    ok(pa.ask("lock", "x", "w", 0, 0, 0))
    ok(pa.ask("flock", "x", "ex", 1))

    os.kill(ma.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    ma.proc.wait(timeout=10)
    blocked(pb.ask("lock", "x", "w", 0, 0, 0))  # A's session still counts as alive
    assert pb.ask("flock", "x", "ex", 1).get("errno") == errno.EWOULDBLOCK
    assert pb.ask("getlk", "x", "w", 0, 0)["pid"] == pa.pid

    pb.send("lock", "x", "w", 0, 0, 1)  # F_SETLKW: waits for the lease to run out
    ok(pb.reply(LEASE + BOUND))
    took = time.monotonic() - killed
    print(f"\nlocks of the killed client taken over {took:.2f} s after SIGKILL (lease {LEASE} s)")
    assert took > LEASE - HEARTBEAT - 1.0, "the lock was taken before the dead session's lease ran out"
    ok(pb.ask("flock", "x", "ex", 1))
    assert pb.ask("getlk", "x", "w", 0, 0)["type"] == "u"  # our own lock does not block us

    # the killed mount is dead for its users, and the teardown (abort + lazy unmount) copes
    pa.kill()
    with pytest.raises(OSError) as ei:
        os.listdir(a)
    assert ei.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
