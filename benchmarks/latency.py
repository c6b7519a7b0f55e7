#!/usr/bin/env python3
"""Small-file and streaming work on real mounts, with and without round-trip latency (issue 8).

Why: on DynamoDB every request is a round trip of 5 to 8 ms, and a file whose requests run one
after another pays each of them. DynamoDB Local answers in well under a millisecond, so a
benchmark on it alone hides exactly the cost that users meet. This one mounts dynlog for real
(``dynlog mount -f``) and runs the same work in three columns:

  local      the embedded store (``local:PATH``, SQLite);
  ddb 0 ms   DynamoDB Local behind dynlog.faults.proxy.FaultProxy adding nothing;
  ddb N ms   the same proxy adding N ms to every request (``--latency-ms``, default 8).

Work per column, each stage with a timeout (``--stage-timeout``):
  tar        GNU tar, one thread, as root with --same-owner -p, extracts a generated tree
             (``--files`` files, 100 B to 6 KB, in ``--dirs`` directories, owners, modes and
             mtimes set; deterministic ``--seed``); the tree is then read back and compared;
  rm -rf     of that tree;
  git clone  of a generated local repository (``--git-files`` files) over file://;
  write      one file of ``--mb`` MiB written sequentially in 1 MiB writes, then close;
  cold read  of that file from a fresh mount (the first is unmounted: no client or page cache).

Requests are counted twice. "own" is dynlog's own counters (dynlog/store/metrics.py) in the
mount daemon, read through benchmarks/latency_hook (the daemon is started with that folder on
its PYTHONPATH), less the change feed's and session's requests (operations ``follow`` and
``session``): what the file operations themselves cost. "all" is what the proxy forwarded: every
DynamoDB API request, the stream relay's notices and bulletin polls included, DynamoDB Streams
reads left out (as issue 8 counts them). "all − idle" subtracts what the same mount sent while
idle just before, over as long as the stage took. On the local store "all" is every counted call.

    python benchmarks/latency.py                          # defaults: 400 files, 300-file repo, 256 MiB
    python benchmarks/latency.py --files 5000 --latency-ms 5 --json
    python benchmarks/latency.py --columns local,ddb0 --mb 64

Not a test (tests/bench/test_latency_bench.py runs a tiny configuration). Needs root (FUSE,
tar --same-owner), GNU tar, git, and DynamoDB Local as scripts/install-deps installs it.
docs/SCALING.md ("Round trips and latency") records a run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
HOOK_DIR = Path(__file__).resolve().parent / "latency_hook"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from dynamodb_local import FAKE_ENV, REGION, DynamoDBLocal, unique_table  # noqa: E402
from mounted.conftest import Mount, Mounter, Source, run_cli  # noqa: E402

from dynlog.fuse import mounttab  # noqa: E402

from dynlog.cli.bench import start_latency_proxy  # noqa: E402

# The proxy counts forwarded requests per operation name; these are DynamoDB Streams' (not counted
# in "all", as issue 8 does not count them), and "fault.*" keys are injected faults.
STREAMS_OPS = frozenset({"GetRecords", "GetShardIterator", "DescribeStream", "ListStreams"})
FEED_OPS = ("follow", "session")  # dynlog operations that are not file operations
BASE_MTIME = 1_700_000_000
OWNERS = ((0, 0), (1000, 1000), (1001, 100))
MODES = (0o644, 0o644, 0o600, 0o755, 0o664)


class StageError(RuntimeError):
    """A stage failed or timed out; the column stops there and reports it."""


# -- what is generated ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One member of the generated tree: what tar must restore and what is compared afterwards."""

    path: str  # relative, below the tree's top directory
    is_dir: bool
    mode: int
    uid: int
    gid: int
    mtime: int
    data: bytes = b""


def make_tree(files: int, dirs: int, seed: int, min_size: int = 100, max_size: int = 6000) -> list[Entry]:
    """A deterministic tree: ``dirs`` directories, ``files`` files spread over them round-robin.
    In archive order, as tar -c writes it: each directory, then its files (GNU tar restores a
    directory's mtime when extraction leaves it, so all directories first would lose them)."""
    rng = random.Random(seed)
    per_dir: list[list[Entry]] = [[Entry(f"d{k:02d}", True, 0o755, *OWNERS[k % len(OWNERS)], BASE_MTIME + k)]
                                  for k in range(dirs)]
    for i in range(files):
        uid, gid = OWNERS[rng.randrange(len(OWNERS))]
        per_dir[i % dirs].append(Entry(f"d{i % dirs:02d}/f{i:05d}.dat", False, rng.choice(MODES), uid, gid,
                                       BASE_MTIME + rng.randrange(10**7), rng.randbytes(rng.randint(min_size, max_size))))
    return [e for d in per_dir for e in d]


