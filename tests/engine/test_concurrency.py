"""Property-based concurrency tests (hypothesis), on SQLite and on DynamoDB Local.

Several clients, each a FileSystem on its own store object, run random create / mkdir /
rename / unlink / rmdir / link / chmod sequences over a small pool of names in shared
directories, as threads and as separate (spawned) processes. Errors such as EEXIST and
ENOENT are legitimate outcomes of the races. Afterwards:

  * every client, once its caches are invalidated, sees the same tree as a fresh client, and
    every view it holds equals the journal folded from seq 1;
  * every journal's hash chain verifies, and a strict replay shows each event was valid when
    it was appended (names unique, removals of existing entries, a seal only of an empty
    directory and nothing after it);
  * no event is lost or duplicated: the events each client's successful operations emitted
    appear in the journals exactly once, under that client's session, and nothing else does;
  * no directory cycle: every directory created and not removed is reachable from the root
    exactly once; directory nlink is 2 + subdirectories; each file's nlink is the number of
    names referring to it.

A single client running sequentially is also compared, op by op and errno by errno, with a
plain dict model of the tree.

Each hypothesis example works in a fresh top-level directory of one file system, so that
examples cost no table creation; the whole file system is checked once more at the end.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import stat
import sys
import threading
import traceback
from collections import Counter
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynlog import schema
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.journal.events import Create, Detach, Link
from dynlog.store.base import Store

from .helpers import ViewLockOrder, journal_ids, strict_replay, verify_chain, walk
from .workload import NAMES, PARENTS, apply_op, canon, client_state, full, instrument, run_client, worker_main

CLIENTS = 3

# -- strategies --------------------------------------------------------------------------------------

parents = st.sampled_from(PARENTS)
names = st.sampled_from(NAMES)
ops = st.one_of(
    st.tuples(st.sampled_from(["create", "mkdir", "create", "mkdir", "unlink", "rmdir"]), parents, names),
    st.tuples(st.sampled_from(["rename", "rename", "link"]), parents, names, parents, names),
    st.tuples(st.just("chmod"), parents, names, st.sampled_from([0o600, 0o755, 0o700])),
    st.tuples(st.just("write"), parents, names),
)
client_ops = st.lists(ops, min_size=4, max_size=14)
many_clients = st.lists(client_ops, min_size=CLIENTS, max_size=CLIENTS)

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None, print_blob=True)


def examples(env: "Env", local: int, dynamodb: int) -> int:
    """More examples where they are cheap (SQLite), fewer on DynamoDB Local (~90 s per store)."""
    return local if env.local else dynamodb


def norm(x: Any) -> Any:
    return json.loads(json.dumps(x))


def interleaved(jobs: list[Callable[[], Any]], switch_interval: float = 1e-5) -> list[str]:
    """Run ``jobs`` in threads started together, with the interpreter switching threads every
    ``switch_interval`` seconds so that they interleave finely; the tracebacks of those that
    raised."""
    errors: list[str] = []
    barrier = threading.Barrier(len(jobs))

    def go(job: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=60)
            job()
        except BaseException as e:  # noqa: BLE001 - returned to the caller
            errors.append("".join(traceback.format_exception(e)))

    threads = [threading.Thread(target=go, args=(job,)) for job in jobs]
    old = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(old)
    return errors


# -- the checker ---------------------------------------------------------------------------------------

class Env:
    """One file system for all examples of a test: a seeding client, per-example bases, checks."""

    def __init__(self, store: Store, store_factory: Callable[[], Store]) -> None:
        mkfs(store, uid=0, gid=0)
        self.store = store
        self.store_factory = store_factory
        self.local = store.source.startswith("local:")
        self.seeder = FileSystem(store, session="seeder")
        self.n = 0
        self.examples = 0
        self.conflicts = 0
        self.outcomes: Counter = Counter()

    def new_base(self) -> str:
        self.n += 1
        base = f"/ex{self.n}"
        self.seeder.mkdir(base, 0o755, ROOT)
        for d in ("a", "b", "a/b", "b/c"):
            self.seeder.mkdir(f"{base}/{d}", 0o755, ROOT)
        for f in ("x", "a/x", "b/x"):
            self.seeder.release(self.seeder.create(f"{base}/{f}", 0o644, 0, ROOT))
        return base

    def sessions(self, tag: str) -> list[str]:
        return [f"{tag}{self.n}c{i}" for i in range(CLIENTS)]

    def check(self, base: str, sessions: list[str], captured: dict[str, list], states: dict[str, dict],
              outcomes: list[list[int]], written: list[tuple[int, bytes]] = ()) -> None:
        self.examples += 1
        for out in outcomes:
            self.outcomes.update(errno.errorcode.get(e, "OK") if e else "OK" for e in out)
            # a handful of clients must never exhaust the bounded retries
            assert errno.EAGAIN not in out, f"an operation gave up under light contention: {out}"
        fresh = FileSystem(self.store_factory(), session="checker")
        try:
            self._check(fresh, base, sessions, captured, states)
            self._check_data(fresh, base, written)
        finally:
            fresh.close()
            fresh.store.close()

    def _check(self, fresh: FileSystem, base: str, sessions: list[str], captured: dict[str, list],
               states: dict[str, dict]) -> None:
        tree = walk(fresh, base)  # raises on a directory reached twice
        for s, state in states.items():
            assert state["tree"] == tree, f"client {s} sees another tree than a fresh client"

        # the journals of this example: the base's, and transitively every directory created in
        # one of them (names never leave the base) and every inode journal a link made
        base_ino = fresh.getattr(base)["st_ino"]
        flat = [x for s in sessions for evs in captured[s] for x in evs]
        recs_of: dict[str, list] = {}
        created_dirs = {base_ino}
        todo = [schema.dir_journal(base_ino)]
        while todo:
            jid = todo.pop()
            if jid in recs_of:
                continue
            recs_of[jid] = fresh.journals.read_after(jid, 0)
            for r in recs_of[jid]:
                for ev in r.events:
                    if isinstance(ev, Create) and ev.inode.is_dir:
                        created_dirs.add(ev.inode.ino)
                        todo.append(schema.dir_journal(ev.inode.ino))
                    elif isinstance(ev, (Detach, Link)):
                        todo.append(schema.inode_journal(ev.ino))
        jids = set(recs_of)

        replayed = {}
        found: Counter = Counter()
        for jid in sorted(jids):
            recs = recs_of[jid]
            verify_chain(recs)
            v = strict_replay(recs, jid)
            replayed[jid] = v
            if recs:
                assert fresh.cache.get(jid, 0.0).state_equals(v), f"{jid}: loaded view != replay from seq 1"
            for r in recs:
                if r.session in sessions:
                    for ev in r.events:
                        found[(jid, canon(ev))] += 1
                else:
                    assert r.session == "seeder", f"{jid}/{r.seq}: record of unknown session {r.session}"
        want = Counter(flat)
        assert set(j for j, _ in want) <= jids, "an operation emitted into a journal outside the example"
        lost = want - found
        extra = found - want
        assert not lost, f"events committed by clients but missing from the journals: {list(lost)[:5]}"
        assert not extra, f"events in the journals no successful operation emitted (or duplicated): {list(extra)[:5]}"

        for s, state in states.items():
            for jid, snap in state["views"].items():
                if jid in replayed:
                    assert norm(snap) == norm(replayed[jid].to_snapshot()), f"client {s}: view of {jid} != replay"

        # no cycle: every directory created and not removed hangs in the tree exactly once
        sealed = {schema.journal_ino(j) for j, v in replayed.items() if j.startswith("d/") and v.removed}
        in_tree = {t[1] for t in tree.values() if t[0] == stat.S_IFDIR}
        alive = created_dirs - sealed - {base_ino}
        assert in_tree == alive, f"directories lost from the tree (cycle?): {alive - in_tree}; extra: {in_tree - alive}"
        # nlink: directories 2 + subdirectories, files the number of names
        names_of: Counter = Counter(t[1] for t in tree.values() if t[0] != stat.S_IFDIR)
        for path, t in tree.items():
            kind, ino, _, nl = t[:4]
            if kind == stat.S_IFDIR:
                subdirs = sum(1 for p, u in tree.items() if u[0] == stat.S_IFDIR and p.rpartition("/")[0] == path)
                assert nl == 2 + subdirs, f"{path}: nlink {nl}, subdirectories {subdirs}"
            else:
                assert nl == names_of[ino], f"{path}: nlink {nl} but {names_of[ino]} names"
        for jid, v in replayed.items():
            if jid.startswith("i/") and v.subject is not None:
                assert v.subject.nlink == names_of[v.subject.ino], (
                    f"{jid}: nlink {v.subject.nlink}, names {names_of[v.subject.ino]}")

    @staticmethod
    def _check_data(fresh: FileSystem, base: str, written: list[tuple[int, bytes]]) -> None:
        """Every file reads back whole: empty, or exactly one payload written to that inode."""
        payloads: dict[int, set[bytes]] = {}
        for ino, p in written:
            payloads.setdefault(ino, set()).add(p)
        for path, t in walk(fresh, base).items():
            if t[0] != stat.S_IFREG:
                continue
            fh = fresh.open(path, os.O_RDONLY, ROOT)
            try:
                data = fresh.read(fh, 1 << 16, 0)
            finally:
                fresh.release(fh)
            assert len(data) == t[6], f"{path}: read {len(data)} bytes, size {t[6]}"
            assert data == b"" or data in payloads.get(t[1], set()), f"{path}: unexpected contents {data!r}"

    def check_whole(self) -> None:
        """Every journal of the file system, and the whole tree from the root."""
        fresh = FileSystem(self.store_factory(), session="checker")
        try:
            tree = walk(fresh, "/")
            dirs_in_tree = {t[1] for t in tree.values() if t[0] == stat.S_IFDIR}
            created, sealed = set(), set()
            for jid in journal_ids(self.store):
                recs = fresh.journals.read_after(jid, 0)
                verify_chain(recs)
                v = strict_replay(recs, jid)
                if jid.startswith("d/") and v.removed:
                    sealed.add(schema.journal_ino(jid))
                for r in recs:
                    for ev in r.events:
                        if isinstance(ev, Create) and ev.inode.is_dir:
                            created.add(ev.inode.ino)
            assert dirs_in_tree == created - sealed
        finally:
            fresh.close()
            fresh.store.close()


@pytest.fixture
def env(store: Store, store_factory: Callable[[], Store], monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """Also checks the view locks' order (helpers.ViewLockOrder) in everything the test runs."""
    order = ViewLockOrder()
    order.install(monkeypatch)
    yield Env(store, store_factory)
    assert not order.violations, order.report()


