"""Every namespace and data operation through FileSystem, on SQLite and on DynamoDB Local:
errnos, link counts, rmdir sealing, rename replacing, file data, xattrs, non-UTF-8 names; and
the journal underneath: the event codec, the hash chain, snapshots, rebuilding a view at any seq.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import dataclasses
import stat
from dataclasses import replace

import pytest

from dynlog import schema
from dynlog.core.attrs import ROOT, Caller
from dynlog.core.filesystem import XATTR_CREATE, XATTR_REPLACE, FileSystem
from dynlog.core.namespace import RENAME_EXCHANGE, RENAME_NOREPLACE
from dynlog.journal.events import (
    FORMAT_VERSION, Create, Detach, Event, InodeInit, Lease, Link, MoveIn, MoveOut, Orphaned, Release, Remove, Rename,
    SetAttr, SetXattr, Stamp,
)
from dynlog.journal.inode import Inode
from dynlog.journal.log import SNAPSHOT_PART_BYTES, JournalStore
from dynlog.journal.record import COMPRESSED_VERSION, GENESIS_HASH, Record
from dynlog.materialize.view import View
from dynlog.store.base import MAX_ITEM_BYTES, Put

from .helpers import raises_errno, replay, strict_replay, verify_chain, walk

RW = os.O_RDWR
DIR = 0o755
FILE = 0o644


def mkfile(fs: FileSystem, path: str, data: bytes = b"", mode: int = FILE) -> int:
    fh = fs.create(path, mode, os.O_WRONLY | os.O_CREAT, ROOT)
    if data:
        fs.write(fh, data, 0)
    fs.release(fh)
    return fs.getattr(path)["st_ino"]


def read_all(fs: FileSystem, path: str) -> bytes:
    fh = fs.open(path, os.O_RDONLY, ROOT)
    try:
        size = fs.getattr(path)["st_size"]
        out = bytearray()
        while len(out) < size:
            chunk = fs.read(fh, min(4 << 20, size - len(out)), len(out))
            assert chunk, "short read"
            out += chunk
        return bytes(out)
    finally:
        fs.release(fh)


def names(fs: FileSystem, path: str) -> list[str]:
    return [n for n, _ in fs.readdir(path) if n not in (".", "..")]


def nlink(fs: FileSystem, path: str) -> int:
    return fs.getattr(path)["st_nlink"]


# == namespace: the happy paths ====================================================================

def test_create_every_kind_and_see_it_from_a_second_client(fs: FileSystem, new_client) -> None:
    fs.mkdir("/d", DIR, ROOT)
    mkfile(fs, "/d/f", b"x")
    fs.mknod("/d/fifo", stat.S_IFIFO | 0o600, 0, ROOT)
    fs.mknod("/d/plain", 0o600, 0, ROOT)  # no type bits: a regular file
    fs.symlink("../somewhere/else", "/d/ln", ROOT)
    assert names(fs, "/d") == ["f", "fifo", "ln", "plain"]
    assert stat.S_ISFIFO(fs.getattr("/d/fifo")["st_mode"])
    assert stat.S_ISREG(fs.getattr("/d/plain")["st_mode"])
    assert stat.S_ISLNK(fs.getattr("/d/ln")["st_mode"])
    assert fs.readlink("/d/ln") == "../somewhere/else"
    assert fs.getattr("/d/ln")["st_size"] == len("../somewhere/else")
    assert stat.S_IMODE(fs.getattr("/d")["st_mode"]) == DIR
    with raises_errno(errno.EINVAL):
        fs.readlink("/d/f")
    inos = {p: st[1] for p, st in walk(fs).items()}
    assert len(set(inos.values())) == len(inos), "inode numbers must be unique"
    other = new_client()
    assert walk(other) == walk(fs)
    assert other.readlink("/d/ln") == "../somewhere/else"


def test_create_as_a_user_and_setgid_inheritance(fs: FileSystem) -> None:
    alice = Caller(1000, 1000, 1)
    fs.mkdir("/shared", 0o2777, ROOT)
    fs.chown("/shared", 0, 50, ROOT)
    mkfile_fh = fs.create("/shared/f", FILE, os.O_WRONLY, alice)
    fs.release(mkfile_fh)
    fs.mkdir("/shared/sub", DIR, alice)
    st = fs.getattr("/shared/f")
    assert (st["st_uid"], st["st_gid"]) == (1000, 50)
    sub = fs.getattr("/shared/sub")
    assert (sub["st_uid"], sub["st_gid"]) == (1000, 50)
    assert sub["st_mode"] & stat.S_ISGID


# == namespace: errnos ===============================================================================

def test_eexist(fs: FileSystem) -> None:
    fs.mkdir("/d", DIR, ROOT)
    mkfile(fs, "/d/f", b"keep")
    with raises_errno(errno.EEXIST):
        fs.mkdir("/d", DIR, ROOT)
    with raises_errno(errno.EEXIST):
        fs.mkdir("/d/f", DIR, ROOT)
    with raises_errno(errno.EEXIST):
        fs.create("/d/f", FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ROOT)
    with raises_errno(errno.EEXIST):
        fs.mknod("/d/f", FILE, 0, ROOT)
    with raises_errno(errno.EEXIST):
        fs.symlink("t", "/d/f", ROOT)
    with raises_errno(errno.EEXIST):
        fs.link("/d/f", "/d/f", ROOT)
    with raises_errno(errno.EEXIST):
        fs.symlink("t", "/d", ROOT)
    # O_CREAT without O_EXCL opens the existing file, contents intact.
    fh = fs.create("/d/f", FILE, os.O_RDWR | os.O_CREAT, ROOT)
    assert fs.read(fh, 100, 0) == b"keep"
    fs.release(fh)


def test_enoent(fs: FileSystem) -> None:
    mkfile(fs, "/f")
    for call in (
        lambda: fs.getattr("/nope"),
        lambda: fs.getattr("/nope/deeper"),
        lambda: fs.unlink("/nope", ROOT),
        lambda: fs.rmdir("/nope", ROOT),
        lambda: fs.rename("/nope", "/x", 0, ROOT),
        lambda: fs.rename("/f", "/nope/x", 0, ROOT),
        lambda: fs.create("/nope/f", FILE, os.O_WRONLY, ROOT),
        lambda: fs.mkdir("/nope/d", DIR, ROOT),
        lambda: fs.mknod("/nope/n", FILE, 0, ROOT),
        lambda: fs.symlink("t", "/nope/s", ROOT),
        lambda: fs.link("/nope", "/x", ROOT),
        lambda: fs.link("/f", "/nope/x", ROOT),
        lambda: list(fs.readdir("/nope")),
        lambda: fs.open("/nope", os.O_RDONLY, ROOT),
        lambda: fs.chmod("/nope", 0o600, ROOT),
        lambda: fs.chown("/nope", 1, 1, ROOT),
        lambda: fs.utimens("/nope", 1, 1, ROOT),
        lambda: fs.truncate("/nope", 0, ROOT),
        lambda: fs.readlink("/nope"),
        lambda: fs.getxattr("/nope", "user.a"),
        lambda: fs.setxattr("/nope", "user.a", b"v", 0, ROOT),
    ):
        with raises_errno(errno.ENOENT):
            call()
    assert names(fs, "/") == ["f"]


def test_enotdir(fs: FileSystem) -> None:
    mkfile(fs, "/f")
    fs.mkdir("/d", DIR, ROOT)
    for call in (
        lambda: fs.getattr("/f/x"),
        lambda: fs.create("/f/x", FILE, os.O_WRONLY, ROOT),
        lambda: fs.mkdir("/f/x", DIR, ROOT),
        lambda: fs.rmdir("/f", ROOT),
        lambda: list(fs.readdir("/f")),
        lambda: fs.rename("/d", "/f", 0, ROOT),  # a directory over a file
        lambda: fs.rename("/f/x", "/y", 0, ROOT),
        lambda: fs.rename("/d", "/f/x", 0, ROOT),
    ):
        with raises_errno(errno.ENOTDIR):
            call()
    fs.mkdir("/d/sub", DIR, ROOT)
    mkfile(fs, "/d/g")
    with raises_errno(errno.ENOTDIR):
        fs.rename("/d/sub", "/d/g", 0, ROOT)  # within one directory too
    assert sorted(names(fs, "/")) == ["d", "f"]


def test_eisdir(fs: FileSystem) -> None:
    fs.mkdir("/d", DIR, ROOT)
    fs.mkdir("/e", DIR, ROOT)
    fs.mkdir("/e/sub", DIR, ROOT)
    mkfile(fs, "/f")
    mkfile(fs, "/e/g")
    for call in (
        lambda: fs.unlink("/d", ROOT),
        lambda: fs.rename("/f", "/d", 0, ROOT),  # a file over a directory, across
        lambda: fs.rename("/e/g", "/e/sub", 0, ROOT),  # and within
        lambda: fs.open("/d", os.O_WRONLY, ROOT),
        lambda: fs.open("/d", os.O_RDWR, ROOT),
        lambda: fs.truncate("/d", 0, ROOT),
    ):
        with raises_errno(errno.EISDIR):
            call()
    with raises_errno(errno.EISDIR):
        fs.create("/d", FILE, os.O_WRONLY | os.O_CREAT, ROOT)  # O_CREAT on an existing directory
    fs.release(fs.open("/d", os.O_RDONLY, ROOT))  # reading a directory handle is fine


def test_enotempty(fs: FileSystem) -> None:
    fs.mkdir("/d", DIR, ROOT)
    mkfile(fs, "/d/f")
    fs.mkdir("/e", DIR, ROOT)
    fs.mkdir("/e/x", DIR, ROOT)
    fs.mkdir("/e/x/y", DIR, ROOT)
    fs.mkdir("/e/z", DIR, ROOT)
    with raises_errno(errno.ENOTEMPTY):
        fs.rmdir("/d", ROOT)
    with raises_errno(errno.ENOTEMPTY):
        fs.rmdir("/e/x", ROOT)
    with raises_errno(errno.ENOTEMPTY):
        fs.rename("/e", "/d", 0, ROOT)  # a directory over a non-empty one, across
    with raises_errno(errno.ENOTEMPTY):
        fs.rename("/e/z", "/e/x", 0, ROOT)  # and within
    fs.unlink("/d/f", ROOT)
    fs.rmdir("/d", ROOT)
    assert names(fs, "/") == ["e"]


def test_einval_rename_into_own_subtree(fs: FileSystem, new_client) -> None:
    for p in ("/a", "/a/b", "/a/b/c"):
        fs.mkdir(p, DIR, ROOT)
    for old, new in (("/a", "/a/x"), ("/a", "/a/b/x"), ("/a", "/a/b/c/a"), ("/a/b", "/a/b/c/b"),
                     ("/a", "/a/b/c")):
        with raises_errno(errno.EINVAL):
            fs.rename(old, new, 0, ROOT)
    # a second client whose views were built before: same answer
    other = new_client()
    with raises_errno(errno.EINVAL):
        other.rename("/a", "/a/b/c/z", 0, ROOT)
    with raises_errno(errno.EINVAL):
        fs.rename("/a", "/b", RENAME_EXCHANGE, ROOT)  # not supported: said, not ignored
    with raises_errno(errno.EBUSY):
        fs.rename("/", "/z", 0, ROOT)
    with raises_errno(errno.EINVAL):
        fs.mkdir("/a/..", DIR, ROOT)
    assert set(walk(fs)) == {"/a", "/a/b", "/a/b/c"}


def test_enametoolong(fs: FileSystem) -> None:
    fs.mkdir("/d", DIR, ROOT)
    mkfile(fs, "/d/f")
    ok, long = "n" * 255, "n" * 256
    wide_ok, wide_long = "é" * 127, "é" * 128  # 254 and 256 bytes in UTF-8
    raw_long = os.fsdecode(b"\xff" * 256)
    for bad in (long, wide_long, raw_long):
        for call in (
            lambda: fs.mkdir(f"/d/{bad}", DIR, ROOT),
            lambda: fs.create(f"/d/{bad}", FILE, os.O_WRONLY, ROOT),
            lambda: fs.mknod(f"/d/{bad}", FILE, 0, ROOT),
            lambda: fs.symlink("t", f"/d/{bad}", ROOT),
            lambda: fs.rename("/d/f", f"/d/{bad}", 0, ROOT),
            lambda: fs.link("/d/f", f"/d/{bad}", ROOT),
            lambda: fs.getattr(f"/d/{bad}"),
        ):
            with raises_errno(errno.ENAMETOOLONG):
                call()
    mkfile(fs, f"/d/{ok}", b"ok")
    fs.mkdir(f"/d/{wide_ok}", DIR, ROOT)
    fs.rename("/d/f", "/d/" + os.fsdecode(b"\xff" * 255), 0, ROOT)
    assert sorted(names(fs, "/d")) == sorted([ok, wide_ok, os.fsdecode(b"\xff" * 255)])
    assert read_all(fs, f"/d/{ok}") == b"ok"
    with raises_errno(errno.ENAMETOOLONG):
        fs.symlink("t" * 4096, "/d/s", ROOT)


def test_rename_noreplace(fs: FileSystem) -> None:
    fs.mkdir("/a", DIR, ROOT)
    fs.mkdir("/b", DIR, ROOT)
    mkfile(fs, "/a/f", b"f")
    mkfile(fs, "/a/g", b"g")
    mkfile(fs, "/b/g", b"bg")
    with raises_errno(errno.EEXIST):
        fs.rename("/a/f", "/a/g", RENAME_NOREPLACE, ROOT)
    with raises_errno(errno.EEXIST):
        fs.rename("/a/f", "/b/g", RENAME_NOREPLACE, ROOT)
    with raises_errno(errno.EEXIST):
        fs.rename("/a", "/b", RENAME_NOREPLACE, ROOT)
    assert read_all(fs, "/a/g") == b"g" and read_all(fs, "/b/g") == b"bg"
    fs.rename("/a/f", "/a/h", RENAME_NOREPLACE, ROOT)
    fs.rename("/a/h", "/b/h", RENAME_NOREPLACE, ROOT)
    assert names(fs, "/a") == ["g"] and names(fs, "/b") == ["g", "h"]
    assert read_all(fs, "/b/h") == b"f"


# == rename =================================================================================================

def test_rename_within_and_across_keeps_the_inode(fs: FileSystem, new_client) -> None:
    fs.mkdir("/a", DIR, ROOT)
    fs.mkdir("/b", DIR, ROOT)
    ino = mkfile(fs, "/a/f", b"payload")
    fs.rename("/a/f", "/a/g", 0, ROOT)
    fs.rename("/a/g", "/b/h", 0, ROOT)
    assert fs.getattr("/b/h")["st_ino"] == ino
    fs.mkdir("/a/tree", DIR, ROOT)
    fs.mkdir("/a/tree/deep", DIR, ROOT)
    mkfile(fs, "/a/tree/deep/leaf", b"leaf")
    dino = fs.getattr("/a/tree")["st_ino"]
    fs.rename("/a/tree", "/b/moved", 0, ROOT)
    assert fs.getattr("/b/moved")["st_ino"] == dino
    assert read_all(fs, "/b/moved/deep/leaf") == b"leaf"
    fs.rename("/b/moved", "/b/moved", 0, ROOT)  # to itself: nothing happens
    with raises_errno(errno.ENOENT):
        fs.getattr("/a/tree")
    other = new_client()
    assert walk(other) == walk(fs)
    assert read_all(other, "/b/h") == b"payload"


def test_rename_replaces_files_and_empty_dirs(fs: FileSystem, new_client) -> None:
    fs.mkdir("/a", DIR, ROOT)
    fs.mkdir("/b", DIR, ROOT)
    src = mkfile(fs, "/a/src", b"new")
    mkfile(fs, "/a/old", b"old")
    fs.rename("/a/src", "/a/old", 0, ROOT)  # within
    assert names(fs, "/a") == ["old"]
    assert fs.getattr("/a/old")["st_ino"] == src and read_all(fs, "/a/old") == b"new"
    mkfile(fs, "/b/old", b"older")
    fs.rename("/a/old", "/b/old", 0, ROOT)  # across
    assert names(fs, "/a") == [] and names(fs, "/b") == ["old"]
    assert read_all(fs, "/b/old") == b"new"

    # a directory over an empty directory, within and across; the replaced one is sealed
    fs.mkdir("/a/d1", DIR, ROOT)
    mkfile(fs, "/a/d1/inside", b"i")
    fs.mkdir("/a/empty", DIR, ROOT)
    stale = new_client()
    assert names(stale, "/a/empty") == []  # caches a view of the directory about to be replaced
    fs.rename("/a/d1", "/a/empty", 0, ROOT)
    assert names(fs, "/a") == ["empty"]
    assert names(fs, "/a/empty") == ["inside"]
    fs.mkdir("/b/empty2", DIR, ROOT)
    empty2 = fs.getattr("/b/empty2")["st_ino"]
    fs.rename("/a/empty", "/b/empty2", 0, ROOT)
    assert names(fs, "/b/empty2") == ["inside"] and names(fs, "/a") == []
    assert fs.getattr("/b/empty2")["st_ino"] != empty2
    sealed = replay(fs.journals, schema.dir_journal(empty2))
    assert sealed.removed and len(sealed.entries) == 0
    other = new_client()
    assert walk(other) == walk(fs)
    # the client that cached the replaced directory cannot create in it
    with raises_errno(errno.ENOENT):
        stale.ns.create_entry("/a/empty/x", stat.S_IFREG | FILE, ROOT, "create")


# == links ==================================================================================================

def test_hard_links_and_nlink(fs: FileSystem, new_client) -> None:
    fs.mkdir("/a", DIR, ROOT)
    fs.mkdir("/b", DIR, ROOT)
    ino = mkfile(fs, "/a/f", b"one")
    fs.link("/a/f", "/b/g", ROOT)
    assert nlink(fs, "/a/f") == nlink(fs, "/b/g") == 2
    assert fs.getattr("/b/g")["st_ino"] == ino
    fs.link("/b/g", "/a/h", ROOT)
    assert [nlink(fs, p) for p in ("/a/f", "/b/g", "/a/h")] == [3, 3, 3]

    # data and attributes are shared by all names
    fh = fs.open("/b/g", RW, ROOT)
    fs.write(fh, b"two", 0)
    fs.release(fh)
    assert read_all(fs, "/a/h") == b"two"
    fs.chmod("/a/h", 0o600, ROOT)
    assert stat.S_IMODE(fs.getattr("/a/f")["st_mode"]) == 0o600
    fs.setxattr("/a/f", "user.k", b"v", 0, ROOT)
    assert fs.getxattr("/b/g", "user.k") == b"v"

    other = new_client()
    assert [nlink(other, p) for p in ("/a/f", "/b/g", "/a/h")] == [3, 3, 3]
    assert read_all(other, "/a/f") == b"two"
    assert stat.S_IMODE(other.getattr("/b/g")["st_mode"]) == 0o600

    fs.unlink("/a/f", ROOT)
    assert nlink(fs, "/b/g") == nlink(fs, "/a/h") == 2
    fs.rename("/b/g", "/a/h", 0, ROOT)  # two names of one inode: nothing happens (POSIX)
    assert names(fs, "/b") == ["g"] and names(fs, "/a") == ["h"]
    assert nlink(fs, "/a/h") == 2
    fs.rename("/b/g", "/b/g2", 0, ROOT)
    fs.rename("/b/g2", "/a/g3", 0, ROOT)
    assert nlink(fs, "/a/g3") == 2 and read_all(fs, "/a/g3") == b"two"
    # a file renamed over one name of a linked inode drops one link
    mkfile(fs, "/a/other", b"o")
    fs.rename("/a/other", "/a/g3", 0, ROOT)
    assert nlink(fs, "/a/h") == 1 and read_all(fs, "/a/g3") == b"o"
    fs.unlink("/a/h", ROOT)
    assert names(fs, "/a") == ["g3"]

    with raises_errno(errno.EPERM):
        fs.link("/a", "/b/dirlink", ROOT)
    other2 = new_client()
    assert walk(other2) == walk(fs)


def test_link_seen_by_a_client_whose_inode_view_is_older(fs: FileSystem, new_client) -> None:
    """A client that read the inode's journal empty (a failed link) and then learns of a link
    made elsewhere from the directory alone must not answer ENOENT for the new name."""
    mkfile(fs, "/f", b"x")
    mkfile(fs, "/taken")
    other = new_client()
    with raises_errno(errno.EEXIST):
        other.link("/f", "/taken", ROOT)  # other now caches i/<ino>, empty
    fs.link("/f", "/g", ROOT)
    other.cache.invalidate(schema.dir_journal(schema.ROOT_INO))  # as a change notice would
    assert nlink(other, "/g") == 2 and nlink(other, "/f") == 2
    assert read_all(other, "/g") == b"x"


def test_attribute_changes_through_a_name_linked_elsewhere(fs: FileSystem, new_client) -> None:
    """This client still sees /f as a plain entry; another client has linked it, so its
    attributes now live in the inode's own journal. Changes made here must land there."""
    mkfile(fs, "/f", b"0123456789")
    fh = fs.open("/f", RW, ROOT)
    fs.write(fh, b"AB", 0)  # pending in the write-back buffer
    other = new_client()
    other.link("/f", "/g", ROOT)
    fs.chmod("/f", 0o600, ROOT)
    fs.setxattr("/f", "user.a", b"1", 0, ROOT)
    fs.utimens("/f", 5, 6, ROOT)
    fs.release(fh)  # the flush commits the data to the inode's journal too
    fs.chown("/f", 3, 4, ROOT)
    fs.truncate("/f", 8, ROOT)
    fresh = new_client()
    for p in ("/f", "/g"):  # attributes first: reading a name updates the shared atime (relatime)
        st = fresh.getattr(p)
        assert stat.S_IMODE(st["st_mode"]) == 0o600 and st["st_nlink"] == 2
        assert (st["st_uid"], st["st_gid"], st["st_atime"], st["st_size"]) == (3, 4, 5, 8)
        assert fresh.getxattr(p, "user.a") == b"1"
    for p in ("/f", "/g"):
        assert read_all(fresh, p) == b"AB234567"
    root = fresh.journals.read_after(schema.dir_journal(schema.ROOT_INO), 0)
    strict_replay(root)
    fresh.getattr("/f")
    assert fresh.ns.dir_view(schema.ROOT_INO).entries["f"].linked


