"""Fixtures for tests with several ``dynlog mount`` processes on one file system, on both stores.

  ``fs_source``  a fresh, formatted file system: ``sqlite`` (local:PATH, the SQLite change feed)
                 and ``dynamodb`` (DynamoDB Local, the relay: stream -> bulletin -> mounts).
  ``mounter``    ``mounter.mount(source, options=..., env=...)`` starts ``dynlog mount -f`` and
                 returns a Mount once it answers; every mount is torn down at the end, hung or
                 killed daemons included (tests/mounted/conftest.py).
  ``mount_all``  ``mount_all(source, n, env=...)``: n mounts started in parallel.

Helpers: ``until`` polls a condition every 5 ms and returns how long it took; ``Proc`` drives a
helper script (lockctl.py) line by line in a child process.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

# tests/ is on sys.path (root conftest); the mount machinery is tests/mounted's, reused as it is.
from mounted.conftest import BACKENDS, REPO, Mount, Mounter, Source, _drop_tables, _make_source, run_cli  # noqa: F401
from mounted.conftest import backend, fs_source, mounter  # noqa: F401 - the same fixtures, not copies

HERE = Path(__file__).resolve().parent
POLL = 0.005  # seconds between polls when measuring how long a change takes to show
BOUND = 10.0  # generous correctness bound for a change to show on another mount (not a target)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.mounted)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(150))




def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


@pytest.fixture
def mount_all(mounter: Mounter) -> Callable[..., list[Mount]]:
    def mount_all(source: Source, n: int, **kw) -> list[Mount]:
        out: list[Mount | None] = [None] * n
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                out[i] = mounter.mount(source, **kw)
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        if errors:
            raise errors[0]
        return [m for m in out if m is not None]

    return mount_all


def until(check: Callable[[], bool], timeout: float = BOUND, what: str = "condition") -> float:
    """Poll ``check`` every 5 ms; the seconds until it held. Fails after ``timeout``."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not true after {timeout} s")
        time.sleep(POLL)


def daemon_errors(m: Mount) -> list[str]:
    """Lines of a mount's log that report a bug (an unexpected exception turned into EIO)."""
    return [ln for ln in m.log_text().splitlines() if "unexpected_error" in ln or "Traceback" in ln]


class Proc:
    """A helper script in a child process, driven by one command line per request (see
    lockctl.py). ``ask`` sends a command and returns the reply; ``send``/``reply`` split that
    for commands that block."""

    def __init__(self, script: str, *args: str, cwd: str | None = None) -> None:
        self.p = subprocess.Popen([sys.executable, str(HERE / script), *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, cwd=cwd)
        self.pid = self.p.pid

    def send(self, *words: object) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.p.stdin.flush()

    def ready(self, timeout: float) -> bool:
        assert self.p.stdout is not None
        return bool(select.select([self.p.stdout], [], [], timeout)[0])

    def reply(self, timeout: float = 30.0) -> dict:
        if not self.ready(timeout):
            raise AssertionError(f"helper {self.pid} did not answer within {timeout} s")
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError(f"helper {self.pid} died: {self.p.stderr.read() if self.p.stderr else ''}")
        return json.loads(line)

    def ask(self, *words: object, timeout: float = 30.0) -> dict:
        self.send(*words)
        return self.reply(timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    made: list[Proc] = []

    def start(script: str, *args: str) -> Proc:
        p = Proc(script, *args)
        made.append(p)
        return p

    yield start
    for p in made:
        p.kill()