def write_tar(entries: list[Entry], path: Path, top: str) -> None:
    """A GNU-format tar of the tree under ``top/`` (written by tarfile: no files with foreign
    owners need to exist on the local disk)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        root = tarfile.TarInfo(top)
        root.type, root.mode, root.mtime = tarfile.DIRTYPE, 0o755, BASE_MTIME
        tar.addfile(root)
        for e in entries:
            ti = tarfile.TarInfo(f"{top}/{e.path}")
            ti.mode, ti.uid, ti.gid, ti.mtime = e.mode, e.uid, e.gid, e.mtime
            ti.uname = ti.gname = ""  # numeric owners: the same on every machine
            if e.is_dir:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            else:
                ti.size = len(e.data)
                tar.addfile(ti, io.BytesIO(e.data))


def compare_tree(entries: list[Entry], root: Path) -> list[str]:
    """What differs between the generated tree and the one read back under ``root`` (empty: equal)."""
    bad: list[str] = []
    for e in entries:
        p = root / e.path
        try:
            st = os.lstat(p)
            got = (st.st_mode & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime))
            if got != (e.mode, e.uid, e.gid, e.mtime):
                bad.append(f"{e.path}: mode/uid/gid/mtime {got} != {(e.mode, e.uid, e.gid, e.mtime)}")
            if not e.is_dir and p.read_bytes() != e.data:
                bad.append(f"{e.path}: contents differ")
        except OSError as err:
            bad.append(f"{e.path}: {err}")
    want = {e.path for e in entries}
    have = {str(p.relative_to(root)) for p in root.rglob("*")}
    bad += [f"{x}: unexpected" for x in sorted(have - want)]
    return bad


def make_git_repo(path: Path, files: int, seed: int, env: dict[str, str]) -> str:
    """A repository of ``files`` text files (about 30 a directory) in one commit; returns HEAD."""
    rng = random.Random(seed + 1)
    path.mkdir(parents=True)
    for i in range(files):
        f = path / "src" / f"mod{i // 30:03d}" / f"file{i:05d}.py"
        f.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"def f{i}_{k}(x):\n    return x * {rng.randrange(10**6)}\n" for k in range(rng.randint(2, 60))]
        f.write_text("".join(lines))
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "generated"]):
        subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True, timeout=120)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, env=env, check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()


# -- counting ------------------------------------------------------------------------------------------
class Counters:
    """The mount daemon's own request counters, read through benchmarks/latency_hook."""

    def __init__(self, ctl: Path) -> None:
        self.ctl = ctl

    def read(self, timeout: float = 10.0) -> dict[str, int]:
        token = uuid.uuid4().hex
        post_request(self.ctl, token)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = json.loads(self.ctl.read_text())
            except (OSError, ValueError):
                got = {}
            if got.get("token") == token:
                if got.get("error"):
                    raise StageError(f"the counter hook failed in the daemon: {got['error']}")
                return {k: int(v) for k, v in got["counts"].items()}
            time.sleep(0.01)
        raise StageError("the mount daemon did not answer the counter request (benchmarks/latency_hook)")


def post_request(ctl: Path, token: str) -> None:
    """Ask the hook for ``ctl`` by writing ``CTL.req``, whole or not at all: the hook takes the
    file as soon as it exists, and one taken between its creation and the write of the token
    would be answered with an empty token, leaving the asker to wait for an answer that never
    comes."""
    tmp = ctl.with_name(ctl.name + ".reqtmp")
    tmp.write_text(token)
    os.replace(tmp, str(ctl) + ".req")


@dataclass
class Snapshot:
    t: float
    own: dict[str, int]  # "op|call" -> requests, dynlog's counters
    proxy: dict[str, int]  # X-Amz-Target -> requests forwarded


def _diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b) if b.get(k, 0) != a.get(k, 0)}