def test_racing_first_links_of_one_file(fs: FileSystem, new_client) -> None:
    """Two clients both see the file unlinked and both link it: one InodeInit wins, the other
    client's transaction conflicts on the inode journal, re-reads, and adds a link instead."""
    mkfile(fs, "/f", b"x")
    other = new_client()
    assert nlink(other, "/f") == 1
    fs.link("/f", "/g", ROOT)
    other.link("/f", "/h", ROOT)  # stale: believes /f has one name
    for c in (fs, other, new_client()):
        c.cache.invalidate_all()
        assert [nlink(c, p) for p in ("/f", "/g", "/h")] == [3, 3, 3]
    recs = fs.journals.read_after(schema.inode_journal(fs.getattr("/f")["st_ino"]), 0)
    verify_chain(recs)
    assert sum(isinstance(e, InodeInit) for r in recs for e in r.events) == 1


def test_directory_nlink_is_two_plus_subdirs(fs: FileSystem, new_client) -> None:
    assert nlink(fs, "/") == 2
    fs.mkdir("/d", DIR, ROOT)
    assert nlink(fs, "/") == 3 and nlink(fs, "/d") == 2
    fs.mkdir("/d/a", DIR, ROOT)
    fs.mkdir("/d/b", DIR, ROOT)
    mkfile(fs, "/d/f")
    fs.symlink("x", "/d/s", ROOT)
    assert nlink(fs, "/d") == 4
    fs.rmdir("/d/a", ROOT)
    assert nlink(fs, "/d") == 3
    fs.rename("/d/b", "/b", 0, ROOT)
    assert nlink(fs, "/d") == 2 and nlink(fs, "/") == 4
    fs.rename("/b", "/d/b2", 0, ROOT)
    fs.rename("/d/b2", "/d/b3", 0, ROOT)
    assert nlink(fs, "/d") == 3 and nlink(fs, "/") == 3
    other = new_client()
    assert nlink(other, "/") == 3 and nlink(other, "/d") == 3 and nlink(other, "/d/b3") == 2


