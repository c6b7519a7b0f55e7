"""Random namespace workloads for the concurrency tests, usable in threads and in spawned
processes (this module imports nothing from pytest or hypothesis).

An op is a plain tuple over a small pool of names, relative to a per-example base directory,
so that clients collide:
    ("create"|"mkdir"|"unlink"|"rmdir", parent, name)
    ("rename"|"link", parent, name, parent2, name2)
    ("chmod", parent, name, mode)
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
import traceback
from typing import Any

from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.errors import FsError

PARENTS = ("", "a", "b", "a/b", "b/c")
NAMES = ("a", "b", "c", "x")

Op = tuple


def full(base: str, parent: str, name: str) -> str:
    return "/".join(p for p in (base, parent, name) if p)


_tokens = itertools.count(1)


def token_for(fs: FileSystem) -> bytes:
    """A fixed-width payload naming its writer, so a file's final bytes tell whose write won."""
    return f"{fs.session}:{next(_tokens):06d}".encode().ljust(40, b"#")


def apply_op(fs: FileSystem, base: str, op: Op, written: list[tuple[int, bytes]] | None = None) -> int:
    """Run one op; 0 on success, else the errno it failed with. ``written`` collects
    (inode, payload) of every write attempted (before its close: a failed close may still
    have committed)."""
    kind = op[0]
    try:
        if kind == "write":
            fh = fs.open(full(base, op[1], op[2]), os.O_WRONLY | os.O_TRUNC, ROOT)
            try:
                payload = token_for(fs)
                if written is not None:
                    written.append((fs._handles[fh].ino, payload))
                fs.write(fh, payload, 0)
            finally:
                fs.release(fh)
            return 0
        if kind == "create":
            fs.release(fs.create(full(base, op[1], op[2]), 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ROOT))
        elif kind == "mkdir":
            fs.mkdir(full(base, op[1], op[2]), 0o755, ROOT)
        elif kind == "unlink":
            fs.unlink(full(base, op[1], op[2]), ROOT)
        elif kind == "rmdir":
            fs.rmdir(full(base, op[1], op[2]), ROOT)
        elif kind == "rename":
            fs.rename(full(base, op[1], op[2]), full(base, op[3], op[4]), 0, ROOT)
        elif kind == "link":
            fs.link(full(base, op[1], op[2]), full(base, op[3], op[4]), ROOT)
        elif kind == "chmod":
            fs.chmod(full(base, op[1], op[2]), op[3], ROOT)
        else:
            raise ValueError(kind)
    except FsError as e:
        return e.errno
    return 0


def canon(ev: Any) -> str:
    import json

    return json.dumps(ev.to_json(), sort_keys=True)


def instrument(fs: FileSystem) -> list[list[tuple[str, str]]]:
    """Capture, for every operation that commits successfully, the events it emitted, by
    journal: the events of the build's last (winning) attempt. Builds are re-run on conflicts
    and group commit runs several builds over one draft, so each run notes where its own
    events start in each draft."""
    captured: list[list[tuple[str, str]]] = []
    orig = fs.committer.commit
    lock = threading.Lock()

    def commit(jids: Any, build: Any, op: str, uid: int = 0, weight: int = 0) -> Any:
        box: dict[str, list[tuple[str, str]]] = {}

        def wrapped(tx: Any) -> Any:
            before = {j: len(d.events) for j, d in tx.drafts.items()}
            try:
                return build(tx)
            finally:
                box["ev"] = [(j, canon(e)) for j, d in tx.drafts.items() for e in d.events[before.get(j, 0):]]

        result = orig(jids, wrapped, op, uid, weight)
        with lock:
            captured.append(box.get("ev", []))
        return result

    fs.committer.commit = commit  # type: ignore[method-assign]
    return captured


def run_client(fs: FileSystem, base: str, ops: list[Op], written: list[tuple[int, bytes]] | None = None) -> list[int]:
    return [apply_op(fs, base, op, written) for op in ops]


def client_state(fs: FileSystem, base: str, jids: list[str] | None = None) -> dict[str, Any]:
    """What a client sees after dropping its caches' freshness: the tree under ``base`` and
    the state of every view it holds."""
    from .helpers import walk

    fs.cache.invalidate_all()
    tree = walk(fs, base)
    views = {}
    with fs.cache._lock:
        held = list(fs.cache._views)
    for jid in held:
        if jids is None or jid in jids:
            views[jid] = fs.cache.get(jid, 0.0).to_snapshot()
    return {"tree": tree, "views": views}


# -- worker processes ------------------------------------------------------------------------------

def worker_main(conn: Any, barrier: Any) -> None:
    """Loop: receive (backing, base, session, ops), run them when every worker is ready, send
    back (outcomes, captured events, state after refresh); None ends the loop."""
    from .helpers import open_backing

    while True:
        msg = conn.recv()
        if msg is None:
            return
        spec, base, session, ops = msg
        store = fs = None
        try:
            store = open_backing(spec)
            fs = FileSystem(store, session=session)
            fs.allocator.prefetch()
            captured = instrument(fs)
            written: list[tuple[int, bytes]] = []
            barrier.wait(timeout=120)
            outcomes = run_client(fs, base, ops, written)
            barrier.wait(timeout=120)  # every client done before anyone looks
            conn.send(("ok", outcomes, captured, client_state(fs, base), written))
        except BaseException:  # report, never hang the parent
            try:
                barrier.abort()
            except Exception:
                pass
            conn.send(("error", traceback.format_exc()))
        finally:
            if fs is not None:
                fs.close()
            if store is not None:
                store.close()


def mode_of(kind: str) -> int:
    return stat.S_IFDIR if kind == "mkdir" else stat.S_IFREG