@dataclass
class Requests:
    """The requests one stage made (or an idle window), summed in the ways the table shows."""

    seconds: float
    own: int
    own_by_call: dict[str, int]
    feed: int  # dynlog's own counters for the change feed and session (follow, session)
    all: int | None  # at the proxy: DynamoDB API without Streams; local store: every counted call
    all_by_call: dict[str, int] = field(default_factory=dict)
    streams: int = 0

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot, via_proxy: bool) -> "Requests":
        own_d = _diff(a.own, b.own)
        own_by_call: dict[str, int] = {}
        own = feed = 0
        for key, n in own_d.items():
            op, _, call = key.partition("|")
            if op in FEED_OPS:
                feed += n
            else:
                own += n
                own_by_call[call] = own_by_call.get(call, 0) + n
        if not via_proxy:
            return cls(b.t - a.t, own, own_by_call, feed, own + feed)
        px = _diff(a.proxy, b.proxy)
        api = {k: n for k, n in px.items() if k not in STREAMS_OPS and not k.startswith("fault.")}
        streams = sum(n for k, n in px.items() if k in STREAMS_OPS)
        return cls(b.t - a.t, own, own_by_call, feed, sum(api.values()), api, streams)


class Probe:
    """Snapshots of one mount's counters and, on DynamoDB, the proxy's."""

    def __init__(self, counters: Counters, proxy: Any | None) -> None:
        self.counters = counters
        self.proxy = proxy

    def snap(self) -> Snapshot:
        proxy = {str(k): int(v) for k, v in dict(self.proxy.counts).items()} if self.proxy is not None else {}
        return Snapshot(time.monotonic(), self.counters.read(), proxy)

    def settle(self, quiet: float = 0.3, limit: float = 15.0) -> Snapshot:
        """Wait until the file operations' counters stop moving (a release the kernel sends after
        close returns still belongs to the stage), then snapshot."""
        last = self.snap()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.snap()
            if Requests.between(last, now, False).own == 0:
                return now
            last = now
        return last


# -- running things ------------------------------------------------------------------------------------
def thread_ids(pid: int) -> list[int]:
    """The threads of ``pid`` now (a thread may end before the caller gets to it)."""
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def pin_process(pid: int, cpu: int) -> None:
    """Keep every thread of ``pid`` on ``cpu``. Threads it starts later inherit the affinity of
    the thread that starts them (libfuse's workers, dynlog's own), so all of them stay there."""
    for tid in thread_ids(pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {cpu})


CPU_HELP = ("run the measured mount's daemon and each measured command (tar, rm, git, the I/O) on this "
            "one CPU: on a VM, a wake-up across CPUs costs more than dynlog's own work a request")


def cpu_arg(text: str) -> int:
    """--cpu's argument: a CPU this process may run on (checked before anything is mounted)."""
    allowed = sorted(os.sched_getaffinity(0))
    try:
        cpu = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU number: {text!r}") from None
    if cpu not in allowed:
        raise argparse.ArgumentTypeError(f"CPU {cpu} is not one this process may use ({', '.join(map(str, allowed))})")
    return cpu