# -- threads -------------------------------------------------------------------------------------------

def test_threads(env: Env) -> None:
    stores = [env.store_factory() for _ in range(CLIENTS)]

    @settings(max_examples=examples(env, 40, 10), **SETTINGS)
    @given(many_clients)
    def run(workloads: list[list[tuple]]) -> None:
        base = env.new_base()
        sessions = env.sessions("t")
        clients = [FileSystem(s, session=sess) for s, sess in zip(stores, sessions)]
        captured = {sess: instrument(c) for c, sess in zip(clients, sessions)}
        outcomes: list[list[int]] = [[] for _ in clients]
        written: list[tuple[int, bytes]] = []

        def job(i: int) -> Callable[[], None]:
            return lambda: outcomes.__setitem__(i, run_client(clients[i], base, workloads[i], written))

        errors = interleaved([job(i) for i in range(len(clients))])
        assert not errors, errors
        env.conflicts += sum(c.committer.conflicts for c in clients)
        states = {sess: client_state(c, base) for c, sess in zip(clients, sessions)}
        for c in clients:
            c.close()
        env.check(base, sessions, captured, states, outcomes, written)

    run()
    env.check_whole()
    print(f"threads: {env.examples} examples, {env.conflicts} conflicts, outcomes {dict(env.outcomes)}")
    assert env.outcomes["OK"] > 0


