#!/usr/bin/env python3
"""Write-behind directories on real mounts (issue 9): tar, rm -rf and git clone with
``-o writebehind`` against the same work without it, with and without round-trip latency.

Why a benchmark of its own: write-behind exists to take round trips off the path of a
single-threaded tar, rm -rf or git checkout, so what it must show is how far a mount at 8 ms a
request gets from the local store, and where the time that is left goes. It reuses the pieces
of benchmarks/latency.py (generated tree and repository, real ``dynlog mount -f``, the mount's
own request counters through benchmarks/latency_hook, the latency proxy) and adds:

  - the mount daemon's CPU time per file (``/proc/PID/stat``): on a 2-core machine with Python
    FUSE, the daemon's own CPU is the floor under files/s once no round trip is left on the path;
  - the FUSE operations per file (dynlog's operation counters): what the kernel asks per file;
  - write requests per 1,000 files, dynlog's own (file operations and write-behind batches) and
    all at the proxy (the stream relay's notices and session heartbeats included);
  - how soon a second mount (write-behind off) sees a file created in a leased directory: by
    listing the directory repeatedly (no ask: the batch must commit and the change feed carry
    it), and by looking the name up (an ask: the holder flushes and releases at once).

Columns (``--columns``): ``local``, ``ddb0``, ``ddbN`` (N ms injected), each with ``+wb`` for
``-o writebehind``; default ``local,local+wb,ddb0+wb,ddb8+wb,ddb8``.

    python benchmarks/writebehind.py                       # 5,000 files in 10 directories, 2,000-file repo
    python benchmarks/writebehind.py --files 1000 --git-files 300 --columns local+wb,ddb8+wb

Not a test (tests/writebehind/test_bench.py runs a tiny configuration). Needs root, GNU tar, git
and DynamoDB Local as scripts/install-deps installs it. docs/SCALING.md ("Write-behind
directories, measured") records a run.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency as L  # noqa: E402  (puts the repository and tests/ on sys.path)
from latency import (  # noqa: E402
    FEED_OPS, Bench, Config, DynamoDBLocal, Mounter, Probe, Source, StageError, commit, compare_tree, make_git_repo,
    make_tree, write_tar,
)

WRITE_CALLS = ("PutItem", "TransactWriteItems", "BatchWriteItem", "UpdateItem", "DeleteItem")


@dataclass
class Column(L.Column):
    """One column: a store, its latency, whether write-behind is on, and what was measured."""

    writebehind: bool = False


def parse_columns(spec: str) -> list[tuple[str, float | None, bool]]:
    """``local,ddb8+wb`` -> [("local", None, False), ("ddb8+wb", 8.0, True)]."""
    out: list[tuple[str, float | None, bool]] = []
    for name in filter(None, (x.strip() for x in spec.split(","))):
        base, wb = (name[:-3], True) if name.endswith("+wb") else (name, False)
        if base == "local":
            out.append((name, None, wb))
        elif base.startswith("ddb") and base[3:].replace(".", "", 1).isdigit():
            out.append((name, float(base[3:]), wb))
        else:
            raise SystemExit(f"--columns: {name!r} is not local, ddbN, or either with +wb")
    return out


def title(col: Column) -> str:
    where = "local store" if col.latency_ms is None else f"DynamoDB Local, {col.latency_ms:g} ms"
    return f"{where}, {'writebehind' if col.writebehind else 'sync'}"


def daemon_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def operation_counts(ctl: Path, timeout: float = 60.0) -> dict[str, int]:
    """The daemon's file-system operation counters (dynlog.store.metrics.OPERATIONS), written
    by benchmarks/latency_hook next to its request counters."""
    path = Path(str(ctl) + ".ops")
    token = uuid.uuid4().hex
    L.post_request(path, token)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = json.loads(path.read_text())
        except (OSError, ValueError):
            got = {}
        if got.get("token") == token:
            return {k: int(v) for k, v in got["ops"].items()}
        time.sleep(0.01)
    raise StageError("the mount daemon did not answer the operation-count request")


class WBBench(Bench):
    """The stages of one column on a fresh mount (and a second one for propagation)."""

    rounds = 5  # of the propagation measurement (--propagation-rounds)

    def run_column(self, col: Column, source: Source, proxy: Any | None) -> None:
        self.options = "writebehind" if col.writebehind else ""
        mounter = Mounter(self.work)
        via_proxy = proxy is not None
        with self.mounted(mounter, source, proxy) as (m, probe):
            mnt = Path(m.path)
            pid = m.proc.pid
            if col.latency_ms is not None and self.cfg.warmup_files:
                self.timed(["tar", "-x", "-f", str(self.work / "warmup.tar"), "-C", str(mnt)], "warm-up tar -x")
                self.timed(["rm", "-rf", str(mnt / "warmup")], "warm-up rm -rf")
            time.sleep(1.0)

            def stage(name: str, count: int, work: Callable[[], float]) -> dict[str, Any]:
                ops0, cpu0 = operation_counts(probe.counters.ctl), daemon_cpu(pid)
                before = probe.snap()
                seconds = work()
                after = probe.settle()
                cpu = daemon_cpu(pid) - cpu0
                ops1 = operation_counts(probe.counters.ctl)
                r = L.Requests.between(before, after, via_proxy)
                own_writes = sum(n for c, n in r.own_by_call.items() if c in WRITE_CALLS)
                all_writes = (sum(n for c, n in r.all_by_call.items() if c in WRITE_CALLS) if via_proxy
                              else own_writes + _feed_writes(before, after))
                by_op: dict[str, int] = {}
                for key, n in L._diff(before.own, after.own).items():
                    op, _, call = key.partition("|")
                    if op not in FEED_OPS:
                        by_op[key] = n
                fuse_ops = {k: ops1.get(k, 0) - ops0.get(k, 0) for k in ops1
                            if k not in FEED_OPS and ops1.get(k, 0) != ops0.get(k, 0)}
                out = {"count": count, "seconds": seconds, "per_second": count / seconds,
                       "cpu_seconds": cpu, "cpu_ms_per": 1000 * cpu / count,
                       "daemon_cpus": L.process_cpus(pid),
                       "own": r.own, "own_per": r.own / count, "own_by_call": r.own_by_call, "own_by_op": by_op,
                       "own_writes_per_1000": 1000 * own_writes / count,
                       "all_writes_per_1000": 1000 * all_writes / count, "all_by_call": r.all_by_call,
                       "fuse_ops_per": {k: round(v / count, 2) for k, v in sorted(fuse_ops.items())}}
                col.stages[name] = out
                return out

            self.tree_stages(col, mnt, stage)
            if col.writebehind:
                col.stages["propagation"] = self._propagation(mounter, source, mnt)

    def _propagation(self, mounter: Mounter, source: Source, mnt: Path) -> dict[str, Any]:
        """A second mount (write-behind off) and a file created in a directory the first mount
        holds a lease on: how long until the second lists it (no ask), and how long its lookup
        of the name takes (it asks the holder, which flushes and releases)."""
        other = mounter.mount(source)
        try:
            def measure() -> dict[str, list[float]]:
                listed: list[float] = []
                looked: list[float] = []
                for r in range(self.rounds):
                    for how, out in (("list", listed), ("lookup", looked)):
                        d = mnt / f"prop-{how}-{r}"
                        d.mkdir()
                        for i in range(12):  # the lease is taken, then this file is acknowledged under it
                            (d / f"pad{i}").write_bytes(b"p")
                        there = Path(other.path) / d.name / "new"
                        (d / "new").write_bytes(b"n")
                        t0 = time.monotonic()
                        if how == "list":
                            while "new" not in os.listdir(there.parent):
                                if time.monotonic() - t0 > 10:
                                    raise StageError("the second mount did not list the file within 10 s")
                                time.sleep(0.005)
                        else:
                            os.stat(there)  # a miss in a leased directory: asks, waits for the release
                        out.append(time.monotonic() - t0)
                        time.sleep(1.5)  # the lease is released (idle) and cools down before the next round
                return {"list_s": listed, "lookup_s": looked}

            got = self.child(measure, "propagation to a second mount")
        finally:
            mounter.unmount(other, timeout=60.0)
        return {k: {"median": statistics.median(v), "max": max(v), "all": v} for k, v in got.items()}


def _feed_writes(a: L.Snapshot, b: L.Snapshot) -> int:
    """Writes of the change feed and session on the local store (no proxy counts them there)."""
    return sum(n for key, n in L._diff(a.own, b.own).items()
               if key.partition("|")[0] in FEED_OPS and key.partition("|")[2] in WRITE_CALLS)


def run_column(bench: WBBench, col: Column, work: Path, ddb: Callable[[], DynamoDBLocal]) -> None:
    try:
        L.on_fresh_source(col.latency_ms, work, ddb, lambda src, proxy: bench.run_column(col, src, proxy))
    except (StageError, AssertionError, OSError) as e:
        col.error = f"{type(e).__name__}: {e}".strip()[:4000]


def _num(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _calls(st: dict[str, Any]) -> str:
    calls = sorted(st["own_by_call"].items(), key=lambda kv: -kv[1])
    return ", ".join(f"{c} {1000 * n / st['count']:.0f}" for c, n in calls) or "–"


def _prop(col: Column, key: str) -> str:
    p = col.stages.get("propagation", {}).get(key)
    return "–" if p is None else f"{1000 * p['median']:.0f} ({1000 * p['max']:.0f})"


def format_table(cols: list[Column], cfg: Config) -> str:
    rows: list[L.Row] = [
        ("tar", f"tar -x of {cfg.files} files: files/s", lambda c, s: _num(s["per_second"])),
        ("tar", "tar: daemon CPU ms per file", lambda c, s: _num(s["cpu_ms_per"], 2)),
        ("tar", "tar: FUSE operations per file", lambda c, s: _num(sum(s["fuse_ops_per"].values()), 1)),
        ("tar", "tar: write requests per 1,000 files, own", lambda c, s: _num(s["own_writes_per_1000"], 0)),
        ("tar", "tar: write requests per 1,000 files, all", lambda c, s: _num(s["all_writes_per_1000"], 0)),
        ("tar", "tar: own requests per 1,000 files, by call", lambda c, s: _calls(s)),
        ("rm", f"rm -rf of {cfg.files + cfg.dirs + 1} entries: entries/s", lambda c, s: _num(s["per_second"])),
        ("rm", "rm -rf: daemon CPU ms per entry", lambda c, s: _num(s["cpu_ms_per"], 2)),
        ("rm", "rm -rf: write requests per 1,000 entries, own", lambda c, s: _num(s["own_writes_per_1000"], 0)),
        ("git", f"git clone of {cfg.git_files} files: seconds", lambda c, s: _num(s["seconds"], 2)),
        ("git", "git clone: daemon CPU seconds", lambda c, s: _num(s["cpu_seconds"], 2)),
        ("git", "git clone: write requests per 1,000 files, own", lambda c, s: _num(s["own_writes_per_1000"], 0)),
        ("propagation", "second mount lists a new file, ms: median (max)", lambda c, s: _prop(c, "list_s")),
        ("propagation", "second mount looks it up (asks), ms: median (max)", lambda c, s: _prop(c, "lookup_s")),
    ]
    return L.render_table(cols, rows, title)


def main(argv: list[str] | None = None) -> int:
    ap = L.bench_parser(__doc__, 900.0)
    ap.add_argument("--files", type=L.count_arg(1), default=5000, help="files in the tar tree (default 5000)")
    ap.add_argument("--dirs", type=L.count_arg(1), default=10, help="directories in the tar tree (default 10)")
    ap.add_argument("--git-files", type=L.count_arg(0), default=2000, help="files in the git repository (default 2000; 0: none)")
    ap.add_argument("--columns", default="local,local+wb,ddb0+wb,ddb8+wb,ddb8")
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--warmup-files", type=L.count_arg(0), default=200, help="unmeasured files first on DynamoDB (JVM warm-up)")
    ap.add_argument("--propagation-rounds", type=L.count_arg(1), default=5, help="files created for the second mount to see")
    ap.add_argument("--cpu", type=L.cpu_arg, default=None, help=L.CPU_HELP)
    args = ap.parse_args(argv)
    cfg = Config(args.files, args.dirs, args.git_files, 1, args.seed, args.stage_timeout, 0.0, args.warmup_files)
    specs = parse_columns(args.columns)
    started = time.monotonic()
    cols: list[Column] = []
    with L.bench_session(args.ddb_endpoint, "dynlog-wb-") as (work, ddb):
        tree = make_tree(cfg.files, cfg.dirs, cfg.seed)
        write_tar(tree, work / "tree.tar", "tree")
        write_tar(make_tree(cfg.warmup_files, cfg.dirs, cfg.seed + 100), work / "warmup.tar", "warmup")
        genv = L.git_env(work)
        head = make_git_repo(work / "repo", cfg.git_files, cfg.seed, genv) if cfg.git_files else ""
        bench = WBBench(cfg, work, tree, work / "tree.tar", work / "repo", head, genv)
        bench.rounds = args.propagation_rounds
        bench.cpu = args.cpu
        for name, lat, wb in specs:
            col = Column(name, lat, 0, writebehind=wb)
            t0 = time.monotonic()
            run_column(bench, col, work, ddb)
            col.stages.setdefault("meta", {})["seconds"] = time.monotonic() - t0
            cols.append(col)
            print(f"[writebehind bench] {title(col)}: {time.monotonic() - t0:.0f} s"
                  f"{' — ' + col.error if col.error else ''}", file=sys.stderr, flush=True)
    doc = json.dumps({"commit": commit(), "config": asdict(cfg), "argv": sys.argv[1:] if argv is None else argv,
                      "load_average": os.getloadavg(), "seconds": time.monotonic() - started,
                      "columns": [asdict(c) for c in cols]}, indent=1)
    if args.json_out:
        args.json_out.write_text(doc)
    print(f"commit {commit()}, {os.cpu_count()} cores, {L.placement(args.cpu)}, "
          f"load average at the end {os.getloadavg()[0]:.1f}, "
          f"{time.monotonic() - started:.0f} s\n")
    print(format_table(cols, cfg))
    return 1 if any(c.error for c in cols) else 0


if __name__ == "__main__":
    sys.exit(main())
