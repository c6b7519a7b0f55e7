#!/usr/bin/env python3
"""What compression at rest saves: the same text written to and read from a file system made
with ``--compression zlib`` and one made with ``--compression none``, on real mounts, through
DynamoDB Local behind an injected round-trip latency.

Why: DynamoDB bills a write unit per KB written and a read unit per 4 KB read, so a file's bytes
cost what they weigh (dynlog/compress.py). What users store most is text and object code: source
trees, logs, build outputs. This measures the units, the requests and the time of:

- ``tar -x`` of a source tree (Python's standard library, text, most files inline), then a cold
  ``tar -c`` of it to /dev/null from a fresh mount;
- a sequential write and a cold read of one large text file (the same sources, concatenated).

Requests and units come from the mount daemon's own counters (its stats socket). Random data is
left to benchmarks/latency.py: it does not compress, and the policy stores it as it is.

    python benchmarks/compression.py                       # 8 ms, both settings
    python benchmarks/compression.py --latency-ms 0 --mb 64

Not a test (tests/bench/test_compression_bench.py runs a tiny configuration). Needs root and
DynamoDB Local as scripts/install-deps installs it. docs/SCALING.md ("Compression") records a run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency as L  # noqa: E402  (puts the repository and tests/ on sys.path)
from latency import Mounter, Source, StageError, commit  # noqa: E402
from programs.conftest import stdlib_dir  # noqa: E402  (the interpreter's standard library, as the tests copy it)

from dynlog.faults.proxy import FaultProxy  # noqa: E402

SETTINGS = ("none", "zlib")


@dataclass
class Figures:
    compression: str
    files: int = 0
    tree_bytes: int = 0
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)


def make_tree_tar(work: Path, limit: int) -> tuple[Path, int, int]:
    """A tar of the first ``limit`` .py files of the standard library in name order, tests and
    installed packages left out (text as a source tree holds it)."""
    root = stdlib_dir()
    skip = {"__pycache__", "test", "tests", "site-packages", "idle_test"}
    files = sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))[:limit]
    tar = work / "tree.tar"
    with tarfile.open(tar, "w") as t:
        for p in files:
            t.add(p, arcname=str(p.relative_to(root)), recursive=False)
    return tar, len(files), sum(p.stat().st_size for p in files)


def make_big_text(work: Path, mb: int) -> Path:
    """``mb`` MiB of the standard library's sources, concatenated over and over."""
    sources = b"".join(p.read_bytes() for p in sorted(stdlib_dir().glob("*.py")))
    out = work / "big.txt"
    with open(out, "wb") as f:
        left = mb << 20
        while left > 0:
            f.write(sources[:left])
            left -= min(left, len(sources))
    return out


def totals(mnt: str) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "dynlog.cli.main", "stats", mnt, "--once", "--json", "--interval", "0.05"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise StageError(f"dynlog stats: {r.stderr.strip()}")
    return json.loads(r.stdout)["totals"]


def measured(mnt: str, cmd: list[str], timeout: float, **kw: Any) -> dict[str, Any]:
    """Run ``cmd``; its seconds, and the requests and units the mount made meanwhile (not the
    change feed's stream reads, not the session's heartbeats)."""
    a = totals(mnt)
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise StageError(f"{' '.join(cmd)}: {r.stderr.decode(errors='replace').strip()}")
    b = totals(mnt)
    requests = sum(n - a["requests_by_op"].get(op, 0) for op, n in b["requests_by_op"].items()
                   if op not in ("follow", "session"))
    return {"seconds": dt, "requests": requests, "read_units": b["read_units"] - a["read_units"],
            "write_units": b["write_units"] - a["write_units"]}