def test_threads_sharing_mounts(env: Env) -> None:
    """Two mounts, three threads each (as FUSE serves a mount): operations of one mount on one
    directory are folded into shared records by group commit, and must still each appear once."""
    stores = [env.store_factory() for _ in range(2)]
    batched = [0]

    @settings(max_examples=examples(env, 30, 9), **SETTINGS)
    @given(st.lists(client_ops, min_size=6, max_size=6))
    def run(workloads: list[list[tuple]]) -> None:
        base = env.new_base()
        sessions = [f"sh{env.n}c{i}" for i in range(2)]
        mounts = [FileSystem(s, session=sess) for s, sess in zip(stores, sessions)]
        captured = {sess: instrument(m) for m, sess in zip(mounts, sessions)}
        outcomes: list[list[int]] = [[] for _ in workloads]
        written: list[tuple[int, bytes]] = []

        def job(i: int) -> Callable[[], None]:
            return lambda: outcomes.__setitem__(i, run_client(mounts[i % 2], base, workloads[i], written))

        errors = interleaved([job(i) for i in range(len(workloads))])
        assert not errors, errors
        batched[0] += sum(m.committer.batched for m in mounts)
        states = {sess: client_state(m, base) for m, sess in zip(mounts, sessions)}
        for m in mounts:
            m.close()
        env.check(base, sessions, captured, states, outcomes, written)

    run()
    env.check_whole()
    print(f"shared mounts: {env.examples} examples, {batched[0]} operations folded by group commit, "
          f"outcomes {dict(env.outcomes)}")


