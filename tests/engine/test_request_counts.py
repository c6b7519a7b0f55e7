"""Requests per operation, uncontended, read from the store's own counters (both stores).

The promise (design brief, principle 3): create, mkdir, unlink, rmdir, same-directory rename,
setattr cost one write request each; a rename across directories is one TransactWriteItems;
a warm lookup costs nothing; a cold listing is one snapshot read plus one query page per MB
of journal tail. The allocator is warmed and the parents resolved before measuring, and the
views' TTL is long, so that what is counted is the operation and nothing else.
"""

from __future__ import annotations

import math
import os
import stat
import threading
import time
from typing import Callable

import pytest

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.errors import FsError
from dynlog.journal.inode import INLINE_MAX
from dynlog.journal.log import TAIL_GUESS
from dynlog.store.base import QUERY_PAGE_BYTES, Store, item_size

WRITE_CALLS = {"PutItem", "TransactWriteItems", "BatchWriteItem", "UpdateItem", "DeleteItem"}
READ_CALLS = {"GetItem", "Query", "BatchGetItem", "Scan"}
LONG_TTL = 3600.0


@pytest.fixture
def warm(store: Store) -> FileSystem:
    """A mounted client with its allocator range taken and /a, /b (and their views) cached."""
    mkfs(store, uid=0, gid=0)
    f = FileSystem(store, ttl=LONG_TTL)
    f.allocator.prefetch()
    f.mkdir("/a", 0o755, ROOT)
    f.mkdir("/b", 0o755, ROOT)
    for p in ("/", "/a", "/b"):
        f.getattr(p)
        list(f.readdir(p))
    return f


def measure(fs: FileSystem, fn: Callable[[], object]) -> dict[str, int]:
    fs.store.metrics.reset()
    fn()
    return fs.store.metrics.by_call()


def writes(calls: dict[str, int]) -> int:
    return sum(n for c, n in calls.items() if c in WRITE_CALLS)


def reads(calls: dict[str, int]) -> int:
    return sum(n for c, n in calls.items() if c in READ_CALLS)


def create_file(fs: FileSystem, path: str) -> None:
    fs.release(fs.create(path, 0o644, os.O_WRONLY | os.O_CREAT, ROOT))


# == one write request per mutation ==============================================================

@pytest.mark.parametrize("op", ["create", "mknod", "symlink", "mkdir", "unlink", "rmdir", "rename_within",
                                "chmod", "chown", "utimens", "chmod_dir", "utimens_dir", "setxattr",
                                "removexattr", "truncate"])
def test_one_write_request_per_mutation(warm: FileSystem, op: str) -> None:
    fs = warm
    create_file(fs, "/a/existing")
    fs.mkdir("/a/dir", 0o755, ROOT)
    fs.setxattr("/a/existing", "user.k", b"v", 0, ROOT)
    actions: dict[str, tuple[Callable[[], object], str]] = {
        "create": (lambda: create_file(fs, "/a/new"), "PutItem"),
        "mknod": (lambda: fs.mknod("/a/fifo", stat.S_IFIFO | 0o600, 0, ROOT), "PutItem"),
        "symlink": (lambda: fs.symlink("target", "/a/sym", ROOT), "PutItem"),
        "mkdir": (lambda: fs.mkdir("/a/newdir", 0o755, ROOT), "PutItem"),
        "unlink": (lambda: fs.unlink("/a/existing", ROOT), "PutItem"),
        # rmdir seals the removed directory's journal as well: one TransactWriteItems
        "rmdir": (lambda: fs.rmdir("/a/dir", ROOT), "TransactWriteItems"),
        "rename_within": (lambda: fs.rename("/a/existing", "/a/renamed", 0, ROOT), "PutItem"),
        "chmod": (lambda: fs.chmod("/a/existing", 0o600, ROOT), "PutItem"),
        "chown": (lambda: fs.chown("/a/existing", 7, 8, ROOT), "PutItem"),
        "utimens": (lambda: fs.utimens("/a/existing", 1, 2, ROOT), "PutItem"),
        "chmod_dir": (lambda: fs.chmod("/a/dir", 0o700, ROOT), "PutItem"),
        "utimens_dir": (lambda: fs.utimens("/a", 1, 2, ROOT), "PutItem"),
        "setxattr": (lambda: fs.setxattr("/a/existing", "user.x", b"y", 0, ROOT), "PutItem"),
        "removexattr": (lambda: fs.removexattr("/a/existing", "user.k", ROOT), "PutItem"),
        "truncate": (lambda: fs.truncate("/a/existing", 0, ROOT), "PutItem"),
    }
    fn, call = actions[op]
    calls = measure(fs, fn)
    assert calls == {call: 1}, f"{op}: {calls}"
    fs_op = op.split("_")[0]  # the counters attribute the request to the file-system operation
    assert fs.store.metrics.requests(op=fs_op, call=call) == 1, fs.store.metrics.snapshot()


