"""``dynlog stats MOUNTPOINT`` and ``-o metrics=ADDR:PORT`` against real mounts: the numbers
move when the mount works, the Prometheus text parses, and idle costs are projected by
``dynlog status``."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from .conftest import REPO, fsync_dir

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stats(mp: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dynlog.cli.main", "stats", mp, *args], capture_output=True,
                          text=True, timeout=60, cwd=str(REPO))


def work(mp: str, n: int = 20) -> None:
    d = Path(mp, f"w{os.getpid()}-{threading.get_ident()}")
    d.mkdir(exist_ok=True)
    for i in range(n):
        (d / f"f{i}").write_bytes(b"x" * 5000)
        (d / f"f{i}").read_bytes()
    for p in d.iterdir():
        p.unlink()


def parse_prometheus(text: str) -> dict[tuple[str, str], float]:
    """Every sample as {(name, labels): value}; fails on a line that is not exposition format."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")) or not line, line
            continue
        m = SAMPLE.match(line)
        assert m, f"not Prometheus text format: {line!r}"
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def test_stats_numbers_move_with_operations(fs_source, mounter) -> None:
    m = mounter.mount(fs_source)
    before = stats(m.path, "--once", "--json", "--interval", "0.2")
    assert before.returncode == 0, before.stderr
    t0 = json.loads(before.stdout)["totals"]
    done = threading.Event()

    def busy() -> None:
        while not done.is_set():
            work(m.path, 5)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        runner = subprocess.run([sys.executable, "-m", "dynlog.cli.main", "stats", m.path, "--once", "--json",
                                 "--interval", "2"], capture_output=True, text=True, cwd=str(REPO), timeout=60)
    finally:
        done.set()
        worker.join(timeout=60)
    out, err = runner.stdout, runner.stderr
    assert runner.returncode == 0, err
    live = json.loads(out)
    rates, t1 = live["rates"], live["totals"]
    assert rates["ops"].get("create", 0) > 0 and rates["ops"].get("write", 0) > 0, rates["ops"]
    assert rates["requests"] > 0 and rates["write_units"] > 0
    assert rates["latency_samples"] > 0 and 0 < rates["p50_ms"] <= rates["p99_ms"]
    assert rates["dollars_per_hour"] > 0
    assert t1["calls"].get("PutItem", 0) > t0["calls"].get("PutItem", 0)
    assert t1["ops"]["create"] > t0["ops"].get("create", 0)
    # the requests are told by the operation that made them: creates make PutItems
    assert rates["by_op"].get("create", 0) > 0, rates["by_op"]
    assert t1["requests_by_op"]["create"] > t0["requests_by_op"].get("create", 0)
    # every request is told by some operation (read just after the calls: counters only grow)
    assert sum(t1["requests_by_op"].values()) >= sum(n for c, n in t1["calls"].items() if not c.startswith("Streams."))
    assert live["heartbeat"]["lease"] > 0 and live["follower"]["polls"] > 0

    text = stats(m.path, "--once", "--interval", "0.5")
    assert text.returncode == 0, text.stderr
    for label in ("operations/s", "requests/s", "by operation", "units/s", "latency", "cost", "freshness"):
        assert label in text.stdout, text.stdout


def test_libfuse_workers_keep_their_python_thread_state(fs_source, mounter) -> None:
    """Each libfuse worker thread pins one Python thread state (dynlog/fuse/threadstate.py), so
    the count of pinned threads stays at the size of libfuse's pool however many callbacks run.
    If the pin did not hold, every callback would start on a fresh thread state and count again."""
    m = mounter.mount(fs_source)
    work(m.path, 100)  # about 600 callbacks, one after another
    res = stats(m.path, "--once", "--json", "--interval", "0.1")
    assert res.returncode == 0, res.stderr
    workers = json.loads(res.stdout)["fuse"]["worker_threads"]
    assert 1 <= workers <= 64, workers  # libfuse's max_threads, as dynlog mount sets it


def test_stats_of_a_directory_that_is_no_mount(tmp_path: Path) -> None:
    res = stats(str(tmp_path), "--once")
    assert res.returncode == 1 and "no dynlog mount daemon" in res.stderr


