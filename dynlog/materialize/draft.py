"""A draft: a copy-on-write layer over a view, into which an operation emits its events.

Validation and folding share one code path: an operation checks the draft (which already
reflects the events emitted before it in the same commit), emits events, and the draft folds
them exactly as the view will once the record commits. Nothing touches the view itself until
the store has accepted the record.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..journal.events import Event
from ..journal.inode import Inode
from .view import View, fold

_GONE = object()


class OverlayMapping:
    """name -> Inode over a base SortedDict, recording changes without copying the base."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.changes: dict[str, Any] = {}

    def get(self, name: str, default: Any = None) -> Any:
        v = self.changes.get(name, None)
        if v is None:
            return self.base.get(name, default) if name not in self.changes else default
        return default if v is _GONE else v

    def __contains__(self, name: str) -> bool:
        return self.get(name, _GONE) is not _GONE

    def __getitem__(self, name: str) -> Inode:
        v = self.get(name, _GONE)
        if v is _GONE:
            raise KeyError(name)
        return v

    def __setitem__(self, name: str, value: Inode) -> None:
        self.changes[name] = value

    def pop(self, name: str, default: Any = None) -> Any:
        v = self.get(name, _GONE)
        if v is _GONE:
            return default
        self.changes[name] = _GONE
        return v

    def items(self) -> Iterator[tuple[str, Inode]]:
        for k, v in self.base.items():
            if k not in self.changes:
                yield k, v
        for k, v in self.changes.items():
            if v is not _GONE:
                yield k, v

    def __len__(self) -> int:
        n = len(self.base)
        for k, v in self.changes.items():
            in_base = k in self.base
            if v is _GONE and in_base:
                n -= 1
            elif v is not _GONE and not in_base:
                n += 1
        return n


class Draft(View):
    """A view-shaped overlay; ``events`` is what the operation(s) emitted so far."""

    def __init__(self, view: View, ts: int) -> None:
        super().__init__(view.jid, OverlayMapping(view.entries))  # type: ignore[arg-type]
        self.base = view
        self.ts = ts
        self.head, self.head_hash, self.head_ts = view.head, view.head_hash, view.head_ts
        self.by_ino = _CowDict(view.by_ino)  # type: ignore[assignment]
        self.own = dict(view.own)
        self.subject = view.subject
        self.ndirs = view.ndirs
        self.removed = view.removed
        self.lease_holder, self.lease_until = view.lease_holder, view.lease_until
        self.events: list[Event] = []

    def emit(self, ev: Event) -> None:
        fold(ev, self, self.ts)
        self.events.append(ev)

    def mark(self) -> int:
        return len(self.events)

    def is_empty(self) -> bool:
        return len(self.entries) == 0


class _CowDict(dict):  # type: ignore[type-arg]
    """A dict that reads through to a base dict and writes locally (deletions included)."""

    def __init__(self, base: dict[Any, Any]) -> None:
        super().__init__()
        self._base = base
        self._deleted: set[Any] = set()

    def get(self, k: Any, default: Any = None) -> Any:
        if dict.__contains__(self, k):
            return dict.__getitem__(self, k)
        if k in self._deleted:
            return default
        return self._base.get(k, default)

    def __setitem__(self, k: Any, v: Any) -> None:
        self._deleted.discard(k)
        dict.__setitem__(self, k, v)

    def __delitem__(self, k: Any) -> None:
        if dict.__contains__(self, k):
            dict.__delitem__(self, k)
        self._deleted.add(k)

    def pop(self, k: Any, default: Any = None) -> Any:
        v = self.get(k, default)
        self.__delitem__(k)
        return v