def test_parent_times_follow_namespace_changes(fs: FileSystem, new_client) -> None:
    fs.mkdir("/d", DIR, ROOT)
    fs.utimens("/d", 10, 10, ROOT)
    steps = [lambda: mkfile(fs, "/d/f"), lambda: fs.mkdir("/d/s", DIR, ROOT),
             lambda: fs.rename("/d/f", "/d/g", 0, ROOT), lambda: fs.link("/d/g", "/d/h", ROOT),
             lambda: fs.unlink("/d/h", ROOT), lambda: fs.rmdir("/d/s", ROOT)]
    for step in steps:
        fs.utimens("/d", 10, 10, ROOT)
        step()
        st = fs.getattr("/d")
        assert st["st_mtime"] > 10 and st["st_ctime"] > 10
    assert new_client().getattr("/d")["st_mtime"] == fs.getattr("/d")["st_mtime"]


def test_tiny_view_cache_evicts_and_stays_correct(fs: FileSystem, new_client) -> None:
    """With a budget of a few entries the cache keeps evicting views; every operation must
    still see (re-read) the right state."""
    small = new_client(entry_budget=6)
    small.allocator.prefetch()
    for i in range(8):
        small.mkdir(f"/d{i}", DIR, ROOT)
        for j in range(3):
            mkfile(small, f"/d{i}/f{j}", bytes([i, j]))
    for i in range(0, 8, 2):
        small.rename(f"/d{i}/f0", f"/d{i + 1}/moved", 0, ROOT)
        small.link(f"/d{i}/f1", f"/d{(i + 5) % 8}/l{i}", ROOT)
        small.unlink(f"/d{i}/f2", ROOT)
    assert len(small.cache) <= 3
    assert walk(small) == walk(new_client())
    assert read_all(small, "/d5/l0") == bytes([0, 1])