def test_group_commit_folds_concurrent_operations_on_one_directory(env: Env) -> None:
    """Many threads of one mount on one directory while a commit is in flight: their operations
    are folded into few records; each succeeds or fails on its own (a duplicate name is EEXIST
    without failing the others), and each appears in the journal exactly once."""
    base = env.new_base()
    store = env.store_factory()
    fs = FileSystem(store, session=f"gc{env.n}c0")
    fs.allocator.prefetch()
    walk(fs, base)
    captured = instrument(fs)
    inner_put = store.put

    def slow_put(put: Any) -> None:  # keep each commit in flight long enough for others to queue
        # 0.2 s, not less: on a loaded machine (the suite's three workers and DynamoDB Local on two
        # cores) the other 26 threads took longer than 30 ms to reach the queue, and nothing folded
        threading.Event().wait(0.2)
        inner_put(put)

    store.put = slow_put  # type: ignore[method-assign]
    jobs = [("create", "", f"f{i}") for i in range(16)] + [("create", "", "dup")] * 4 + \
           [("mkdir", "", f"d{i}") for i in range(4)] + [("unlink", "", "nope")] * 2 + [("chmod", "", "x", 0o600)]
    results: list[int] = [0] * len(jobs)

    def job(i: int) -> Callable[[], None]:
        return lambda: results.__setitem__(i, apply_op(fs, base, jobs[i]))

    errors = interleaved([job(i) for i in range(len(jobs))], switch_interval=sys.getswitchinterval())
    assert not errors, errors
    store.put = inner_put  # type: ignore[method-assign]
    by = dict(zip(range(len(jobs)), results))
    assert all(by[i] == 0 for i in range(16)), results
    assert sorted(results[16:20]) == [0, errno.EEXIST, errno.EEXIST, errno.EEXIST]
    assert results[20:24] == [0] * 4 and results[24:26] == [errno.ENOENT] * 2 and results[26] == 0
    assert fs.committer.batched > 0, "no operation was folded into another's record"
    jid = schema.dir_journal(fs.getattr(base)["st_ino"])
    mine = [r for r in fs.journals.read_after(jid, 0) if r.session == fs.session]
    assert len(mine) < 22, f"{len(mine)} records for 22 successful operations"
    assert sum(len(r.events) for r in mine) == 22
    states = {fs.session: client_state(fs, base)}
    fs.close()
    env.check(base, [fs.session], {fs.session: captured}, states, [results])


