"""readdir(3)/getdents(2) on a mount: '.' and '..', d_type and d_ino, every entry once, entries
added and removed between reads, directories that are not readable or searchable."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from posix_util import as_nobody, err, make, raises, touch

DT = {"regular": "is_file", "dir": "is_dir", "symlink": "is_symlink"}


def test_dot_entries_types_and_inodes(mnt: Path) -> None:
    kinds = ["regular", "dir", "fifo", "socket", "char", "block", "symlink"]
    for k in kinds:
        make(k, mnt / k)
    with os.scandir(mnt) as it:
        entries = {e.name: e for e in it}
    assert sorted(entries) == sorted(kinds), "scandir leaves out '.' and '..'; everything else once"
    for name, e in entries.items():
        st = os.lstat(mnt / name)
        assert e.inode() == st.st_ino, name
        assert stat.S_IFMT(e.stat(follow_symlinks=False).st_mode) == stat.S_IFMT(st.st_mode)
    assert entries["regular"].is_file(follow_symlinks=False) and entries["dir"].is_dir(follow_symlinks=False)
    assert entries["symlink"].is_symlink() and not entries["fifo"].is_file(follow_symlinks=False)
    # the raw listing has '.' and '..' with the right inodes (ls -a)
    import subprocess

    out = subprocess.run(["ls", "-a1i", str(mnt)], capture_output=True, text=True, check=True).stdout.split("\n")
    inos = {line.split()[1]: int(line.split()[0]) for line in out if line.strip()}
    assert inos["."] == os.stat(mnt).st_ino and inos[".."] == os.stat(mnt.parent).st_ino
    assert len(inos) == len(kinds) + 2


def test_many_entries_each_once(mnt: Path) -> None:
    names = {f"e{i:04d}-" + "n" * (i % 50) for i in range(150)}
    for n in names:
        touch(mnt / n)
    listed = os.listdir(mnt)
    assert len(listed) == len(set(listed)) == 150 and set(listed) == names


def test_changes_between_listings(mnt: Path) -> None:
    for i in range(20):
        touch(mnt / f"f{i}")
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = sorted(os.listdir(fd))
        touch(mnt / "new")
        os.unlink(mnt / "f0")
        os.rename(mnt / "f1", mnt / "f1-renamed")
        os.lseek(fd, 0, os.SEEK_SET)  # rewinddir: the next read sees the current directory
        second = sorted(os.listdir(fd))
    finally:
        os.close(fd)
    assert len(first) == 20
    assert second == sorted([f"f{i}" for i in range(2, 20)] + ["new", "f1-renamed"])


def test_permissions(mnt: Path) -> None:
    os.mkdir(mnt / "noread", 0o711)
    touch(mnt / "noread" / "known")
    os.mkdir(mnt / "nosearch", 0o744)
    touch(mnt / "nosearch" / "f")
    got = as_nobody(lambda: {
        "list noread": err(lambda: os.listdir(mnt / "noread")),
        "stat in noread": err(lambda: os.stat(mnt / "noread" / "known")),
        "list nosearch": err(lambda: os.listdir(mnt / "nosearch")),
        "stat in nosearch": err(lambda: os.stat(mnt / "nosearch" / "f")),
    })
    assert got == {"list noread": "EACCES", "stat in noread": "0", "list nosearch": "0",
                   "stat in nosearch": "EACCES"}


def test_errnos(mnt: Path) -> None:
    f = touch(mnt / "f")
    with raises(errno.ENOTDIR):
        os.listdir(f)
    with raises(errno.ENOENT):
        os.listdir(mnt / "missing")
    os.symlink(".", mnt / "self")
    assert sorted(os.listdir(mnt / "self")) == ["f", "self"]
