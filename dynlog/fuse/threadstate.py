"""Keep one Python thread state for the life of each libfuse worker thread.

Why: libfuse calls every callback on a thread that it created itself. ctypes enters Python
there with PyGILState_Ensure, which finds no thread state on such a thread and makes one, and
its PyGILState_Release deletes it again when the callback returns. In CPython 3.11 a new thread
state maps a fresh 16 KiB chunk for its frames (mmap), and deleting it unmaps that chunk; each
munmap flushes the TLB of every CPU that the process ran on. perf on the mount daemon during a
write-behind tar put mmap, munmap and their page faults at about a sixth of its CPU time, for
about eleven kernel requests a file.

The cure is one PyGILState_Ensure more, made inside the first callback on a thread and never
released. The thread's count then stays above zero, so ctypes' release only drops the GIL and
keeps the thread state, and every later callback on that thread reuses it. A worker thread that
libfuse ended would keep its thread state (some 20 KiB) until the process exits, so ``dynlog
mount`` sets ``max_idle_threads`` to ``max_threads`` (64): libfuse then never ends a worker, and
at most 64 thread states live, one per worker.
"""

from __future__ import annotations

import ctypes
import threading

_pinned = threading.local()  # lives in the thread state: empty again whenever a new one is made
_count_lock = threading.Lock()
_count = 0  # thread states pinned: the libfuse worker threads that have run a callback

_ensure = ctypes.pythonapi.PyGILState_Ensure  # a PyDLL function: called holding the GIL
_ensure.restype = ctypes.c_int
_ensure.argtypes = ()


def pin_thread_state() -> None:
    """Keep the calling thread's Python thread state after this callback returns (idempotent).

    Call it from inside a libfuse callback. On a thread that Python started itself it only
    costs a thread-local lookup: such a thread state lives as long as its thread anyway."""
    global _count
    if not getattr(_pinned, "done", False):
        _ensure()  # counts one more user of this thread state; never released, on purpose
        _pinned.done = True
        with _count_lock:
            _count += 1


def worker_threads() -> int:
    """How many threads have pinned their thread state: libfuse's worker threads so far. It
    stays at the size of libfuse's pool; if it grew with every callback, the pin did not hold
    (``dynlog stats --json`` shows it, and tests/mounted/test_stats.py checks it)."""
    with _count_lock:
        return _count
