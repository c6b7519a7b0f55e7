"""Three mounts (three ``dynlog mount`` processes) of one file system: a create, a rename, a
delete and a write+close on mount A show in B's and C's listings, stats and reads.

The delay is measured from the moment A's system call returns to the moment B's (or C's)
listing or stat shows the change, polling every 5 ms. The numbers are printed (``-s``); the
assertions are only generous correctness bounds (BOUND, 10 s), never timing targets.
benchmarks/propagation.py measures the same over more changes and docs/SCALING.md records it.
"""

from __future__ import annotations

import errno
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from dynlog.fuse import mounttab

from .conftest import BOUND, POLL, daemon_errors

ROUNDS = 4


def observe(roots: list[Path], check: Callable[[Path], bool]) -> list[float]:
    """Poll ``check(root)`` on every root in parallel (one thread each, every 5 ms) from now;
    the seconds until each held."""
    start = time.monotonic()
    took: list[float | None] = [None] * len(roots)

    def watch(i: int) -> None:
        while time.monotonic() - start < BOUND:
            try:
                if check(roots[i]):
                    took[i] = time.monotonic() - start
                    return
            except OSError:
                pass
            time.sleep(POLL)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(roots))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND + 5)
    missing = [str(r) for r, t in zip(roots, took) if t is None]
    assert not missing, f"change not visible within {BOUND} s on {missing}"
    return [t for t in took if t is not None]


def content(tag: str, n: int) -> bytes:
    return (tag.encode() * (n // len(tag) + 1))[:n]


def test_changes_on_one_mount_show_on_the_others(fs_source, mount_all) -> None:
    mounts = mount_all(fs_source, 3)
    a, b, c = (Path(m.path) for m in mounts)
    others = [b, c]
    os.mkdir(a / "p")
    observe(others, lambda r: "p" in os.listdir(r))
    for r in others:
        assert os.listdir(r / "p") == []  # the observers have the directory's view cached now
    delays: dict[str, list[float]] = {"create": [], "rename": [], "write": [], "delete": []}

    for i in range(ROUNDS):
        name, renamed = f"f{i}", f"g{i}"
        first = content(f"create {i} ", 1000 + i)

        # create (create + write + close): the name shows in listings, the bytes in reads
        with open(a / "p" / name, "wb") as f:
            f.write(first)
        delays["create"] += observe(others, lambda r: name in os.listdir(r / "p"))
        for r in others:
            assert (r / "p" / name).read_bytes() == first
            assert os.stat(r / "p" / name).st_size == len(first)  # the kernel caches this size

        # rename: the old name goes and the new one comes in one step
        os.rename(a / "p" / name, a / "p" / renamed)
        delays["rename"] += observe(others, lambda r: (lambda ls: renamed in ls and name not in ls)(os.listdir(r / "p")))
        for r in others:
            assert (r / "p" / renamed).read_bytes() == first

        # write + close of an existing file: the size the observers' kernels cached follows,
        # and a read after it sees the new bytes
        os.stat(b / "p" / renamed), os.stat(c / "p" / renamed)
        second = content(f"rewrite {i} ", 5000 + 7 * i)
        with open(a / "p" / renamed, "r+b") as f:
            f.write(second)
        delays["write"] += observe(others, lambda r: os.stat(r / "p" / renamed).st_size == len(second))
        for r in others:
            assert (r / "p" / renamed).read_bytes() == second

        # delete: gone from listings, and from lookups
        os.unlink(a / "p" / renamed)
        delays["delete"] += observe(others, lambda r: renamed not in os.listdir(r / "p"))
        observe(others, lambda r: not os.path.exists(r / "p" / renamed))  # the kernel's entry: <= 1 s

    # and back: a change on B shows on A and C
    with open(b / "p" / "from-b", "wb") as f:
        f.write(b"written on B")
    delays["create"] += observe([a, c], lambda r: "from-b" in os.listdir(r / "p"))
    for r in (a, c):
        assert (r / "p" / "from-b").read_bytes() == b"written on B"
    for r in (a, b, c):
        assert sorted(os.listdir(r / "p")) == ["from-b"]

    print(f"\npropagation on {fs_source.backend} (ms, {POLL * 1000:.0f} ms polling; median / max over "
          f"{ROUNDS} changes x 2 observers):")
    for kind, ds in delays.items():
        ms = sorted(d * 1000 for d in ds)
        print(f"  {kind:7s} n={len(ms):2d} median {statistics.median(ms):7.1f}  max {ms[-1]:7.1f}")
    for m in mounts:
        assert daemon_errors(m) == [], m.log_text()[-3000:]


def test_rename_onto_itself_after_a_remote_unlink(fs_source, mount_all) -> None:
    """rename(p, p) reaches the daemon when the kernel's entry for p fails revalidation (another
    mount removed the name). libfuse 3.14's high-level API locked both paths, the same node, and
    waited for itself forever; served through the low-level API it answers."""
    a, b = (Path(m.path) for m in mount_all(fs_source, 2))
    (a / "p").write_bytes(b"x")
    observe([b], lambda r: "p" in os.listdir(r))
    os.stat(b / "p")  # B's kernel now holds a fresh entry for p (for entry_timeout, 1 s)
    os.unlink(a / "p")
    observe([b], lambda r: "p" not in os.listdir(r))
    child = subprocess.Popen([sys.executable, "-c", "import os, sys\ntry:\n os.rename(sys.argv[1], sys.argv[1])\n"
                              "except OSError as e:\n print(e.errno)\nelse:\n print(0)", str(b / "p")],
                             stdout=subprocess.PIPE, text=True)
    try:
        out, _ = child.communicate(timeout=BOUND)
        assert int(out) in (0, errno.ENOENT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"rename(p, p) on B still hangs after {BOUND} s") from None
    finally:
        if child.poll() is None:  # stuck in the kernel: abort B's connection to free it
            entry = mounttab.find_mount(str(b))
            if entry is not None:
                mounttab.abort_connection(entry)
            child.kill()
            child.wait(timeout=10)


def test_a_file_open_here_that_another_mount_unlinks_keeps_answering_fstat(fs_source, mount_all) -> None:
    """The kernel names an open file by its inode: once another mount has unlinked the name and
    the kernel's cached attributes have expired, fstat(2) is still answered (through the open
    handle), and the bytes still read."""
    a, b = (Path(m.path) for m in mount_all(fs_source, 2))
    (a / "f").write_bytes(b"kept")
    observe([b], lambda r: "f" in os.listdir(r))
    fd = os.open(b / "f", os.O_RDONLY)
    try:
        os.unlink(a / "f")
        observe([b], lambda r: "f" not in os.listdir(r))
        time.sleep(1.2)  # past attr_timeout: the kernel asks the daemon again
        st = os.fstat(fd)
        assert st.st_size == 4
        assert os.pread(fd, 4, 0) == b"kept"
    finally:
        os.close(fd)
