"""The store contract: a handful of primitives over two tables; everything else is built on top.

Two tables, with the key schema of the original dynamo-fuse:
  meta   HASH ``path`` (S), RANGE ``name`` (S)      journals, snapshots, superblock, sessions, locks
  blocks HASH ``blockId`` (S), RANGE ``blockNum`` (N) immutable file data blocks

Attribute values are limited to ``str``, ``int``, ``float`` and ``bytes`` so that both stores
hold them losslessly. Every implementation counts each request in ``self.metrics``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Literal, Sequence

from ..errors import StoreError
from .metrics import RequestMetrics

Table = Literal["meta", "blocks"]
Item = dict[str, Any]

KEY_ATTRS: dict[str, tuple[str, str]] = {"meta": ("path", "name"), "blocks": ("blockId", "blockNum")}

# DynamoDB's documented limits, honoured by both stores so that behaviour is the same.
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_ITEM_BYTES = 400 * 1024
MAX_BATCH_WRITE = 25
MAX_BATCH_GET = 100
QUERY_PAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Cond:
    """One alternative of a write condition; a write's condition is a tuple of alternatives (OR).

    kind ``absent``: the item does not exist.  ``eq``: attribute ``attr`` equals ``value``.
    ``lt``: attribute ``attr`` is less than ``value``.  ``exists``: the item exists.
    """

    kind: Literal["absent", "exists", "eq", "lt"]
    attr: str = ""
    value: Any = None


ABSENT = (Cond("absent"),)
EXISTS = (Cond("exists"),)


@dataclass(frozen=True)
class Put:
    table: Table
    item: Item
    when: tuple[Cond, ...] = ()


@dataclass(frozen=True)
class Delete:
    table: Table
    key: tuple[str, Any]
    when: tuple[Cond, ...] = ()


Write = Put | Delete


@dataclass(frozen=True)
class Change:
    """One change from the change feed: the key that changed and, where the feed carries it,
    the new image of the item (None for a delete or a keys-only feed)."""

    path: str
    name: str
    item: Item | None = None


@dataclass
class ChangeBatch:
    changes: list[Change] = field(default_factory=list)
    lost: bool = False  # the feed skipped records (trimmed, expired): treat every view as stale


def key_of(table: Table, item: Item) -> tuple[Any, Any]:
    h, r = KEY_ATTRS[table]
    return item[h], item[r]


def item_size(item: Item) -> int:
    """DynamoDB's size of an item: attribute names plus values (numbers approximated)."""
    n = 0
    for k, v in item.items():
        n += len(k.encode())
        if isinstance(v, bytes):
            n += len(v)
        elif isinstance(v, str):
            n += len(v.encode("utf-8", "surrogatepass"))
        else:
            n += 21
    return n


def check_item_size(table: Table, item: Item) -> None:
    """StoreError for an item over DynamoDB's 400 KB limit (the embedded store enforces it too)."""
    n = item_size(item)
    if n > MAX_ITEM_BYTES:
        raise StoreError(f"item {key_of(table, item)!r} is {n} bytes: over the item limit of {MAX_ITEM_BYTES}")


