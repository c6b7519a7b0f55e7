"""Readahead across files: when a reader opens the files of one directory in name order, the
first blocks of the files after it are fetched ahead, many files to one BatchGetItem.

Why: a file's own readahead (dynlog/core/files.py) hides the round trips inside a large file,
but ``tar c``, ``cp -r``, ``rsync`` and ``grep -r`` read many files of a few blocks each, one
after another, and each file's first block is a round trip of its own (5 to 8 ms on DynamoDB)
that nothing overlaps. Those programs open a directory's files in the order readdir gives, which
on dynlog is name order, and the directory's view already holds every file's block map: the
keys of the next files' first blocks are known without a request, and up to ``READ_BATCH`` of
them travel in one BatchGetItem, so the reader finds them cached or on their way.

When: an open of the directory's first file within ``LISTED_WINDOW`` of a listing of it (grep
-r, cp -r and tar c list a directory, then read it from the start), or the ``RUN``-th open in a
row in one directory of a name after the one opened before, each within ``RUN_WINDOW`` of it.
Opens in no order, as a compiler's of its headers, start nothing. And while a reader goes
through one directory's files, another directory that is listed, or whose view is loaded ahead
of a walk (dynlog/materialize/prefetch.py), is taken for a next step of that walk: its first
files are fetched at once.
What: the first block of each of the next ``AHEAD`` regular files with blocks (inline files
travel in the view and need nothing), fetched again when the reader has gone half way through
what was fetched. Blocks are immutable versions, so a block fetched ahead is never wrong: a file
rewritten since has a new block map and the old block is only an unused cache entry. The blocks
go to the mount's block cache, which bounds their memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

from ..recent import remember
from .blocks import READ_BATCH, BlockKey, BlockStore

RUN = 2  # opens in name order, after the first, that mean a reader goes through the directory
RUN_WINDOW = 2.0  # s between two such opens
LISTED_WINDOW = 10.0  # s after a listing in which an open of the directory's first file starts a run
AHEAD = READ_BATCH  # files whose first block is fetched ahead: one BatchGetItem
MAX_DIRS = 256  # directories whose last open is remembered

# (after this name, at most this many) -> the files with blocks after it in name order, each with
# the key of its first block (inline files and holes have nothing to fetch and are left out)
Following = Callable[[str, int], Sequence[tuple[str, BlockKey]]]


@dataclass
class _Reading:
    """One directory's opens: the last name, when, how many in a row came in name order, and how
    far the first blocks were fetched (the last name fetched, and the one half way to it)."""

    name: str
    at: float
    run: int = 0
    fetched_to: str = ""
    refill_at: str = ""


class SiblingReadahead:
    def __init__(self, blocks: BlockStore) -> None:
        self.blocks = blocks
        self._dirs: OrderedDict[int, _Reading] = OrderedDict()
        self._listed: OrderedDict[int, float] = OrderedDict()  # directory -> when it was last listed
        self._reading_at = float("-inf")  # when a reader last went on through a directory's files
        self._lock = threading.Lock()
        self.fetched = 0  # first blocks asked for ahead (counted for tests and stats)

    def listed(self, directory: int, following: Following) -> None:
        """Directory ``directory`` was listed (readdir): a reader that opens its first file next
        is going through it (grep -r, cp -r, tar c list a directory, then read it in order). If a
        reader is going through another directory's files right now, this is the next directory
        of its walk: its first files are fetched at once."""
        now = time.monotonic()
        with self._lock:
            remember(self._listed, directory, now, MAX_DIRS)
        self.ahead(directory, following)

    def ahead(self, directory: int, following: Following) -> None:
        """Directory ``directory`` is about to be walked (listed, or its view loaded ahead of a
        walk): if a reader is going through another directory's files right now, fetch this
        one's first files (once)."""
        now = time.monotonic()
        with self._lock:
            walking = now - self._reading_at <= RUN_WINDOW
            known = self._dirs.get(directory)
        if walking and (known is None or not known.fetched_to):
            self._fetch(directory, _Reading("", now, RUN), "", following)

    def opened(self, directory: int, name: str, following: Following) -> None:
        """A file named ``name`` in directory ``directory`` was opened for reading."""
        now = time.monotonic()
        with self._lock:
            st = self._dirs.pop(directory, None)
            listed = now - self._listed.get(directory, float("-inf")) <= LISTED_WINDOW
        if st is None and listed and _first(following) == name:
            st = _Reading(name, now, RUN)  # the first file right after a listing: a run already
        elif st is None or now - st.at > RUN_WINDOW or name <= st.name:
            st = _Reading(name, now)
        else:
            st.name, st.at, st.run = name, now, st.run + 1
        if st.run < RUN:
            self._keep(directory, st)
            return
        with self._lock:
            self._reading_at = now
        if st.fetched_to and name < st.refill_at:
            self._keep(directory, st)
            return
        self._fetch(directory, st, max(name, st.fetched_to), following)

    def _keep(self, directory: int, st: _Reading) -> None:
        with self._lock:
            remember(self._dirs, directory, st, MAX_DIRS)

    def _fetch(self, directory: int, st: _Reading, after: str, following: Following) -> None:
        """Fetch the first blocks of the ``AHEAD`` files with blocks after the name ``after``."""
        files = following(after, AHEAD)
        keys = [k for _, k in files]
        with self._lock:
            if files:
                st.fetched_to = files[-1][0]
                st.refill_at = files[len(files) // 2][0]
            self.fetched += len(keys)
        self._keep(directory, st)
        if keys:
            self.blocks.prefetch(keys)


def _first(following: Following) -> str | None:
    """The name of the directory's first file with blocks."""
    files = following("", 1)
    return files[0][0] if files else None