def count_arg(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least`` (0 for a stage that may be left out)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if n < least:
            raise argparse.ArgumentTypeError(f"{n} is less than {least}")
        return n
    return parse


def process_cpus(pid: int) -> list[int]:
    """The CPUs that any thread of ``pid`` may run on (what --cpu set, or every CPU)."""
    cpus: set[int] = set()
    for tid in thread_ids(pid):
        with contextlib.suppress(ProcessLookupError):
            cpus |= os.sched_getaffinity(tid)
    return sorted(cpus)


def placement(cpu: int | None) -> str:
    return "free placement" if cpu is None else f"daemon and commands on CPU {cpu}"


def abort_mount(path: str) -> None:
    """Abort a mount's FUSE connection: a process waiting on a request the daemon has already
    taken cannot be killed (its wait is uninterruptible) until the request ends, and aborting
    ends them all at once with ENOTCONN. The mount is then removed on the way out."""
    entry = mounttab.find_mount(path)
    if entry is not None:
        mounttab.abort_connection(entry)


def run_timed(cmd: list[str], timeout: float, what: str, hung: Callable[[], None] = lambda: None,
              **kw: Any) -> tuple[float, str]:
    """Run ``cmd`` (a stage's work); its wall time and stdout, or StageError on failure. At the
    timeout the command is killed and ``hung()`` called (it aborts the mount), then reaped."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        hung()
        proc.communicate(timeout=60)
        raise StageError(f"{what}: timed out after {timeout:.0f} s") from None
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise StageError(f"{what}: exit {proc.returncode}: {(err or out).strip()[-500:]}")
    return dt, out


def in_child(fn: Callable[[], Any], timeout: float, what: str, hung: Callable[[], None] = lambda: None) -> Any:
    """``fn()`` in a forked child, so that a hung mount cannot hang the benchmark: at the timeout
    the child is killed and ``hung()`` called (it aborts the mount), then reaped."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            send.send((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the parent
            send.send((False, f"{type(e).__name__}: {e}"))

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    try:
        if not recv.poll(timeout):
            proc.kill()
            hung()
            raise StageError(f"{what}: timed out after {timeout:.0f} s")
        ok, value = recv.recv()
    finally:
        proc.join(60)
    if not ok:
        raise StageError(f"{what}: {value}")
    return value


# The sequential I/O runs in a child process so that a hung mount cannot hang the benchmark: the
# child is killed at the stage's timeout and the mount aborted. It prints seconds and sha256.
IO_SCRIPT = r"""
import hashlib, json, os, random, sys, time
mode, path, mb, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
h = hashlib.sha256()
if mode == "write":
    chunk = bytearray(random.Random(seed).randbytes(1 << 20))
    t0 = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        for k in range(mb):
            chunk[:8] = k.to_bytes(8, "little")  # every MiB differs
            f.write(chunk)
            h.update(chunk)
    dt = time.perf_counter() - t0
else:
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "sha256": h.hexdigest(), "bytes": os.stat(path).st_size}))
"""


@dataclass
class Config:
    files: int
    dirs: int
    git_files: int
    mb: int
    seed: int
    stage_timeout: float
    idle_seconds: float
    warmup_files: int


@dataclass
class Column:
    """One column of the table: a store, the latency in front of it, and what was measured."""

    name: str
    latency_ms: float | None  # None: the local store
    mb: int
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""


class Bench:
    """Runs the stages of one column on fresh mounts of one source; always unmounts."""

    def __init__(self, cfg: Config, work: Path, tree: list[Entry], tar_path: Path, repo: Path, head: str,
                 git_env: dict[str, str]) -> None:
        self.cfg, self.work, self.tree, self.tar_path = cfg, work, tree, tar_path
        self.repo, self.head, self.git_env = repo, head, git_env
        self._last_io: dict[str, Any] = {}
        self._mnt = ""  # the mount the stages run on now
        self.options = ""  # mount options (-o) of every mount (benchmarks/writebehind.py sets writebehind)
        # --cpu: run the measured mount's daemon and every measured command on this one CPU
        # (docs/SCALING.md, "Where the caller and the daemon run"); None: where the scheduler likes
        self.cpu: int | None = None

    def timed(self, cmd: list[str], what: str, **kw: Any) -> tuple[float, str]:
        """run_timed with the stage timeout, aborting the current mount if the command hangs."""
        if self.cpu is not None:
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        return run_timed(cmd, self.cfg.stage_timeout, what, lambda: abort_mount(self._mnt), **kw)

    def child(self, fn: Callable[[], Any], what: str) -> Any:
        """in_child with the stage timeout, aborting the current mount if it hangs."""
        return in_child(fn, self.cfg.stage_timeout, what, lambda: abort_mount(self._mnt))

    @contextlib.contextmanager
    def mounted(self, mounter: Mounter, source: Source, proxy: Any | None) -> Iterator[tuple[Mount, Probe]]:
        """A fresh ``dynlog mount -f`` of ``source`` with its counters readable. After the stages it
        is unmounted cleanly (a failure to do so is an error); after a failure it is aborted and its
        daemon killed, and the stage's error is the one reported."""
        ctl = self.work / f"counters-{uuid.uuid4().hex[:8]}.json"
        env = {**os.environ, "DYNLOG_BENCH_COUNTERS": str(ctl),
               # REPO too: the daemon (and the hook, which imports dynlog before ``-m`` puts the
               # working directory on sys.path) must run this checkout, not the installed one
               "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOK_DIR), str(REPO), os.environ.get("PYTHONPATH")]))}
        m = mounter.mount(source, options=self.options, env=env, timeout=max(60.0, self.cfg.stage_timeout / 4))
        self._mnt = m.path
        done = False
        try:
            if self.cpu is not None:
                pin_process(m.proc.pid, self.cpu)
            yield m, Probe(Counters(ctl), proxy)
            done = True
        except StageError as e:  # what the daemon said, if anything, is usually the reason
            said = m.log_text()[-1500:].strip()
            raise StageError(f"{e}\n--- the mount's log, last lines:\n{said}" if said else str(e)) from e
        finally:
            try:
                if done:
                    mounter.unmount(m, timeout=60.0)
            finally:
                mounter.cleanup()  # anything left: unmount, else abort and detach; kill the daemon

    def run(self, col: Column, source: Source, proxy: Any | None, warm_up: bool = False) -> None:
        """All stages of one column. ``warm_up``: first extract and remove an unmeasured tree, so
        that DynamoDB Local's JVM has compiled its hot paths (real DynamoDB has no such start)."""
        mounter = Mounter(self.work)
        via_proxy = proxy is not None
        with self.mounted(mounter, source, proxy) as (m, probe):
            mnt = Path(m.path)
            if warm_up and self.cfg.warmup_files:
                t0 = time.monotonic()
                self.timed(["tar", "-x", "-f", str(self.work / "warmup.tar"), "-C", str(mnt)], "warm-up tar -x")
                self.timed(["rm", "-rf", str(mnt / "warmup")], "warm-up rm -rf")
                col.stages["warmup"] = {"files": self.cfg.warmup_files, "seconds": time.monotonic() - t0}
            time.sleep(1.0)  # the relay takes its lease, the feed settles
            a = probe.settle()
            time.sleep(self.cfg.idle_seconds)
            idle = Requests.between(a, probe.snap(), via_proxy)
            col.stages["idle"] = {**asdict(idle), "per_second": _rate(idle.all, idle.seconds)}

            def stage(name: str, count: int, work: Callable[[], float]) -> dict[str, Any]:
                before = probe.snap()
                seconds = work()
                r = Requests.between(before, probe.settle(), via_proxy)
                out = {**asdict(r), "count": count, "work_seconds": seconds, "per_second": count / seconds,
                       "own_per": r.own / count, "all_per": _per(r.all, count),
                       "all_minus_idle_per": _per(_minus_idle(r, idle), count)}
                col.stages[name] = out
                return out

            self.tree_stages(col, mnt, stage)
            if not col.mb:
                return
            big = mnt / "big.bin"
            w = stage("write", col.mb, lambda: self._io("write", big, col.mb))
            w["mb_per_s"] = col.mb * (1 << 20) / w["work_seconds"] / 1e6
            col.stages["write"]["sha256"] = self._last_io["sha256"]
        with self.mounted(mounter, source, proxy) as (m, probe):  # a fresh mount: nothing cached
            before = probe.settle()
            dt = self._io("read", Path(m.path) / "big.bin", col.mb)
            r = Requests.between(before, probe.settle(), via_proxy)
            if self._last_io["sha256"] != col.stages["write"]["sha256"]:
                raise StageError("cold read: the bytes read differ from those written")
            col.stages["read"] = {**asdict(r), "count": col.mb, "work_seconds": dt,
                                  "mb_per_s": col.mb * (1 << 20) / dt / 1e6, "own_per": r.own / col.mb,
                                  "all_per": _per(r.all, col.mb), "verified": True}

    def tree_stages(self, col: Column, mnt: Path, stage: Callable[[str, int, Callable[[], float]], Any]) -> None:
        """tar -x of the tree (read back and compared), rm -rf of it, and git clone of the
        repository (HEAD checked), each through ``stage(name, count, work)``."""
        stage("tar", self.cfg.files, lambda: self.timed(
            ["tar", "-x", "--same-owner", "-p", "-f", str(self.tar_path), "-C", str(mnt)], "tar -x")[0])
        bad = self.child(lambda: compare_tree(self.tree, mnt / "tree"), "reading the tree back")
        col.stages["tar"]["verified"] = not bad
        if bad:
            raise StageError(f"the extracted tree differs from the source: {bad[:5]}")
        stage("rm", len(self.tree) + 1, lambda: self.timed(["rm", "-rf", str(mnt / "tree")], "rm -rf")[0])
        if self.child(lambda: os.path.exists(mnt / "tree"), "checking rm -rf"):
            raise StageError("rm -rf left the tree behind")
        if not self.cfg.git_files:
            return

        def clone() -> float:
            dt, _ = self.timed(["git", "clone", "-q", f"file://{self.repo}", str(mnt / "clone")], "git clone",
                               env=self.git_env)
            got = self.timed(["git", "-C", str(mnt / "clone"), "rev-parse", "HEAD"], "git rev-parse",
                             env=self.git_env)[1].strip()
            if got != self.head:
                raise StageError(f"git clone: HEAD {got} != {self.head}")
            return dt

        stage("git", self.cfg.git_files, clone)

    def _io(self, mode: str, path: Path, mb: int) -> float:
        _, out = self.timed([sys.executable, "-c", IO_SCRIPT, mode, str(path), str(mb), str(self.cfg.seed)],
                            f"sequential {mode}")
        self._last_io = json.loads(out)
        if self._last_io["bytes"] != mb << 20:
            raise StageError(f"sequential {mode}: file has {self._last_io['bytes']} bytes, not {mb << 20}")
        return float(self._last_io["seconds"])


def _rate(n: int | None, seconds: float) -> float | None:
    return None if n is None or not seconds else n / seconds


def _per(n: int | None, count: int) -> float | None:
    return None if n is None else n / count


def _minus_idle(r: Requests, idle: Requests) -> int | None:
    if r.all is None or idle.all is None or not idle.seconds:
        return None
    return round(r.all - idle.all * r.seconds / idle.seconds)


# -- columns -------------------------------------------------------------------------------------------
def parse_columns(spec: str, latency_ms: float) -> list[float | None]:
    """``local,ddb0,ddb8`` -> [None, 0.0, 8.0]; a bare ``ddb`` takes ``--latency-ms``."""
    out: list[float | None] = []
    for name in filter(None, (x.strip() for x in spec.split(","))):
        if name == "local":
            out.append(None)
        elif name.startswith("ddb"):
            out.append(float(name[3:] or latency_ms))
        else:
            raise SystemExit(f"--columns: {name!r} is not local, ddb or ddbN (N ms)")
    return out


def column_name(latency_ms: float | None) -> str:
    return "local store" if latency_ms is None else f"DynamoDB Local, {latency_ms:g} ms"


def drop_tables(ddb: DynamoDBLocal, table: str) -> None:
    """Free DynamoDB Local's memory (it holds every table in its heap) once a column is done."""
    client = ddb.client()
    for name in (table, table + "Blocks"):
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_table(TableName=name)


def on_fresh_source(latency_ms: float | None, work: Path, ddb: Callable[[], DynamoDBLocal],
                    fn: Callable[[Source, Any | None], None]) -> None:
    """mkfs a fresh source (the local store for ``latency_ms`` None, else a new table behind a
    latency proxy) and run ``fn(source, proxy)`` on it; the proxy and tables go afterwards."""
    if latency_ms is None:
        src = Source(f"local:{work / f'local-{uuid.uuid4().hex[:6]}.db'}", None, "sqlite")
        _mkfs(src)
        fn(src, None)
        return
    server = ddb()
    table = unique_table()
    proxy = start_latency_proxy(server.endpoint, latency_ms)
    try:
        _mkfs(Source(f"aws:{REGION}/{table}", server.endpoint, "dynamodb"))  # no need to wait on mkfs
        fn(Source(f"aws:{REGION}/{table}", proxy.endpoint, "dynamodb"), proxy)
    finally:
        proxy.stop()
        drop_tables(server, table)


def run_column(bench: Bench, col: Column, work: Path, ddb: Callable[[], DynamoDBLocal], warm_up: bool) -> None:
    """mkfs a fresh source for the column, then run its stages (errors end up in ``col.error``)."""
    try:
        on_fresh_source(col.latency_ms, work, ddb, lambda src, proxy: bench.run(col, src, proxy, warm_up and proxy is not None))
    except (StageError, AssertionError, OSError, subprocess.SubprocessError) as e:
        col.error = f"{type(e).__name__}: {e}".strip()[:4000]


def _mkfs(src: Source) -> None:
    res = run_cli(*src.global_args(), "mkfs", src.source, timeout=120)
    if res.returncode != 0:
        raise StageError(f"mkfs {src.source}: {res.stderr.strip()}")


# -- output --------------------------------------------------------------------------------------------
def _num(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _by_call(st: dict[str, Any]) -> str:
    calls = sorted(st["own_by_call"].items(), key=lambda kv: -kv[1])
    return ", ".join(f"{c} {n / st['count']:.2f}" for c, n in calls) or "–"


def _mbs(col: Column, st: dict[str, Any], default_mb: int) -> str:
    return _num(st["mb_per_s"]) + ("" if col.mb == default_mb else f" ({col.mb} MiB)")


def format_table(cols: list[Column], cfg: Config) -> str:
    """The Markdown table: one row per figure, one column per store/latency."""
    rows: list[Row] = [
        ("tar", "requests per file, tar: own (dynlog's counters)", lambda c, s: _num(s["own_per"], 2)),
        ("tar", "requests per file, tar: all at the proxy", lambda c, s: _num(s["all_per"], 2)),
        ("tar", "requests per file, tar: all − idle", lambda c, s: _num(s["all_minus_idle_per"], 2)),
        ("tar", "own requests per file, tar, by call", lambda c, s: _by_call(s)),
        ("tar", f"tar -x of {cfg.files} files: files/s", lambda c, s: _num(s["per_second"])),
        ("rm", "requests per entry, rm -rf: own", lambda c, s: _num(s["own_per"], 2)),
        ("rm", "requests per entry, rm -rf: all at the proxy", lambda c, s: _num(s["all_per"], 2)),
        ("rm", f"rm -rf of {cfg.files + cfg.dirs + 1} entries: entries/s", lambda c, s: _num(s["per_second"])),
        ("git", f"git clone of {cfg.git_files} files: seconds", lambda c, s: _num(s["work_seconds"], 2)),
        ("git", "requests per file, git clone: own / all", lambda c, s: f"{_num(s['own_per'])} / {_num(s['all_per'])}"),
        ("write", f"sequential write, {cfg.mb} MiB: MB/s", lambda c, s: _mbs(c, s, cfg.mb)),
        ("read", "cold read (fresh mount): MB/s", lambda c, s: _mbs(c, s, cfg.mb)),
        ("idle", "idle mount: requests/s, all", lambda c, s: _num(s["per_second"])),
    ]
    return render_table(cols, rows, lambda c: column_name(c.latency_ms))


Row = tuple[str, str, Callable[[Any, dict[str, Any]], str]]  # (stage, label, cell(column, stage's figures))


def render_table(cols: list[Any], rows: list[Row], title: Callable[[Any], str]) -> str:
    """A Markdown table, one row per figure and one column per column; errors as notes below."""
    lines = ["| | " + " | ".join(title(c) for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for stage, label, cell in rows:
        vals = [cell(c, c.stages[stage]) if stage in c.stages else "–" for c in cols]
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    notes = [f"- {title(c)}: {c.error}" for c in cols if c.error]
    return "\n".join(lines + ([""] + notes if notes else []))


def isolate_aws_env() -> None:
    """Fake credentials, no profile, no endpoint from the environment: only DynamoDB Local."""
    os.environ.update(FAKE_ENV)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS"):
        os.environ.pop(var, None)


class LazyDDB:
    """DynamoDB Local, started on first use (or someone else's at ``endpoint``: only its address
    is used, never stopped)."""

    def __init__(self, endpoint: str | None) -> None:
        self.endpoint = endpoint
        self.server: DynamoDBLocal | None = None

    def __call__(self) -> DynamoDBLocal:
        if self.server is None:
            self.server = DynamoDBLocal()
            if self.endpoint:
                self.server.port = int(self.endpoint.rsplit(":", 1)[1].strip("/"))
            else:
                self.server.start()
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.close()  # with an endpoint it started nothing: this only drops its log file


def git_env(work: Path) -> dict[str, str]:
    """git's environment for the generated repository: no user config, fixed names and dates."""
    return {**os.environ, "HOME": str(work), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def commit() -> str:
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return res.stdout.strip() or "unknown"


def bench_parser(doc: str, stage_timeout: float) -> argparse.ArgumentParser:
    """The argument parser of a benchmark on real mounts (this one, writebehind.py, walk.py), with
    the options they all take: how long a stage may take, whose DynamoDB Local, where the JSON goes."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage-timeout", type=float, default=stage_timeout,
                    help=f"seconds a stage may take (default {stage_timeout:g})")
    ap.add_argument("--ddb-endpoint", default=None, help="use this DynamoDB Local instead of starting one")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON to this file")
    return ap


@contextlib.contextmanager
def bench_session(ddb_endpoint: str | None, prefix: str) -> Iterator[tuple[Path, "LazyDDB"]]:
    """What a benchmark on real mounts runs in: an environment that reaches only DynamoDB Local,
    a scratch directory, and DynamoDB Local started on first use (stopped before the directory goes)."""
    isolate_aws_env()
    ddb = LazyDDB(ddb_endpoint)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            yield Path(tmp), ddb
        finally:
            ddb.close()


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, 600.0)
    ap.add_argument("--files", type=count_arg(1), default=400, help="files in the tar tree (default 400)")
    ap.add_argument("--dirs", type=count_arg(1), default=10, help="directories in the tar tree (default 10)")
    ap.add_argument("--git-files", type=count_arg(0), default=300,
                    help="files in the git repository (default 300; 0: no git clone)")
    ap.add_argument("--mb", type=count_arg(0), default=256,
                    help="MiB written then read cold (default 256; 0: no sequential I/O)")
    ap.add_argument("--latency-mb", type=count_arg(0), default=None,
                    help="MiB for the columns with injected latency (default: --mb)")
    ap.add_argument("--latency-ms", type=float, default=8.0, help="injected per-request latency (default 8)")
    ap.add_argument("--columns", default=None, help="comma-separated local, ddb0, ddbN (default local,ddb0,ddbLATENCY)")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--idle-seconds", type=float, default=3.0, help="idle window measured before the stages")
    ap.add_argument("--warmup-files", type=count_arg(0), default=200,
                    help="files extracted, unmeasured, before the first DynamoDB column (JVM warm-up; 0: none)")
    ap.add_argument("--cpu", type=cpu_arg, default=None, help=CPU_HELP)
    ap.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    args = ap.parse_args(argv)
    cfg = Config(args.files, args.dirs, args.git_files, args.mb, args.seed, args.stage_timeout, args.idle_seconds,
                 args.warmup_files)
    latencies = parse_columns(args.columns or f"local,ddb0,ddb{args.latency_ms:g}", args.latency_ms)
    started = time.monotonic()
    cols: list[Column] = []
    with bench_session(args.ddb_endpoint, "dynlog-latency-") as (work, ddb):
        tree = make_tree(cfg.files, cfg.dirs, cfg.seed)
        write_tar(tree, work / "tree.tar", "tree")
        write_tar(make_tree(cfg.warmup_files, cfg.dirs, cfg.seed + 100), work / "warmup.tar", "warmup")
        genv = git_env(work)
        head = make_git_repo(work / "repo", cfg.git_files, cfg.seed, genv) if cfg.git_files else ""
        bench = Bench(cfg, work, tree, work / "tree.tar", work / "repo", head, genv)
        bench.cpu = args.cpu
        for lat in latencies:
            col = Column(column_name(lat), lat, args.latency_mb if lat and args.latency_mb else cfg.mb)
            t0 = time.monotonic()
            run_column(bench, col, work, ddb, warm_up=lat is not None and ddb.server is None)
            col.stages.setdefault("meta", {})["seconds"] = time.monotonic() - t0
            cols.append(col)
            print(f"[latency bench] {col.name}: {time.monotonic() - t0:.0f} s{' — ' + col.error if col.error else ''}",
                  file=sys.stderr, flush=True)
    failed = any(c.error for c in cols)
    doc = json.dumps({"commit": commit(), "config": asdict(cfg), "argv": sys.argv[1:] if argv is None else argv,
                      "seconds": time.monotonic() - started, "columns": [asdict(c) for c in cols]}, indent=1)
    if args.json_out:
        args.json_out.write_text(doc)
    if args.json:
        print(doc)
    else:
        print(f"commit {commit()}, {os.cpu_count()} cores, {placement(args.cpu)}, "
              f"{time.monotonic() - started:.0f} s\n")
        print(format_table(cols, cfg))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