# -- processes -----------------------------------------------------------------------------------------

@pytest.fixture
def workers(request: pytest.FixtureRequest):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(CLIENTS)
    pipes, procs = [], []
    for _ in range(CLIENTS):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker_main, args=(child, barrier), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    yield pipes
    for conn in pipes:
        try:
            conn.send(None)
        except OSError:
            pass
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.terminate()


def test_processes(env: Env, workers: list, backing: dict) -> None:
    @settings(max_examples=examples(env, 25, 8), **SETTINGS)
    @given(many_clients)
    def run(workloads: list[list[tuple]]) -> None:
        base = env.new_base()
        sessions = env.sessions("p")
        for conn, sess, ops_ in zip(workers, sessions, workloads):
            conn.send((backing, base, sess, ops_))
        captured, states, outcomes, written = {}, {}, [], []
        for conn, sess in zip(workers, sessions):
            if not conn.poll(180):
                raise AssertionError("a worker process did not answer")
            msg = conn.recv()
            assert msg[0] == "ok", msg[1]
            _, out, cap, state, wrote = msg
            captured[sess], states[sess] = cap, state
            outcomes.append(out)
            written += wrote
        env.check(base, sessions, captured, states, outcomes, written)

    run()
    env.check_whole()
    print(f"processes: {env.examples} examples, outcomes {dict(env.outcomes)}")
    assert env.outcomes["OK"] > 0


# -- a reference model for one sequential client ------------------------------------------------------

class MDir:
    def __init__(self, mode: int = 0o755) -> None:
        self.children: dict[str, Any] = {}
        self.mode = mode


class MFile:
    def __init__(self, mode: int = 0o644) -> None:
        self.mode = mode
        self.data = b""


