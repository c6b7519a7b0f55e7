"""Fixtures of the history and maintenance tests (replay, restore, diff, compact, fsck).

  ``fs``        mkfs on the fresh ``store`` (both backends), then a FileSystem on it.
  ``new_fs``    ``new_fs()`` opens another FileSystem on another store object over the same
                tables (a second client: its own caches), closed at the end.
  ``cli``       ``cli("replay", "/docs", "--json")`` runs ``dynlog replay SOURCE /docs --json``
                in-process against the same tables and returns (exit code, stdout, stderr).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator

import pytest

from dynlog.cli.main import main
from dynlog.core.attrs import ROOT
from dynlog.core.filesystem import FileSystem
from dynlog.core.superblock import mkfs
from dynlog.store.base import Store






@pytest.fixture
def cli(store: Store, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    endpoint = getattr(store, "endpoint_url", None)

    def run(command: str, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        argv = (["--endpoint-url", endpoint] if endpoint else []) + [command, store.source, *args]
        rc = main(argv)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


# -- helpers ------------------------------------------------------------------------------------

def write_file(fs: FileSystem, path: str, data: bytes, mode: int = 0o644, truncate: bool = True) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    try:
        fs.getattr(path)
        fh = fs.open(path, flags & ~os.O_CREAT, ROOT)
    except Exception:  # noqa: BLE001
        fh = fs.create(path, mode, flags, ROOT)
    try:
        if data:
            fs.write(fh, data, 0, ROOT)
    finally:
        fs.release(fh, ROOT)


def read_file(fs: FileSystem, path: str) -> bytes:
    fh = fs.open(path, os.O_RDONLY, ROOT)
    try:
        size = fs.getattr(path, fh)["st_size"]
        return fs.read(fh, size + 1, 0)
    finally:
        fs.release(fh, ROOT)


def tick() -> int:
    """A time strictly between the step just done and the next one."""
    time.sleep(0.003)
    t = time.time_ns()
    time.sleep(0.003)
    return t


def tree_of(fs: FileSystem, path: str = "/") -> dict[str, tuple[str, int]]:
    """path -> (type, size) of everything below ``path``."""
    out: dict[str, tuple[str, int]] = {}
    for name, _ in fs.readdir(path):
        if name in (".", ".."):
            continue
        p = (path.rstrip("/") + "/" + name)
        st = fs.getattr(p)
        import stat

        kind = "dir" if stat.S_ISDIR(st["st_mode"]) else "symlink" if stat.S_ISLNK(st["st_mode"]) else "file"
        out[p] = (kind, 0 if kind == "dir" else st["st_size"])
        if kind == "dir":
            out.update(tree_of(fs, p))
    return out


@pytest.fixture
def new_fs(new_client: Callable[..., FileSystem]) -> Callable[..., FileSystem]:
    """The history tests' name for ``new_client``."""
    return new_client
