"""The writer of the write-behind crash test, run as a child process that the test SIGKILLs: an
extraction (directories of small and larger files, some renamed or removed) on a FileSystem with
write-behind on. After each fsync returns it prints ``fsync PATH SHA256``: the files the test
then requires exact.

    python crash_writer.py BACKING_JSON SESSION ROOT SEED
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.helpers import open_backing  # noqa: E402

from dynlog.core.attrs import ROOT  # noqa: E402
from dynlog.core.filesystem import FileSystem  # noqa: E402
from dynlog.writebehind import Settings  # noqa: E402

LEASE_S = 2.0  # short, so the test's checker waits little for a killed writer's leases


def main() -> int:
    spec, session, root, seed = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    fs = FileSystem(open_backing(spec), session=session, writebehind=True,
                    writebehind_settings=Settings(lease_s=LEASE_S, take_after=4))
    fs.mkdir(root, 0o755, ROOT)
    n = 0
    for k in range(1_000_000):
        d = f"{root}/d{k}"
        fs.mkdir(d, 0o755, ROOT)
        for i in range(40):
            path = f"{d}/f{i}"
            data = rng.randbytes(rng.choice([30, 200, 3000, 9000]))
            fh = fs.create(path, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ROOT)
            fs.write(fh, data, 0)
            n += 1
            if n % 7 == 0:
                fs.fsync(fh, ROOT)
                print("fsync", path, hashlib.sha256(data).hexdigest(), flush=True)
            fs.release(fh, ROOT)
            if i % 10 == 9:
                fs.rename(f"{d}/f{i - 1}", f"{d}/r{i - 1}", 0, ROOT)
                fs.unlink(f"{d}/f{i - 2}", ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