def test_prometheus_endpoint_parses_and_counts(fs_source, mounter) -> None:
    port = free_port()
    m = mounter.mount(fs_source, options=f"metrics=127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> dict[tuple[str, str], float]:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return parse_prometheus(r.read().decode())

    first = scrape()
    work(m.path)
    second = scrape()

    def total(samples: dict, name: str, label: str = "") -> float:
        return sum(v for (n, lab), v in samples.items() if n == name and label in lab)

    assert total(second, "dynlog_store_requests_total", 'call="PutItem"') > total(first, "dynlog_store_requests_total",
                                                                                   'call="PutItem"')
    assert total(second, "dynlog_operations_total", 'op="create"') >= total(first, "dynlog_operations_total",
                                                                            'op="create"') + 20
    assert total(second, "dynlog_operation_requests_total", 'op="create"') >= total(
        first, "dynlog_operation_requests_total", 'op="create"') + 20  # a create is one PutItem
    assert total(second, "dynlog_store_write_units_total") > 0 and total(second, "dynlog_cost_dollars_total") > 0
    assert total(second, "dynlog_follower_poll_interval_seconds") > 0
    # a histogram per call: cumulative buckets that never fall, +Inf equal to _count
    calls = {re.search(r'call="([^"]+)"', lab).group(1) for (n, lab) in second if n == "dynlog_store_request_seconds_count"}
    assert "PutItem" in calls
    for call in calls:
        buckets = [(lab, v) for (n, lab), v in second.items()
                   if n == "dynlog_store_request_seconds_bucket" and f'call="{call}"' in lab]
        values = [v for _, v in buckets]
        assert values == sorted(values) and len(values) > 10
        inf = [v for lab, v in buckets if 'le="+Inf"' in lab]
        assert inf == [total(second, "dynlog_store_request_seconds_count", f'call="{call}"')]


def test_writebehind_counters(fs_source, mounter) -> None:
    """A ``-o writebehind`` mount reports its leases and batches (stats JSON, the text frame and
    Prometheus); a mount without it has no such section."""
    port = free_port()
    m = mounter.mount(fs_source, options=f"writebehind,metrics=127.0.0.1:{port}")
    d = Path(m.path, "wb")
    d.mkdir()
    for i in range(50):
        (d / f"f{i}").write_bytes(b"x" * 100)
    fsync_dir(d)  # a durability point: the queue is committed
    res = stats(m.path, "--once", "--json", "--interval", "0.1")
    assert res.returncode == 0, res.stderr
    wb = json.loads(res.stdout)["writebehind"]
    assert wb["taken"] >= 1 and wb["ops"] >= 100 and wb["records"] >= 1, wb  # a create and a close a file
    assert wb["pending"] == 0 and wb["lost"] == wb["rescues"] == 0, wb
    text = stats(m.path, "--once", "--interval", "0.1")
    assert text.returncode == 0 and "write-behind" in text.stdout, text.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        samples = parse_prometheus(r.read().decode())
    assert sum(v for (n, _), v in samples.items() if n == "dynlog_writebehind_operations_total") == wb["ops"]
    assert any(n == "dynlog_writebehind_dropped_operations_total" for n, _ in samples)
    plain = mounter.mount(fs_source)
    res = stats(plain.path, "--once", "--json", "--interval", "0.1")
    assert res.returncode == 0 and "writebehind" not in json.loads(res.stdout), res.stdout


def test_bad_metrics_address_is_refused(fs_source, cli, tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = cli(*fs_source.global_args(), "mount", fs_source.source, str(mp), "-o", "metrics=nowhere")
    assert res.returncode == 2 and "ADDR:PORT" in res.stderr


def test_status_projects_idle_cost(fs_source, cli) -> None:
    res = cli(*fs_source.global_args(), "status", fs_source.source)
    assert res.returncode == 0, res.stderr
    assert "idle cost per mount:" in res.stdout
    dollars = re.findall(r"idle (?:mount|relay): +([0-9.]+) requests/s, ([0-9.]+) stream reads/s, \$([0-9.]+) per month",
                         res.stdout)
    assert len(dollars) == 2, res.stdout
    assert all(float(req) <= 0.1 for req, _, _ in dollars)  # the idle target, as projected
    assert sum(float(s) for _, s, _ in dollars) <= 0.5
