"""What the daemon tells the kernel: how long it may cache, attributes as ``struct stat``, and
the one errno table every callback's error goes through."""

from __future__ import annotations

import errno
import fcntl
from typing import Any

import mfusepy  # dynlog.fuse (our package __init__) has pointed it at libfuse 3

from ..errors import FsError, JournalConflict, StoreError, TransientStoreError

# Kernel cache timeouts, in seconds. dynlog is not the only writer (other mounts write the same
# store), so these stay short: one second bounds how long a stat, lookup or ls -l on this mount
# may show a name or attributes another mount changed, while still sparing the daemon a round
# trip for every stat of a busy build (make, git status stat each file several times a second).
# Negative lookups are never cached (a LOOKUP that finds nothing is answered ENOENT, which the
# kernel does not keep): a file another mount creates is visible at once.
ENTRY_TIMEOUT = 1.0
ATTR_TIMEOUT = 1.0

LOCK_TYPES = {fcntl.F_RDLCK: "r", fcntl.F_WRLCK: "w", fcntl.F_UNLCK: "u"}

# xattr namespaces a name may be in (the kernel checks who may use trusted.* and user.*)
XATTR_NAMESPACES = ("user.", "trusted.", "security.")

# Directory handles live far above file handles (FileSystem counts those from 1), so a handle
# number never means both.
DIR_HANDLE_BASE = 1 << 62

# How many inodes' last reported (size, mtime) are remembered (about 100 bytes each).
SEEN_MAX = 200_000

# The one errno table: exception class -> errno (None: the exception carries its own errno).
# Checked in order; the first class the exception is an instance of wins.
ERRNO_TABLE: tuple[tuple[type[BaseException], int | None], ...] = (
    (FsError, None),
    (JournalConflict, errno.EAGAIN),  # a commit that kept losing races past the retry bound
    (TransientStoreError, errno.EIO),  # the store stayed unreachable past the retry bound
    (StoreError, errno.EIO),
    (NotImplementedError, errno.ENOSYS),
)


def errno_of(exc: BaseException) -> int | None:
    """The errno for an exception per ERRNO_TABLE, or None when it is unexpected (a bug)."""
    for cls, code in ERRNO_TABLE:
        if isinstance(exc, cls):
            return code if code is not None else getattr(exc, "errno", None) or errno.EIO
    return None


_ZERO_STAT = mfusepy.c_stat()


def fill_stat(buf: Any, attrs: dict[str, int]) -> None:
    """Write FileSystem's stat dict (times in ns) into a ``struct stat`` (a pointer to it): every
    field the kernel is told, the rest zeroed. Zeroed by assigning a zero struct, not
    ctypes.memset: a foreign call releases the GIL and has to win it back."""
    buf[0] = _ZERO_STAT
    st = buf.contents
    st.st_mode = attrs["st_mode"]
    st.st_ino = attrs["st_ino"]
    st.st_nlink = attrs["st_nlink"]
    st.st_uid = attrs["st_uid"]
    st.st_gid = attrs["st_gid"]
    st.st_size = attrs["st_size"]
    st.st_rdev = attrs.get("st_rdev", 0)
    st.st_blocks = attrs.get("st_blocks", 0)
    st.st_blksize = attrs.get("st_blksize", 0)
    ts = st.st_atimespec
    ts.tv_sec, ts.tv_nsec = divmod(attrs["st_atime"], 10**9)
    ts = st.st_mtimespec
    ts.tv_sec, ts.tv_nsec = divmod(attrs["st_mtime"], 10**9)
    ts = st.st_ctimespec
    ts.tv_sec, ts.tv_nsec = divmod(attrs["st_ctime"], 10**9)
