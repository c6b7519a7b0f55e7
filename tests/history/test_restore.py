"""restore: the exact bytes and attributes of a deleted file, an overwritten one, and a tree."""

from __future__ import annotations

import os
import stat

import pytest

from dynlog.core.attrs import ROOT
from dynlog.history.restore import RestoreError, restore
from dynlog.history.timeparse import format_time
from dynlog.history.walk import HistoryUnavailable, Journals

from .conftest import read_file, tick, write_file
from .script import A_V1, B_V2, MAIN, run_script


def test_restore_deleted_file(fs, new_fs, cli):
    sc = run_script(fs)
    when = format_time(sc.step("rename across").at, 9)
    rc, out, err = cli("restore", "/docs/main.c", "--at", when, "--to", "/restored-main.c")
    assert rc == 0, err
    assert "restored /docs/main.c" in out and "300000 bytes" in out
    check = new_fs()
    assert read_file(check, "/restored-main.c") == MAIN


def test_restore_overwritten_file_with_attributes(fs, new_fs, cli):
    sc = run_script(fs)
    # before the overwrite it was a.txt renamed to b.txt, mode 0644, no xattrs
    rc, _, err = cli("restore", "/docs/b.txt", "--at", format_time(sc.step("rename across").at, 9), "--to", "/old-b")
    assert rc == 0, err
    # after the attribute changes: the new content, mode 0600 and the xattr
    rc, _, err = cli("restore", "/docs/b.txt", "--at", format_time(sc.step("attrs b").at, 9), "--to", "/new-b")
    assert rc == 0, err
    check = new_fs()
    assert read_file(check, "/old-b") == A_V1
    assert read_file(check, "/new-b") == B_V2
    assert read_file(check, "/docs/b.txt") == B_V2  # the original is untouched
    old = check.getattr("/old-b")
    new = check.getattr("/new-b")
    assert stat.S_IMODE(old["st_mode"]) == 0o644 and stat.S_IMODE(new["st_mode"]) == 0o600
    assert check.listxattr("/old-b") == [] and check.getxattr("/new-b", "user.tag") == b"v2"
    orig = check.getattr("/docs/b.txt")
    assert new["st_mtime"] == orig["st_mtime"]


def test_restore_tree_with_symlink_times_xattrs_holes_and_links(fs, new_fs):
    fs.mkdir("/proj", 0o751, ROOT)
    fs.mkdir("/proj/sub", 0o700, ROOT)
    write_file(fs, "/proj/sub/data.bin", b"")
    fh = fs.open("/proj/sub/data.bin", os.O_WRONLY, ROOT)
    fs.write(fh, b"tail", 1_000_000, ROOT)  # a sparse file: a hole, then four bytes
    fs.release(fh, ROOT)
    fs.symlink("sub/data.bin", "/proj/ln", ROOT)
    write_file(fs, "/proj/hard", b"linked bytes")
    fs.link("/proj/hard", "/proj/sub/hard2", ROOT)
    fs.chown("/proj/sub/data.bin", 1234, 5678, ROOT)
    fs.setxattr("/proj/sub", "user.dir", b"\x00\xff", 0, ROOT)
    fs.utimens("/proj/sub/data.bin", 1_000_000_000_123, 2_000_000_000_456, ROOT)
    fs.mknod("/proj/fifo", stat.S_IFIFO | 0o640, 0, ROOT)
    fs.utimens("/proj", 3_000_000_000_000, 4_000_000_000_000, ROOT)
    t = tick()
    fs.unlink("/proj/sub/data.bin", ROOT)
    fs.unlink("/proj/ln", ROOT)
    fs.unlink("/proj/hard", ROOT)
    fs.unlink("/proj/sub/hard2", ROOT)
    fs.unlink("/proj/fifo", ROOT)
    fs.rmdir("/proj/sub", ROOT)
    fs.rmdir("/proj", ROOT)

    report = restore(fs, Journals(fs.store), "/proj", t, "/back")
    assert (report.files, report.dirs, report.symlinks, report.other, report.links) == (2, 2, 1, 1, 1)
    c = new_fs()
    st = c.getattr("/back/sub/data.bin")  # before reading it: a read refreshes the atime (relatime)
    assert (st["st_uid"], st["st_gid"], st["st_atime"], st["st_mtime"]) == (1234, 5678, 1_000_000_000_123,
                                                                           2_000_000_000_456)
    data = read_file(c, "/back/sub/data.bin")
    assert len(data) == 1_000_004 and data[-4:] == b"tail" and not any(data[:-4])
    assert st["st_blocks"] * 512 < 200_000  # the hole stayed a hole
    assert c.readlink("/back/ln") == "sub/data.bin"
    assert c.getxattr("/back/sub", "user.dir") == b"\x00\xff"
    assert stat.S_IMODE(c.getattr("/back/sub")["st_mode"]) == 0o700
    top = c.getattr("/back")
    assert stat.S_IMODE(top["st_mode"]) == 0o751 and top["st_mtime"] == 4_000_000_000_000
    assert stat.S_ISFIFO(c.getattr("/back/fifo")["st_mode"])
    a, b = c.getattr("/back/hard"), c.getattr("/back/sub/hard2")
    assert a["st_ino"] == b["st_ino"] and a["st_nlink"] == 2
    assert read_file(c, "/back/sub/hard2") == b"linked bytes"


def test_restore_refuses_existing_destination_and_unknown_paths(fs, cli):
    sc = run_script(fs)
    when = format_time(sc.step("symlink").at, 9)
    rc, _, err = cli("restore", "/docs/b.txt", "--at", when, "--to", "/docs/link")
    assert rc == 1 and "exists" in err
    rc, _, err = cli("restore", "/nope", "--at", when, "--to", "/x")
    assert rc == 1 and "no such file" in err
    # into an existing directory: under the old name
    rc, out, err = cli("restore", "/docs/main.c", "--at", format_time(sc.step("rename across").at, 9), "--to", "/src")
    assert rc == 0, err
    assert "to /src/main.c" in out


def test_restore_after_compaction_is_refused_clearly(fs):
    from dynlog.history.compact import CompactOptions, compact

    write_file(fs, "/f", b"one")
    t = tick()
    write_file(fs, "/f", b"two")
    compact(fs.store, CompactOptions(retain=0, grace=0, settle=0))
    with pytest.raises(HistoryUnavailable, match="compacted away"):
        restore(fs, Journals(fs.store), "/f", t, "/g")


def test_restore_reports_a_missing_block(fs, new_fs, store):
    write_file(fs, "/f", b"x" * 10_000)  # past the inline limit: stored in a block
    t = tick()
    for bid in list(store.scan_partitions("blocks")):
        store.batch_write("blocks", deletes=[(bid, 0)])
    cold = new_fs()  # no block cache holding it
    with pytest.raises(RestoreError, match="is gone"):
        restore(cold, Journals(store), "/f", t, "/g")
