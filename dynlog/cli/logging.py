"""structlog setup: quiet by default (warnings and errors only), -v for debug, to stderr."""

from __future__ import annotations

import logging
import sys

import structlog


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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
