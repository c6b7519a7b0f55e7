"""The daemon's per-callback fast paths, without a kernel: libfuse's getattr after create,
chmod, chown and utimens answered from the reply the callback left (and never when a change
ended in between, here or from another mount), getxattr's ENODATA without an exception, the
stat struct filled field by field, and ``evolve`` as a drop-in for ``dataclasses.replace``.

Why these exist: a small file extracted by tar costs about 18 FUSE callbacks, and the mount
daemon's Python per callback bounded tar at about 200 files/s (docs/SCALING.md, "Daemon CPU per
file"). Each fast path must answer exactly what the slow one would.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import stat
import threading
from pathlib import Path
from typing import Iterator

import mfusepy
import pytest

from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.fuse import operations as O
from dynlog.journal.inode import Inode, evolve
from dynlog.store.metrics import OPERATIONS
from dynlog.store.sqlite import SqliteStore


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "fs.db")
    s = SqliteStore(path)
    s.create_tables()
    mkfs(s, uid=0, gid=0)
    s.close()
    return path


@pytest.fixture
def mount(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[O.DynlogOperations]:
    """DynlogOperations over a FileSystem on a local store, called as libfuse would (as root)."""
    monkeypatch.setattr(O, "context", lambda: (0, 0, os.getpid()))
    monkeypatch.setattr(O, "invalidate_path", lambda path, ptr=None: None)
    fs = FileSystem(SqliteStore(db), session="fast1")
    yield O.DynlogOperations(fs)
    fs.close()


def fresh(ops: O.DynlogOperations, path: str, fh: int | None) -> dict[str, int]:
    """What getattr computes with no reply left."""
    ops._replies.clear()
    return ops.getattr(path, fh)


def test_evolve_matches_replace() -> None:
    i = Inode(ino=7, mode=0o100644, uid=3, size=5, data=b"hello", xattrs=(("user.a", b"1"),))
    for changes in ({}, {"size": 9, "mtime": 4}, {"mode": 0o100600, "ctime": 2, "data": None, "blocks": ((0, 1, "w"),)}):
        a, b = evolve(i, **changes), dataclasses.replace(i, **changes)
        assert a == b and hash(a) == hash(b) and type(a) is Inode
    assert i.size == 5  # the original is untouched
    with pytest.raises(TypeError):
        evolve(i, sizee=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        evolve(i, size=1).size = 2  # type: ignore[misc]


def test_fill_stat_matches_mfusepy() -> None:
    st = {"st_mode": stat.S_IFREG | 0o4755, "st_ino": 2**40 + 3, "st_nlink": 2, "st_uid": 1000, "st_gid": 100,
          "st_size": 12345, "st_atime": 1_700_000_000_123_456_789, "st_mtime": -1, "st_ctime": 5,
          "st_blocks": 24, "st_blksize": 131072, "st_rdev": 0x0801}
    ours, theirs = mfusepy.c_stat(), mfusepy.c_stat()
    ctypes.memset(ctypes.byref(ours), 0xAB, ctypes.sizeof(ours))  # nothing left over from before
    O.fill_stat(ctypes.pointer(ours), st)
    mfusepy.set_st_attrs(theirs, st, use_ns=True)
    assert bytes(ours) == bytes(theirs)


def test_getxattr_fast_path(mount: O.DynlogOperations) -> None:
    fuse = object.__new__(O.DynlogFUSE)
    fuse.operations, fuse.encoding, fuse.errors = mount, "utf-8", "surrogateescape"
    fh = mount.create("/f", 0o644, os.O_WRONLY | os.O_CREAT)
    mount.release("/f", fh)
    assert fuse.getxattr(b"/f", b"security.capability", None, 0) == -errno.ENODATA
    mount.setxattr("/f", "user.k", b"value", 0)
    assert fuse.getxattr(b"/f", b"user.k", None, 0) == 5  # a size query
    buf = ctypes.create_string_buffer(8)
    assert fuse.getxattr(b"/f", b"user.k", buf, 3) == -errno.ERANGE
    assert fuse.getxattr(b"/f", b"user.k", buf, 8) == 5 and buf.raw[:5] == b"value"
    with pytest.raises(O.FuseOSError) as ei:
        mount.getxattr("/f", "user.nope")
    assert ei.value.errno == errno.ENODATA
    with pytest.raises(O.FuseOSError) as ei:  # (mfusepy's _wrapper turns it into -ENOENT)
        fuse.getxattr(b"/nope", b"user.k", None, 0)
    assert ei.value.errno == errno.ENOENT


def test_reply_answers_the_getattr_after_create_and_setattrs(mount: O.DynlogOperations) -> None:
    fh = mount.create("/f", 0o600, os.O_WRONLY | os.O_CREAT)
    assert mount._replies  # create left the attributes libfuse's lookup asks for next
    before = OPERATIONS.snapshot().get("getattr", 0)
    assert mount.getattr("/f", fh) == fresh(mount, "/f", fh)
    assert OPERATIONS.snapshot()["getattr"] == before + 2  # a getattr answered by a reply still counts
    mount.write(None, b"abc", 0, fh)
    for change in (lambda: mount.utimens("/f", (1_000_000_007, 2_000_000_009), fh),
                   lambda: mount.chown("/f", 1000, 100, fh),
                   lambda: mount.chmod("/f", 0o640, fh)):
        change()
        got = mount.getattr("/f", fh)
        assert mount._replies == {}  # taken, and only once
        assert got == fresh(mount, "/f", fh)
    st = mount.getattr("/f", fh)
    assert (st["st_uid"], st["st_gid"], stat.S_IMODE(st["st_mode"]), st["st_size"]) == (1000, 100, 0o640, 3)
    assert st["st_mtime"] == 2_000_000_009
    mount.flush(None, fh)
    mount.release(None, fh)


def test_reply_only_for_the_same_path_and_handle(mount: O.DynlogOperations) -> None:
    fh = mount.create("/f", 0o600, os.O_WRONLY | os.O_CREAT)
    mount.getattr("/f", fh)
    mount.chmod("/f", 0o640, fh)
    reply = dict(mount._replies)
    assert mount.getattr("/f", None) == fresh(mount, "/f", None)  # another question: computed
    mount._replies.update(reply)
    mount.getattr("/", None)  # a getattr of something else drops it: it was for the one right after
    assert mount._replies == {}
    mount.release(None, fh)


def test_reply_not_taken_by_another_thread(mount: O.DynlogOperations) -> None:
    fh = mount.create("/f", 0o600, os.O_WRONLY | os.O_CREAT)
    mount.getattr("/f", fh)
    mount.chmod("/f", 0o640, fh)
    t = threading.Thread(target=mount.getattr, args=("/f", fh))
    t.start()
    t.join()
    assert len(mount._replies) == 1  # still this thread's
    mount.release(None, fh)


def test_reply_not_used_after_another_change_of_this_mount(mount: O.DynlogOperations) -> None:
    """Another thread's change ending between the chmod and libfuse's getattr (here a chown,
    then a write) makes the reply unusable: the getattr shows that change."""
    fh = mount.create("/f", 0o600, os.O_WRONLY | os.O_CREAT)
    mount.getattr("/f", fh)
    mount.chmod("/f", 0o640, fh)
    t = threading.Thread(target=mount.chown, args=("/f", 1234, 1234, fh))
    t.start()
    t.join()
    assert mount.getattr("/f", fh)["st_uid"] == 1234
    mount.chmod("/f", 0o600, fh)
    t = threading.Thread(target=mount.write, args=(None, b"grown", 0, fh))
    t.start()
    t.join()
    assert mount.getattr("/f", fh)["st_size"] == 5
    mount.release(None, fh)


def test_no_reply_when_a_change_ends_during_the_callback(mount: O.DynlogOperations,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A change that ended while chmod ran may be missing from the stat chmod computed."""
    fh = mount.create("/f", 0o600, os.O_WRONLY | os.O_CREAT)
    mount.getattr("/f", fh)
    real = mount.fs.chmod

    def chmod_with_a_change_meanwhile(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        st = real(*a, **kw)
        mount._changed()  # as another thread's callback ending now
        return st

    monkeypatch.setattr(mount.fs, "chmod", chmod_with_a_change_meanwhile)
    mount.chmod("/f", 0o640, fh)
    assert mount._replies == {}
    mount.release(None, fh)


def test_reply_not_used_after_another_mounts_change(mount: O.DynlogOperations, db: str) -> None:
    """A change of another mount that the change feed brings in between (on_invalidate) makes a
    reply unusable; the getattr then shows it, as one without a reply would."""
    fh = mount.create("/f", 0o600, os.O_WRONLY | os.O_CREAT)
    mount.getattr("/f", fh)
    mount.flush(None, fh)
    mount.release(None, fh)
    other = FileSystem(SqliteStore(db), session="other1")
    try:
        start = mount._generation
        mount._offer_reply("/f", None, fresh(mount, "/f", None), start)  # as a callback leaves one ...
        mount._changed()  # ... and ends
        assert mount._replies[threading.get_ident()][2] == mount._generation  # usable now
        other.chown("/f", 4321, 4321, O.caller())
        mount.fs.cache.invalidate("d/1")  # what the follower does with the notice ...
        mount.on_invalidate("d/1", ["f"])  # ... before it tells the FUSE layer
        assert mount.getattr("/f", None)["st_uid"] == 4321
    finally:
        other.close()
