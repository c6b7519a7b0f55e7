"""cp -a and rsync -aHX round trips through the mount: modes, owners, nanosecond mtimes (of
files, directories and symlinks), symlinks, hard links (same st_ino, st_nlink), FIFOs, sparse
files, user xattrs; rsync's second pass finds nothing to do, and its updates and deletions land."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .treeutil import compare, run, walk


@pytest.fixture
def tree(source_tree: Path, tmp_path: Path) -> Path:
    """A modest local tree: the odd files, one stdlib package and one doc directory."""
    t = tmp_path / "tree"
    t.mkdir()
    for part in ("extra", "lib/json", "lib/email/mime", "doc/bash"):
        (t / part).parent.mkdir(parents=True, exist_ok=True)
        run("cp", "-a", source_tree / part, t / part)
    os.utime(t / "lib", ns=(1_300_000_000_000_000_001, 1_300_000_000_000_000_001))
    # rsync leaves a sub-second difference alone (on any file system): give whatever was made in
    # this second an older mtime, with nanoseconds, so exact equality can be asserted everywhere
    recent = time.time_ns() - 60 * 10**9
    for i, (rel, st) in enumerate(sorted(walk(t).items())):
        if st.st_mtime_ns > recent:
            ns = 1_700_000_000_000_000_000 + i * 1_000_001_001
            os.utime(os.path.join(os.fsencode(t), rel), ns=(ns, ns), follow_symlinks=False)
    return t


def check_links(root: Path) -> None:
    a, b, c = root / "extra" / "hard-a", root / "extra" / "hard-b", root / "extra" / "nested" / "hard-c"
    assert os.stat(a).st_ino == os.stat(b).st_ino == os.stat(c).st_ino
    assert os.stat(a).st_nlink == os.stat(b).st_nlink == os.stat(c).st_nlink == 3


@pytest.mark.timeout(180)
def test_cp_a_round_trip(mnt: Path, tree: Path, tmp_path: Path) -> None:
    run("cp", "-a", tree, mnt / "copy")
    assert compare(tree, mnt / "copy", check_xattrs=True) == []
    check_links(mnt / "copy")
    assert len(walk(mnt / "copy")) == len(walk(tree)) > 50
    run("cp", "-a", mnt / "copy", tmp_path / "back")
    assert compare(tree, tmp_path / "back", check_xattrs=True) == []
    check_links(tmp_path / "back")
    # cp -a within the mount (reads and writes both on dynlog)
    run("cp", "-a", mnt / "copy" / "extra", mnt / "extra2")
    assert compare(tree / "extra", mnt / "extra2", check_xattrs=True) == []


@pytest.mark.timeout(180)
def test_rsync_round_trip(mnt: Path, tree: Path, tmp_path: Path) -> None:
    dst = mnt / "r"
    rsync = ["rsync", "-aHX", "--numeric-ids"]
    run(*rsync, f"{tree}/", f"{dst}/")
    assert compare(tree, dst, check_xattrs=True) == []
    check_links(dst)
    # a second pass finds every file up to date (sizes and mtimes kept exactly)
    again = run(*rsync, "--itemize-changes", f"{tree}/", f"{dst}/").stdout
    assert again == b"", again.decode(errors="replace")
    # an update and a deletion at the source: only they travel
    (tree / "lib" / "json" / "tool.py").write_bytes(b"# replaced\n")
    (tree / "extra" / "empty-file").unlink()
    os.utime(tree / "extra", ns=(1_650_000_000_000_000_009,) * 2)  # not this second (see the fixture)
    out = run(*rsync, "--delete", "--itemize-changes", f"{tree}/", f"{dst}/").stdout.decode()
    changed = sorted(line.split(None, 1)[1] for line in out.splitlines() if line[:1] in (">", "*"))
    assert changed == ["extra/empty-file", "lib/json/tool.py"], out
    assert (dst / "lib" / "json" / "tool.py").read_bytes() == b"# replaced\n"
    assert not (dst / "extra" / "empty-file").exists()
    assert compare(tree, dst, check_xattrs=True) == []
    # and back out of the mount
    back = tmp_path / "back"
    run(*rsync, f"{dst}/", f"{back}/")
    assert compare(tree, back, check_xattrs=True) == []
    check_links(back)
    # rsync --inplace rewrites a file in place (no temporary file and rename)
    (tree / "extra" / "random.bin").write_bytes(os.urandom(300_000))
    run(*rsync, "--inplace", "--no-whole-file", f"{tree}/", f"{dst}/")
    assert compare(tree, dst, check_xattrs=True) == []
