"""Bounded memories of what happened lately (the readaheads' directories, runs and loads): an
OrderedDict where the newest key goes last and the oldest leave once there are too many."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(seen: "OrderedDict[K, V]", key: K, value: V, bound: int) -> None:
    """Set ``seen[key] = value`` as its newest entry; forget the oldest beyond ``bound``."""
    seen.pop(key, None)
    seen[key] = value
    while len(seen) > bound:
        seen.popitem(last=False)
