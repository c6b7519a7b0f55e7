"""The FUSE layer: libfuse 3's low-level API (lowlevel.py) serving callbacks (operations.py) over
dynlog.core.filesystem.FileSystem.

mfusepy loads libfuse and defines the C structs both of libfuse's APIs share; dynlog binds the
low-level API itself. mfusepy loads whichever libfuse ``find_library("fuse")`` finds first,
which is libfuse 2 on a machine that has both. dynlog needs libfuse 3, so importing this
package points mfusepy at libfuse 3 unless the user already chose a library
with FUSE_LIBRARY_PATH or FUSE_LIBRARY_NAME.
"""

from __future__ import annotations

import os
from ctypes.util import find_library


def _prefer_libfuse3() -> None:
    if os.environ.get("FUSE_LIBRARY_PATH") or os.environ.get("FUSE_LIBRARY_NAME"):
        return
    path = find_library("fuse3")
    if path:
        os.environ["FUSE_LIBRARY_PATH"] = path


_prefer_libfuse3()
