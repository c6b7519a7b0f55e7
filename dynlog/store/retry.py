"""The one retry policy for transient store failures: a time budget, with full-jitter backoff.

Why a time budget and not a count of attempts: an outage (a region's bad minute, DynamoDB
Local restarted, a network partition) lasts seconds to minutes, whatever the number of tries.
File operations should wait it out and carry on, as a hard NFS mount does, and fail with EIO
only past ``outage_limit()`` seconds (default 120 s; ``DYNLOG_OUTAGE_LIMIT``, or
``-o outage_limit=SECONDS`` on the mount). The budget is shared by the whole process: the
outage starts at the first failure after the last success, so once the limit is reached new
calls fail after one attempt instead of each waiting the full limit again, and one warning
line says so. The first success afterwards ends the outage.

Conditional failures are not transient and are never retried here: they surface as
JournalConflict, and the caller re-reads and re-validates.

Idempotent writes (``retry_write``): a write whose attempt failed *ambiguously* (the request
may have been applied: a timeout, a connection closed or reset after sending, a 5xx) and
whose later attempt then fails its condition may have collided with itself. Journal records
carry a unique hash, lock tables and leases carry versions and holders, so when the item
read back is exactly what we wrote (a delete: the item is gone), the write was ours and the
call succeeds. Throttling and a refused connection are known not to have been applied and do
not make a call ambiguous.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from typing import Callable, ParamSpec, TypeVar

import structlog

from ..errors import JournalConflict, StoreError, TransientStoreError

P = ParamSpec("P")
R = TypeVar("R")
log = structlog.get_logger(__name__)

BASE_DELAY = 0.02
MAX_DELAY = 2.0
DEFAULT_OUTAGE_LIMIT = 120.0


class AmbiguousStoreError(TransientStoreError):
    """A transient failure after which the request may or may not have been applied."""


def backoff_delay(attempt: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 30))))


def _limit_from_env() -> float:
    raw = os.environ.get("DYNLOG_OUTAGE_LIMIT", "")
    try:
        return float(raw) if raw else DEFAULT_OUTAGE_LIMIT
    except ValueError:
        log.warning("store.outage_limit_invalid", value=raw, using=DEFAULT_OUTAGE_LIMIT)
        return DEFAULT_OUTAGE_LIMIT


class _Outage:
    """Process-wide state of the store's reachability: when the current run of failures began,
    and whether it has already been declared past the limit (so it is logged once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.limit = _limit_from_env()
        self.since: float | None = None
        self.declared = False

    def failed(self) -> float:
        with self.lock:
            if self.since is None:
                self.since = time.monotonic()
            return self.since

    def ok(self) -> None:
        if self.since is None:  # the common case: no lock on the hot path
            return
        with self.lock:
            since, declared = self.since, self.declared
            self.since, self.declared = None, False
        if declared and since is not None:
            log.warning("store.reachable_again", after_s=round(time.monotonic() - since, 1))

    def give_up(self, call: str, error: Exception) -> StoreError:
        with self.lock:
            first, self.declared = not self.declared, True
            since = self.since if self.since is not None else time.monotonic()
        took = time.monotonic() - since
        if first:
            log.warning("store.unreachable", seconds=round(took, 1), limit_s=self.limit, call=call, error=str(error),
                        hint="failing operations with EIO until the store answers (raise DYNLOG_OUTAGE_LIMIT "
                             "or -o outage_limit to wait longer)")
        return StoreError(f"store unreachable for {took:.0f} s (outage limit {self.limit:g} s): {error}")


_outage = _Outage()


def outage_limit() -> float:
    """Seconds of consecutive transient failures after which store calls fail."""
    return _outage.limit


def set_outage_limit(seconds: float) -> None:
    """Set the outage limit for this process (the mount's ``-o outage_limit``)."""
    if seconds <= 0:
        raise ValueError("the outage limit must be positive")
    _outage.limit = float(seconds)


def retry_call(fn: Callable[[], R], call: str, budget: float | None = None) -> R:
    """Run ``fn`` until it does not raise TransientStoreError, or the outage limit is past.

    ``budget`` (seconds) bounds this one call further, for callers with a loop of their own that
    must keep turning (the change feed): past it, the transient error itself is raised."""
    attempt = 0
    deadline = None if budget is None else time.monotonic() + budget
    while True:
        try:
            result = fn()
        except TransientStoreError as e:
            since = _outage.failed()
            remaining = _outage.limit - (time.monotonic() - since)
            if remaining <= 0:
                raise _outage.give_up(call, e) from e
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise
                remaining = min(remaining, deadline - time.monotonic())
            delay = min(backoff_delay(attempt), remaining)
            log.debug("store.retry", call=call, attempt=attempt + 1, delay=round(delay, 3), error=str(e))
            time.sleep(delay)
            attempt += 1
        else:
            _outage.ok()
            return result


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of ``retry_call`` for reads and writes that are naturally idempotent."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return retry_call(lambda: fn(*args, **kwargs), fn.__name__)

    return wrapper


def retry_write(attempt: Callable[[], object], applied: Callable[[], bool], call: str) -> None:
    """Retry a conditional write so that it is safe to retry (see the module doc).

    ``attempt`` makes one request and raises AmbiguousStoreError when it may have been applied
    without our knowing; ``applied`` reads the item(s) back and tells whether the store holds
    exactly what this write wrote. It is asked only when an earlier attempt was ambiguous and
    a later one failed its condition.
    """
    ambiguous = False

    def once() -> None:
        nonlocal ambiguous
        try:
            attempt()
        except AmbiguousStoreError:
            ambiguous = True
            raise
        except JournalConflict:
            if ambiguous and applied():
                log.info("store.retry_found_own_write", call=call)
                return
            raise

    retry_call(once, call)