def test_metrics_attribute_requests_to_the_fs_operation(warm: FileSystem) -> None:
    fs = warm
    fs.store.metrics.reset()
    fs.mkdir("/a/x", 0o755, ROOT)
    fs.chmod("/a/x", 0o700, ROOT)
    m = fs.store.metrics
    assert m.requests(op="mkdir") == 1 and m.requests(op="mkdir", call="PutItem") == 1
    assert m.by_call("chmod") == {"PutItem": 1}
    assert m.requests() == 2


def test_rmdir_of_a_directory_made_by_another_client(warm: FileSystem, store_factory) -> None:
    """The seal costs no extra request once the directory's (empty) view is cached, e.g. by the
    listing that ``rm -r`` does first; the write is still one TransactWriteItems."""
    other = FileSystem(store_factory(), ttl=LONG_TTL)
    other.mkdir("/a/theirs", 0o755, ROOT)
    fs = warm
    fs.cache.invalidate(schema.dir_journal(fs.getattr("/a")["st_ino"]))  # as the change feed would
    assert [n for n, _ in fs.readdir("/a/theirs")] == [".", ".."]
    calls = measure(fs, lambda: fs.rmdir("/a/theirs", ROOT))
    assert calls == {"TransactWriteItems": 1}
    assert fs.store.metrics.requests(op="rmdir", call="TransactWriteItems") == 1
    other.close()


def test_rename_across_directories_is_one_transaction(warm: FileSystem) -> None:
    fs = warm
    create_file(fs, "/a/f")
    calls = measure(fs, lambda: fs.rename("/a/f", "/b/f", 0, ROOT))
    assert calls == {"TransactWriteItems": 1}
    create_file(fs, "/a/g")
    create_file(fs, "/b/g")
    calls = measure(fs, lambda: fs.rename("/a/g", "/b/g", 0, ROOT))  # replacing a file: still one
    assert calls == {"TransactWriteItems": 1}


def test_rename_of_a_directory_across_directories(warm: FileSystem) -> None:
    """Moving a directory also conditions on the rename sentinel (no cycles from racing moves):
    one TransactWriteItems; the first move of a client also reads the sentinel once and
    revalidates the target's ancestry."""
    fs = warm
    fs.mkdir("/a/d1", 0o755, ROOT)
    fs.mkdir("/a/d2", 0o755, ROOT)
    first = measure(fs, lambda: fs.rename("/a/d1", "/b/d1", 0, ROOT))
    assert writes(first) == 1 and first["TransactWriteItems"] == 1
    assert first.get("GetItem", 0) <= 1
    second = measure(fs, lambda: fs.rename("/a/d2", "/b/d2", 0, ROOT))
    assert writes(second) == 1 and second["TransactWriteItems"] == 1
    assert reads(second) <= 1, second


def test_hard_link_costs(warm: FileSystem) -> None:
    """link touches three journals (both directories and the inode's own): one transaction."""
    fs = warm
    create_file(fs, "/a/f")
    calls = measure(fs, lambda: fs.link("/a/f", "/b/l1", ROOT))
    assert calls == {"TransactWriteItems": 1}  # the new inode journal is known empty: no read
    calls = measure(fs, lambda: fs.link("/a/f", "/a/l2", ROOT))
    assert calls == {"TransactWriteItems": 1}
    calls = measure(fs, lambda: fs.chmod("/b/l1", 0o600, ROOT))
    assert calls == {"PutItem": 1}  # the shared inode's journal only
    time.sleep(0.06)  # /a's view is older than the 50 ms after which a refusal is checked
    calls = measure(fs, lambda: fs.unlink("/a/l2", ROOT))
    assert calls == {"TransactWriteItems": 1}  # the name and the link count: no re-read of /a


# == reads ==========================================================================================