def check_unique_keys(keys: Sequence[tuple[Any, Any]], what: str) -> None:
    """StoreError when one request names an item twice (DynamoDB refuses it; so does SQLite here)."""
    if len({tuple(k) for k in keys}) != len(keys):
        raise StoreError(f"{what} may not touch one item twice")


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (None: no bound), in the
    stores' sort order (UTF-8 bytes, which is code point order). ``prefix + "\\uffff"`` would
    miss keys continuing with a character beyond the BMP, such as an emoji."""
    chars = list(prefix)
    while chars:
        c = ord(chars.pop())
        if c < 0x10FFFF:
            c += 1
            if 0xD800 <= c <= 0xDFFF:  # surrogates are not characters: skip them
                c = 0xE000
            return "".join(chars) + chr(c)
    return None


def check_condition(current: Item | None, when: tuple[Cond, ...]) -> bool:
    """Evaluate a condition in Python (used by the embedded store, and by tests)."""
    if not when:
        return True
    for c in when:
        if c.kind == "absent" and current is None:
            return True
        if c.kind == "exists" and current is not None:
            return True
        if c.kind == "eq" and current is not None and current.get(c.attr) == c.value:
            return True
        if c.kind == "lt" and current is not None and c.attr in current and current[c.attr] < c.value:
            return True
    return False


class Store(abc.ABC):
    """The primitives every store offers. Reads are strongly consistent, but for a batch_get
    that asks otherwise (blocks: they never change once written)."""

    source: str
    metrics: RequestMetrics

    @property
    def local(self) -> bool:
        """The embedded store (``local:``, SQLite on this machine): its reads take microseconds,
        so work that only hides round trips (reads in parallel, the change feed's relay) is not
        worth doing here."""
        return self.source.startswith("local:")

    @abc.abstractmethod
    def create_tables(self) -> bool:
        """Create both tables if missing (idempotent); refuse tables of the wrong shape.
        Returns True when something was created."""

    @abc.abstractmethod
    def check_tables(self) -> None:
        """Raise StoreError with a clear message when the tables are missing or wrong."""

    @abc.abstractmethod
    def put(self, put: Put) -> None:
        """One write; raises JournalConflict when ``put.when`` does not hold."""

    @abc.abstractmethod
    def delete(self, delete: Delete) -> None:
        """Delete one item; raises JournalConflict when ``delete.when`` does not hold."""

    @abc.abstractmethod
    def transact(self, writes: Sequence[Write]) -> None:
        """All of the writes or none; raises JournalConflict naming the items that failed."""

    @abc.abstractmethod
    def get(self, table: Table, key: tuple[Any, Any]) -> Item | None:
        """Strongly consistent read of one item."""

    @abc.abstractmethod
    def query(
        self,
        table: Table,
        partition: Any,
        *,
        start: Any = None,
        stop: Any = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[Item]:
        """Items of one partition with ``start <= sort key < stop``, in key order (or reversed),
        strongly consistent, paging transparently (each page is one request)."""

    @abc.abstractmethod
    def batch_get(self, table: Table, keys: Sequence[tuple[Any, Any]], consistent: bool = True) -> list[Item]:
        """Read many items (in chunks of 100, unprocessed keys retried); missing ones are absent.
        ``consistent`` False: an eventually consistent read, at half the read units. Only for
        items that never change once written (blocks): such a read returns an item as written
        or not at all, and an item it misses may only not be visible yet."""

    @abc.abstractmethod
    def batch_write(self, table: Table, puts: Sequence[Item] = (), deletes: Sequence[tuple[Any, Any]] = ()) -> None:
        """Unconditional writes in chunks of 25, unprocessed items retried. Never for journals:
        a batch carries no condition."""

    @abc.abstractmethod
    def add(self, table: Table, key: tuple[Any, Any], attr: str, amount: int) -> int:
        """Atomically add ``amount`` to a number attribute (created at 0); return the new value."""

    @abc.abstractmethod
    def scan_partitions(self, table: Table, prefix: str = "") -> Iterator[Any]:
        """Every distinct partition key (for fsck, compact and replay); costly, never on a hot path."""

    @abc.abstractmethod
    def change_feed(self) -> "ChangeFeed | None":
        """A reader of changes to the meta table, or None when the store has none."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

    # Helpers derived once from the primitives.
    def query_prefix(self, table: Table, partition: Any, prefix: str, **kw: Any) -> Iterator[Item]:
        return self.query(table, partition, start=prefix or None, stop=prefix_end(prefix), **kw)

    def delete_items(self, table: Table, keys: Iterable[tuple[Any, Any]]) -> None:
        self.batch_write(table, deletes=list(keys))

    def holds(self, writes: Sequence[Write]) -> bool:
        """Whether the table holds exactly what ``writes`` wrote: every put's item as written,
        no deleted item. Asked (one consistent read each) only after an ambiguous attempt whose
        retry failed its condition: puts carry unique hashes, versions or holders, so an
        identical item is our own write, applied by the attempt whose reply was lost."""
        for w in writes:
            if isinstance(w, Put):
                if self.get(w.table, key_of(w.table, w.item)) != w.item:
                    return False
            elif self.get(w.table, w.key) is not None:
                return False
        return True


class ChangeFeed(abc.ABC):
    """Follows the meta table's changes from "now" on."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> ChangeBatch:
        """Changes since the last poll; waits up to ``timeout`` seconds when there are none."""

    def close(self) -> None:  # noqa: B027 - optional
        pass
