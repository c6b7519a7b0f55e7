"""git on the mount: init, add, commit, log, branches and a merge, gc, fsck; clones out of the
mount, into it, and within it (where git hard-links the objects)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .treeutil import compare, run


def git(env: dict[str, str], *args: object, cwd: Path | None = None) -> str:
    return run("git", *args, cwd=cwd, env=env).stdout.decode()


@pytest.mark.timeout(180)
def test_git_workflow_and_clones(mnt: Path, source_tree: Path, prog_env: dict[str, str], tmp_path: Path) -> None:
    env = prog_env
    repo = mnt / "repo"
    git(env, "init", "-q", "-b", "main", repo)
    shutil.copytree(source_tree / "lib" / "json", repo / "json")
    shutil.copytree(source_tree / "lib" / "email" / "mime", repo / "email" / "mime")
    for name in ("__init__.py", "base64mime.py", "quoprimime.py", "charset.py"):
        shutil.copy2(source_tree / "lib" / "email" / name, repo / "email" / name)
    (repo / "run.sh").write_text("#!/bin/sh\nexec python3 -m json.tool \"$@\"\n")
    os.chmod(repo / "run.sh", 0o755)
    os.symlink("json/decoder.py", repo / "decoder-link")
    git(env, "add", "-A", cwd=repo)
    git(env, "commit", "-q", "-m", "import json and email", cwd=repo)

    # a second commit: modify, delete, rename
    with open(repo / "json" / "__init__.py", "a") as f:
        f.write("\n# changed on dynlog\n")
    git(env, "rm", "-q", "email/base64mime.py", cwd=repo)
    git(env, "mv", "email/quoprimime.py", "email/quopri_renamed.py", cwd=repo)
    git(env, "commit", "-q", "-am", "modify, delete, rename", cwd=repo)

    # a branch with its own commit, merged back with a merge commit
    git(env, "checkout", "-q", "-b", "feature", cwd=repo)
    (repo / "feature.txt").write_text("a feature\n")
    git(env, "add", "feature.txt", cwd=repo)
    git(env, "commit", "-q", "-m", "feature", cwd=repo)
    git(env, "checkout", "-q", "main", cwd=repo)
    (repo / "main.txt").write_text("on main\n")
    git(env, "add", "main.txt", cwd=repo)
    git(env, "commit", "-q", "-m", "main work", cwd=repo)
    git(env, "merge", "-q", "--no-edit", "feature", cwd=repo)

    log = git(env, "log", "--format=%s", cwd=repo).splitlines()
    assert log[0].startswith("Merge branch 'feature'") and log[-1] == "import json and email" and len(log) == 5
    assert git(env, "status", "--porcelain", cwd=repo) == ""
    assert (repo / "feature.txt").read_text() == "a feature\n" and not (repo / "email" / "base64mime.py").exists()
    git(env, "fsck", "--full", "--strict", "--no-dangling", cwd=repo)
    head = git(env, "rev-parse", "HEAD", cwd=repo).strip()

    # clone out of the mount
    out = tmp_path / "out"
    git(env, "clone", "-q", repo, out)
    git(env, "fsck", "--full", "--strict", "--no-dangling", cwd=out)
    assert git(env, "rev-parse", "HEAD", cwd=out).strip() == head
    assert compare(repo, out, owners=False, mtimes="", ignore=(b".git",)) == []

    # clone from a local repository into the mount (objects copied in)
    into = mnt / "into"
    git(env, "clone", "-q", "--no-hardlinks", out, into)
    git(env, "fsck", "--full", "--strict", "--no-dangling", cwd=into)
    assert git(env, "rev-parse", "HEAD", cwd=into).strip() == head
    assert compare(out, into, owners=False, mtimes="", ignore=(b".git",)) == []
    (into / "new.txt").write_text("pushed back\n")
    git(env, "add", "new.txt", cwd=into)
    git(env, "commit", "-q", "-m", "from the clone in the mount", cwd=into)
    git(env, "push", "-q", "origin", "main:from-mount", cwd=into)
    git(env, "fsck", "--full", "--strict", "--no-dangling", cwd=out)
    assert git(env, "log", "-1", "--format=%s", "from-mount", cwd=out).strip() == "from the clone in the mount"

    # clone within the mount: git hard-links the loose objects
    local = mnt / "local-clone"
    git(env, "clone", "-q", "--local", repo, local)
    objs = [p for p in (repo / ".git" / "objects").rglob("*") if p.is_file() and len(p.parent.name) == 2]
    assert objs, "the repository has loose objects"
    linked = local / ".git" / "objects" / objs[0].parent.name / objs[0].name
    assert os.stat(linked).st_ino == os.stat(objs[0]).st_ino and os.stat(objs[0]).st_nlink == 2

    # gc packs and prunes the loose objects (renames, unlinks) and all stays sound
    git(env, "gc", "-q", "--prune=now", cwd=repo)
    assert list((repo / ".git" / "objects" / "pack").glob("*.pack"))
    git(env, "fsck", "--full", "--strict", "--no-dangling", cwd=repo)
    git(env, "fsck", "--full", "--strict", "--no-dangling", cwd=local)  # its hard links kept the objects alive
    assert git(env, "rev-parse", "HEAD", cwd=repo).strip() == head
    assert git(env, "status", "--porcelain", cwd=repo) == ""
    assert "json/decoder.py" in git(env, "ls-files", cwd=repo).split()
