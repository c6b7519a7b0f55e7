"""Start-up hook for the mount daemons that benchmarks/latency.py starts: it makes a mount's own
request counters (dynlog/store/metrics.py) readable from outside the daemon.

Why a hook: a mount's counters live in its daemon process and no command reads them yet, while
the benchmark must run ``dynlog mount`` unchanged. The benchmark puts this folder first on the
daemon's PYTHONPATH and names a control file in DYNLOG_BENCH_COUNTERS; Python imports
``sitecustomize`` at start-up, so the daemon then (1) tallies every request that any
RequestMetrics records, per (file-system operation, store call), and (2) answers a request file
``CTL.req`` holding a token by writing ``CTL`` as JSON ``{"token": ..., "counts": {"op|call": n}}``
(and ``CTL.ops.req`` by writing ``CTL.ops``: ``{"token": ..., "ops": {operation: n}}``, the
file-system operations by kind, for benchmarks/writebehind.py).
Any other process (no variable set) is left alone. A failure is reported in the JSON, never
raised: counting must not change what the mount does.
"""

from __future__ import annotations

import os


def _install(ctl: str) -> None:
    import json
    import threading
    import time
    from collections import Counter
    from typing import Callable

    lock = threading.Lock()
    totals: Counter[str] = Counter()
    error = ""
    try:
        from dynlog.store import metrics

        original = metrics.RequestMetrics.record

        def record(self: metrics.RequestMetrics, call: str, *args: object, **kw: object) -> None:
            original(self, call, *args, **kw)
            with lock:
                totals[f"{metrics.current_operation()}|{call}"] += 1

        metrics.RequestMetrics.record = record  # type: ignore[method-assign]
    except Exception as e:  # noqa: BLE001 - reported to the benchmark instead
        error = f"{type(e).__name__}: {e}"

    def answer(out: str, body: Callable[[], dict]) -> bool:
        """Answer a request file ``out.req`` (a token) by writing ``out``; False if none waits."""
        req, taken = out + ".req", out + ".taken"
        if not os.path.exists(req):  # the usual case, 200 times a second: cheaper than the raise below
            return False
        try:  # take the request first: the next one may be written as soon as this is answered
            os.replace(req, taken)
            with open(taken) as f:
                token = f.read()
        except FileNotFoundError:
            return False
        tmp = f"{out}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"token": token, **body()}, f)
        os.replace(tmp, out)
        return True

    def counts() -> dict:
        with lock:
            return {"counts": dict(totals), "error": error}

    def ops() -> dict:  # file-system operations by kind (benchmarks/writebehind.py)
        from dynlog.store import metrics

        return {"ops": metrics.OPERATIONS.snapshot()}

    def serve() -> None:
        while True:
            if not (answer(ctl, counts) | answer(ctl + ".ops", ops)):
                time.sleep(0.01)

    threading.Thread(target=serve, name="dynlog-bench-counters", daemon=True).start()


if os.environ.get("DYNLOG_BENCH_COUNTERS"):
    _install(os.environ["DYNLOG_BENCH_COUNTERS"])
