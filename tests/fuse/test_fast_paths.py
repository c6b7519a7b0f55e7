"""The daemon's per-callback fast paths, without a kernel: the stat struct filled field by
field, and ``evolve`` as a drop-in for ``dataclasses.replace``. (getxattr's ENODATA without an
exception: tests/fuse/test_operations.py.)

Why these exist: a small file extracted by tar costs about 11 FUSE callbacks, and the mount
daemon's Python per callback bounds a write-behind tar (docs/SCALING.md, "Daemon CPU per
file"). Each fast path must answer exactly what the slow one would.
"""

from __future__ import annotations

import ctypes
import dataclasses
import stat

import mfusepy
import pytest

from dynlog.fuse.kernel import fill_stat
from dynlog.journal.inode import Inode, evolve


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
    fill_stat(ctypes.pointer(ours), st)
    mfusepy.set_st_attrs(theirs, st, use_ns=True)
    assert bytes(ours) == bytes(theirs)
