"""One neutral error hierarchy; driver errors are translated at the store boundary."""

from __future__ import annotations

import errno
import os


class DynlogError(Exception):
    """Base of every error dynlog raises on purpose."""


class FsError(DynlogError):
    """A file-system operation failed with a POSIX errno (what FUSE returns to the caller)."""

    def __init__(self, err: int, detail: str = "") -> None:
        super().__init__(err, detail or os.strerror(err))
        self.errno = err
        self.detail = detail

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, str(self.errno))
        return f"{name}: {self.detail or os.strerror(self.errno)}"


class JournalConflict(DynlogError):
    """A conditional write lost a race: re-read, re-validate, then retry (never blindly).

    ``keys`` names the items whose condition failed, as (partition, sort) pairs, when the
    store can tell (DynamoDB's CancellationReasons); empty means "unknown, refresh all".
    """

    def __init__(self, message: str = "conditional write failed", keys: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.keys = keys


class StoreError(DynlogError):
    """The store failed in a way a retry will not fix (bad table, bad request, no credentials)."""


class TransientStoreError(StoreError):
    """A failure a bounded retry may fix: throttling, 5xx, timeouts, connection resets."""


class QuietError(DynlogError):
    """A clean command-line failure: one line of message and an exit code, no traceback."""

    def __init__(self, message: str, exitcode: int = 1) -> None:
        super().__init__(message)
        self.exitcode = exitcode
