"""Real programs on a real mount, on both stores: tar, git, sqlite3, cp -a, rsync -a, compileall,
gcc and make, vim, sed -i, patch, zip and unzip.

Fixtures: ``shared_mount`` / ``mnt`` come from tests/mounted/conftest.py (one ``allow_other``
mount per module and store, a fresh root-owned directory per test). ``source_tree`` is a local
tree (on the temp file system, not on dynlog) of real files: part of the Python standard library
and of /usr/share/doc (with its symlinks), plus what real trees also hold: hard links, an empty
directory, odd modes, a sparse file, non-UTF-8 names, a FIFO, user xattrs, nanosecond mtimes.
``prog_env`` is an environment for the programs: a private HOME, fixed git identity, C locale.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Iterator

import pytest

from mounted.conftest import mnt, shared_mount  # noqa: F401  (fixtures, re-exported for this directory)

HERE = Path(__file__).parent
PYLIB = Path(os.__file__).resolve().parent  # the interpreter's standard library
SYSTEM_PYLIB = Path("/usr/lib/python3.11")
STDLIB_PACKAGES = ["json", "email", "http", "tomllib", "html", "wsgiref"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.mounted)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(120))


def stdlib_dir() -> Path:
    return PYLIB if (PYLIB / "json" / "__init__.py").exists() else SYSTEM_PYLIB


def _copy_plain(src: Path, dst: Path) -> None:
    """Copy a tree keeping symlinks, without __pycache__ (and without following anything)."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    lib = root / "lib"
    lib.mkdir()
    for pkg in STDLIB_PACKAGES:
        _copy_plain(stdlib_dir() / pkg, lib / pkg)
    doc = root / "doc"
    doc.mkdir()
    for d in sorted(Path("/usr/share/doc").glob("[ab]*")):
        if d.is_symlink():
            os.symlink(os.readlink(d), doc / d.name)
        elif d.is_dir():
            _copy_plain(d, doc / d.name)
    extra = root / "extra"
    extra.mkdir()
    (extra / "empty-dir").mkdir()
    (extra / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (extra / "nested" / "deeper" / "deepest" / "leaf.txt").write_bytes(b"leaf\n")
    (extra / "hard-a").write_bytes(b"one inode, three names\n")
    os.link(extra / "hard-a", extra / "hard-b")
    os.link(extra / "hard-a", extra / "nested" / "hard-c")
    (extra / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(extra / "script.sh", 0o755)
    (extra / "private").write_bytes(b"secret\n")
    os.chmod(extra / "private", 0o600)
    (extra / "setuid").write_bytes(b"")
    os.chmod(extra / "setuid", 0o4755)
    (extra / "sticky-dir").mkdir()
    os.chmod(extra / "sticky-dir", 0o1777)
    with open(extra / "sparse", "wb") as f:
        f.seek(3 * 1024 * 1024)
        f.write(b"end of a sparse file")
    (extra / "random.bin").write_bytes(os.urandom(700_000))
    (extra / "empty-file").write_bytes(b"")
    os.mkfifo(extra / "fifo", 0o640)
    os.symlink("hard-a", extra / "rel-link")
    os.symlink("/nonexistent/target", extra / "dangling-link")
    os.symlink("nested/deeper", extra / "dir-link")
    nonutf8 = os.fsencode(extra) + b"/caf\xe9-\xff.txt"
    with open(nonutf8, "wb") as f:
        f.write(b"latin-1 name\n")
    (extra / ("long-" + "n" * 250)).write_bytes(b"255-byte name\n")
    (extra / "with xattr").write_bytes(b"x\n")
    os.setxattr(extra / "with xattr", "user.origin", b"dynlog test")
    # nanosecond mtimes (and old ones) on some files and directories
    os.utime(extra / "hard-a", ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    os.utime(extra / "random.bin", ns=(1_234_567_890_000_000_001, 1_234_567_890_000_000_999))
    os.utime(extra / "rel-link", ns=(1_500_000_000_000_000_007, 1_500_000_000_000_000_007), follow_symlinks=False)
    os.utime(extra / "nested" / "deeper", ns=(1_400_000_000_111_111_111, 1_400_000_000_222_222_222))
    return root


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("source") / "tree")


@pytest.fixture
def prog_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "git-template").mkdir()  # no sample hooks copied into every repository
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LC_"))}
    env.update({
        "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
        "GIT_AUTHOR_NAME": "Dyn Log", "GIT_AUTHOR_EMAIL": "dynlog@example.invalid",
        "GIT_COMMITTER_NAME": "Dyn Log", "GIT_COMMITTER_EMAIL": "dynlog@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_TEMPLATE_DIR": str(tmp_path / "git-template"),
    })
    yield env


def has_special(path: Path) -> bool:
    return any(stat.S_ISFIFO(p.lstat().st_mode) for p in path.rglob("*"))