class ModelError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class Model:
    """The tree under the example's base as dicts, with the errno order of POSIX (and dynlog)."""

    def __init__(self) -> None:
        self.root = MDir()

    @staticmethod
    def parts(rel: str) -> list[str]:
        return [p for p in rel.split("/") if p]

    def resolve(self, parts: list[str]) -> Any:
        node = self.root
        for c in parts:
            if not isinstance(node, MDir):
                raise ModelError(errno.ENOTDIR)
            if c not in node.children:
                raise ModelError(errno.ENOENT)
            node = node.children[c]
        return node

    def resolve_dir(self, parts: list[str]) -> MDir:
        node = self.resolve(parts)
        if not isinstance(node, MDir):
            raise ModelError(errno.ENOTDIR)
        return node

    def apply(self, op: tuple) -> int:
        try:
            getattr(self, "op_" + op[0])(*op[1:])
        except ModelError as e:
            return e.code
        return 0

    def _make(self, parent: str, name: str, node: Any) -> None:
        d = self.resolve_dir(self.parts(parent))
        if name in d.children:
            raise ModelError(errno.EEXIST)
        d.children[name] = node

    def op_create(self, parent: str, name: str) -> None:
        self._make(parent, name, MFile())

    def op_mkdir(self, parent: str, name: str) -> None:
        self._make(parent, name, MDir())

    def op_unlink(self, parent: str, name: str) -> None:
        d = self.resolve_dir(self.parts(parent))
        if name not in d.children:
            raise ModelError(errno.ENOENT)
        if isinstance(d.children[name], MDir):
            raise ModelError(errno.EISDIR)
        del d.children[name]

    def op_rmdir(self, parent: str, name: str) -> None:
        d = self.resolve_dir(self.parts(parent))
        node = self.resolve(self.parts(parent) + [name])
        if not isinstance(node, MDir):
            raise ModelError(errno.ENOTDIR)
        if node.children:
            raise ModelError(errno.ENOTEMPTY)
        del d.children[name]

    def op_write(self, parent: str, name: str, payload: bytes = b"") -> None:
        node = self.resolve(self.parts(parent) + [name])
        if isinstance(node, MDir):
            raise ModelError(errno.EISDIR)
        node.data = payload

    def op_chmod(self, parent: str, name: str, mode: int) -> None:
        self.resolve(self.parts(parent) + [name]).mode = mode

    def op_link(self, p1: str, n1: str, p2: str, n2: str) -> None:
        self.resolve_dir(self.parts(p1))
        src = self.resolve(self.parts(p1) + [n1])
        if isinstance(src, MDir):
            raise ModelError(errno.EPERM)
        d = self.resolve_dir(self.parts(p2))
        if n2 in d.children:
            raise ModelError(errno.EEXIST)
        d.children[n2] = src

    def op_rename(self, p1: str, n1: str, p2: str, n2: str) -> None:
        s = self.resolve_dir(self.parts(p1))
        src = self.resolve(self.parts(p1) + [n1])
        old, new = self.parts(p1) + [n1], self.parts(p2) + [n2]
        if isinstance(src, MDir) and new[: len(old)] == old and new != old:
            raise ModelError(errno.EINVAL)
        d = self.resolve_dir(self.parts(p2))
        if s is d and n1 == n2:
            return
        tgt = d.children.get(n2)
        if tgt is not None:
            if tgt is src:
                return  # two names of one inode
            if isinstance(src, MDir) and not isinstance(tgt, MDir):
                raise ModelError(errno.ENOTDIR)
            if not isinstance(src, MDir) and isinstance(tgt, MDir):
                raise ModelError(errno.EISDIR)
            if isinstance(tgt, MDir) and tgt.children:
                raise ModelError(errno.ENOTEMPTY)
        del s.children[n1]
        d.children[n2] = src

    def tree(self, base: str) -> tuple[dict[str, tuple], list[set[str]]]:
        """path -> (type, permission bits, nlink); and the groups of paths naming one file."""
        out: dict[str, tuple] = {}
        files: dict[int, set[str]] = {}
        objs: dict[int, Any] = {}

        def visit(d: MDir, path: str) -> None:
            for name, node in d.children.items():
                p = f"{path}/{name}"
                if isinstance(node, MDir):
                    out[p] = (stat.S_IFDIR, node.mode, 2 + sum(isinstance(c, MDir) for c in node.children.values()))
                    visit(node, p)
                else:
                    files.setdefault(id(node), set()).add(p)
                    objs[id(node)] = node
        visit(self.root, base)
        for key, paths in files.items():
            for p in paths:
                out[p] = (stat.S_IFREG, objs[key].mode, len(paths), objs[key].data)
        return out, sorted((g for g in files.values()), key=sorted)


def engine_tree(fs: FileSystem, base: str) -> tuple[dict[str, tuple], list[set[str]]]:
    t = walk(fs, base)
    groups: dict[int, set[str]] = {}
    out = {}
    for p, v in t.items():
        out[p] = (v[0], stat.S_IMODE(v[2]), v[3])
        if v[0] != stat.S_IFDIR:
            groups.setdefault(v[1], set()).add(p)
            fh = fs.open(p, os.O_RDONLY, ROOT)
            out[p] += (fs.read(fh, 1 << 16, 0),)
            fs.release(fh)
    return out, sorted(groups.values(), key=sorted)


