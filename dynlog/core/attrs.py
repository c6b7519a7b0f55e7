"""Turning inodes into the stat results FUSE wants, and small POSIX helpers."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..errors import FsError
from ..journal.inode import Inode
import errno

NAME_MAX = 255


@dataclass(frozen=True)
class Caller:
    """Who asks: the FUSE context of the request (uid, gid, pid)."""

    uid: int = 0
    gid: int = 0
    pid: int = 0


ROOT = Caller(0, 0, 0)


def check_name(name: str) -> None:
    if len(os.fsencode(name)) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG, f"name longer than {NAME_MAX} bytes")
    if name in ("", ".", ".."):
        raise FsError(errno.EINVAL, f"bad name {name!r}")


def split_path(path: str) -> tuple[str, str]:
    path = path.rstrip("/") or "/"
    if path == "/":
        return "/", ""
    head, _, name = path.rpartition("/")
    return head or "/", name


def components(path: str) -> list[str]:
    return [c for c in path.split("/") if c]


def allocated_bytes(inode: Inode, block_size: int) -> int:
    """What ``st_blocks`` reports: the mapped blocks, each counted only up to the file's size,
    rounded up to 4 KiB, so a small file does not look like a whole block. Inline bytes count
    as allocated: ``tar --sparse`` and ``cp`` take a file with no blocks for all holes."""
    if inode.data is not None:
        return -(-inode.size // 4096) * 4096
    total = 0
    for start, count, _ in inode.blocks:
        lo = start * block_size
        hi = min((start + count) * block_size, max(inode.size, lo))
        if hi > lo:
            total += -(-(hi - lo) // 4096) * 4096
    return total


def to_stat(inode: Inode, block_size: int) -> dict[str, int]:
    st = {
        "st_mode": inode.mode,
        "st_ino": inode.ino,
        "st_nlink": inode.nlink,
        "st_uid": inode.uid,
        "st_gid": inode.gid,
        "st_size": len(os.fsencode(inode.target)) if inode.is_link else (4096 if inode.is_dir else inode.size),
        "st_atime": inode.atime,
        "st_mtime": inode.mtime,
        "st_ctime": inode.ctime,
        "st_blocks": allocated_bytes(inode, block_size) // 512,
        "st_blksize": block_size,
        "st_rdev": inode.rdev,
    }
    return st


def is_type(mode: int) -> int:
    return stat.S_IFMT(mode)
