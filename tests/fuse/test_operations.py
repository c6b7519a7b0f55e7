"""The FUSE layer without a kernel: the errno table, error mapping, option parsing, helpers."""

from __future__ import annotations

import errno
import types

import pytest
import structlog

from dynlog.cli.mountcmd import format_options, parse_options
from dynlog.errors import FsError, JournalConflict, QuietError, StoreError, TransientStoreError
from dynlog.fuse import mounttab
from dynlog.fuse.operations import (UTIME_NOW_NSEC, UTIME_OMIT_NSEC, DynlogOperations, FuseOSError,
                                    _timespec_value, errno_of, is_hidden_name)


@pytest.mark.parametrize("exc, code", [
    (FsError(errno.ENOENT, "x"), errno.ENOENT),
    (FsError(errno.ENAMETOOLONG), errno.ENAMETOOLONG),
    (FuseOSError(errno.EPERM), errno.EPERM),
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


def test_unexpected_errors_are_logged_and_become_eio() -> None:
    ops = DynlogOperations(ExplodingFS())  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(FuseOSError) as ei:
            ops.readlink("/x")
    assert ei.value.errno == errno.EIO
    assert [e["event"] for e in logs] == ["fuse.unexpected_error"] and logs[0]["op"] == "readlink"


def test_fs_errors_pass_through_quietly() -> None:
    class FS:
        def readlink(self, path: str) -> str:
            raise FsError(errno.EINVAL, path)

    ops = DynlogOperations(FS())  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(FuseOSError) as ei:
            ops.readlink("/x")
    assert ei.value.errno == errno.EINVAL and logs == []


def test_timespec_sentinels() -> None:
    ts = types.SimpleNamespace
    assert _timespec_value(ts(tv_sec=0, tv_nsec=UTIME_NOW_NSEC)) == "now"
    assert _timespec_value(ts(tv_sec=0, tv_nsec=UTIME_OMIT_NSEC)) is None
    assert _timespec_value(ts(tv_sec=3, tv_nsec=7)) == 3_000_000_007


def test_hidden_names() -> None:
    assert is_hidden_name("/d/.fuse_hidden0000000200000001")
    assert not is_hidden_name("/d/.fuse_hidden")
    assert not is_hidden_name("/d/.fuse_hiddenXXXXXXXXXXXXXXXX")


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


def test_mountinfo_unescape() -> None:
    assert mounttab._unescape(r"/mnt/with\040space\011tab\134slash") == "/mnt/with space\ttab\\slash"
