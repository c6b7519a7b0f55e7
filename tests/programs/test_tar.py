"""A real tree (Python standard library packages, /usr/share/doc with its symlinks, and odd
files) copied into the mount with tar, compared byte for byte and attribute for attribute, and
tarred back out."""

from __future__ import annotations

from pathlib import Path

import pytest

from .treeutil import compare, run, walk

TAR_OPTS = ["--format=posix", "--xattrs", "--xattrs-include=user.*", "--sparse"]


@pytest.mark.timeout(180)
def test_tar_pipe_in_and_out(mnt: Path, source_tree: Path, tmp_path: Path) -> None:
    dst = mnt / "tree"
    dst.mkdir()
    # tar c | tar x into the mount (root: owners, modes and nanosecond mtimes restored)
    run("bash", "-o", "pipefail", "-c",
        f'tar {" ".join(TAR_OPTS)} -C "$0" -cf - . | tar --xattrs --xattrs-include="user.*" -C "$1" -xpf -',
        source_tree, dst)
    assert compare(source_tree, dst, check_xattrs=True) == []
    # a second, independent comparison of the contents
    run("diff", "-r", "--no-dereference", "--exclude=fifo", source_tree, dst)
    n = len(walk(dst))
    assert n > 200, f"the tree should be a few hundred entries, has {n}"

    # and back out of the mount into a local directory
    back = tmp_path / "back"
    back.mkdir()
    run("bash", "-o", "pipefail", "-c",
        f'tar {" ".join(TAR_OPTS)} -C "$0" -cf - . | tar --xattrs --xattrs-include="user.*" -C "$1" -xpf -',
        dst, back)
    assert compare(source_tree, back, check_xattrs=True) == []
    sparse = back / "extra" / "sparse"
    assert sparse.stat().st_size == 3 * 1024 * 1024 + len(b"end of a sparse file")


def test_tar_archive_listing_and_verify(mnt: Path, source_tree: Path, tmp_path: Path) -> None:
    """An archive written onto the mount is read back by tar's own verification (--compare)
    against the source, and lists the same members as one written locally (extraction into the
    mount is test_tar_pipe_in_and_out's)."""
    local_tar = tmp_path / "local.tar"
    run("tar", "--format=posix", "--sort=name", "-C", source_tree / "lib", "-cf", local_tar, ".")
    mounted_tar = mnt / "lib.tar"
    run("tar", "--format=posix", "--sort=name", "-C", source_tree / "lib", "-cf", mounted_tar, ".")
    assert mounted_tar.stat().st_size == local_tar.stat().st_size
    run("tar", "-C", source_tree / "lib", "--compare", "-f", mounted_tar)  # exits 1 on any difference
    listing = run("tar", "-tvf", mounted_tar).stdout
    assert listing == run("tar", "-tvf", local_tar).stdout and b"json/decoder.py" in listing
