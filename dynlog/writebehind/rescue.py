"""Which acknowledged operations of a lost lease can still be committed.

Why: a holder that stalls past its lease (an outage on its side only) may find that another
mount appended to the directory meanwhile. Its queued operations were validated against a view
that is no longer the journal's head. Dropping them all, as a crash would, loses work that
nothing contradicts: in a shared directory the other mount usually touched other names.

The rule is by name. The other mounts' records since our last commit touched some names; an
operation of ours that touches none of them meets exactly the entries it was validated against
(nobody else may change a name without a record that names it), so it commits as acknowledged.
An operation that touches one of them is dropped, and so is every later operation of ours on a
name a dropped one touched: they were validated against its effects. The directory's own
attributes (``SetAttr("")``, ``SetXattr("")``) are not a name: the last writer wins, as between
two synchronous chmods. Other mounts' records are read by name too, moves across directories
and links included. A sealed directory (``Remove("")``, another mount's rmdir) takes
everything. An event this module does not know drops its operation: it cannot be shown safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..journal.events import (Create, Event, InodeInit, Lease, Orphaned, Release, Remove, Rename, SetAttr,
                              SetXattr, Stamp)
from ..journal.record import Record

# Events that name no entry of the directory: they neither conflict nor are conflicted with.
NAMELESS = (Stamp, Lease, Release, Orphaned, InodeInit)
# Events whose ``name`` (and a Rename's ``new``) are all an operation in a write-behind queue
# touches: operations on several journals never go through the queue.
NAMED = (Create, Remove, Rename, SetAttr, SetXattr)


def touched(events: Iterable[Event], kinds: tuple[type[Event], ...] | None = NAMED) -> set[str] | None:
    """The entry names ``events`` touch; None if one of them cannot be read by name. ``kinds``:
    the event types read (a queue's); None reads any event with a ``name``, as other mounts'
    records need: they also hold moves across directories, links and detaches."""
    names: set[str] = set()
    for ev in events:
        if isinstance(ev, NAMELESS):
            continue
        name = getattr(ev, "name", None)
        if name is None or (kinds is not None and not isinstance(ev, kinds)):
            return None
        if name:
            names.add(name)
        if isinstance(ev, Rename):
            names.add(ev.new)
    return names


def seals(records: Iterable[Record]) -> bool:
    """Whether the directory was removed (rmdir seals its journal with ``Remove("")``)."""
    return any(isinstance(ev, Remove) and ev.name == "" for r in records for ev in r.events)


@dataclass
class Rescue:
    """The running verdict over one lost lease's queue: names others changed (and names our
    dropped operations touched), and what was dropped so far."""

    conflicts: set[str] = field(default_factory=set)
    sealed: bool = False
    dropped: list[str] = field(default_factory=list)  # the ``op`` of each dropped operation, in order

    def learn(self, foreign: Sequence[Record]) -> None:
        """Records other mounts committed after our last one: what they touched is taken."""
        if seals(foreign):
            self.sealed = True
        for rec in foreign:
            names = touched(rec.events, kinds=None)
            if names is not None:
                self.conflicts |= names
            else:
                self.sealed = True  # a record we cannot read by name: nothing of ours is safe after it

    def keep(self, events: Sequence[Event], op: str) -> bool:
        """Whether an operation (its events, in queue order) may still commit; a dropped one's
        names join the conflicts, so that the operations built on it drop too."""
        names = touched(events)
        if names is None:
            self.sealed = True  # what it touched is unknown: nothing after it is safe either
        if self.sealed or names is None or names & self.conflicts:
            self.conflicts |= names or set()
            self.dropped.append(op)
            return False
        return True
