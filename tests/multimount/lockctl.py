"""A lock-holding process for the lock tests: reads one command per line on stdin, answers one
JSON object per line on stdout. Being its own process matters: POSIX locks belong to a process
(its file table), and the point is one process per mount.

  open NAME PATH            open PATH read-write as NAME            -> {"ok": true}
  close NAME                close it                                -> {"ok": true}
  lock NAME TYPE START LEN WAIT
                            fcntl F_SETLK (WAIT 0) or F_SETLKW (WAIT 1); TYPE r, w or u
                                                                    -> {"ok": true, "s": secs} | {"errno": N}
  getlk NAME TYPE START LEN fcntl F_GETLK                           -> {"type": "u"|"r"|"w", "start", "len", "pid"}
  flock NAME OP NB          flock; OP ex, sh or un; NB 1 for LOCK_NB -> {"ok": true, "s": secs} | {"errno": N}
  pid                                                               -> {"pid": N}
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import sys
import time

FLOCK = "hhqqi4x"  # struct flock on Linux/x86_64 and aarch64: type, whence, start, len, pid
TYPES = {"r": fcntl.F_RDLCK, "w": fcntl.F_WRLCK, "u": fcntl.F_UNLCK}
NAMES = {v: k for k, v in TYPES.items()}
FLOCK_OPS = {"ex": fcntl.LOCK_EX, "sh": fcntl.LOCK_SH, "un": fcntl.LOCK_UN}


def main() -> None:
    fds: dict[str, int] = {}
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        out: dict
        t0 = time.monotonic()
        try:
            if w[0] == "open":
                fds[w[1]] = os.open(w[2], os.O_RDWR | os.O_CREAT, 0o644)
                out = {"ok": True}
            elif w[0] == "close":
                os.close(fds.pop(w[1]))
                out = {"ok": True}
            elif w[0] == "lock":
                arg = struct.pack(FLOCK, TYPES[w[2]], os.SEEK_SET, int(w[3]), int(w[4]), 0)
                fcntl.fcntl(fds[w[1]], fcntl.F_SETLKW if w[5] == "1" else fcntl.F_SETLK, arg)
                out = {"ok": True}
            elif w[0] == "getlk":
                arg = struct.pack(FLOCK, TYPES[w[2]], os.SEEK_SET, int(w[3]), int(w[4]), 0)
                typ, _, start, length, pid = struct.unpack(FLOCK, fcntl.fcntl(fds[w[1]], fcntl.F_GETLK, arg))
                out = {"type": NAMES[typ], "start": start, "len": length, "pid": pid}
            elif w[0] == "flock":
                op = FLOCK_OPS[w[2]] | (fcntl.LOCK_NB if w[3] == "1" else 0)
                fcntl.flock(fds[w[1]], op)
                out = {"ok": True}
            elif w[0] == "pid":
                out = {"pid": os.getpid()}
            else:
                out = {"error": f"unknown command {w[0]!r}"}
        except OSError as e:
            out = {"errno": e.errno, "error": str(e)}
        out["s"] = round(time.monotonic() - t0, 4)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
