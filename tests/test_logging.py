"""The daemon's log: lines from threads logging at once stay whole (the prefetcher's workers,
libfuse's workers and the change feed all log from threads of their own)."""

from __future__ import annotations

import re
import threading

import pytest
import structlog

from dynlog.cli.logging import configure_logging

THREADS, EACH = 8, 300


def test_lines_from_many_threads_stay_whole(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(verbosity=1)
    try:
        log = structlog.get_logger("test")
        start = threading.Barrier(THREADS)

        def spam(t: int) -> None:
            start.wait()
            for i in range(EACH):
                log.debug("logging.test", thread=t, i=i)

        threads = [threading.Thread(target=spam, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        lines = [ln for ln in capfd.readouterr().err.splitlines() if "logging.test" in ln]
    finally:
        configure_logging(verbosity=0)
    assert len(lines) == THREADS * EACH
    whole = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[debug\s*\] logging\.test\s+i=\d+ thread=\d+$")
    assert [ln for ln in lines if not whole.match(ln)] == []