def test_single_client_matches_a_dict_model(env: Env) -> None:
    client_store = env.store_factory()

    @settings(max_examples=examples(env, 60, 8), **SETTINGS)
    @given(st.lists(ops, min_size=5, max_size=40))
    def run(seq: list[tuple]) -> None:
        env.n += 1
        base = f"/m{env.n}"
        env.seeder.mkdir(base, 0o755, ROOT)
        fs = FileSystem(client_store, session=f"m{env.n}c0")
        captured = instrument(fs)
        model = Model()
        got_all = []
        seed = [("mkdir", "", "a"), ("mkdir", "", "b"), ("mkdir", "a", "b"), ("mkdir", "b", "c"),
                ("create", "", "x"), ("create", "a", "x"), ("create", "b", "x")]
        written: list[tuple[int, bytes]] = []
        for i, op in enumerate(seed + seq):
            got = apply_op(fs, base, op, written)
            want = model.apply(op + (written[-1][1],) if op[0] == "write" and got == 0 else op)
            got_all.append(got)
            assert got == want, (f"op {i} {op}: dynlog {errno.errorcode.get(got, got)}, "
                                 f"model {errno.errorcode.get(want, want)}")
        assert engine_tree(fs, base) == model.tree(base)
        other = FileSystem(env.store_factory(), session="checker")
        assert engine_tree(other, base) == model.tree(base)
        other.close()
        fs.close()
        env.check(base, [f"m{env.n}c0"], {f"m{env.n}c0": captured}, {}, [], written)
        env.outcomes.update(errno.errorcode.get(e, "OK") if e else "OK" for e in got_all)

    run()
    env.check_whole()
    print(f"model: {env.examples} examples, outcomes {dict(env.outcomes)}")
    assert env.outcomes["OK"] > 0


# -- directory moves racing into cycles ---------------------------------------------------------------

@pytest.mark.parametrize("moves", [
    [("/a", "/b/a"), ("/b", "/a/b2")],
    [("/a", "/b/m"), ("/b", "/c/m"), ("/c", "/a/m")],
    [("/a", "/b/m"), ("/b", "/a/sub/m")],
    # disjoint journals: the first move touches p, b/y and m; the second root, t and b
    [("/p/m", "/b/y/m"), ("/b", "/p/m/t/b2")],
], ids=["two", "three", "deep", "disjoint"])
def test_stale_clients_cannot_move_directories_into_a_cycle(env: Env, moves: list[tuple[str, str]]) -> None:
    """Each client has warm views in which its move is valid. The last client resolves its
    paths, and just before it commits, the others make their moves (the race window); its
    move would now close a cycle. It must fail (EINVAL, or ENOENT once it sees the target path
    no longer exists), never detach a loop from the root."""
    base = env.new_base()
    for d in ("/c", "/a/sub", "/p", "/p/m", "/p/m/t", "/b/y"):
        env.seeder.mkdir(base + d, 0o755, ROOT)
    sessions = [f"cyc{env.n}c{i}" for i in range(len(moves))]
    clients = [FileSystem(env.store_factory(), session=s) for s in sessions]
    for c in clients:
        walk(c, base)  # every client caches every view
    captured = {s: instrument(c) for s, c in zip(sessions, clients)}
    results: list[int] = [0] * len(moves)
    last = clients[-1]
    inner = last.committer.commit
    raced: list[bool] = []

    def commit_after_the_others(*a: Any, **kw: Any) -> Any:
        if not raced:
            raced.append(True)
            for i, (c, (old, new)) in enumerate(zip(clients[:-1], moves[:-1])):
                results[i] = apply_op(c, "", ("rename", "", base + old, "", base + new))
        return inner(*a, **kw)

    last.committer.commit = commit_after_the_others  # type: ignore[method-assign]
    old, new = moves[-1]
    results[-1] = apply_op(last, "", ("rename", "", base + old, "", base + new))
    assert raced and results[:-1] == [0] * (len(moves) - 1), results
    assert results[-1] in (errno.EINVAL, errno.ENOENT), results
    states = {s: client_state(c, base) for s, c in zip(sessions, clients)}
    for c in clients:
        c.close()
    env.check(base, sessions, captured, states, [results])
    env.check_whole()


dir_moves = st.lists(
    st.tuples(st.just("rename"), st.sampled_from(["", "a", "b", "a/b", "b/a", "a/c", "c"]),
              st.sampled_from(["a", "b", "c"]), st.sampled_from(["", "a", "b", "a/b", "b/a", "c", "c/a"]),
              st.sampled_from(["a", "b", "c"])),
    min_size=3, max_size=8)


