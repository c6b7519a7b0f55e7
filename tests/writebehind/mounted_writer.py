"""The extraction of the mounted crash test (tests/writebehind/test_crash_mounted.py), run as a
child process writing into a ``-o writebehind`` mount whose daemon the test SIGKILLs. It does
what tar does per file (mkdir; open O_CREAT|O_EXCL, write, fchmod, futimens, close), fsyncs
every 9th file, and fsyncs its directory after every 25th. It prints, flushed, one line per
step, so the test knows what the mount acknowledged before it died (paths relative to MOUNT):

    try PATH            a mkdir or create is about to be asked
    ack PATH            it returned (acknowledged: under a lease, not yet durable)
    fsync PATH SHA256   fsync of the file returned: its bytes are durable
    sync N              fsync of a directory returned: the first N acknowledged names are durable

It ends at the first error (the daemon is gone: ENOTCONN) or after ``--files`` files.

    python mounted_writer.py MOUNT ROOT SEED FILES
"""

from __future__ import annotations

import hashlib
import os
import random
import sys


def main() -> int:
    mount, root, seed, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.chdir(mount)
    rng = random.Random(seed)
    acked = 0

    def say(*words: object) -> None:
        print(*words, flush=True)

    try:
        n = 0
        for k in range(10_000):
            d = f"{root}/d{k}"
            say("try", d)
            os.mkdir(d, 0o755)
            acked += 1
            say("ack", d)
            for i in range(60):
                path = f"{d}/f{i:02d}"
                data = rng.randbytes(rng.choice([40, 700, 3000, 7000]))
                say("try", path)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                acked += 1
                say("ack", path)
                try:
                    os.write(fd, data)
                    os.fchmod(fd, 0o644)
                    os.utime(fd, ns=(1_700_000_000_000_000_000 + n, 1_700_000_000_000_000_000 + n))
                    n += 1
                    if n % 9 == 0:
                        os.fsync(fd)
                        say("fsync", path, hashlib.sha256(data).hexdigest())
                finally:
                    os.close(fd)
                if n % 25 == 0:
                    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
                    say("sync", acked)
                if n >= files:
                    return 0
    except OSError as e:
        say("error", e.errno)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
