"""The FUSE layer without a kernel: the errno table, the callbacks' error boundary and replies,
option parsing, helpers. Replies are captured instead of sent (``replies``)."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from pathlib import Path
from typing import Any, Iterator

import mfusepy
import pytest
import structlog

from dynlog.cli.mountcmd import format_options, parse_options
from dynlog.core.attrs import Caller
from dynlog.core.filesystem import UTIME_NOW, FileSystem
from dynlog.core.superblock import mkfs
from dynlog.errors import FsError, JournalConflict, QuietError, StoreError, TransientStoreError
from dynlog.fuse import lowlevel as ll
from dynlog.fuse import mounttab
from dynlog.fuse.kernel import errno_of
from dynlog.fuse.operations import DynlogOperations
from dynlog.schema import ROOT_INO
from dynlog.store.sqlite import SqliteStore

REQ = 0x1234  # a request pointer libfuse would pass; never dereferenced here


@pytest.fixture
def replies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Every reply the callbacks make, as (libfuse function, arguments after the request)."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    for name in ("reply_err", "reply_none", "reply_entry", "reply_create", "reply_attr", "reply_open", "reply_buf",
                 "reply_xattr", "reply_readlink", "reply_write"):
        monkeypatch.setattr(ll, name, lambda req, *a, _n=name: sent.append((_n, a)) or 0)
    monkeypatch.setattr(ll, "request_context", lambda req: (0, 0, os.getpid()))
    return sent


def call(ops: DynlogOperations, op: str, *args: Any) -> None:
    """Run one callback as libfuse would."""
    ops.callbacks()[op](REQ, *args)


@pytest.mark.parametrize("exc, code", [
    (FsError(errno.ENOENT, "x"), errno.ENOENT),
    (FsError(errno.ENAMETOOLONG), errno.ENAMETOOLONG),
    (JournalConflict(), errno.EAGAIN),
    (TransientStoreError("throttled"), errno.EIO),
    (StoreError("table gone"), errno.EIO),
    (ValueError("a bug"), None),
    (KeyError("a bug"), None),
])
def test_errno_table(exc: BaseException, code: int | None) -> None:
    assert errno_of(exc) == code


class ExplodingFS:
    def __getattr__(self, name: str):  # noqa: ANN204
        def boom(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            raise RuntimeError("unexpected")
        return boom


def test_unexpected_errors_are_logged_and_become_eio(replies: list) -> None:
    ops = DynlogOperations(ExplodingFS())  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        call(ops, "readlink", ROOT_INO)
    assert replies == [("reply_err", (errno.EIO,))]
    assert [e["event"] for e in logs] == ["fuse.unexpected_error"] and logs[0]["op"] == "readlink"


def test_fs_errors_pass_through_quietly(replies: list) -> None:
    class FS:
        def readlink(self, path: str) -> str:
            raise FsError(errno.EINVAL, path)

    ops = DynlogOperations(FS())  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        call(ops, "readlink", ROOT_INO)
    assert replies == [("reply_err", (errno.EINVAL,))] and logs == []


def test_an_inode_with_no_name_left_is_a_stale_handle(replies: list) -> None:
    ops = DynlogOperations(ExplodingFS())  # type: ignore[arg-type]
    call(ops, "readlink", 99)  # never looked up (or forgotten): the kernel's handle is stale
    assert replies == [("reply_err", (errno.ESTALE,))]


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[DynlogOperations]:
    """The callbacks over a FileSystem on a local store."""
    s = SqliteStore(str(tmp_path / "fs.db"))
    s.create_tables()
    mkfs(s, uid=0, gid=0)
    fs = FileSystem(s, session="ops1")
    yield DynlogOperations(fs)
    fs.close()


def created(ops: DynlogOperations, replies: list, name: bytes) -> tuple[int, int]:
    """create ``name`` in the root: (inode, handle)."""
    fi = ll.FileInfo()
    fi.flags = os.O_WRONLY | os.O_CREAT
    call(ops, "create", ROOT_INO, name, 0o644, ctypes.pointer(fi))
    kind, (entry, _) = replies.pop()
    assert kind == "reply_create"
    return entry._obj.ino, fi.fh


def test_create_counts_a_lookup_and_forget_gives_it_back(ops: DynlogOperations, replies: list) -> None:
    ino, fh = created(ops, replies, b"f")
    assert ops.inodes.path(ino) == "/f"
    call(ops, "lookup", ROOT_INO, b"f")
    assert replies.pop()[0] == "reply_entry"
    call(ops, "forget", ino, 1)
    assert replies.pop() == ("reply_none", ()) and ops.inodes.knows(ino)  # one lookup left
    call(ops, "forget", ino, 1)
    assert not ops.inodes.knows(ino) and ops.inodes.path(ino) is None


def test_getxattr_answers_without_an_exception(ops: DynlogOperations, replies: list) -> None:
    ino, fh = created(ops, replies, b"f")
    call(ops, "getxattr", ino, b"security.capability", 0)
    assert replies.pop() == ("reply_err", (errno.ENODATA,))
    ops.fs.setxattr("/f", "user.k", b"value", 0, Caller(0, 0, os.getpid()))
    call(ops, "getxattr", ino, b"user.k", 0)
    assert replies.pop() == ("reply_xattr", (5,))  # a size query
    call(ops, "getxattr", ino, b"user.k", 3)
    assert replies.pop() == ("reply_err", (errno.ERANGE,))
    call(ops, "getxattr", ino, b"user.k", 8)
    assert replies.pop() == ("reply_buf", (b"value", 5))


def test_an_open_file_unlinked_is_still_reached_through_its_handle(ops: DynlogOperations, replies: list) -> None:
    ino, fh = created(ops, replies, b"f")
    call(ops, "unlink", ROOT_INO, b"f")
    assert replies.pop() == ("reply_err", (0,))
    assert ops.inodes.path(ino) is None
    call(ops, "getattr", ino, None)  # fstat: the kernel sends no handle
    kind, (st, _) = replies.pop()
    assert kind == "reply_attr" and st._obj.st_nlink == 0 and st._obj.st_ino == ino
    attr = mfusepy.c_stat()
    attr.st_mode = stat.S_IFREG | 0o600
    call(ops, "setattr", ino, ctypes.pointer(attr), ll.SET_ATTR_MODE, None)  # fchmod: no handle either
    kind, (st, _) = replies.pop()
    assert kind == "reply_attr" and stat.S_IMODE(st._obj.st_mode) == 0o600


def test_chmod_by_name_while_a_closed_handle_is_being_released(ops: DynlogOperations, replies: list) -> None:
    """close() returns before the kernel's RELEASE arrives. A chmod by name in between borrows
    the handle still listed as open; when FileSystem has let it go already (EBADF), the setattr
    goes by the name instead of failing (a CI run failed so: chmod(2) answered EBADF)."""
    ino, fh = created(ops, replies, b"f")
    ops.fs.release(fh)  # FileSystem is done with it; the callbacks still list it as open
    attr = mfusepy.c_stat()
    attr.st_mode = stat.S_IFREG | 0o4755
    call(ops, "setattr", ino, ctypes.pointer(attr), ll.SET_ATTR_MODE | ll.SET_ATTR_MTIME, None)
    assert len(replies[-1][1]) == 2, replies[-1]
    kind, (st, _) = replies.pop()
    assert kind == "reply_attr" and stat.S_IMODE(st._obj.st_mode) == 0o4755
    assert stat.S_IMODE(ops.fs.getattr("/f")["st_mode"]) == 0o4755


def test_setattr_passes_the_kernels_time_bits_on(replies: list) -> None:
    seen: list[tuple[Any, Any]] = []

    class FS:
        def utimens(self, path: str | None, atime: Any, mtime: Any, caller: Any, fh: Any) -> dict[str, int]:
            seen.append((atime, mtime))
            return {"st_mode": stat.S_IFREG, "st_ino": 2, "st_nlink": 1, "st_uid": 0, "st_gid": 0, "st_size": 0,
                    "st_atime": 0, "st_mtime": 0, "st_ctime": 0}

    ops = DynlogOperations(FS())  # type: ignore[arg-type]
    ops.inodes.learned(2, ROOT_INO, "f", is_dir=False)
    attr = mfusepy.c_stat()
    attr.st_mtimespec.tv_sec, attr.st_mtimespec.tv_nsec = 3, 7
    call(ops, "setattr", 2, ctypes.pointer(attr), ll.SET_ATTR_MTIME, None)  # utimensat(atime OMIT)
    call(ops, "setattr", 2, ctypes.pointer(attr), ll.SET_ATTR_ATIME | ll.SET_ATTR_ATIME_NOW, None)
    assert seen == [(None, 3_000_000_007), (UTIME_NOW, None)]
    assert [r[0] for r in replies] == ["reply_attr", "reply_attr"]


def test_parse_options() -> None:
    o = parse_options(["allow_other,noatime", "endpoint_url=http://h:1,ttl=2.5,freshness=ttl,fsname=x"])
    assert o.fuse == {"allow_other": True, "noatime": True, "fsname": "x"}
    assert (o.endpoint_url, o.ttl, o.freshness) == ("http://h:1", 2.5, "ttl")
    assert parse_options([format_options(o)]) == o
    assert parse_options(["defaults,_netdev,noauto,nofail,x-systemd.automount,comment=x,user"]).fuse == {}
    assert parse_options(["ro,rw"]).fuse == {}
    with pytest.raises(QuietError, match="unknown mount option 'bogus'"):
        parse_options(["allow_other,bogus"])
    assert parse_options(["bogus"], sloppy=True).fuse == {}
    with pytest.raises(QuietError, match="freshness"):
        parse_options(["freshness=sometimes"])
    with pytest.raises(QuietError, match="max_threads"):
        parse_options(["max_threads=lots"])
    o = parse_options(["prefetch=16,nocto,writebehind"])
    assert (o.prefetch, o.nocto, o.writebehind) == (16, True, True)
    assert parse_options([format_options(o)]) == o
    assert not parse_options(["nocto,cto"]).nocto
    for bad in ("prefetch=-1", "prefetch=65", "prefetch=some"):
        with pytest.raises(QuietError, match="prefetch"):
            parse_options([bad])


def test_mountinfo_unescape() -> None:
    assert mounttab._unescape(r"/mnt/with\040space\011tab\134slash") == "/mnt/with space\ttab\\slash"


def dirents(buf: bytes) -> list[tuple[str, int]]:
    """(name, next offset) of each struct fuse_dirent in a readdir reply."""
    out, pos = [], 0
    while pos + 24 <= len(buf):
        _ino, off, namelen, _type = struct.unpack_from("<QQII", buf, pos)
        out.append((buf[pos + 24:pos + 24 + namelen].decode(), off))
        pos += (24 + namelen + 7) & ~7
    return out


def test_readdir_serves_offsets_from_one_listing(ops: DynlogOperations, replies: list) -> None:
    for name in (b"a", b"b", b"c"):
        created(ops, replies, name)
    fi = ll.FileInfo()
    call(ops, "opendir", ROOT_INO, ctypes.pointer(fi))
    assert replies.pop()[0] == "reply_open"
    call(ops, "readdir", ROOT_INO, 4096, 0, ctypes.pointer(fi))
    kind, (buf, size) = replies.pop()
    assert kind == "reply_buf" and dirents(buf.raw[:size]) == [(".", 1), ("..", 2), ("a", 3), ("b", 4), ("c", 5)]
    call(ops, "readdir", ROOT_INO, 4096, 5, ctypes.pointer(fi))  # the end
    assert replies.pop()[1][1] == 0
    fresh = ll.FileInfo()  # a new handle asked from an offset first (seekdir): it lists too
    call(ops, "opendir", ROOT_INO, ctypes.pointer(fresh))
    replies.pop()
    call(ops, "readdir", ROOT_INO, 4096, 3, ctypes.pointer(fresh))
    kind, (buf, size) = replies.pop()
    assert dirents(buf.raw[:size]) == [("b", 4), ("c", 5)]
    call(ops, "readdir", ROOT_INO, 40, 0, ctypes.pointer(fresh))  # a small buffer: what fits
    kind, (buf, size) = replies.pop()
    assert [n for n, _ in dirents(buf.raw[:size])] == ["."]
