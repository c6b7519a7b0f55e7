"""A bounded stress run: 3 mounts x 4 threads doing random create, rename, unlink, mkdir, rmdir
and write in one shared tree, from small pools of names so that they collide all the time
(EEXIST races, renames over each other's files, rmdir against creates, directory moves).

Afterwards:
  * every mount lists the same tree with the same bytes in every file;
  * the journals, folded from seq 1 with View.apply, give that same tree, and ``dynlog fsck``
    finds the file system clean;
  * every file holds exactly the bytes of one write (the token in its first line says which);
  * every write that returned success is still there, unless something that ran after it
    started could have removed it: an unlink, rename or overwrite of a path it may have had
    by then (following renames of it and of its directories, conservatively).
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import random
import signal
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dynlog import schema
from dynlog.journal.log import JournalStore
from dynlog.materialize.view import View
from dynlog.store.source import open_store

from .conftest import daemon_errors, run_cli

DURATION = 12.0  # seconds of random operations
THREADS = 4  # per mount
SIZE = 3000  # every write writes this many bytes at offset 0: concurrent writers never mix
DIRS = ["d0", "d1", "d2", "d3"]
FILES = ["f0", "f1", "f2", "f3", "f4", "f5"]
# errors after which the operation certainly changed nothing
NO_EFFECT = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR, errno.EINVAL, errno.EBUSY}
ALLOWED = NO_EFFECT | {errno.EAGAIN, errno.ESTALE}  # EAGAIN: lost commit races past the retry bound


def payload(token: str) -> bytes:
    head = f"{token}\n".encode()
    body = hashlib.sha256(token.encode()).digest() * (SIZE // 32 + 1)
    return (head + body)[:SIZE]


@dataclass
class Op:
    kind: str
    paths: tuple[str, ...]  # relative to the shared tree's root
    t0: float
    t1: float = 0.0
    err: int = 0  # 0: success
    token: str = ""
    opened: bool = False  # a write got past open(): it may have truncated the file

    @property
    def may_have_acted(self) -> bool:
        return self.err == 0 or self.err not in NO_EFFECT or self.opened


@dataclass
class Worker:
    root: Path
    name: str
    seed: int
    ops: list[Op] = field(default_factory=list)
    current: Op | None = None  # the operation in progress (to name it if it hangs)

    def path(self, leaf: list[str]) -> str:
        rng = self.rng
        parts = [rng.choice(DIRS) for _ in range(rng.choice((0, 1, 1, 2)))]
        return "/".join(parts + [rng.choice(leaf)])

    def run(self, deadline: float) -> None:
        self.rng = rng = random.Random(self.seed)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            kind = rng.choices(["write", "create", "rename", "unlink", "mkdir", "rmdir"], [30, 10, 20, 12, 16, 12])[0]
            if kind in ("write", "create"):
                op = self.current = Op(kind, (self.path(FILES),), time.monotonic(), token=f"{self.name}-{n}")
                flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if kind == "create" else os.O_TRUNC)
                try:
                    fd = os.open(self.root / op.paths[0], flags, 0o644)
                    op.opened = True
                    try:
                        assert os.write(fd, payload(op.token)) == SIZE
                    finally:
                        os.close(fd)  # close commits the data (and reports a failed commit)
                except OSError as e:
                    op.err = e.errno or -1
            else:
                if kind == "rename":
                    leaf = FILES if rng.random() < 0.6 else DIRS
                    paths: tuple[str, ...] = (self.path(leaf), self.path(leaf))  # onto itself, an ancestor...
                else:
                    paths = (self.path(FILES if kind == "unlink" else DIRS),)
                op = self.current = Op(kind, paths, time.monotonic())
                call = {"rename": os.rename, "unlink": os.unlink, "mkdir": os.mkdir, "rmdir": os.rmdir}[kind]
                try:
                    call(*(self.root / p for p in paths))
                except OSError as e:
                    op.err = e.errno or -1
            op.t1 = time.monotonic()
            self.ops.append(op)


def walk(root: Path, errors: list[str]) -> dict[str, tuple]:
    """path -> ("d",) or ("f", bytes) for everything under root. A directory that cannot be
    listed is left out, and its error goes to ``errors``."""
    out: dict[str, tuple] = {}

    def note(e: OSError) -> None:
        errors.append(f"{os.path.relpath(e.filename, root)}: {e.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=note):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d))] = ("d",)
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.normpath(os.path.join(rel, f))] = ("f", Path(p).read_bytes())
    return out


def fold_tree(source: str, endpoint: str | None, top: str) -> dict[str, tuple]:
    """The tree under /top as the journals say, each folded from seq 1: path -> ("d",) or ("f", size)."""
    store = open_store(source, endpoint_url=endpoint)
    journals = JournalStore(store)

    def fold(jid: str) -> View:
        view = View(jid)
        for rec in journals.read_after(jid, 0):
            view.apply(rec)
        assert view.chain_ok, f"{jid}: hash chain broken"
        return view

    out: dict[str, tuple] = {}
    try:
        root = fold(schema.dir_journal(1))
        stack = [("", root.entries[top].ino)]
        while stack:
            rel, ino = stack.pop()
            view = fold(schema.dir_journal(ino))
            assert not view.removed, f"{rel or '.'}: reachable but its journal is sealed"
            for name, ent in view.entries.items():
                p = f"{rel}/{name}" if rel else name
                assert not ent.linked, f"{p}: unexpected hard link"
                if stat.S_ISDIR(ent.mode):
                    out[p] = ("d",)
                    stack.append((p, ent.ino))
                else:
                    out[p] = ("f", ent.size)
    finally:
        store.close()
    return out


def moved(path: str, src: str, dst: str) -> str | None:
    if path == src:
        return dst
    if path.startswith(src + "/"):
        return dst + path[len(src):]
    return None


MAX_PATHS = 64  # a write whose bytes may have been at more paths than this is not followed


def unexplained_losses(writes: list[Op], ops: list[Op], final_tokens: set[str]) -> tuple[list[str], list[str]]:
    """Successful writes whose bytes are gone with nothing that could have removed them.

    Conservative: every operation that finished after the write started may have come after
    it. Renames carry the paths the bytes may have had (two passes in order of start, so a
    chain of renames is followed even when neighbours overlap in time); an unlink, an
    overwrite or a rename onto any such path, or onto a directory above it, explains the loss."""
    acting = [o for o in ops if o.kind in ("rename", "unlink", "write") and o.may_have_acted]
    renames = sorted((o for o in acting if o.kind == "rename"), key=lambda o: o.t0)
    last_hit: dict[str, float] = {}  # path -> latest end of an operation that could destroy what was there
    for o in acting:
        target = o.paths[-1]  # unlink/write: the path; rename: the destination
        last_hit[target] = max(last_hit.get(target, 0.0), o.t1)
    lost: list[str] = []
    ambiguous: list[str] = []
    for w in writes:
        if w.token in final_tokens:
            continue
        possible = {w.paths[0]}
        prefixes = set(prefixes_of(w.paths[0]))
        for _ in range(2):
            for r in renames:
                if r.t1 <= w.t0 or r.paths[0] not in prefixes:
                    continue
                for p in list(possible):
                    q = moved(p, r.paths[0], r.paths[1])
                    if q is not None and q not in possible:
                        possible.add(q)
                        prefixes.update(prefixes_of(q))
                if len(possible) > MAX_PATHS:
                    break
        if len(possible) > MAX_PATHS:
            ambiguous.append(w.token)  # moved around too much to follow: counted as explained
            continue

        def hit(p: str) -> bool:
            parts = p.split("/")
            return any(last_hit.get("/".join(parts[:i]), 0.0) > w.t0 for i in range(1, len(parts) + 1))

        if not any(hit(p) for p in possible):
            lost.append(f"{w.token} written to {w.paths[0]} at {w.t0:.3f}-{w.t1:.3f}; may have been at {sorted(possible)}")
    return lost, ambiguous


def around(lost: list[str], writes: list[Op], workers: list[Worker], window: float = 3.0) -> str:
    """For the report of a lost write: every operation, by any worker, on a path that shares a
    name with the write's path, from ``window`` seconds before it to ``window`` after: what the
    checker's model may have missed (a failure in CI could not be reproduced on a quiet machine)."""
    by_token = {w.token: w for w in writes}
    out = []
    for line in lost:
        w = by_token[line.split(" ", 1)[0]]
        names = set(w.paths[0].split("/"))
        near = sorted((o.t0, wk.name, o) for wk in workers for o in wk.ops
                      if w.t0 - window <= o.t1 and o.t0 <= w.t1 + window
                      and names & {part for p in o.paths for part in p.split("/")})
        out.append(f"operations near {w.token} ({w.paths[0]}, {w.t0:.3f}-{w.t1:.3f}):")
        out.extend(f"  {t0:.3f}-{o.t1:.3f} {who} {o.kind} {' -> '.join(o.paths)} "
                   f"{errno.errorcode.get(o.err, o.err) if o.err else 'ok'}{' ' + o.token if o.token else ''}"
                   for t0, who, o in near)
    return "\n".join(out)


