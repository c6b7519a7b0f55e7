"""The one retry policy for transient store failures: bounded, with full-jitter backoff.

Conditional failures are not transient and are never retried here: they surface as
JournalConflict, and the caller re-reads and re-validates.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Callable, ParamSpec, TypeVar

import structlog

from ..errors import StoreError, TransientStoreError

P = ParamSpec("P")
R = TypeVar("R")
log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = 0.02
MAX_DELAY = 2.0


def backoff_delay(attempt: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(MAX_ATTEMPTS):
            try:
                return fn(*args, **kwargs)
            except TransientStoreError as e:
                if attempt == MAX_ATTEMPTS - 1:
                    raise StoreError(f"gave up after {MAX_ATTEMPTS} attempts: {e}") from e
                delay = backoff_delay(attempt)
                log.debug("store.retry", call=fn.__name__, attempt=attempt + 1, delay=round(delay, 3), error=str(e))
                time.sleep(delay)
        raise AssertionError("unreachable")

    return wrapper
