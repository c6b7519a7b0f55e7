"""Reading the kernel's mount table and getting rid of FUSE mounts, without touching them.

Everything here avoids stat() on the mount point itself: a FUSE mount whose daemon hangs blocks
any process that stats it, beyond SIGKILL. /proc/self/mountinfo and /sys/fs/fuse/connections
answer without asking the daemon.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass

FUSECTL = "/sys/fs/fuse/connections"


@dataclass(frozen=True)
class MountEntry:
    mountpoint: str
    fstype: str  # "fuse.dynlog", "ext4", ...
    source: str
    major: int
    minor: int
    options: str

    @property
    def is_fuse(self) -> bool:
        return self.fstype == "fuse" or self.fstype.startswith("fuse.")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    out = bytearray()
    raw = os.fsencode(field)
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 4 <= len(raw) and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mounts() -> list[MountEntry]:
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f.read().decode("utf-8", "surrogateescape").splitlines():
            left, _, right = line.partition(" - ")
            lf = left.split(" ")
            rf = right.split(" ")
            if len(lf) < 6 or len(rf) < 2:
                continue
            major, _, minor = lf[2].partition(":")
            out.append(MountEntry(_unescape(lf[4]), rf[0], _unescape(rf[1]), int(major), int(minor), lf[5]))
    return out


def _abspath(path: str) -> str:
    # No realpath on the last component: resolving it would stat a possibly hung mount.
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(head), tail)


def find_mount(path: str) -> MountEntry | None:
    """The mount whose mount point is ``path`` (the topmost one if stacked), or None."""
    want = _abspath(path)
    found = None
    for m in mounts():
        if m.mountpoint == want:
            found = m
    return found


def abort_connection(entry: MountEntry) -> bool:
    """Abort the FUSE connection behind ``entry`` (all its requests fail with ENOTCONN at once).
    Needs fusectl mounted at /sys/fs/fuse/connections (mounted here if it is not)."""
    if not entry.is_fuse:
        return False
    if not os.path.isdir(os.path.join(FUSECTL, str(entry.minor))):
        subprocess.run(["mount", "-t", "fusectl", "none", FUSECTL], capture_output=True, timeout=10)
    path = os.path.join(FUSECTL, str(entry.minor), "abort")
    try:
        with open(path, "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def unmount(path: str, lazy: bool = False, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """fusermount3 -u (the unprivileged way), falling back to umount(8)."""
    target = _abspath(path)
    tools = []
    for name in ("fusermount3", "fusermount"):
        exe = shutil.which(name)
        if exe:
            tools.append([exe, "-u"] + (["-z"] if lazy else []) + [target])
            break
    exe = shutil.which("umount")
    if exe:
        tools.append([exe] + (["-l"] if lazy else []) + [target])
    last: subprocess.CompletedProcess[str] | None = None
    for cmd in tools:
        last = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if last.returncode == 0:
            return last
    if last is None:
        raise FileNotFoundError("neither fusermount3 nor umount found")
    return last


def force_unmount(path: str, timeout: float = 10.0) -> None:
    """Get rid of a mount whatever state its daemon is in: unmount; if that fails or hangs,
    abort the FUSE connection and detach lazily. Never stats the mount point."""
    entry = find_mount(path)
    if entry is None:
        return
    try:
        if unmount(path, timeout=timeout).returncode == 0 and find_mount(path) is None:
            return
    except subprocess.TimeoutExpired:
        pass
    entry = find_mount(path)
    if entry is None:
        return
    abort_connection(entry)
    deadline = time.monotonic() + timeout
    while find_mount(path) is not None and time.monotonic() < deadline:
        try:
            unmount(path, lazy=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        if find_mount(path) is not None:
            time.sleep(0.1)