def thread_dumps(mounts: list) -> str:
    """The stacks of every thread of these mounts' daemons: SIGUSR1 has faulthandler write them
    to the daemon's log (dynlog/cli/mountcmd.py). What a hung mount waits for, for the report."""
    out = []
    for m in dict.fromkeys(mounts):
        start = len(m.log_text())
        os.kill(m.proc.pid, signal.SIGUSR1)
        seen = ""
        for _ in range(50):  # written at once by the signal handler: read until it stops growing
            time.sleep(0.1)
            text = m.log_text()[start:]
            if "Thread 0x" in text and text == seen:
                break
            seen = text
        out.append(f"--- threads of the daemon of {m.path} (pid {m.proc.pid}):\n{m.log_text()[start:]}")
    return "\n".join(out)


def what_mounts_said(mounts: list) -> str:
    """For a failure's report: each mount's last warnings and errors, and for a daemon that is
    gone (ENOTCONN), its exit status and the end of its log, where a crash leaves its trace."""
    out = []
    for i, m in enumerate(mounts):
        lines = m.log_text().splitlines()
        rc = m.proc.poll()
        if rc is not None:
            out.append(f"--- mount {i}'s daemon exited with {rc}; why, and the end of its log:")
            out.extend(ln for ln in lines if "Assertion" in ln or "Fatal Python error" in ln)  # above the stacks
            out.extend(lines[-60:])
        else:
            out.append(f"--- mount {i}'s log, warnings and errors:")
            out.extend([ln for ln in lines if "[warning" in ln or "[error" in ln][-20:])
    return "\n".join(out)