def run_setting(compression: str, work: Path, src: Source, tar: Path, big: Path, timeout: float) -> dict[str, Any]:
    mounter = Mounter(work / compression)
    (work / compression).mkdir()
    try:
        subprocess.run([sys.executable, "-m", "dynlog.cli.main", *src.global_args(), "mkfs", src.source,
                        "--compression", compression], check=True, capture_output=True, timeout=120)
        m = mounter.mount(src)
        out = {"tar -x": measured(m.path, ["tar", "-xf", str(tar), "-C", m.path], timeout)}
        if big.stat().st_size:
            out["write"] = measured(m.path, ["dd", f"if={big}", f"of={m.path}/big.txt", "bs=1M", "conv=fsync"], timeout)
        mounter.unmount(m)
        m = mounter.mount(src)  # a fresh mount: nothing cached
        out["tar -c (cold)"] = measured(m.path, ["tar", "-cf", "/dev/null", "--exclude=big.txt", "."], timeout,
                                        cwd=m.path)
        if big.stat().st_size:
            out["read (cold)"] = measured(m.path, ["dd", f"if={m.path}/big.txt", "of=/dev/null", "bs=1M"], timeout)
        mounter.unmount(m)
        return out
    finally:
        mounter.cleanup()


def table(figs: list[Figures], latency_ms: float, mb: int) -> str:
    head = "| | " + " | ".join(f"--compression {f.compression}" for f in figs) + " |"
    lines = [head, "|---" * (len(figs) + 1) + "|"]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(f) for f in figs) + " |")

    n, size = figs[0].files, figs[0].tree_bytes
    row(f"tar -x of {n} files ({size / 1e6:.1f} MB): files/s", lambda f: f"{n / f.stages['tar -x']['seconds']:.1f}")
    row("tar -x: requests per file", lambda f: f"{f.stages['tar -x']['requests'] / n:.2f}")
    row("tar -x: write units per file", lambda f: f"{f.stages['tar -x']['write_units'] / n:.2f}")
    row("tar -c of the tree, fresh mount: seconds", lambda f: f"{f.stages['tar -c (cold)']['seconds']:.2f}")
    row("tar -c: read units per file", lambda f: f"{f.stages['tar -c (cold)']['read_units'] / n:.2f}")
    if mb:
        row(f"write of {mb} MiB of text: MB/s", lambda f: f"{(mb << 20) / 1e6 / f.stages['write']['seconds']:.1f}")
        row("write: write units per MiB", lambda f: f"{f.stages['write']['write_units'] / mb:.0f}")
        row("cold read: MB/s", lambda f: f"{(mb << 20) / 1e6 / f.stages['read (cold)']['seconds']:.1f}")
        row("cold read: read units per MiB", lambda f: f"{f.stages['read (cold)']['read_units'] / mb:.0f}")
    return f"DynamoDB Local behind {latency_ms:g} ms a request, commit {commit()}\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = L.bench_parser(__doc__, 900.0)
    ap.add_argument("--files", type=L.count_arg(1), default=400, help="files in the source tree (default 400)")
    ap.add_argument("--mb", type=L.count_arg(0), default=64, help="MiB of text written then read (default 64; 0: none)")
    ap.add_argument("--latency-ms", type=float, default=8.0, help="injected per-request latency (default 8)")
    args = ap.parse_args(argv)
    with L.bench_session(args.ddb_endpoint, "dynlog-compression-") as (work, ddb):
        tar, n, size = make_tree_tar(work, args.files)
        big = make_big_text(work, args.mb) if args.mb else work / "none"
        big.touch()
        proxy = FaultProxy(ddb().endpoint, latency_ms=args.latency_ms).start()
        try:
            figs = []
            for compression in SETTINGS:
                src = Source(f"aws:{L.REGION}/{L.unique_table()}", proxy.endpoint, "dynamodb")
                f = Figures(compression, n, size)
                f.stages = run_setting(compression, work, src, tar, big, args.stage_timeout)
                print(f"[compression bench] {compression}: {json.dumps(f.stages)}", file=sys.stderr, flush=True)
                figs.append(f)
        finally:
            proxy.stop()
    print(table(figs, args.latency_ms, args.mb))
    if args.json_out:
        args.json_out.write_text(json.dumps([asdict(f) for f in figs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