def test_warm_lookups_cost_nothing(warm: FileSystem) -> None:
    fs = warm
    fs.mkdir("/a/sub", 0o755, ROOT)
    create_file(fs, "/a/sub/f")
    fs.symlink("f", "/a/sub/s", ROOT)
    create_file(fs, "/a/h")
    fs.link("/a/h", "/a/h2", ROOT)
    for p in ("/", "/a", "/a/sub", "/a/sub/f", "/a/sub/s", "/a/h", "/a/h2"):
        fs.getattr(p)
    fs.store.metrics.reset()
    for _ in range(3):
        for p in ("/", "/a", "/a/sub", "/a/sub/f", "/a/sub/s", "/a/h", "/a/h2"):
            fs.getattr(p)
        list(fs.readdir("/a/sub"))
        list(fs.readdir("/"))
        fs.readlink("/a/sub/s")
        fs.access("/a/sub/f", os.R_OK)
        fs.listxattr("/a/sub/f")
        for p in ("/nope", "/a/nope", "/a/sub/nope"):
            try:
                fs.getattr(p)
            except Exception:
                pass
    assert fs.store.metrics.by_call() == {}


def test_cold_listing_is_a_snapshot_read_and_one_query_page(warm: FileSystem, store_factory) -> None:
    fs = warm
    for i in range(50):
        create_file(fs, f"/a/f{i:03d}")
    fresh = FileSystem(store_factory(), ttl=LONG_TTL)
    list(fresh.readdir("/"))  # the parent, resolved before measuring
    calls = measure(fresh, lambda: list(fresh.readdir("/a")))
    assert calls == {"Query": 2}, calls
    # ... and then every stat in it is local
    calls = measure(fresh, lambda: [fresh.getattr(f"/a/f{i:03d}") for i in range(50)])
    assert calls == {}

    # with a snapshot and a tail after it: still one snapshot read and one page
    ino = fs.getattr("/a")["st_ino"]
    jid = schema.dir_journal(ino)
    fs.journals.write_snapshot(jid, fs.ns.dir_view(ino, 0.0).to_snapshot())
    for i in range(10):
        fs.unlink(f"/a/f{i:03d}", ROOT)
    fresh2 = FileSystem(store_factory(), ttl=LONG_TTL)
    list(fresh2.readdir("/"))
    calls = measure(fresh2, lambda: [n for n, _ in fresh2.readdir("/a")])
    assert calls == {"Query": 2}, calls
    assert len(list(fresh2.readdir("/a"))) == 2 + 40
    fresh.close()
    fresh2.close()


def test_cold_listing_pages_per_megabyte_of_tail(warm: FileSystem, store_factory) -> None:
    """A journal tail of ~2.5 MB: one snapshot read plus one query page per MB."""
    fs = warm
    create_file(fs, "/b/f")
    value = os.urandom(60 * 1024)
    for i in range(20):  # each record carries a 60 KB xattr value, hex-encoded: ~120 KB
        fs.setxattr("/b/f", f"user.k{i}", value, 0, ROOT)
    jid = schema.dir_journal(fs.getattr("/b")["st_ino"])
    tail = sum(item_size(it) for it in fs.store.query("meta", jid, start="j/", stop="j/~"))
    assert tail > 2 * QUERY_PAGE_BYTES
    fresh = FileSystem(store_factory(), ttl=LONG_TTL)
    list(fresh.readdir("/"))
    calls = measure(fresh, lambda: list(fresh.readdir("/b")))
    pages = math.ceil(tail / QUERY_PAGE_BYTES)
    assert set(calls) == {"Query"}
    assert calls["Query"] in (1 + pages, 2 + pages), (calls, tail)
    fresh.close()


def test_cold_listing_of_a_tail_longer_than_the_guess(warm: FileSystem, store_factory, backend: str) -> None:
    """A snapshot, then more records after it than a cold load asks for newest-first: on DynamoDB
    one more Query reads exactly the records between the snapshot and those (three in all, two
    round trips); the local store reads the snapshot, then the tail."""
    fs = warm
    ino = fs.getattr("/a")["st_ino"]
    jid = schema.dir_journal(ino)
    for i in range(20):
        create_file(fs, f"/a/f{i:03d}")
    fs.journals.write_snapshot(jid, fs.ns.dir_view(ino, 0.0).to_snapshot())
    for i in range(20, 20 + TAIL_GUESS + 30):
        create_file(fs, f"/a/f{i:03d}")
    fresh = FileSystem(store_factory(), ttl=LONG_TTL)
    list(fresh.readdir("/"))
    calls = measure(fresh, lambda: list(fresh.readdir("/a")))
    assert calls == {"Query": 3 if backend == "dynamodb" else 2}, calls
    assert sorted(n for n, _ in fresh.readdir("/a") if n.startswith("f")) == [f"f{i:03d}" for i in range(20 + TAIL_GUESS + 30)]
    assert fresh.ns.dir_view(ino, LONG_TTL).to_snapshot() == fs.ns.dir_view(ino, 0.0).to_snapshot()
    fresh.close()