def prefixes_of(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def test_stress_three_mounts(fs_source, mount_all) -> None:
    stress(fs_source, mount_all(fs_source, 3))


def test_stress_three_mounts_writebehind(fs_source, mount_all) -> None:
    """The same run with ``-o writebehind`` on every mount: leases taken where a mount is alone
    for a moment, revoked by the others' lookups, opens and commits, synchronous fallback under
    contention; checked the same way, and no acknowledged operation dropped by a lost lease."""
    mounts = mount_all(fs_source, 3, options="writebehind")
    stress(fs_source, mounts)
    for m in mounts:
        assert "writebehind.lease_lost" not in m.log_text(), m.log_text()[-3000:]


def stress(fs_source, mounts) -> None:
    """The run and its checks (module docstring) on three mounts of ``fs_source``."""
    roots = [Path(m.path) / "s" for m in mounts]
    roots[0].mkdir()
    for r in roots:
        deadline = time.monotonic() + 10
        while not r.is_dir():
            assert time.monotonic() < deadline, f"{r} did not appear"
            time.sleep(0.01)

    workers = [Worker(roots[m], f"m{m}t{t}", seed=1000 * m + t) for m in range(3) for t in range(THREADS)]
    deadline = time.monotonic() + DURATION
    threads = [threading.Thread(target=w.run, args=(deadline,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + 60 - time.monotonic()))
    hung = [(w.name, w.current) for w, t in zip(workers, threads) if t.is_alive()]
    assert not hung, f"workers hung in: {hung}\n{thread_dumps([mounts[int(n[1])] for n, _ in hung])}"
    ops = [o for w in workers for o in w.ops]

    counts = collections.Counter((o.kind, errno.errorcode.get(o.err, str(o.err)) if o.err else "ok") for o in ops)
    print(f"\nstress on {fs_source.backend}: {len(ops)} operations in {DURATION:.0f} s "
          f"({len(ops) / DURATION:.0f}/s): " + ", ".join(f"{k}/{e} {n}" for (k, e), n in sorted(counts.items())))
    odd = [o for o in ops if o.err and o.err not in ALLOWED]
    assert not odd, (f"unexpected errors: {[(o.kind, o.paths, errno.errorcode.get(o.err, o.err)) for o in odd][:20]}\n"
                     f"{what_mounts_said(mounts)}")

    # 1. every mount shows the same tree and the same bytes (after the feed has caught up)
    settle = time.monotonic()
    while True:
        walk_errors: list[list[str]] = [[], [], []]
        try:
            trees = [walk(r, e) for r, e in zip(roots, walk_errors)]
        except FileNotFoundError:  # listed, then gone: a write-behind queue was being committed
            trees = []
        if trees and trees[0] == trees[1] == trees[2]:
            break
        if time.monotonic() - settle > 15:
            assert trees, "names kept vanishing between a listing and reading them for 15 s"
            diff = {p: [t.get(p, ("-",))[0] for t in trees] for p in set().union(*trees)
                    if len({repr(t.get(p)) for t in trees}) > 1}
            raise AssertionError(f"mounts disagree after 15 s: {dict(list(diff.items())[:20])}\n"
                                 f"directories a mount could not list: {walk_errors}\n{what_mounts_said(mounts)}")
        time.sleep(0.2)
    tree = trees[0]
    print(f"  mounts agreed after {time.monotonic() - settle:.2f} s: "
          f"{sum(1 for v in tree.values() if v[0] == 'd')} directories, {sum(1 for v in tree.values() if v[0] == 'f')} files")

    # 2. the journals replay to that tree, and fsck is happy
    folded = fold_tree(fs_source.source, fs_source.endpoint, "s")
    assert folded == {p: v if v[0] == "d" else ("f", len(v[1])) for p, v in tree.items()}
    res = run_cli(*fs_source.global_args(), "fsck", fs_source.source, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

    # 3. every file is exactly one write's bytes (or empty: an O_TRUNC open whose write failed)
    attempted = {o.token for o in ops if o.token}
    final: dict[str, str] = {}
    for p, v in tree.items():
        if v[0] != "f" or v[1] == b"":
            continue
        token = v[1].split(b"\n", 1)[0].decode(errors="replace")
        assert token in attempted and v[1] == payload(token), f"{p}: bytes of no write ({v[1][:40]!r}...)"
        assert token not in final, f"{token} is in both {final[token]} and {p}"
        final[token] = p
    empty = [p for p, v in tree.items() if v == ("f", b"")]

    # 4. no successful write vanished without something that could have removed it
    writes = [o for o in ops if o.token and o.err == 0]
    lost, ambiguous = unexplained_losses(writes, ops, set(final))
    print(f"  {len(writes)} successful writes: {len(final)} still there, "
          f"{len(writes) - len(final) - len(lost) - len(ambiguous)} explained by later unlinks/renames/overwrites, "
          f"{len(ambiguous)} moved too often to follow, {len(lost)} lost; {len(empty)} empty files")
    assert not lost, "\n".join(lost[:20]) + "\n" + around(lost[:3], writes, workers)
    for m in mounts:
        assert daemon_errors(m) == [], m.log_text()[-3000:]
