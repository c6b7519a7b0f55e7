"""The workload of the crash test, run as a child process on a mount whose daemon the test
SIGKILLs at a random moment: renames across directories, file writes with fsync, sqlite3
transactions and tar extractions, in rounds, until the mount dies under it.

Every operation that returned is acknowledged with one line in the ack log (outside the mount)
*after* it returned, so the log names exactly what the file system promised:

    made N        dK/fN was written and closed      moved N   it was renamed to dK+1/gN
    file NAME SHA NAME was written, fsynced and closed with these bytes
    sqlinit       the database and its table exist   sql TX    transaction TX committed
    tar NAME      tar extracted the tree into NAME and exited 0

    python crash_workload.py ROOT ACKLOG TREE SEED
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults.workloads import sqlite_commit, sqlite_open  # noqa: E402

DIRS = 4


def main() -> int:
    root, ack_path, tree, seed = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    with open(ack_path, "a", buffering=1) as ack:

        def acked(*parts: object) -> None:
            ack.write(" ".join(map(str, parts)) + "\n")

        try:
            root.mkdir()
            for k in range(DIRS + 1):
                (root / f"d{k}").mkdir()
            con = sqlite_open(root / "db.sqlite")
            acked("sqlinit")
            tx = n = 0
            for r in range(1_000_000):
                for _ in range(4):
                    k = n % DIRS
                    with open(root / f"d{k}" / f"f{n}", "w") as f:
                        f.write(f"{n}\n")
                    acked("made", n)
                    os.rename(root / f"d{k}" / f"f{n}", root / f"d{k + 1}" / f"g{n}")
                    acked("moved", n)
                    n += 1
                data = rng.randbytes(rng.choice([100, 5000, 200_000]))
                with open(root / f"w{r}", "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                acked("file", f"w{r}", hashlib.sha256(data).hexdigest())
                sqlite_commit(con, tx)
                acked("sql", tx)
                tx += 1
                if r % 3 == 1:
                    name = f"tar{r}"
                    (root / name).mkdir()
                    res = subprocess.run(["tar", "--format=posix", "-C", tree, "-cf", "-", "."], capture_output=True, check=True)
                    x = subprocess.run(["tar", "-C", str(root / name), "-xpf", "-"], input=res.stdout,
                                       capture_output=True)
                    if x.returncode:
                        return 0
                    acked("tar", name)
        except (OSError, sqlite3.Error, subprocess.CalledProcessError):
            return 0  # the mount died under us: what was acknowledged is what counts
    return 0


if __name__ == "__main__":
    sys.exit(main())