def test_cold_listing_after_a_snapshot_over_retained_history(warm: FileSystem, store_factory) -> None:
    """Records the snapshot covers are still there (compact keeps a retention window): the cold
    load folds only the records after the snapshot, in two Queries whatever the history."""
    fs = warm
    ino = fs.getattr("/b")["st_ino"]
    jid = schema.dir_journal(ino)
    for i in range(TAIL_GUESS + 10):
        create_file(fs, f"/b/f{i:03d}")
    fs.journals.write_snapshot(jid, fs.ns.dir_view(ino, 0.0).to_snapshot())
    for name in ("f000", "f001", "f002"):
        fs.unlink(f"/b/{name}", ROOT)
    fresh = FileSystem(store_factory(), ttl=LONG_TTL)
    list(fresh.readdir("/"))
    calls = measure(fresh, lambda: list(fresh.readdir("/b")))
    assert calls == {"Query": 2}, calls
    names = sorted(n for n, _ in fresh.readdir("/b") if n.startswith("f"))
    assert names == [f"f{i:03d}" for i in range(3, TAIL_GUESS + 10)]
    assert fresh.ns.dir_view(ino, LONG_TTL).head == fs.ns.dir_view(ino, 0.0).head
    fresh.close()


def test_cold_stat_of_a_hard_linked_file(warm: FileSystem, store_factory) -> None:
    """A name that refers to an inode journal: the directory's page, then the inode's."""
    fs = warm
    create_file(fs, "/a/f")
    fs.link("/a/f", "/a/g", ROOT)
    fresh = FileSystem(store_factory(), ttl=LONG_TTL)
    list(fresh.readdir("/"))
    list(fresh.readdir("/a"))
    calls = measure(fresh, lambda: fresh.getattr("/a/g"))
    assert calls == {"Query": 2}
    calls = measure(fresh, lambda: fresh.getattr("/a/f"))
    assert calls == {}
    fresh.close()


# == a file's life: one commit at close ============================================================

def tar_like_file(fs: FileSystem, path: str, data: bytes) -> None:
    """What GNU tar does per file: openat(O_CREAT|O_TRUNC), write, futimens, fchown, fchmod, close."""
    fh = fs.create(path, 0o600, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ROOT)
    fs.write(fh, data, 0, ROOT)
    fs.utimens(None, 1_000_000_123, 2_000_000_456, ROOT, fh)
    fs.chown(None, 7, 8, ROOT, fh)
    fs.chmod(None, 0o640, ROOT, fh)
    fs.flush(fh, ROOT)
    fs.release(fh, ROOT)


@pytest.mark.parametrize("size", [0, 100, INLINE_MAX])
def test_small_file_is_its_create_and_one_commit(warm: FileSystem, store_factory, size: int) -> None:
    """A small file written the way tar writes it: the create's put and one put at close that
    carries its bytes inline and every attribute set through the descriptor; no block item."""
    fs = warm
    data = os.urandom(size)
    calls = measure(fs, lambda: tar_like_file(fs, "/a/small", data))
    assert calls == {"PutItem": 2}, calls
    other = FileSystem(store_factory(), ttl=LONG_TTL)
    st = other.getattr("/a/small")
    assert (st["st_size"], st["st_mode"] & 0o7777, st["st_uid"], st["st_gid"]) == (size, 0o640, 7, 8)
    assert (st["st_atime"], st["st_mtime"]) == (1_000_000_123, 2_000_000_456)
    fh = other.open("/a/small", os.O_RDONLY, ROOT)
    assert other.read(fh, size + 10, 0) == data
    other.release(fh, ROOT)
    # one event for the whole life after the create, with every field
    jid = schema.dir_journal(fs.getattr("/a")["st_ino"])
    last = [r for r in fs.journals.read_after(jid, 0) if r.op == "write"][-1]  # (the reader's atime follows)
    assert len(last.events) == 1
    ev = last.events[0]
    assert (ev.data or b"") == data and not ev.blocks
    assert {"size", "mode", "uid", "gid", "atime", "mtime", "ctime"} <= set(ev.attrs)
    assert list(fs.store.scan_partitions("blocks")) == []
    # the bytes are stored raw in a binary attribute of the record (not base64 in its JSON),
    # and the hash chain covers them
    item = fs.store.get("meta", (jid, schema.record_key(last.seq)))
    assert item is not None and item.get("inl", b"") == data and (not data or data.hex() not in item["ev"])
    assert last.verify()
    other.close()


