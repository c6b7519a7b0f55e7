"""POSIX conformance suite on a real mount, organised by system call (one file per call), on both
stores. Modelled on pjdfstest: for each call, the errno values it must return and its effects on
the attributes of the object and of its parent directory.

Fixtures: ``posix_mount`` is one ``allow_other`` mount per store for the whole session (built with
the mounter of tests/mounted/conftest.py, torn down the same safe way); ``mnt`` is a fresh
directory (root's, 0755) on it for each test. ``wdir`` is the same made world-writable (0777).

tests/posix is not a package (a package named ``posix`` would shadow the standard library's), so
its helpers live in ``posix_util`` and its test modules have names no other directory uses.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from mounted.conftest import BACKENDS, Mount, Mounter, _drop_tables, _make_source, public_dir

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.mounted)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(60))


@pytest.fixture(scope="session", params=BACKENDS)
def posix_mount(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    src = _make_source(request.param, tmp_path_factory.mktemp(f"posix-{request.param}"), request)
    base = public_dir("dynlog-posix-")
    m = Mounter(base)
    try:
        yield m.mount(src, options="allow_other")
    finally:
        m.cleanup()
        _drop_tables(src, request)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mnt(posix_mount: Mount, request: pytest.FixtureRequest) -> Path:
    """A new, empty directory (mode 0755, root's) on the session's mount of the current store."""
    d = Path(posix_mount.path) / f"{request.node.originalname}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    os.chmod(d, 0o755)
    return d


@pytest.fixture(autouse=True)
def _umask() -> Iterator[None]:
    """Every test starts with umask 022 (tests that need another set it themselves)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def wdir(mnt: Path) -> Path:
    """``mnt`` made world-writable (0777, no sticky bit)."""
    os.chmod(mnt, 0o777)
    return mnt