def test_threads_racing_directory_moves(env: Env) -> None:
    """Clients only move directories around among each other: the tree stays a tree."""
    stores = [env.store_factory() for _ in range(CLIENTS)]

    @settings(max_examples=examples(env, 40, 8), **SETTINGS)
    @given(st.lists(dir_moves, min_size=CLIENTS, max_size=CLIENTS))
    def run(workloads: list[list[tuple]]) -> None:
        base = env.new_base()
        for d in ("c", "b/a", "a/c"):
            env.seeder.mkdir(f"{base}/{d}", 0o755, ROOT)
        sessions = env.sessions("dm")
        clients = [FileSystem(s, session=sess) for s, sess in zip(stores, sessions)]
        for c in clients:
            walk(c, base)  # warm, so that views go stale as the others move things
        captured = {sess: instrument(c) for c, sess in zip(clients, sessions)}
        outcomes: list[list[int]] = [[] for _ in clients]

        def job(i: int) -> Callable[[], None]:
            return lambda: outcomes.__setitem__(i, run_client(clients[i], base, workloads[i]))

        errors = interleaved([job(i) for i in range(len(clients))])
        assert not errors, errors
        states = {sess: client_state(c, base) for c, sess in zip(clients, sessions)}
        for c in clients:
            c.close()
        env.check(base, sessions, captured, states, outcomes)

    run()
    env.check_whole()


# -- lock order ------------------------------------------------------------------------------------------

def test_flushing_a_file_moved_elsewhere_keeps_the_view_lock_order(fs: FileSystem, new_client,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The close of a file another mount moved to a directory whose journal id sorts first: the
    flush follows the inode (the old directory's ``moved_out``) to the new one. It held the old
    directory's view lock while it waited for the new one's, the reverse of the sorted order a
    commit to both takes them in: a rename across the two directories at that moment, holding
    the new one's lock and waiting for the old one's, deadlocked the mount (all of its threads
    hung in the write-behind stress run). Checked deterministically: no view lock is waited for
    while one sorting after it is held."""
    order = ViewLockOrder()
    order.install(monkeypatch)
    fs.mkdir("/p", 0o755, ROOT)
    fs.mkdir("/q", 0o755, ROOT)
    by_jid = sorted(("/p", "/q"), key=lambda d: schema.dir_journal(fs.getattr(d)["st_ino"]))
    first, last = by_jid  # the file moves from the directory sorting last to the one sorting first
    fh = fs.create(f"{last}/f", 0o644, os.O_RDWR | os.O_CREAT, ROOT)
    fs.write(fh, b"old contents", 0)
    fs.flush(fh)
    fs.write(fh, b"NEW", 0)
    new_client().rename(f"{last}/f", f"{first}/g", 0, ROOT)
    fs.flush(fh)  # follows the inode to {first}/g
    fs.release(fh)
    assert not order.violations, order.report()
    fresh = new_client()
    fh = fresh.open(f"{first}/g", os.O_RDONLY, ROOT)
    assert fresh.read(fh, 100, 0) == b"NEW contents"
    fresh.release(fh)


# -- one open file, several threads ------------------------------------------------------------------------

def test_threads_writing_one_file_through_two_handles(fs: FileSystem) -> None:
    """Two handles of one file share its buffer (OpenFile.dirty). A write checked the buffer's
    size against the dirty limit after letting go of the file's lock, while the other thread's
    write added blocks to it: 'dictionary changed size during iteration' in the hypothesis run.
    Each thread writes one byte at the start of each of its own blocks, a new key every time."""
    bs = fs.block_size
    fhs = [fs.create("/shared", 0o644, os.O_RDWR | os.O_CREAT, ROOT)]
    fhs.append(fs.open("/shared", os.O_RDWR, ROOT))
    per_thread = 1000

    def writer(k: int) -> None:
        for i in range(per_thread):
            fs.write(fhs[k], bytes([65 + k]), (2 * i + k) * bs)

    errors = interleaved([lambda: writer(0), lambda: writer(1)], switch_interval=1e-6)
    assert not errors, errors
    for i in (0, 1, 2 * per_thread - 2, 2 * per_thread - 1):
        assert fs.read(fhs[0], 1, i * bs) == bytes([65 + i % 2])
    for fh in fhs:
        fs.release(fh)
