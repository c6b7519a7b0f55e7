"""``dynlog mkfs SOURCE [--block-size N]`` and ``dynlog status SOURCE``."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
from typing import Callable

from ..core.superblock import COMPRESSIONS, DEFAULT_BLOCK_SIZE, DEFAULT_COMPRESSION, Superblock, load_superblock, mkfs
from ..errors import QuietError
from ..store.base import Store
from ..store.source import open_store
from .common import store_from_args


def parse_size(text: str) -> int:
    """``131072``, ``128k``, ``128KiB``, ``1m``: a byte count."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = 1
    if t and t[-1] in "km":
        mult = 1024 if t[-1] == "k" else 1024 * 1024
        t = t[:-1]
    try:
        return int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- mkfs ------------------------------------------------------------------------------------------
def cmd_mkfs(args: argparse.Namespace) -> int:
    store = open_store(args.source, endpoint_url=args.endpoint_url)
    try:
        if args.source.startswith("local:"):
            d = os.path.dirname(store.source[len("local:"):])
            if d and not os.path.isdir(d):
                os.makedirs(d, exist_ok=True)
        sb, created = mkfs(store, args.block_size, compression=args.compression)
        if created:
            print(f"created a dynlog file system on {store.source} (block size {sb.block_size}, "
                  f"compression {sb.compression})")
        elif sb.block_size != args.block_size and args.block_size_given:
            raise QuietError(f"{store.source} already holds a dynlog file system with block size {sb.block_size} "
                             f"(not {args.block_size}); a block size cannot change")
        else:
            print(f"{store.source} already holds a dynlog file system (block size {sb.block_size}, "
                  f"created {_when(sb.created)}): left as it is")
    finally:
        store.close()
    return 0


# -- status ----------------------------------------------------------------------------------------
# Each section is a function (store, superblock) -> [(label, value)]; later work (sessions,
# locks, stream health) appends its own with add_status_section.
StatusSection = Callable[[Store, Superblock], list[tuple[str, str]]]
STATUS_SECTIONS: list[tuple[str, StatusSection]] = []


def add_status_section(title: str, section: StatusSection) -> None:
    STATUS_SECTIONS.append((title, section))


def _superblock_section(store: Store, sb: Superblock) -> list[tuple[str, str]]:
    return [
        ("source", store.source),
        ("format", str(sb.format)),
        ("block size", f"{sb.block_size} bytes"),
        ("compression", f"{sb.compression} (file contents, where it pays)" if sb.compresses else "none"),
        ("created", _when(sb.created)),
        ("root", f"inode {sb.root.ino}, mode {sb.root.mode & 0o7777:04o}, uid {sb.root.uid}, gid {sb.root.gid}"),
    ]


def _journal_section(store: Store, sb: Superblock) -> list[tuple[str, str]]:
    dirs = inodes = 0
    for pk in store.scan_partitions("meta"):
        s = str(pk)
        if s.startswith("d/"):
            dirs += 1
        elif s.startswith("i/"):
            inodes += 1
    return [("directory journals", str(dirs)), ("inode journals", str(inodes))]


def _session_section(store: Store, sb: Superblock) -> list[tuple[str, str]]:
    from ..cluster.sessions import list_sessions

    rows = []
    for s in sorted(list_sessions(store), key=lambda s: s.started):
        state = "alive" if s.alive() else "dead"
        rows.append((s.id, f"{state}, {s.host} pid {s.pid} at {s.mountpoint or '-'}, since {_when(s.started)}, "
                           f"heartbeat {_when(s.heartbeat)}, lease {s.lease():.0f} s"))
    return rows or [("sessions", "none")]


def _idle_cost_section(store: Store, sb: Superblock) -> list[tuple[str, str]]:
    """What one mount costs while idle, per month, from the adaptive-poll timings and prices."""
    from ..observe.cost import projection_lines

    rows = projection_lines()
    if store.source.startswith("local:"):
        rows.insert(0, ("note", "a local: store costs no DynamoDB money; the figures are for aws: file systems"))
    return rows


add_status_section("file system", _superblock_section)
add_status_section("journals", _journal_section)
add_status_section("sessions", _session_section)
add_status_section("idle cost per mount", _idle_cost_section)


def collect_status(store: Store) -> list[tuple[str, list[tuple[str, str]]]]:
    sb = load_superblock(store)
    return [(title, fn(store, sb)) for title, fn in STATUS_SECTIONS]


def format_status(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    width = max((len(k) for _, rows in sections for k, _ in rows), default=0)
    out = []
    for title, rows in sections:
        out.append(f"{title}:")
        out += [f"  {k + ':':<{width + 1}} {v}" for k, v in rows]
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        print(format_status(collect_status(store)))
    finally:
        store.close()
    return 0


# -- mount helper ----------------------------------------------------------------------------------
HELPER_LINK = "/sbin/mount.fuse.dynlog"


def cmd_install_helper(args: argparse.Namespace) -> int:
    """Link /sbin/mount.fuse.dynlog to our mount helper, so ``mount -t fuse.dynlog`` and
    /etc/fstab lines find it (mount(8) looks for /sbin/mount.<type>)."""
    target = shutil.which("mount.fuse.dynlog")
    if target is None:
        raise QuietError("mount.fuse.dynlog is not on PATH (install the package: pip install -e .)")
    link = args.path
    if os.path.islink(link) and os.readlink(link) == target:
        print(f"{link} -> {target} (already there)")
        return 0
    if os.path.lexists(link):
        if not os.path.islink(link):
            raise QuietError(f"{link} exists and is not a symlink: leaving it alone")
        os.unlink(link)
    try:
        os.symlink(target, link)
    except PermissionError:
        raise QuietError(f"cannot create {link}: permission denied (run as root)") from None
    print(f"{link} -> {target}")
    return 0


class _BlockSize(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        namespace.block_size = values
        namespace.block_size_given = True


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mkfs", help="create the tables and the superblock (idempotent)",
                       description="Create a dynlog file system on SOURCE: tables (on-demand, stream on) and "
                                   "superblock. Harmless on an existing one.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--block-size", type=parse_size, default=DEFAULT_BLOCK_SIZE, action=_BlockSize, metavar="N",
                   help=f"bytes per data block, a multiple of 4096 up to 384k (default {DEFAULT_BLOCK_SIZE})")
    p.add_argument("--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
                   help="store file contents compressed where that saves an eighth or more: fewer write and "
                        f"read units and stored GB on text (default {DEFAULT_COMPRESSION}; 'none' also keeps "
                        "the file system mountable by dynlog from before compression)")
    p.set_defaults(func=cmd_mkfs, block_size_given=False)

    s = sub.add_parser("status", help="show a file system's superblock and counts",
                       description="Print SOURCE's superblock and counts of its journals.")
    s.add_argument("source", metavar="SOURCE")
    s.set_defaults(func=cmd_status)

    h = sub.add_parser("install-mount-helper", help=f"create {HELPER_LINK} for mount -t fuse.dynlog and fstab",
                       description=f"Symlink {HELPER_LINK} to the mount.fuse.dynlog entry point.")
    h.add_argument("--path", default=HELPER_LINK, help=argparse.SUPPRESS)
    h.set_defaults(func=cmd_install_helper)

