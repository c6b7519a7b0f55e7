"""Programs that rewrite files in place the way users edit them: vim (a swap file beside the file,
a backup by rename, then a new file given the old one's mode, owner and xattrs, or a copy in
place when the file has other names), sed -i, patch, and zip/unzip round trips."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .treeutil import compare, run

VIM = ["vim", "-N", "-u", "NONE", "-i", "NONE", "-es"]
NOBODY = 65534


def vim_substitute(path: Path, env: dict[str, str], *settings: str) -> None:
    """Edit with vim in ex mode, as a script would: substitute, write, quit."""
    cmds = [a for s in settings for a in ("-c", s)]
    run(*VIM, *cmds, "-c", "%s/draft/final/", "-c", "wq", path, env=env)


def leftovers(d: Path, keep: set[str]) -> set[str]:
    return {p.name for p in d.iterdir()} - keep


@pytest.mark.parametrize("backupcopy", ["auto", "no", "yes"])
def test_vim_write_keeps_the_file_whole(mnt: Path, prog_env: dict[str, str], backupcopy: str) -> None:
    doc = mnt / "notes.txt"
    doc.write_text("a draft\nanother draft line\n")
    os.chmod(doc, 0o640)
    os.chown(doc, NOBODY, NOBODY)
    os.setxattr(doc, "user.tag", b"kept")
    vim_substitute(doc, prog_env, f"set backupcopy={backupcopy}", "set writebackup")
    assert doc.read_text() == "a final\nanother final line\n"
    st = doc.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, NOBODY, NOBODY)
    assert os.getxattr(doc, "user.tag") == b"kept"
    # the swap file, the backup and vim's probe file "4913" are all gone
    assert leftovers(mnt, {"notes.txt"}) == set()


def test_vim_edits_a_hard_linked_file_in_place(mnt: Path, prog_env: dict[str, str]) -> None:
    doc = mnt / "shared.txt"
    doc.write_text("draft\n")
    os.link(doc, mnt / "other-name.txt")
    vim_substitute(doc, prog_env, "set backupcopy=auto")
    assert (mnt / "other-name.txt").read_text() == doc.read_text() == "final\n"
    assert doc.stat().st_ino == (mnt / "other-name.txt").stat().st_ino
    assert doc.stat().st_nlink == 2
    assert leftovers(mnt, {"shared.txt", "other-name.txt"}) == set()


def test_sed_in_place_keeps_mode_and_owner(mnt: Path) -> None:
    f = mnt / "config"
    f.write_text("mode=draft\n")
    os.chmod(f, 0o600)
    os.chown(f, NOBODY, 0)
    ino = f.stat().st_ino
    run("sed", "-i", "s/draft/final/", f)
    st = f.stat()
    assert f.read_text() == "mode=final\n"
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, NOBODY, 0)
    assert st.st_ino != ino  # a new file renamed over the old one
    assert leftovers(mnt, {"config"}) == set()


def test_diff_and_patch_a_tree(mnt: Path, tmp_path: Path) -> None:
    old, new = mnt / "old", tmp_path / "new"
    for root in (old, new):
        (root / "sub").mkdir(parents=True)
    lines = [f"line {i}\n" for i in range(200)]
    (old / "a.txt").write_text("".join(lines))
    (old / "sub" / "gone.txt").write_text("to be removed\n")
    (old / "script.sh").write_text("#!/bin/sh\necho old\n")
    os.chmod(old / "script.sh", 0o755)
    (new / "a.txt").write_text("".join(lines[:50] + ["inserted\n"] + lines[60:]))
    (new / "sub" / "added.txt").write_text("a new file\n")
    (new / "script.sh").write_text("#!/bin/sh\necho new\n")
    os.chmod(new / "script.sh", 0o755)
    base = tmp_path / "base"
    run("cp", "-a", old, base)
    diff = run_diff(base, new)
    run("patch", "-p1", "-d", old, "--no-backup-if-mismatch", "-s", input=diff)
    assert not (old / "sub" / "gone.txt").exists()
    assert compare(old, new, owners=False, mtimes="") == []
    assert run("sh", old / "script.sh").stdout == b"new\n"


def run_diff(a: Path, b: Path) -> bytes:
    """``diff -ruN`` of two sibling trees; it exits 1 when they differ, which is what is wanted."""
    res = subprocess.run(["diff", "-ruN", a.name, b.name], cwd=a.parent, capture_output=True, timeout=60)
    assert res.returncode == 1, res.stderr
    return res.stdout


def test_zip_and_unzip_round_trip(mnt: Path, source_tree: Path, tmp_path: Path) -> None:
    src = source_tree / "lib"
    archive = mnt / "lib.zip"
    run("zip", "-q", "-r", "-X", archive, "lib", cwd=source_tree)
    assert run("unzip", "-tq", archive).stdout.startswith(b"No errors detected")
    run("unzip", "-q", archive, "-d", mnt / "out")
    assert compare(src, mnt / "out" / "lib", owners=False, mtimes="", dir_mtimes=False) == []
    # and back off the mount: an archive made there reads back elsewhere
    run("zip", "-q", "-r", "-X", tmp_path / "again.zip", "lib", cwd=mnt / "out")
    run("unzip", "-q", tmp_path / "again.zip", "-d", tmp_path / "again")
    assert compare(src, tmp_path / "again" / "lib", owners=False, mtimes="", dir_mtimes=False) == []
