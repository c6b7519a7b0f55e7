"""Comparing two trees the way a user would expect a copy to match: names, types, contents,
modes, owners, mtimes (to the nanosecond where the tool keeps them), symlink targets, hard-link
groups and user xattrs."""

from __future__ import annotations

import filecmp
import os
import stat
import subprocess
from pathlib import Path
from typing import Any


def walk(root: Path) -> dict[bytes, os.stat_result]:
    """Relative path (bytes, so any name works) -> lstat, for everything under root."""
    out: dict[bytes, os.stat_result] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            out[os.path.relpath(full, base)] = os.lstat(full)
    return out


def link_groups(entries: dict[bytes, os.stat_result]) -> set[frozenset[bytes]]:
    """The sets of names sharing one inode (non-directories with st_nlink > 1)."""
    by_ino: dict[int, set[bytes]] = {}
    for rel, st in entries.items():
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            by_ino.setdefault(st.st_ino, set()).add(rel)
    return {frozenset(g) for g in by_ino.values()}


def xattrs(path: bytes) -> dict[str, bytes]:
    try:
        return {k: os.getxattr(path, k, follow_symlinks=False) for k in os.listxattr(path, follow_symlinks=False)
                if k.startswith("user.")}
    except OSError:
        return {}


def compare(a: Path, b: Path, *, owners: bool = True, mtimes: str = "ns", dir_mtimes: bool = True,
            links: bool = True, check_xattrs: bool = False, ignore: tuple[bytes, ...] = ()) -> list[str]:
    """Differences between tree ``a`` and tree ``b`` (empty when they match).
    ``mtimes``: "ns" (exact), "s" (whole seconds) or "" (not compared)."""
    ea, eb = walk(a), walk(b)
    for e in (ea, eb):
        for k in [k for k in e if any(k == i or k.startswith(i + b"/") for i in ignore)]:
            del e[k]
    diffs: list[str] = []
    if set(ea) != set(eb):
        diffs.append(f"names only in {a}: {sorted(set(ea) - set(eb))[:10]}; only in {b}: "
                     f"{sorted(set(eb) - set(ea))[:10]}")
    ba, bb = os.fsencode(a), os.fsencode(b)
    for rel in sorted(set(ea) & set(eb)):
        sa, sb = ea[rel], eb[rel]
        name = rel.decode(errors="replace")
        if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
            diffs.append(f"{name}: type {oct(sa.st_mode)} != {oct(sb.st_mode)}")
            continue
        if not stat.S_ISLNK(sa.st_mode) and stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
            diffs.append(f"{name}: mode {oct(sa.st_mode)} != {oct(sb.st_mode)}")
        if owners and (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            diffs.append(f"{name}: owner {(sa.st_uid, sa.st_gid)} != {(sb.st_uid, sb.st_gid)}")
        pa, pb = os.path.join(ba, rel), os.path.join(bb, rel)
        if stat.S_ISREG(sa.st_mode):
            if sa.st_size != sb.st_size:
                diffs.append(f"{name}: size {sa.st_size} != {sb.st_size}")
            elif not filecmp.cmp(pa, pb, shallow=False):
                diffs.append(f"{name}: contents differ")
        elif stat.S_ISLNK(sa.st_mode) and os.readlink(pa) != os.readlink(pb):
            diffs.append(f"{name}: symlink {os.readlink(pa)!r} != {os.readlink(pb)!r}")
        is_dir = stat.S_ISDIR(sa.st_mode)
        if mtimes and (dir_mtimes or not is_dir):
            ta, tb = (sa.st_mtime_ns, sb.st_mtime_ns) if mtimes == "ns" else (int(sa.st_mtime), int(sb.st_mtime))
            if ta != tb:
                diffs.append(f"{name}: mtime {sa.st_mtime_ns} != {sb.st_mtime_ns}")
        if check_xattrs and (stat.S_ISREG(sa.st_mode) or is_dir) and xattrs(pa) != xattrs(pb):
            diffs.append(f"{name}: xattrs {xattrs(pa)} != {xattrs(pb)}")
    if links and link_groups(ea) != link_groups(eb):
        diffs.append(f"hard links {sorted(map(sorted, link_groups(ea)))} != {sorted(map(sorted, link_groups(eb)))}")
    return diffs


def run(*cmd: Any, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 120,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a program; fail with its output if it exits non-zero."""
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, timeout=timeout, input=input)
    assert res.returncode == 0, (f"{' '.join(map(str, cmd))} exited {res.returncode}\n"
                                 f"stdout: {res.stdout.decode(errors='replace')[-3000:]}\n"
                                 f"stderr: {res.stderr.decode(errors='replace')[-3000:]}")
    return res
