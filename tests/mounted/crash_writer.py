"""A writer that SIGKILLs itself at the most dangerous moment of a flush: after the new block
version is in the blocks table, before the metadata event that maps it commits.

    python crash_writer.py SOURCE ENDPOINT|- PATH SIZE SEED
"""

from __future__ import annotations

import os
import random
import signal
import sys

from dynlog.core.attrs import Caller
from dynlog.core.filesystem import FileSystem
from dynlog.core.namespace import Namespace
from dynlog.store.source import open_store


def main() -> None:
    source, endpoint, path, size, seed = sys.argv[1:6]
    fs = FileSystem(open_store(source, endpoint_url=None if endpoint == "-" else endpoint))
    caller = Caller(0, 0, os.getpid())
    real = Namespace.set_attrs

    def die_before_commit(self, node, attrs, caller, op, blocks=None, **kw):  # type: ignore[no-untyped-def]
        if op == "write" and blocks:
            print("blocks written; dying before the commit", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, node, attrs, caller, op, blocks=blocks, **kw)

    Namespace.set_attrs = die_before_commit  # type: ignore[method-assign]
    data = random.Random(int(seed)).randbytes(int(size))
    fh = fs.open(path, os.O_WRONLY, caller)
    fs.write(fh, data, 0, caller)
    fs.fsync(fh, caller)
    raise SystemExit("unreachable: the writer should have died in fsync")


if __name__ == "__main__":
    main()