# == rmdir ==================================================================================================

def test_rmdir_seals_the_directory_against_stale_clients(fs: FileSystem, new_client) -> None:
    fs.mkdir("/d", DIR, ROOT)
    fs.mkdir("/d/sub", DIR, ROOT)
    stale = new_client()
    assert names(stale, "/d/sub") == []  # caches views of /, /d and /d/sub
    ino = fs.getattr("/d/sub")["st_ino"]
    fs.rmdir("/d/sub", ROOT)
    # The stale client still resolves /d/sub from its cached /d, but its create lands on the
    # sealed journal: the conditional put conflicts, the refresh shows the seal, ENOENT.
    for call in (
        lambda: stale.create("/d/sub/x", FILE, os.O_WRONLY, ROOT),
        lambda: stale.mkdir("/d/sub/y", DIR, ROOT),
        lambda: stale.symlink("t", "/d/sub/z", ROOT),
    ):
        with raises_errno(errno.ENOENT):
            call()
    recs = fs.journals.read_after(schema.dir_journal(ino), 0)
    assert recs and isinstance(recs[-1].events[-1], Remove) and recs[-1].events[-1].name == ""
    assert strict_replay(recs).removed
    assert names(fs, "/d") == []
    stale.cache.invalidate_all()
    assert names(stale, "/d") == []


def test_directory_removed_and_recreated_by_another_client(fs: FileSystem, new_client) -> None:
    """``rm -r d && mkdir d`` elsewhere: this client's cached path leads to the old, sealed
    directory; its operations must land in the new one, not fail ENOENT until the TTL ends."""
    fs.mkdir("/top", DIR, ROOT)
    fs.mkdir("/top/d", DIR, ROOT)
    mkfile(fs, "/top/d/f", b"old")
    assert names(fs, "/top/d") == ["f"]
    other = new_client()
    other.unlink("/top/d/f", ROOT)
    other.rmdir("/top/d", ROOT)
    other.mkdir("/top/d", DIR, ROOT)
    mkfile(other, "/top/d/f2", b"new")
    mkfile(fs, "/top/d/x", b"x")
    fs.mkdir("/top/d/y", DIR, ROOT)
    fs.symlink("t", "/top/d/s", ROOT)
    fs.rename("/top/d/x", "/top/d/x2", 0, ROOT)
    fs.link("/top/d/x2", "/top/d/x3", ROOT)
    assert read_all(fs, "/top/d/f2") == b"new"
    fs.unlink("/top/d/f2", ROOT)
    assert names(new_client(), "/top/d") == ["s", "x2", "x3", "y"]
    with raises_errno(errno.ENOENT):
        fs.getattr("/top/d/f")


def test_rmdir_of_a_directory_another_client_just_filled(fs: FileSystem, new_client) -> None:
    fs.mkdir("/d", DIR, ROOT)
    assert names(fs, "/d") == []  # this client believes /d is empty
    other = new_client()
    mkfile(other, "/d/late", b"x")
    with raises_errno(errno.ENOTEMPTY):
        fs.rmdir("/d", ROOT)
    assert names(fs, "/d") == ["late"]


def test_rmdir_special_cases(fs: FileSystem) -> None:
    with raises_errno(errno.EBUSY):
        fs.rmdir("/", ROOT)
    fs.mkdir("/d", DIR, ROOT)
    with raises_errno(errno.EINVAL):
        fs.rmdir("/d/.", ROOT)
    fs.rmdir("/d", ROOT)
    with raises_errno(errno.ENOENT):
        fs.rmdir("/d", ROOT)
    fs.mkdir("/d", DIR, ROOT)  # the name is free again; a new directory, a new journal
    mkfile(fs, "/d/f")
    assert names(fs, "/d") == ["f"]


# == attributes ==============================================================================================

