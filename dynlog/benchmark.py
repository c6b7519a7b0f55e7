"""``dynlog bench``: requests per operation, operations per second and data throughput,
measured through the FileSystem API (no kernel) on any store. Numbers, not asserts: the
targets live here and in docs, never as timed tests."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .core.attrs import Caller
from .core.filesystem import FileSystem
from .store.base import Store

CALLER = Caller(os.getuid(), os.getgid(), os.getpid())


@dataclass
class Result:
    op: str
    count: int
    seconds: float
    requests: int
    by_call: dict[str, int] = field(default_factory=dict)
    capacity: float = 0.0
    bytes: int = 0

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def requests_per_op(self) -> float:
        return self.requests / self.count if self.count else 0.0


def _measure(fs: FileSystem, op: str, count: int, fn, nbytes: int = 0) -> Result:
    m = fs.store.metrics
    m.reset()
    t0 = time.perf_counter()
    for i in range(count):
        fn(i)
    dt = time.perf_counter() - t0
    return Result(op, count, dt, m.requests(), m.by_call(), m.capacity(), nbytes)


def run(store: Store, n: int = 200, mb: int = 16) -> list[Result]:
    fs = FileSystem(store)
    fs.allocator.prefetch()
    base = f"/bench-{os.getpid()}-{time.time_ns() % 10**6}"
    fs.mkdir(base, 0o755, CALLER)
    out = [
        _measure(fs, "mkdir", n, lambda i: fs.mkdir(f"{base}/d{i}", 0o755, CALLER)),
        _measure(fs, "create+close (empty)", n,
                 lambda i: fs.release(fs.create(f"{base}/f{i}", 0o644, os.O_WRONLY, CALLER), CALLER)),
        _measure(fs, "stat (warm)", n, lambda i: fs.getattr(f"{base}/f{i}")),
        _measure(fs, "chmod", n, lambda i: fs.chmod(f"{base}/f{i}", 0o600, CALLER)),
        _measure(fs, "rename (same dir)", n, lambda i: fs.rename(f"{base}/f{i}", f"{base}/g{i}", 0, CALLER)),
        _measure(fs, "rename (across dirs)", n,
                 lambda i: fs.rename(f"{base}/g{i}", f"{base}/d{i}/g", 0, CALLER)),
        _measure(fs, "unlink", n, lambda i: fs.unlink(f"{base}/d{i}/g", CALLER)),
        _measure(fs, "rmdir", n, lambda i: fs.rmdir(f"{base}/d{i}", CALLER)),
    ]
    chunk = os.urandom(1 << 20)

    def write_big(_: int) -> None:
        fh = fs.create(f"{base}/big", 0o644, os.O_WRONLY, CALLER)
        for k in range(mb):
            fs.write(fh, chunk, k << 20, CALLER)
        fs.release(fh, CALLER)

    out.append(_measure(fs, f"write {mb} MiB + close", 1, write_big, mb << 20))
    cold = FileSystem(store)  # a second client: nothing cached

    def read_big(_: int) -> None:
        fh = cold.open(f"{base}/big", os.O_RDONLY, CALLER)
        for k in range(mb):
            cold.read(fh, 1 << 20, k << 20)
        cold.release(fh, CALLER)

    out.append(_measure(cold, f"read {mb} MiB (cold client)", 1, read_big, mb << 20))
    out.append(_measure(FileSystem(store), "list directory (cold client)", 1, lambda i: list(FileSystem(store).readdir(base))))
    fs.close()
    cold.close()
    return out


def format_results(results: list[Result]) -> str:
    lines = [f"{'operation':32} {'count':>6} {'ops/s':>9} {'req/op':>7} {'WCU+RCU/op':>10} {'MB/s':>7}  calls"]
    for r in results:
        mbs = f"{r.bytes / r.seconds / 1e6:7.1f}" if r.bytes else "      -"
        calls = ", ".join(f"{k} {v}" for k, v in sorted(r.by_call.items()))
        lines.append(f"{r.op:32} {r.count:6d} {r.per_second:9.1f} {r.requests_per_op:7.2f} "
                     f"{r.capacity / max(1, r.count):10.2f} {mbs}  {calls}")
    return "\n".join(lines)
