"""structlog setup: quiet by default (warnings and errors only), -v for debug, to stderr."""

from __future__ import annotations

import logging
import sys

import structlog


class _StderrLogger:
    """Prints to whatever ``sys.stderr`` is at the time of the call. structlog's PrintLogger keeps
    the stream it was made with, and one configured by an in-process ``main()`` (tests, a
    captured stderr that is later closed) then fails every later log call."""

    def msg(self, message: str) -> None:
        # one write per line: print() writes the newline apart, and the lines of two threads
        # logging at once ran together
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


def _stderr_logger(*args: object) -> _StderrLogger:
    return _StderrLogger()


def configure_logging(verbosity: int = 0, json: bool = False) -> None:
    level = logging.DEBUG if verbosity >= 1 else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