def test_chmod_chown_utimens(fs: FileSystem, new_client) -> None:
    fs.mkdir("/d", DIR, ROOT)
    mkfile(fs, "/d/f")
    fs.chmod("/d/f", 0o4751, ROOT)
    fs.chmod("/d", 0o700, ROOT)
    fs.chown("/d/f", 12, 34, ROOT)
    fs.utimens("/d/f", 1_000_000_000, 2_000_000_000, ROOT)
    fs.utimens("/d", 3, 4, ROOT)
    st = fs.getattr("/d/f")
    assert stat.S_IMODE(st["st_mode"]) == 0o4751 and stat.S_ISREG(st["st_mode"])
    assert (st["st_uid"], st["st_gid"], st["st_atime"], st["st_mtime"]) == (12, 34, 1_000_000_000, 2_000_000_000)
    other = new_client()
    assert other.getattr("/d/f") == st
    d = other.getattr("/d")
    assert stat.S_IMODE(d["st_mode"]) == 0o700 and d["st_mtime"] == 4
    # chown by a non-root caller clears set-user-ID
    fs.chown("/d/f", 12, -1, Caller(12, 34, 0))
    assert not fs.getattr("/d/f")["st_mode"] & stat.S_ISUID
    fs.chmod("/", 0o711, ROOT)
    assert stat.S_IMODE(new_client().getattr("/")["st_mode"]) == 0o711


# == data ====================================================================================================

def test_write_read_overwrite(fs: FileSystem, new_client) -> None:
    fh = fs.create("/f", FILE, RW | os.O_CREAT, ROOT)
    assert fs.write(fh, b"hello world", 0) == 11
    assert fs.read(fh, 100, 0) == b"hello world"
    fs.write(fh, b"WORLD!", 6)
    assert fs.read(fh, 100, 0) == b"hello WORLD!"
    assert fs.read(fh, 3, 2) == b"llo"
    assert fs.read(fh, 10, 100) == b""
    fs.release(fh)
    assert fs.getattr("/f")["st_size"] == 12
    other = new_client()
    assert read_all(other, "/f") == b"hello WORLD!"
    # overwrite across a block boundary from the second client, read back on the first
    bs = fs.block_size
    fh = other.open("/f", RW, ROOT)
    other.write(fh, b"A" * bs + b"B" * 10, 5)
    other.release(fh)
    expect = b"hello" + b"A" * bs + b"B" * 10
    assert read_all(fs, "/f") == expect
    fh = fs.open("/f", RW, ROOT)
    fs.write(fh, b"Z", bs - 1)
    fs.release(fh)
    expect = expect[: bs - 1] + b"Z" + expect[bs:]
    assert read_all(new_client(), "/f") == expect


def test_sparse_file_holes_read_as_zeros(fs: FileSystem, new_client) -> None:
    bs = fs.block_size
    fh = fs.create("/sparse", FILE, RW | os.O_CREAT, ROOT)
    fs.write(fh, b"head", 0)
    fs.write(fh, b"tail", 40 * bs + 7)
    fs.release(fh)
    size = 40 * bs + 11
    st = fs.getattr("/sparse")
    assert st["st_size"] == size
    assert st["st_blocks"] * 512 <= 2 * bs  # only the two written blocks are allocated
    data = read_all(new_client(), "/sparse")
    assert data == b"head" + b"\0" * (40 * bs + 3) + b"tail"
    fh = fs.open("/sparse", os.O_RDONLY, ROOT)
    assert fs.read(fh, 16, 20 * bs) == b"\0" * 16
    fs.release(fh)
    # a plain fallocate extends with zeros
    fh = fs.open("/sparse", RW, ROOT)
    fs.fallocate(fh, 0, size, 100)
    fs.release(fh)
    assert fs.getattr("/sparse")["st_size"] == size + 100
    assert read_all(fs, "/sparse")[size:] == b"\0" * 100


def test_truncate_shrink_then_grow_reads_zeros(fs: FileSystem, new_client) -> None:
    bs = fs.block_size
    rnd = random.Random(7)
    data = rnd.randbytes(3 * bs + 123)
    mkfile(fs, "/f", data)
    # by path, no open handle
    fs.truncate("/f", 100, ROOT)
    assert fs.getattr("/f")["st_size"] == 100
    fs.truncate("/f", 2 * bs + 50, ROOT)
    other = new_client()
    assert read_all(other, "/f") == data[:100] + b"\0" * (2 * bs - 50)
    # through an open handle with dirty blocks: shrink inside a dirty block, then grow
    fh = fs.open("/f", RW, ROOT)
    fs.write(fh, b"x" * (bs + 10), 0)
    fs.truncate(None, 5, ROOT, fh)
    assert fs.read(fh, 20, 0) == b"xxxxx"
    fs.write(fh, b"end", bs * 2)
    assert fs.read(fh, bs * 2 + 3, 0) == b"xxxxx" + b"\0" * (2 * bs - 5) + b"end"
    fs.release(fh)
    assert read_all(new_client(), "/f") == b"xxxxx" + b"\0" * (2 * bs - 5) + b"end"
    # O_TRUNC
    fs.release(fs.open("/f", os.O_WRONLY | os.O_TRUNC, ROOT))
    assert fs.getattr("/f")["st_size"] == 0 and read_all(fs, "/f") == b""
    # shrinking to the middle of a committed block, growing: the cut tail is zeros, not old bytes
    mkfile(fs, "/g", b"\xff" * (bs + 100))
    fs.truncate("/g", 10, ROOT)
    fs.truncate("/g", bs + 100, ROOT)
    assert read_all(new_client(), "/g") == b"\xff" * 10 + b"\0" * (bs + 90)


