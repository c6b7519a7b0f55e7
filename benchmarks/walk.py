#!/usr/bin/env python3
"""Cold tree walks on real mounts: ``ls -lR``, ``find``, ``du``, ``git status`` and ``grep -r`` on a fresh
mount, with mount options to compare (sibling prefetch off and on, ``nocto``), at an injected
round-trip latency.

Why: a fresh mount knows nothing, and each directory a walk enters costs its view: two requests
(the snapshot and the tail after it, sent together). A walker goes one directory at a time, so
without prefetch a walk of D directories waits D round trips one after another; with it, the views of
a walked directory's subdirectories load several at once. This is what a user meets first on a
machine that mounts a shared tree: ``ls -lR``, ``find``, ``du``, ``rsync`` and ``git status``.
``grep -r`` opens every file as well, and close-to-open costs each open a Query of its
directory's tail, which ``-o nocto`` trades for the change feed's delay.

A column is a store and a latency (``local``, ``ddb0``, ``ddbN``). Its tree (``--top``
directories of ``--sub`` subdirectories, ``--files`` small files in each, a few hard links) is
written once through a write-behind mount and committed to a git repository there; then every
walk runs on a fresh mount of its own, once for each ``--settings`` option set, with the mount's
own request counters read before and after.

    python benchmarks/walk.py                                   # ddb8, 20 x 10 directories, prefetch 0 and 8
    python benchmarks/walk.py --columns local,ddb8 --settings 'prefetch=0;prefetch=8;prefetch=8,nocto'

Not a test (tests/bench/test_walk_bench.py runs a tiny configuration). Needs root and DynamoDB
Local as scripts/install-deps installs it. docs/SCALING.md ("Cold walks") records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency as L  # noqa: E402  (puts the repository and tests/ on sys.path)
from latency import Bench, Config, DynamoDBLocal, Mounter, Requests, Source, StageError, commit  # noqa: E402

WALKS = {
    "ls -lR": ["ls", "-lR", "--time-style=+%s", "--ignore=.git"],
    "find": ["find", ".", "-path", "./.git", "-prune", "-o", "-name", "*.dat", "-newer", ".", "-print"],
    "du -s": ["du", "-s", "--apparent-size", "--exclude=.git"],
    # lstat of every tracked file (in index order, no listing first), then a listing of every
    # directory for untracked files
    "git status": ["git", "status", "--porcelain"],
    # an open of every file: close-to-open's Query each, unless -o nocto
    "grep -r": ["grep", "-r", "-c", "--exclude-dir=.git", "-e", "."],
}
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


@dataclass
class Column:
    name: str
    latency_ms: float | None
    walks: dict[str, dict[str, Any]] = field(default_factory=dict)  # "walk|prefetch" -> figures
    error: str = ""


def populate(root: Path, top: int, sub: int, files: int, file_bytes: int = 0) -> tuple[int, int]:
    """The tree under ``root``; returns the number of directories below it, and of those directly
    in its .git (which ls, find and du are told to skip: prefetch loads that one level of it)."""
    root.mkdir()
    n = 0
    for i in range(top):
        t = root / f"top{i:03d}"
        t.mkdir()
        n += 1
        for j in range(sub):
            d = t / f"sub{j:03d}"
            d.mkdir()
            n += 1
            for k in range(files):
                (d / f"f{k:03d}.dat").write_bytes(os.urandom(file_bytes or 200 + 37 * k))
        if sub:
            os.link(t / "sub000" / "f000.dat", t / "linked.dat")  # an inode journal for ls -l to load
    env = {**os.environ, **GIT_ENV, "HOME": str(root.parent)}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "tree"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, timeout=600)
    return n, sum(1 for e in os.scandir(root / ".git") if e.is_dir())


def listing(root: Path, cwd_cmd: list[str]) -> str:
    env = {**os.environ, **GIT_ENV, "HOME": str(root.parent), "GIT_OPTIONAL_LOCKS": "0"}
    return subprocess.run(cwd_cmd, cwd=root, env=env, capture_output=True, text=True, check=True, timeout=600).stdout


class WalkBench(Bench):
    def run_walks(self, col: Column, source: Source, proxy: Any | None, args: argparse.Namespace) -> None:
        mounter = Mounter(self.work)
        self.options = "writebehind"
        with self.mounted(mounter, source, proxy) as (m, _):
            dirs, git_dirs = self.child(lambda: populate(Path(m.path) / "tree", args.top, args.sub, args.files,
                                                         args.file_bytes), "writing the tree")
        col.walks["tree"] = {"dirs": dirs, "files": args.top * args.sub * args.files, "git_dirs": git_dirs}
        expected: dict[str, str] = {}
        for walk, cmd in WALKS.items():
            for setting in args.settings:
                self.options = setting
                with self.mounted(mounter, source, proxy) as (m, probe):
                    root = Path(m.path) / "tree"
                    time.sleep(1.0)  # the relay takes its lease, the feed settles (as latency.py waits)
                    before = probe.settle()
                    t0 = time.monotonic()
                    out = self.child(lambda: listing(root, cmd), walk)
                    seconds = time.monotonic() - t0
                    r = Requests.between(before, probe.settle(), proxy is not None)
                if expected.setdefault(walk, out) != out:
                    raise StageError(f"{walk} with -o {setting} printed something else than before")
                col.walks[f"{walk}|{setting}"] = {**asdict(r), "seconds": seconds, "dirs_per_s": dirs / seconds,
                                                  "own_per_dir": r.own / dirs}
                print(f"[walk bench] {col.name}: {walk}, -o {setting}: {seconds:.2f} s, "
                      f"{r.own / dirs:.2f} requests a directory", file=sys.stderr, flush=True)


def run_column(bench: WalkBench, col: Column, work: Path, ddb: Callable[[], DynamoDBLocal],
               args: argparse.Namespace) -> None:
    try:
        L.on_fresh_source(col.latency_ms, work, ddb, lambda src, proxy: bench.run_walks(col, src, proxy, args))
    except (StageError, AssertionError, OSError, subprocess.SubprocessError) as e:
        col.error = f"{type(e).__name__}: {e}".strip()[:4000]


def format_table(cols: list[Column], settings: list[str]) -> str:
    dirs = next((c.walks["tree"]["dirs"] for c in cols if "tree" in c.walks), 0)
    lines = ["| | " + " | ".join(f"{L.column_name(c.latency_ms)}, -o {w}" for c in cols for w in settings) + " |",
             "|---|" + "---|" * (len(cols) * len(settings))]
    for walk in WALKS:
        for label, key, digits in ((f"{walk} of {dirs} directories: seconds", "seconds", 2),
                                   (f"{walk}: requests per directory, own", "own_per_dir", 2)):
            cells = [L._num(c.walks[f"{walk}|{w}"][key], digits) if f"{walk}|{w}" in c.walks else "–"
                     for c in cols for w in settings]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    notes = [f"- {L.column_name(c.latency_ms)}: {c.error}" for c in cols if c.error]
    return "\n".join(lines + ([""] + notes if notes else []))


def settings_list(text: str) -> list[str]:
    """Mount option sets, separated by ';' (each is one -o value); checked as the mount checks them."""
    from dynlog.errors import QuietError
    from dynlog.cli.mountcmd import parse_options

    out = [x.strip() for x in text.split(";") if x.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"{text!r}: no mount options")
    for setting in out:
        try:
            parse_options([setting])
        except QuietError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = L.bench_parser(__doc__, 600.0)
    ap.add_argument("--top", type=L.count_arg(1), default=20, help="top-level directories (default 20)")
    ap.add_argument("--sub", type=L.count_arg(0), default=10, help="subdirectories in each (default 10)")
    ap.add_argument("--files", type=L.count_arg(0), default=3, help="small files in each subdirectory (default 3)")
    ap.add_argument("--file-bytes", type=L.count_arg(0), default=0,
                    help="size of every file (default 0: 200 to 300 bytes, inline in the views)")
    ap.add_argument("--settings", type=settings_list, default=["prefetch=0", "prefetch=8"],
                    help="mount option sets to compare, separated by ';' (default 'prefetch=0;prefetch=8')")
    ap.add_argument("--latency-ms", type=float, default=8.0, help="injected per-request latency (default 8)")
    ap.add_argument("--columns", default=None, help="comma-separated local, ddb0, ddbN (default ddbLATENCY)")
    args = ap.parse_args(argv)
    latencies = L.parse_columns(args.columns or f"ddb{args.latency_ms:g}", args.latency_ms)
    started = time.monotonic()
    cols: list[Column] = []
    with L.bench_session(args.ddb_endpoint, "dynlog-walk-") as (work, ddb):
        cfg = Config(0, 0, 0, 0, 0, args.stage_timeout, 0.0, 0)
        bench = WalkBench(cfg, work, [], work / "unused.tar", work / "unused", "", {})
        for lat in latencies:
            col = Column(L.column_name(lat), lat)
            run_column(bench, col, work, ddb, args)
            cols.append(col)
    if args.json_out:
        args.json_out.write_text(json.dumps({"commit": commit(), "argv": sys.argv[1:] if argv is None else argv,
                                             "columns": [asdict(c) for c in cols]}, indent=1))
    print(f"commit {commit()}, {os.cpu_count()} cores, {time.monotonic() - started:.0f} s\n")
    print(format_table(cols, args.settings))
    return 1 if any(c.error for c in cols) else 0


if __name__ == "__main__":
    sys.exit(main())