def test_file_past_the_inline_limit_adds_one_block_write(warm: FileSystem, store_factory) -> None:
    fs = warm
    data = os.urandom(INLINE_MAX + 1)
    calls = measure(fs, lambda: tar_like_file(fs, "/a/bigger", data))
    assert calls == {"PutItem": 2, "BatchWriteItem": 1}, calls
    other = FileSystem(store_factory(), ttl=LONG_TTL)
    fh = other.open("/a/bigger", os.O_RDONLY, ROOT)
    assert other.read(fh, len(data) + 1, 0) == data
    other.release(fh, ROOT)
    other.close()


def test_inline_file_grows_into_blocks_and_shrinks_back(warm: FileSystem, store_factory) -> None:
    fs = warm
    tar_like_file(fs, "/a/g", b"abc")
    fh = fs.open("/a/g", os.O_WRONLY, ROOT)
    fs.write(fh, b"z" * 10_000, 3, ROOT)  # past the limit: the inline bytes move into block 0
    fs.release(fh, ROOT)
    other = FileSystem(store_factory(), ttl=LONG_TTL)

    def contents(c: FileSystem) -> bytes:
        h = c.open("/a/g", os.O_RDONLY, ROOT)
        try:
            return c.read(h, 1 << 20, 0)
        finally:
            c.release(h, ROOT)

    assert contents(other) == b"abc" + b"z" * 10_000
    fs.truncate("/a/g", 2, ROOT)
    assert contents(FileSystem(store_factory(), ttl=LONG_TTL)) == b"ab"
    other.close()


def test_no_reads_on_the_create_path_of_a_followed_directory(store: Store, store_factory) -> None:
    """A mount busy writing in a directory answers tar's lookup before each create from its
    view (its own commits keep the view exact), and the create, writes and close read nothing
    either: writes only. The first miss in the directory re-reads its tail (close-to-open)."""
    mkfs(store, uid=0, gid=0)
    fs = FileSystem(store)
    fs.allocator.prefetch()
    fs.mkdir("/t", 0o755, ROOT)
    fs.start_services("/bench")
    try:
        assert fs.follower is not None
        # (ancestors are revalidated on demand when the feed cannot vouch for them: the subject
        # of tests/cluster/test_idle.py; here only the create path itself is counted)
        fs.ns.ttl = LONG_TTL
        deadline = time.monotonic() + 60  # the feed's first reads may mark views stale (a relay gap)
        while fs.follower.confirmed_at == float("-inf"):
            assert time.monotonic() < deadline, "the change feed never completed a read"
            time.sleep(0.05)
        fs.getattr("/t")  # the feed's start marked cached views stale: the first use re-reads them
        with pytest.raises(FsError):
            fs.lookup("/t/f0")  # a miss in a directory this mount has not written to: re-read
        tar_like_file(fs, "/t/f0", b"first")
        fs.store.metrics.reset()
        for i in range(1, 21):
            path = f"/t/f{i}"
            with pytest.raises(FsError):
                fs.lookup(path)  # the kernel's lookup before O_CREAT
            tar_like_file(fs, path, b"x" * (i * 50))
        snap = fs.store.metrics.snapshot()
        own: dict[str, int] = {}
        for (op, c), t in snap.items():
            # the feed's reads and notices, and the session's heartbeat (due at any moment on a
            # loaded machine) are the mount's, not the create path's
            if op not in ("follow", "session"):
                own[c] = own.get(c, 0) + t.requests
        assert reads(own) == 0, snap
        assert writes(own) == 40, snap
    finally:
        fs.close()


@pytest.mark.parametrize("kind", ["open", "lookup miss"])
def test_opens_arriving_together_share_one_tail_read(warm: FileSystem, kind: str) -> None:
    """Close-to-open costs an open (and a lookup miss) one Query of its directory's tail. Those
    that arrive while another read of it is on its way wait for that read's lock, and the next
    read, which begins after they all began, shows them every commit they must see: one Query for
    all of them, not one each (a parallel build opening headers in one directory)."""
    fs = warm
    for i in range(4):
        create_file(fs, f"/a/f{i}")
    fs.ns.dir_view(fs.getattr("/a")["st_ino"])
    view = fs.ns.dir_view(fs.getattr("/a")["st_ino"])
    fs.store.metrics.reset()

    def one(i: int) -> None:
        if kind == "open":
            fs.release(fs.open(f"/a/f{i}", os.O_RDONLY, ROOT))
        else:
            with pytest.raises(FsError):
                fs.lookup(f"/a/missing{i}")

    with view.lock:  # as if another thread's read were on its way
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all four began and wait for the view
    for t in threads:
        t.join(timeout=30)
    op = "open" if kind == "open" else "lookup"
    assert fs.store.metrics.by_call(op) == {"Query": 1}
