"""Fixtures for tests on a real FUSE mount, on both stores.

  ``fs_source``     a fresh, formatted file system: ``Source(source, endpoint, backend)``, on
                    ``sqlite`` (local:PATH in a temp dir) and ``dynamodb`` (DynamoDB Local).
  ``mounter``       ``mounter.mount(source, options=...)`` starts ``dynlog mount -f`` as a child
                    process and returns a Mount once the mount answers; every mount it made is
                    torn down at the end of the test, whatever state its daemon is in.
  ``mnt``           a directory of its own on a mount shared by the module (one mount per store,
                    ``allow_other``): for tests that need nothing special from the mount.
  ``cli``           ``cli(*args, env=..., timeout=...)`` runs ``python -m dynlog.cli.main``.

Teardown never stats a mount point: it unmounts (fusermount3 -u), and if that fails or hangs,
aborts the FUSE connection through /sys/fs/fuse/connections and detaches lazily, then kills the
daemon. A hung daemon therefore cannot hang the suite. Every test gets a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dynamodb_local import REGION, unique_table  # tests/ is on sys.path (root conftest)
from dynlog.core.superblock import mkfs
from dynlog.fuse import mounttab
from dynlog.store.source import open_store

REPO = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 30.0
BACKENDS = ["sqlite", pytest.param("dynamodb", marks=pytest.mark.dynamodb)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.mounted)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(90))


@dataclass(frozen=True)
class Source:
    source: str
    endpoint: str | None
    backend: str

    def global_args(self) -> list[str]:
        return ["--endpoint-url", self.endpoint] if self.endpoint else []


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dynlog.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd or str(REPO))


def fsync_dir(path: str | Path) -> None:
    """fsync a directory: a durability point, where a write-behind mount commits every operation
    it queued there."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def _make_source(backend: str, base: Path, request: pytest.FixtureRequest) -> Source:
    if backend == "sqlite":
        src = Source(f"local:{base / 'fs.db'}", None, "sqlite")
    else:
        ddb = request.getfixturevalue("ddb_local")
        src = Source(f"aws:{REGION}/{unique_table()}", ddb.endpoint, "dynamodb")
    # In this process, not through `dynlog mkfs` (test_cli.py covers the command): a Python
    # subprocess per formatted file system cost about a second of CPU, hundreds of times a run.
    store = open_store(src.source, endpoint_url=src.endpoint)
    try:
        mkfs(store)
    finally:
        store.close()
    return src


def _drop_tables(src: Source, request: pytest.FixtureRequest) -> None:
    if src.backend != "dynamodb":
        return
    client = request.getfixturevalue("ddb_local").client()
    table = src.source.rsplit("/", 1)[1]
    for name in (table, table + "Blocks"):
        try:
            client.delete_table(TableName=name)
        except client.exceptions.ResourceNotFoundException:
            pass


@dataclass
class Mount:
    path: str
    source: Source
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Mounter:
    base: Path
    mounts: list[Mount] = field(default_factory=list)

    def mount(self, source: Source, options: str = "", path: str | None = None, env: dict[str, str] | None = None,
              timeout: float = MOUNT_TIMEOUT) -> Mount:
        mp = path or str(self.base / f"mnt-{uuid.uuid4().hex[:6]}")
        os.makedirs(mp, exist_ok=True)
        log = Path(mp + ".log")
        cmd = [sys.executable, "-m", "dynlog.cli.main", *source.global_args(), "mount", "-f", source.source, mp]
        if options:
            cmd += ["-o", options]
        with open(log, "wb") as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    cwd=str(REPO), env=env, start_new_session=True)
        m = Mount(mp, source, proc, log)
        self.mounts.append(m)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = mounttab.find_mount(mp)
            if entry is not None and entry.is_fuse:
                # answers? (in a child: a daemon that hangs must not hang this process)
                subprocess.run(["stat", "-c", "%i", mp], capture_output=True, timeout=10, check=True)
                return m
            if proc.poll() is not None:
                raise AssertionError(f"mount exited with {proc.returncode}:\n{m.log_text()}")
            time.sleep(0.05)
        raise AssertionError(f"mount did not come up in {timeout} s:\n{m.log_text()}")

    def unmount(self, m: Mount, timeout: float = 15.0) -> None:
        """Unmount cleanly and wait for the daemon to exit (it flushes and closes the store)."""
        res = mounttab.unmount(m.path, timeout=timeout)
        assert res.returncode == 0, res.stderr
        m.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        for m in reversed(self.mounts):
            try:
                mounttab.force_unmount(m.path)
            finally:
                if m.proc.poll() is None:
                    try:
                        m.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        os.killpg(m.proc.pid, signal.SIGKILL)
                        m.proc.wait(timeout=10)
        self.mounts.clear()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fs_source(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Source]:
    """A freshly formatted file system on the current backend."""
    src = _make_source(backend, tmp_path, request)
    yield src
    _drop_tables(src, request)


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[Mounter]:
    m = Mounter(tmp_path)
    try:
        yield m
    finally:
        m.cleanup()


# -- one mount per module and store, a fresh directory per test -------------------------------------
def public_dir(prefix: str) -> Path:
    """A directory every user can traverse (pytest's tmp_path is root-only), for mount points."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    return d


@pytest.fixture(scope="module", params=BACKENDS)
def shared_mount(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    src = _make_source(request.param, tmp_path_factory.mktemp(f"shared-{request.param}"), request)
    base = public_dir("dynlog-mnt-")
    m = Mounter(base)
    try:
        yield m.mount(src, options="allow_other")
    finally:
        m.cleanup()
        _drop_tables(src, request)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mnt(shared_mount: Mount, request: pytest.FixtureRequest) -> Path:
    """A new, empty directory (mode 0755, root's) on the shared mount."""
    d = Path(shared_mount.path) / f"{request.node.originalname}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    return d