def test_large_file_across_flush_thresholds(fs: FileSystem, new_client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dynlog.core.files.DIRTY_LIMIT", 8 * 1024 * 1024)  # a commit every 8 MiB
    rnd = random.Random(20)
    size = 20 * 1024 * 1024 + 12345
    chunk = 1024 * 1024
    digest = hashlib.sha256()
    fh = fs.create("/big", FILE, RW | os.O_CREAT, ROOT)
    pos = 0
    while pos < size:
        piece = rnd.randbytes(min(chunk, size - pos))
        digest.update(piece)
        fs.write(fh, piece, pos)
        pos += len(piece)
    fs.release(fh)
    assert fs.getattr("/big")["st_size"] == size
    # the write-back buffer was flushed at its threshold and at close: at least two commits
    ino = fs.getattr("/big")["st_ino"]
    commits = [ev for r in fs.journals.read_after(schema.dir_journal(schema.ROOT_INO), 0)
               for ev in r.events if isinstance(ev, SetAttr) and ev.name == "big" and ev.blocks]
    assert len(commits) >= 2
    other = new_client()
    got = read_all(other, "/big")
    assert len(got) == size and hashlib.sha256(got).hexdigest() == digest.hexdigest()
    # a random read in the middle
    fh = other.open("/big", os.O_RDONLY, ROOT)
    mid = other.read(fh, 1000, 17 * chunk + 17)
    other.release(fh)
    assert mid == got[17 * chunk + 17 : 17 * chunk + 1017]
    assert other.getattr("/big")["st_ino"] == ino


def test_unlink_while_open_keeps_data_readable(fs: FileSystem, new_client) -> None:
    bs = fs.block_size
    body = random.Random(3).randbytes(2 * bs + 5)
    mkfile(fs, "/f", body)
    fh = fs.open("/f", RW, ROOT)
    fs.unlink("/f", ROOT)
    with raises_errno(errno.ENOENT):
        fs.getattr("/f")
    assert names(fs, "/") == []
    assert fs.read(fh, len(body), 0) == body
    assert fs.getattr("/f", fh)["st_nlink"] == 0
    fs.write(fh, b"more", len(body))
    fs.flush(fh)
    assert fs.read(fh, len(body) + 4, 0) == body + b"more"
    assert fs.getattr("/f", fh)["st_size"] == len(body) + 4
    fs.release(fh)
    other = new_client()
    assert names(other, "/") == []
    # the name is free: a new file there is a new inode, with none of the old bytes
    mkfile(fs, "/f", b"new")
    assert read_all(other, "/f") == b"new"


@pytest.mark.parametrize("what", ["rename_across", "rename_within", "replace_name", "unlink", "link"])
def test_open_file_renamed_or_unlinked_by_another_client(fs: FileSystem, new_client, what: str) -> None:
    """Writes buffered on an open file whose name another client changed meanwhile: the flush
    at close follows the inode to its new name (or, with no name left, keeps the data for the
    handle); it neither fails nor loses the data."""
    fs.mkdir("/a", DIR, ROOT)
    fs.mkdir("/b", DIR, ROOT)
    mkfile(fs, "/a/f", b"old contents")
    fh = fs.open("/a/f", RW, ROOT)
    fs.write(fh, b"NEW", 0)
    other = new_client()
    where = {"rename_across": "/b/g", "rename_within": "/a/g", "replace_name": "/b/g", "unlink": None,
             "link": "/a/f"}[what]
    if what == "rename_across":
        other.rename("/a/f", "/b/g", 0, ROOT)
    elif what == "rename_within":
        other.rename("/a/f", "/a/g", 0, ROOT)
    elif what == "replace_name":
        other.rename("/a/f", "/b/g", 0, ROOT)
        mkfile(other, "/a/f", b"a different file")  # the old name now names another inode
    elif what == "unlink":
        other.unlink("/a/f", ROOT)
    else:
        other.link("/a/f", "/b/l", ROOT)
    fs.write(fh, b"!", 12)
    fs.release(fh)
    fresh = new_client()
    if where is not None:
        assert read_all(fresh, where) == b"NEW contents!"
    if what == "replace_name":
        assert read_all(fresh, "/a/f") == b"a different file"
    if what == "link":
        assert read_all(fresh, "/b/l") == b"NEW contents!"
    if what == "unlink":
        assert names(fresh, "/a") == []
    for jid in ("/a", "/b"):
        strict_replay(fresh.journals.read_after(schema.dir_journal(fresh.getattr(jid)["st_ino"]), 0))


def test_handle_operations_after_another_client_renamed_the_file(fs: FileSystem, new_client) -> None:
    """fchmod, fchown, futimens, ftruncate on a handle: they act on the inode, wherever another
    client has renamed it meanwhile."""
    fs.mkdir("/a", DIR, ROOT)
    fs.mkdir("/b", DIR, ROOT)
    mkfile(fs, "/a/f", b"0123456789")
    fh = fs.open("/a/f", RW, ROOT)
    other = new_client()
    other.rename("/a/f", "/b/g", 0, ROOT)
    fs.chmod(None, 0o640, ROOT, fh)
    fs.chown(None, 9, 9, ROOT, fh)
    fs.utimens(None, 11, 12, ROOT, fh)
    fs.truncate(None, 4, ROOT, fh)
    fs.release(fh)
    st = new_client().getattr("/b/g")
    assert (stat.S_IMODE(st["st_mode"]), st["st_uid"], st["st_atime"], st["st_size"]) == (0o640, 9, 11, 4)
    assert read_all(new_client(), "/b/g") == b"0123"


def test_open_file_moved_there_and_back_while_our_views_lag(fs: FileSystem, new_client) -> None:
    """Another client moves an open file from /b to /a and back; this client's view of /a saw
    both moves, its view of /b only the first. Following the file at close went /b -> /a -> /b
    -> ... without end (RecursionError, EIO to close() in the write-behind stress run); a
    directory met twice is now read afresh, and the flush lands in /b/f."""
    fs.ns.ttl = 3600.0  # this client's views stay as they are unless the test refreshes them
    fs.mkdir("/a", DIR, ROOT)
    fs.mkdir("/b", DIR, ROOT)
    fh = fs.create("/b/f", FILE, os.O_RDWR | os.O_CREAT, ROOT)
    fs.write(fh, b"old contents", 0)
    fs.flush(fh)
    va, vb = (fs.ns.dir_view(fs.getattr(d)["st_ino"]) for d in ("/a", "/b"))
    other = new_client()
    other.rename("/b/f", "/a/f", 0, ROOT)
    fs.cache.refresh(va)
    fs.cache.refresh(vb)  # /b: moved to /a
    other.rename("/a/f", "/b/f", 0, ROOT)
    fs.cache.refresh(va)  # /a: moved to /b; /b is not re-read
    ino = fs.getattr("/a")["st_ino"], fs.getattr("/b")["st_ino"]
    f_ino = other.getattr("/b/f")["st_ino"]
    assert (va.moved_out[f_ino][0], vb.moved_out[f_ino][0]) == (ino[1], ino[0])  # each says: the other
    fs.write(fh, b"NEW", 0)
    fs.release(fh)
    assert read_all(new_client(), "/b/f") == b"NEW contents"


def test_write_visible_to_other_client_at_open(fs: FileSystem, new_client) -> None:
    """Close-to-open: an open() after a close() elsewhere sees the closed contents."""
    mkfile(fs, "/f", b"v1")
    other = new_client()
    assert read_all(other, "/f") == b"v1"
    fh = fs.open("/f", RW, ROOT)
    fs.write(fh, b"v2-longer", 0)
    fs.release(fh)
    assert read_all(other, "/f") == b"v2-longer"


# == xattrs ==================================================================================================

def test_xattrs_create_replace_remove(fs: FileSystem, new_client) -> None:
    mkfile(fs, "/f")
    fs.mkdir("/d", DIR, ROOT)
    for p in ("/f", "/d", "/"):
        fs.setxattr(p, "user.a", b"1", 0, ROOT)
        with raises_errno(errno.EEXIST):
            fs.setxattr(p, "user.a", b"2", XATTR_CREATE, ROOT)
        with raises_errno(errno.ENODATA):
            fs.setxattr(p, "user.b", b"2", XATTR_REPLACE, ROOT)
        fs.setxattr(p, "user.a", b"3", XATTR_REPLACE, ROOT)
        fs.setxattr(p, "user.b", b"\0bin\xff", XATTR_CREATE, ROOT)
        assert fs.getxattr(p, "user.a") == b"3"
        assert sorted(fs.listxattr(p)) == ["user.a", "user.b"]
        with raises_errno(errno.ENODATA):
            fs.getxattr(p, "user.none")
        fs.removexattr(p, "user.a", ROOT)
        with raises_errno(errno.ENODATA):
            fs.removexattr(p, "user.a", ROOT)
        with raises_errno(errno.ENODATA):
            fs.getxattr(p, "user.a")
    big = os.urandom(64 * 1024)
    fs.setxattr("/f", "user.big", big, 0, ROOT)
    with raises_errno(errno.E2BIG):
        fs.setxattr("/f", "user.toobig", big + b"x", 0, ROOT)
    other = new_client()
    for p in ("/f", "/d", "/"):
        assert other.getxattr(p, "user.b") == b"\0bin\xff"
        assert "user.a" not in other.listxattr(p)
    assert other.getxattr("/f", "user.big") == big
    # xattrs survive a rename and follow a file that becomes hard-linked
    fs.rename("/f", "/d/f", 0, ROOT)
    fs.link("/d/f", "/g", ROOT)
    assert new_client().getxattr("/g", "user.b") == b"\0bin\xff"
    fs.setxattr("/g", "user.c", b"c", XATTR_CREATE, ROOT)
    assert new_client().getxattr("/d/f", "user.c") == b"c"


# == names that are not UTF-8 ============================================================================

def test_non_utf8_names_round_trip(fs: FileSystem, new_client) -> None:
    cafe = os.fsdecode(b"caf\xe9")
    junk = os.fsdecode(b"\xff\xfe\x80-raw")
    odd = ["emoji-\U0001f600", "new\nline", "tab\tand space ", "\\backslash", "quote\"'", "ünïcödé",
           os.fsdecode(b"\xed\xa0\x80surrogate-bytes")]
    fs.mkdir("/" + cafe, DIR, ROOT)
    mkfile(fs, f"/{cafe}/{junk}", b"bytes")
    for n in odd:
        mkfile(fs, f"/{cafe}/{n}", n.encode("utf-8", "surrogateescape"))
    other = new_client()
    assert names(other, "/") == [cafe]
    assert os.fsencode(names(other, "/")[0]) == b"caf\xe9"
    listed = names(other, f"/{cafe}")
    assert sorted(listed) == sorted([junk] + odd)
    assert {os.fsencode(n) for n in listed} == {os.fsencode(n) for n in [junk] + odd}
    assert read_all(other, f"/{cafe}/{junk}") == b"bytes"
    # rename to and link under other raw names, seen by a third client
    raw2 = os.fsdecode(b"\xc3\x28bad-utf8")
    other.rename(f"/{cafe}/{junk}", "/" + raw2, 0, ROOT)
    other.link("/" + raw2, f"/{cafe}/" + os.fsdecode(b"l\xfank"), ROOT)
    third = new_client()
    assert sorted(os.fsencode(n) for n in names(third, "/")) == sorted([b"caf\xe9", b"\xc3\x28bad-utf8"])
    assert nlink(third, "/" + raw2) == 2
    assert read_all(third, f"/{cafe}/" + os.fsdecode(b"l\xfank")) == b"bytes"
    # and every stored journal item is plain ASCII JSON
    for r in fs.journals.read_after(schema.dir_journal(fs.getattr("/" + cafe)["st_ino"]), 0):
        r.to_item()["ev"].encode("ascii")


# == the event codec ======================================================================================

def all_events() -> list[Event]:
    raw = os.fsdecode(b"n\xe9\xff")
    full = Inode(ino=77, mode=stat.S_IFREG | 0o640, uid=5, gid=6, size=12345, atime=1, mtime=2, ctime=3, nlink=3,
                 rdev=0, target="", xattrs=(("user.a", b"\0\xff"), ("user." + raw, b"")),
                 blocks=((0, 3, "w1"), (5, 1, "w2")))
    link = Inode(ino=78, mode=stat.S_IFLNK | 0o777, target=os.fsdecode(b"../t\xe9"))
    dev = Inode(ino=79, mode=stat.S_IFCHR | 0o600, rdev=(8 << 8) | 1)
    return [
        Create(raw, full), Create("l", link), Create("dev", dev),
        Create("d", Inode(80, stat.S_IFDIR | 0o755)),
        Remove(raw, 77), Remove("", 80),
        Rename(raw, "x" * 255, 77),
        MoveOut("a", 77, 12, raw), MoveIn(raw, full, 11, "a"),
        MoveIn("ref", Inode(81, stat.S_IFREG, linked=True), 11, "r"),
        SetAttr("f", {"mode": 0o100600, "size": 0, "mtime": 9}),
        SetAttr("f", {"size": 10}, blocks=((0, 1, "w3"),), block_size=4096),
        SetAttr("", {"nlink": 2, "ctime": 5}),
        SetXattr("f", "user.k", b"\x00\x01v", 7), SetXattr("", "user.k", None, 8),
        Detach("f", 77), Link(raw, 77, stat.S_IFREG),
        InodeInit(full), Orphaned(77, "sess1", ((0, 3, "w1"),)),
        SetAttr("small", {"size": 5, "mtime": 9}, data=b"\x00ab\xffc"),
        Create("inl", Inode(82, stat.S_IFREG | 0o644, size=3, data=b"xyz")),
        Stamp(10, 1000, "create"), Lease("sess1", 99), Release("sess1"),
    ]


def test_event_codec_round_trip() -> None:
    evs = all_events()
    assert {type(e).kind for e in evs} == set(Event.registry) - {""}
    for ev in evs:
        wire = json.dumps(ev.to_json(), ensure_ascii=True)
        back = Event.from_json(json.loads(wire))
        assert back == ev, (ev, back)
        assert type(back) is type(ev)
    rec = Record("d/9", 3, tuple(evs), 123, "sess", 1000, "test", GENESIS_HASH).sealed()
    item = rec.to_item()
    item["ev"].encode("ascii")
    back = Record.from_item(item)
    assert back == rec and back.verify()
    assert back.version == FORMAT_VERSION
    packed = rec.to_item(compress=True)  # the inline bytes of the events, compressed where that pays
    assert Record.from_item(packed) == dataclasses.replace(rec, version=packed["v"])
    newer = dict(item, v=max(FORMAT_VERSION, COMPRESSED_VERSION) + 1)
    with pytest.raises(ValueError):
        Record.from_item(newer)


def test_inode_json_round_trip_keeps_every_field() -> None:
    for ev in all_events():
        for v in vars(ev).values():
            if isinstance(v, Inode):
                assert Inode.from_json(json.loads(json.dumps(v.to_json()))) == v


# == the hash chain =========================================================================================

def test_hash_chain_links_and_verifies(fs: FileSystem) -> None:
    fs.mkdir("/d", DIR, ROOT)
    for i in range(6):
        mkfile(fs, f"/d/f{i}", b"x" * i)
    fs.rename("/d/f1", "/d/g", 0, ROOT)
    fs.unlink("/d/f2", ROOT)
    fs.chmod("/d/f3", 0o600, ROOT)
    jid = schema.dir_journal(fs.getattr("/d")["st_ino"])
    recs = fs.journals.read_after(jid, 0)
    assert len(recs) >= 9
    verify_chain(recs)
    assert recs[0].prev == GENESIS_HASH
    v = replay(fs.journals, jid)
    assert v.chain_ok and v.head_hash == recs[-1].hash
    # tampering with a record's events, its time or its author breaks its own hash
    r = recs[3]
    assert not replace(r, events=r.events[:-1] + (Remove("zzz", 1),)).verify()
    assert not replace(r, ts=r.ts + 1).verify()
    assert not replace(r, session="mallory").verify()
    assert not replace(r, prev=recs[1].hash).verify()
    # a record re-sealed after an edit no longer links to its successor
    forged = replace(r, events=(Remove("zzz", 1),)).sealed()
    with pytest.raises(AssertionError):
        verify_chain(recs[:3] + [forged] + recs[4:])
    # a record whose prev is not its predecessor's hash is detected by the view
    v2 = View(jid)
    for x in recs[:3]:
        v2.apply(x)
    v2.apply(replace(recs[3], prev=GENESIS_HASH).sealed())
    assert not v2.chain_ok
    # tampering in the store is detected on read
    item = recs[4].to_item()
    evs = json.loads(item["ev"])
    evs[0]["name"] = "forged"
    item["ev"] = json.dumps(evs, separators=(",", ":"), sort_keys=True)
    fs.store.put(Put("meta", item))
    assert not fs.journals.read_after(jid, recs[4].seq - 1, until=recs[4].seq)[0].verify()


def test_hash_chain_of_inode_journals(fs: FileSystem) -> None:
    mkfile(fs, "/f", b"x")
    fs.link("/f", "/g", ROOT)
    fs.link("/f", "/h", ROOT)
    fs.chmod("/g", 0o600, ROOT)
    fs.unlink("/f", ROOT)
    jid = schema.inode_journal(fs.getattr("/g")["st_ino"])
    recs = fs.journals.read_after(jid, 0)
    verify_chain(recs)
    assert isinstance(recs[0].events[0], InodeInit)
    assert replay(fs.journals, jid).subject.nlink == 2


# == snapshots ==============================================================================================

def big_view(n: int, seed: int = 1) -> View:
    """A directory view of ``n`` entries with incompressible names and xattrs, built by folding."""
    rnd = random.Random(seed)
    v = View("d/4242")
    prev = GENESIS_HASH
    batch = []
    seq = 0
    for i in range(n):
        name = os.fsdecode(rnd.randbytes(40).replace(b"/", b"_").replace(b"\0", b"_"))
        ino = Inode(ino=1000 + i, mode=stat.S_IFREG | 0o644, size=rnd.randrange(1 << 40), mtime=rnd.randrange(1 << 60),
                    xattrs=(("user.r", rnd.randbytes(300)),), blocks=((0, 1, rnd.randbytes(8).hex()),))
        batch.append(Create(name, ino))
        if len(batch) == 50 or i == n - 1:
            seq += 1
            rec = Record(v.jid, seq, tuple(batch), seq, "s", 0, "create", prev).sealed()
            v.apply(rec)
            prev, batch = rec.hash, []
    v.apply(Record(v.jid, seq + 1, (SetAttr("", {"mode": stat.S_IFDIR | 0o700}),
                                     SetXattr("", "user.dir", b"\x01\x02")), seq + 1, "s", 0, "chmod", prev).sealed())
    return v


def test_snapshot_of_a_large_directory_splits_into_parts(fs: FileSystem) -> None:
    v = big_view(3000)
    state = v.to_snapshot()
    parts = fs.journals.write_snapshot(v.jid, state)
    assert parts >= 3, "the test directory should need several items"
    stored = list(fs.store.query_prefix("meta", v.jid, "s/"))
    assert len(stored) == parts
    assert all(len(it["data"]) <= SNAPSHOT_PART_BYTES for it in stored)
    from dynlog.store.base import item_size

    assert all(item_size(it) <= MAX_ITEM_BYTES for it in stored)
    loaded = fs.journals.load_snapshot(v.jid)
    assert loaded == json.loads(json.dumps(state))
    back = View.from_snapshot(loaded)
    assert back.state_equals(v)
    assert back.head == v.head and back.head_hash == v.head_hash
    assert len(back.entries) == 3000 and back.ndirs == v.ndirs
    assert back.by_ino == v.by_ino
    assert back.own_inode(Inode(4242, stat.S_IFDIR | 0o755)).mode == stat.S_IFDIR | 0o700


def test_incomplete_snapshot_falls_back_to_the_previous_one(fs: FileSystem) -> None:
    v = big_view(1500, seed=2)
    old = View("d/4242")
    old.adopt(View.from_snapshot(json.loads(json.dumps(v.to_snapshot()))))
    fs.journals.write_snapshot(v.jid, old.to_snapshot())
    # a newer snapshot whose writer died after writing only some parts
    newer = json.loads(json.dumps(v.to_snapshot()))
    newer["head"] += 5
    nparts = fs.journals.write_snapshot(v.jid, newer)
    assert nparts >= 2
    first = schema.snapshot_key(newer["head"], 0)
    fs.store.delete_items("meta", [(v.jid, first)])
    got = fs.journals.load_snapshot(v.jid)
    assert got is not None and got["head"] == v.head
    assert fs.journals.load_snapshot(v.jid, at_or_before=v.head - 1) is None
    assert fs.journals.snapshot_seqs(v.jid) == [v.head, newer["head"]]


def test_snapshot_plus_tail_equals_full_replay(fs: FileSystem, new_client) -> None:
    fs.mkdir("/d", DIR, ROOT)
    for i in range(30):
        mkfile(fs, f"/d/f{i:02d}", b"x")
    fs.mkdir("/d/sub", DIR, ROOT)
    fs.link("/d/f00", "/d/hard", ROOT)
    jid = schema.dir_journal(fs.getattr("/d")["st_ino"])
    view = fs.ns.dir_view(fs.getattr("/d")["st_ino"], 0.0)
    snap_at = view.head
    fs.journals.write_snapshot(jid, view.to_snapshot())
    for i in range(0, 30, 3):
        fs.unlink(f"/d/f{i:02d}", ROOT)
    fs.rename("/d/f01", "/d/renamed", 0, ROOT)
    fs.setxattr("/d", "user.x", b"y", 0, ROOT)
    full = replay(fs.journals, jid)
    # a fresh client starts from the snapshot and reads only the tail
    c = new_client()
    c.store.metrics.reset()
    loaded = c.cache.get(jid)
    assert c.store.metrics.by_call() == {"Query": 2}
    assert loaded.state_equals(full)
    # with the journal trimmed below the snapshot (as compact does), nothing changes
    fs.journals.delete_records(jid, snap_at)
    assert fs.journals.first_seq(jid) == snap_at + 1
    c2 = new_client()
    assert c2.cache.get(jid).state_equals(full)
    assert walk(c2) == walk(fs)


# == views rebuilt at any seq ================================================================================

def rebuild(journals: JournalStore, jid: str, seq: int) -> View:
    """The view of ``jid`` as it was at ``seq``: the latest snapshot at or before it plus the records up to it."""
    snap = journals.load_snapshot(jid, at_or_before=seq)
    v = View.from_snapshot(snap) if snap else View(jid)
    for r in journals.read_after(jid, v.head, until=seq):
        v.apply(r)
    assert v.head == seq
    return v


def test_view_rebuilt_to_any_seq(fs: FileSystem) -> None:
    fs.mkdir("/d", DIR, ROOT)
    dino = fs.getattr("/d")["st_ino"]
    jid = schema.dir_journal(dino)
    fs.mkdir("/elsewhere", DIR, ROOT)
    history: dict[int, dict] = {}

    def record() -> None:
        v = fs.ns.dir_view(dino, 0.0)
        history[v.head] = json.loads(json.dumps(v.to_snapshot()))

    steps = [
        lambda: mkfile(fs, "/d/a", b"1"),
        lambda: fs.mkdir("/d/sub", DIR, ROOT),
        lambda: fs.symlink("a", "/d/s", ROOT),
        lambda: fs.rename("/d/a", "/d/b", 0, ROOT),
        lambda: fs.chmod("/d/b", 0o600, ROOT),
        lambda: fs.setxattr("/d/b", "user.q", b"v", 0, ROOT),
        lambda: fs.link("/d/b", "/d/c", ROOT),
        lambda: fs.rename("/d/sub", "/elsewhere/sub", 0, ROOT),
        lambda: mkfile(fs, "/elsewhere/in", b"2"),
        lambda: fs.rename("/elsewhere/in", "/d/in", 0, ROOT),
        lambda: fs.unlink("/d/s", ROOT),
        lambda: fs.chmod("/d", 0o700, ROOT),
        lambda: fs.unlink("/d/b", ROOT),
    ]
    for i, step in enumerate(steps):
        step()
        record()
        if i == 6:
            v = fs.ns.dir_view(dino, 0.0)
            fs.journals.write_snapshot(jid, v.to_snapshot())
    head = max(history)
    assert head >= len(steps) - 2
    for seq, want in history.items():
        assert replay(fs.journals, jid, upto=seq).to_snapshot() == want, f"fold to seq {seq}"
        assert rebuild(fs.journals, jid, seq).to_snapshot() == want, f"snapshot + fold to seq {seq}"
    # every seq, not only those we saw, folds cleanly and monotonically
    for seq in range(1, head + 1):
        assert replay(fs.journals, jid, upto=seq).head == seq
