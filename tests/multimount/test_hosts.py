"""Clients as separate hosts: each mount's daemon runs in a network namespace of its own, made
by this test, and (for the DynamoDB store) DynamoDB Local runs in a third one, reached over veth
pairs the test creates:

    dynlog-hb-X (mount B) 10.203.0.6 --veth-- 10.203.0.5 dynlog-db-X (DynamoDB Local :8000)
    dynlog-ha-X (mount A) 10.203.0.2 --veth-- 10.203.0.1 dynlog-db-X

No address of the root namespace is involved: all traffic stays inside namespaces this test
made, and they are deleted afterwards. The daemons enter only the network namespace (nsenter
--net), not a mount namespace (ip netns exec would make one), so their FUSE mounts are visible
to the test, which plays the user on both "hosts". The embedded store has no network: its two
mounts run in namespaces without any route, which shows they need none.

The namespaces must be creatable: if they are not, the test fails (CI must not skip it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from dynamodb_local import FAKE_ENV, REGION, find_jar_dir, unique_table
from dynlog.fuse import mounttab

from .conftest import BOUND, REPO, Mount, Mounter, Source, until

DDB_PORT = 8000
MOUNT_TIMEOUT = 30.0


def sh(*cmd: str, timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env)


def must(*cmd: str) -> None:
    res = sh(*cmd)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}"


class Hosts:
    """Network namespaces (and veth pairs between them) made for one test, deleted at the end."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.made: list[str] = []
        self.links = 0
        self.procs: list[subprocess.Popen] = []

    def ns(self, role: str) -> str:
        name = f"dynlog-{role}-{self.tag}"
        assert shutil.which("ip"), "ip (iproute2) is missing: scripts/install-deps installs it"
        must("ip", "netns", "add", name)
        self.made.append(name)
        must("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_addr: str, b: str, b_addr: str) -> None:
        """A veth pair between namespaces a and b, with a /30 address on each end."""
        self.links += 1
        ia, ib = f"v{self.tag}{self.links}a", f"v{self.tag}{self.links}b"
        must("ip", "link", "add", ia, "netns", a, "type", "veth", "peer", "name", ib, "netns", b)
        for ns, dev, addr in ((a, ia, a_addr), (b, ib, b_addr)):
            must("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            must("ip", "-n", ns, "link", "set", dev, "up")

    @staticmethod
    def cmd(ns: str, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}", *args]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        for name in reversed(self.made):
            sh("ip", "netns", "del", name)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    h = Hosts()
    try:
        yield h
    finally:
        h.close()


def env() -> dict[str, str]:
    e = {**os.environ, **FAKE_ENV, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS", "AWS_PROFILE"):
        e.pop(var, None)
    return e


def mount_in(mounter: Mounter, hosts: Hosts, ns: str, source: Source) -> Mount:
    """``dynlog mount -f`` with its daemon in network namespace ``ns``; torn down by ``mounter``."""
    mp = str(mounter.base / f"mnt-{ns}")
    os.makedirs(mp, exist_ok=True)
    log = Path(mp + ".log")
    cmd = hosts.cmd(ns, sys.executable, "-m", "dynlog.cli.main", *source.global_args(), "mount", "-f",
                    source.source, mp)
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=str(REPO), env=env(), start_new_session=True)
    m = Mount(mp, source, proc, log)
    mounter.mounts.append(m)
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while time.monotonic() < deadline:
        entry = mounttab.find_mount(mp)
        if entry is not None and entry.is_fuse:
            subprocess.run(["stat", "-c", "%i", mp], capture_output=True, timeout=10, check=True)
            return m
        assert proc.poll() is None, f"mount in {ns} exited with {proc.returncode}:\n{m.log_text()}"
        time.sleep(0.05)
    raise AssertionError(f"mount in {ns} did not come up in {MOUNT_TIMEOUT} s:\n{m.log_text()}")


def start_dynamodb(hosts: Hosts, ns: str, probe_ns: str, addr: str) -> None:
    """DynamoDB Local inside namespace ``ns``; waits until it answers from ``probe_ns``."""
    jar_dir = find_jar_dir()
    java = shutil.which("java")
    assert java, "java is missing (scripts/install-deps)"
    p = subprocess.Popen(hosts.cmd(ns, java, f"-Djava.library.path={jar_dir / 'DynamoDBLocal_lib'}", "-jar",
                                   str(jar_dir / "DynamoDBLocal.jar"), "-inMemory", "-sharedDb", "-disableTelemetry",
                                   "-port", str(DDB_PORT)),
                         cwd=jar_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hosts.procs.append(p)
    probe = f"import socket; socket.create_connection(('{addr}', {DDB_PORT}), 1).close()"
    deadline = time.monotonic() + 60
    while sh(*hosts.cmd(probe_ns, sys.executable, "-c", probe)).returncode != 0:
        assert p.poll() is None, "DynamoDB Local exited"
        assert time.monotonic() < deadline, "DynamoDB Local did not answer within 60 s"
        time.sleep(0.3)


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.dynamodb)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_mounts_as_separate_hosts(store_kind: str, hosts: Hosts, mounter: Mounter, tmp_path: Path) -> None:
    ha, hb = hosts.ns("ha"), hosts.ns("hb")
    if store_kind == "dynamodb":
        db = hosts.ns("db")
        hosts.link(db, "10.203.0.1", ha, "10.203.0.2")
        hosts.link(db, "10.203.0.5", hb, "10.203.0.6")
        start_dynamodb(hosts, db, ha, "10.203.0.1")
        table = f"aws:{REGION}/{unique_table()}"
        src_a, src_b = Source(table, "http://10.203.0.1:8000", "dynamodb"), Source(table, "http://10.203.0.5:8000", "dynamodb")
        res = sh(*hosts.cmd(ha, sys.executable, "-m", "dynlog.cli.main", *src_a.global_args(), "mkfs", table), timeout=60, env=env())
        assert res.returncode == 0, res.stderr
        # B's host reaches the database by its own link, and not by A's
        unreachable = f"import socket; socket.create_connection(('10.203.0.1', {DDB_PORT}), 1)"
        assert sh(*hosts.cmd(hb, sys.executable, "-c", unreachable)).returncode != 0
    else:
        src_a = src_b = Source(f"local:{tmp_path / 'fs.db'}", None, "sqlite")
    a = mount_in(mounter, hosts, ha, src_a)
    b = mount_in(mounter, hosts, hb, src_b)
    own = os.readlink("/proc/self/ns/net")
    nets = {os.readlink(f"/proc/{m.proc.pid}/ns/net") for m in (a, b)}
    assert len(nets) == 2 and own not in nets, "the daemons do not run in namespaces of their own"

    ra, rb = Path(a.path), Path(b.path)
    (ra / "from-a").write_bytes(b"written on host A")
    took_ab = until(lambda: "from-a" in os.listdir(rb), what="A's file in B's listing")
    assert (rb / "from-a").read_bytes() == b"written on host A"
    os.mkdir(rb / "dir-from-b")
    (rb / "dir-from-b" / "f").write_bytes(b"written on host B")
    took_ba = until(lambda: "dir-from-b" in os.listdir(ra), what="B's directory in A's listing")
    assert (ra / "dir-from-b" / "f").read_bytes() == b"written on host B"
    os.rename(ra / "from-a", ra / "dir-from-b" / "moved")
    until(lambda: sorted(os.listdir(rb / "dir-from-b")) == ["f", "moved"], what="A's rename on B")
    print(f"\nseparate hosts on {store_kind}: A->B {took_ab * 1000:.0f} ms, B->A {took_ba * 1000:.0f} ms")
    assert took_ab < BOUND and took_ba < BOUND
