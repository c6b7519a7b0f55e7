"""The embedded store: SQLite in WAL mode, same semantics as DynamoDB, for ``local:PATH``.

Several processes on one host may open the same file; BEGIN IMMEDIATE serialises writers, and
a trigger-fed ``changes`` table is the change feed that lets mounts follow each other.
Capacity is reported in DynamoDB's units (1 KB per write unit, 4 KB per read unit) so that
costs are comparable between the two stores.

The file (and SQLite's -wal and -shm beside it, which SQLite creates with the database's
mode) is created mode 0600: the store holds every file's bytes, so only its owner may read it,
whatever the permissions inside the file system say.

Retries follow the DynamoDB store's rule (see ``retry.py``): an error at COMMIT (a busy or
failing database) leaves it unknown whether the transaction was applied, so a conditional
write retried after one and then failing its condition reads the item back and succeeds when
it holds exactly what it wrote.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from ..errors import JournalConflict, StoreError, TransientStoreError
from .base import (
    KEY_ATTRS,
    QUERY_PAGE_BYTES,
    Change,
    ChangeBatch,
    ChangeFeed,
    Delete,
    Item,
    MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_ITEMS,
    Put,
    Store,
    Table,
    Write,
    check_condition,
    check_item_size,
    check_unique_keys,
    item_size,
    key_of,
    prefix_end,
)
from .codec import dumps_attrs, loads_attrs
from .metrics import RequestMetrics, timed
from .retry import AmbiguousStoreError, retry_transient, retry_write

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (pk TEXT NOT NULL, sk TEXT NOT NULL, attrs TEXT NOT NULL, data BLOB,
                                 PRIMARY KEY (pk, sk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (pk TEXT NOT NULL, sk INTEGER NOT NULL, attrs TEXT NOT NULL, data BLOB,
                                   PRIMARY KEY (pk, sk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY AUTOINCREMENT, pk TEXT NOT NULL, sk TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS meta_ins AFTER INSERT ON meta BEGIN
  INSERT INTO changes (pk, sk) VALUES (NEW.pk, NEW.sk); END;
CREATE TRIGGER IF NOT EXISTS meta_upd AFTER UPDATE ON meta BEGIN
  INSERT INTO changes (pk, sk) VALUES (NEW.pk, NEW.sk); END;
CREATE TRIGGER IF NOT EXISTS meta_del AFTER DELETE ON meta BEGIN
  INSERT INTO changes (pk, sk) VALUES (OLD.pk, OLD.sk); END;
"""

CHANGES_KEPT = 200_000


def _units(size: int, unit: int) -> float:
    return float(max(1, math.ceil(size / unit)))


def _split(table: Table, item: Item) -> tuple[Any, Any, str, bytes | None]:
    pk_name, sk_name = KEY_ATTRS[table]
    rest = {k: v for k, v in item.items() if k not in (pk_name, sk_name)}
    data = rest.pop("data", None) if isinstance(rest.get("data"), bytes) else None
    return item[pk_name], item[sk_name], dumps_attrs(rest), data


def _join(table: Table, pk: Any, sk: Any, attrs: str, data: bytes | None) -> Item:
    pk_name, sk_name = KEY_ATTRS[table]
    item = {pk_name: pk, sk_name: sk, **loads_attrs(attrs)}
    if data is not None:
        item["data"] = bytes(data)
    return item


class SqliteStore(Store):
    def __init__(self, path: str, metrics: RequestMetrics | None = None) -> None:
        self.path = os.path.abspath(path)
        self.source = f"local:{self.path}"
        self.metrics = metrics or RequestMetrics()
        # One connection per OS thread, keyed by its kernel thread id rather than kept in a
        # threading.local: libfuse's worker threads call into Python through ctypes, which gives
        # each callback a fresh thread state, so a threading.local was empty on every request
        # and every request opened (and leaked) a connection: a busy mount ran out of file
        # descriptors within minutes. Connections of threads that have exited are closed.
        self._conns: dict[int, sqlite3.Connection] = {}
        self._conns_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        tid = threading.get_native_id()
        conn = self._conns.get(tid)
        if conn is None:
            if not os.path.isdir(os.path.dirname(self.path) or "."):
                raise StoreError(f"{self.source}: directory {os.path.dirname(self.path)} does not exist")
            self._create_private()
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            with self._conns_lock:
                self._conns[tid] = conn
                dead = self._dead_threads()
                stale = [self._conns.pop(t) for t in dead]
            for c in stale:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
        return conn

    def _create_private(self) -> None:
        """Create the database file mode 0600 before SQLite would create it with the umask's
        mode (0644 usually): SQLite gives -wal and -shm the mode of the database file."""
        if os.path.exists(self.path):
            return
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass  # another process created it first
        except OSError as e:
            raise StoreError(f"{self.source}: cannot create {self.path}: {e}") from e

    def _dead_threads(self) -> list[int]:
        """Thread ids holding a connection that are no longer threads of this process (a
        reused id is harmless: its old thread is gone and uses the connection no more)."""
        try:
            live = {int(t) for t in os.listdir("/proc/self/task")}
        except OSError:
            return []
        return [t for t in self._conns if t not in live]

    @contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise TransientStoreError(str(e)) from e
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                self._commit(conn)
            except sqlite3.OperationalError as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # Whether the transaction reached the database is not known for sure.
                raise AmbiguousStoreError(f"at COMMIT: {e}") from e

    @staticmethod
    def _commit(conn: sqlite3.Connection) -> None:
        """COMMIT (a method of its own so that tests can make it fail after it committed)."""
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._conns_lock:
            for c in self._conns.values():
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()

    # -- tables ------------------------------------------------------------------------
    def create_tables(self) -> bool:
        existed = os.path.exists(self.path) and self._has_tables()
        self._conn().executescript(SCHEMA)
        return not existed

    def _has_tables(self) -> bool:
        rows = self._conn().execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        return {"meta", "blocks", "changes"} <= {r[0] for r in rows}

    def check_tables(self) -> None:
        if not os.path.exists(self.path):
            raise StoreError(f"{self.source}: no such file system (run: dynlog mkfs {self.source})")
        try:
            ok = self._has_tables()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.source}: not a dynlog store ({e})") from e
        if not ok:
            raise StoreError(f"{self.source}: not a dynlog store (tables missing; run: dynlog mkfs {self.source})")

    # -- primitives --------------------------------------------------------------------
    def _current(self, conn: sqlite3.Connection, table: Table, pk: Any, sk: Any) -> Item | None:
        row = conn.execute(f"SELECT attrs, data FROM {table} WHERE pk=? AND sk=?", (pk, sk)).fetchone()
        return None if row is None else _join(table, pk, sk, row[0], row[1])

    def _apply(self, conn: sqlite3.Connection, w: Write) -> None:
        if isinstance(w, Put):
            pk, sk, attrs, data = _split(w.table, w.item)
            conn.execute(f"INSERT OR REPLACE INTO {w.table} (pk, sk, attrs, data) VALUES (?,?,?,?)", (pk, sk, attrs, data))
        else:
            conn.execute(f"DELETE FROM {w.table} WHERE pk=? AND sk=?", w.key)

    def _key(self, w: Write) -> tuple[Any, Any]:
        return key_of(w.table, w.item) if isinstance(w, Put) else w.key

    @timed
    def put(self, put: Put) -> None:
        retry_write(lambda: self._single(put, "PutItem"), lambda: self.holds([put]), "put")

    @timed
    def delete(self, delete: Delete) -> None:
        retry_write(lambda: self._single(delete, "DeleteItem"), lambda: self.holds([delete]), "delete")

    def _single(self, w: Write, call: str) -> None:
        if isinstance(w, Put):
            check_item_size(w.table, w.item)
        size = item_size(w.item) if isinstance(w, Put) else 1
        self.metrics.record(call, capacity=_units(size, 1024), items=1)
        if not w.when:
            conn = self._conn()
            try:
                self._apply(conn, w)
            except sqlite3.OperationalError as e:
                raise TransientStoreError(str(e)) from e
            return
        with self._write_txn() as conn:
            if not check_condition(self._current(conn, w.table, *self._key(w)), w.when):
                raise JournalConflict(f"condition failed on {self._key(w)}", keys=(self._key(w),))
            self._apply(conn, w)

    @timed
    def transact(self, writes: Sequence[Write]) -> None:
        if not writes or len(writes) > MAX_TRANSACTION_ITEMS:
            raise StoreError(f"a transaction takes 1 to {MAX_TRANSACTION_ITEMS} items, not {len(writes)}")
        keys = [self._key(w) for w in writes]
        check_unique_keys(keys, "a transaction")
        for w in writes:
            if isinstance(w, Put):
                check_item_size(w.table, w.item)
        size = sum(item_size(w.item) if isinstance(w, Put) else 1 for w in writes)
        if size > MAX_TRANSACTION_BYTES:
            raise StoreError(f"a transaction of {size} bytes is over the limit of {MAX_TRANSACTION_BYTES}")

        def attempt() -> None:
            self.metrics.record("TransactWriteItems", capacity=2 * _units(size, 1024), items=len(writes))
            with self._write_txn() as conn:
                failed = tuple(
                    k for w, k in zip(writes, keys) if not check_condition(self._current(conn, w.table, *k), w.when)
                )
                if failed:
                    raise JournalConflict("transaction cancelled: condition failed", keys=failed)
                for w in writes:
                    self._apply(conn, w)

        retry_write(attempt, lambda: self.holds(writes), "transact")

    @retry_transient
    @timed
    def get(self, table: Table, key: tuple[Any, Any]) -> Item | None:
        item = self._current(self._conn(), table, *key)
        self.metrics.record("GetItem", capacity=_units(item_size(item) if item else 1, 4096), items=1)
        return item

    def query(self, table: Table, partition: Any, *, start: Any = None, stop: Any = None,
              reverse: bool = False, limit: int | None = None) -> Iterator[Item]:
        if limit is not None and limit <= 0:
            return
        clauses, args = ["pk=?"], [partition]
        if start is not None:
            clauses.append("sk>=?")
            args.append(start)
        if stop is not None:
            clauses.append("sk<?")
            args.append(stop)
        order = "DESC" if reverse else "ASC"
        sql = f"SELECT sk, attrs, data FROM {table} WHERE {' AND '.join(clauses)} ORDER BY sk {order}"
        remaining = limit
        last: Any = None
        while True:
            page_args = list(args)
            page_sql = sql
            if last is not None:
                page_sql = sql.replace("ORDER BY", ("AND sk<? " if reverse else "AND sk>? ") + "ORDER BY")
                page_args.append(last)
            rows, full = self._page(table, page_sql, page_args, remaining)
            for it in rows:
                yield it
            if remaining is not None:
                remaining -= len(rows)
            if not rows or (remaining is not None and remaining <= 0) or not full:
                return
            last = rows[-1][KEY_ATTRS[table][1]]

    @retry_transient
    @timed
    def _page(self, table: Table, sql: str, args: list[Any], limit: int | None) -> tuple[list[Item], bool]:
        """One query page: like DynamoDB, at most 1 MB of items (or ``limit`` items)."""
        cur = self._conn().execute(sql, args)
        out: list[Item] = []
        size = 0
        full = False
        for sk, attrs, data in cur:
            item = _join(table, args[0], sk, attrs, data)
            out.append(item)
            size += item_size(item)
            if size >= QUERY_PAGE_BYTES or (limit is not None and len(out) >= limit):
                full = True
                break
        cur.close()
        self.metrics.record("Query", capacity=_units(size, 4096), items=len(out))
        return out, full

    @retry_transient
    @timed
    def batch_get(self, table: Table, keys: Sequence[tuple[Any, Any]], consistent: bool = True) -> list[Item]:
        keys = list(dict.fromkeys(keys))  # asking twice for one item returns it once
        conn = self._conn()
        out: list[Item] = []
        for i in range(0, len(keys), 100):
            chunk = keys[i : i + 100]
            size = 0
            for k in chunk:
                item = self._current(conn, table, *k)
                if item is not None:
                    out.append(item)
                    size += item_size(item)
            # billed as DynamoDB bills it: an eventually consistent read costs half (one file,
            # one writer at a time: every read here sees every write, consistent or not)
            units = _units(size, 4096) * (1.0 if consistent else 0.5)
            self.metrics.record("BatchGetItem", capacity=units, items=len(chunk))
        return out

    @retry_transient
    @timed
    def batch_write(self, table: Table, puts: Sequence[Item] = (), deletes: Sequence[tuple[Any, Any]] = ()) -> None:
        writes: list[Write] = [Put(table, p) for p in puts] + [Delete(table, k) for k in deletes]
        check_unique_keys([self._key(w) for w in writes], "a batch write")
        for p in puts:
            check_item_size(table, p)
        for i in range(0, len(writes), 25):
            chunk = writes[i : i + 25]
            size = sum(item_size(w.item) if isinstance(w, Put) else 1 for w in chunk)
            self.metrics.record("BatchWriteItem", capacity=_units(size, 1024), items=len(chunk))
            with self._write_txn() as conn:
                for w in chunk:
                    self._apply(conn, w)

    @retry_transient
    @timed
    def add(self, table: Table, key: tuple[Any, Any], attr: str, amount: int) -> int:
        self.metrics.record("UpdateItem", capacity=1.0, items=1)
        with self._write_txn() as conn:
            cur = self._current(conn, table, *key)
            pk_name, sk_name = KEY_ATTRS[table]
            item = cur or {pk_name: key[0], sk_name: key[1]}
            item[attr] = int(item.get(attr, 0)) + amount
            self._apply(conn, Put(table, item))
            return item[attr]

    def scan_partitions(self, table: Table, prefix: str = "") -> Iterator[Any]:
        self.metrics.record("Scan")
        end = prefix_end(prefix)
        sql, args = f"SELECT DISTINCT pk FROM {table} WHERE pk >= ?", [prefix]
        if end is not None:
            sql += " AND pk < ?"
            args.append(end)
        rows = self._conn().execute(sql + " ORDER BY pk", args).fetchall()
        yield from (r[0] for r in rows)

    def change_feed(self) -> "SqliteChangeFeed":
        return SqliteChangeFeed(self)


class SqliteChangeFeed(ChangeFeed):
    """Polls the trigger-fed ``changes`` table; keys only, so views re-read what changed."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        row = store._conn().execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()
        self.cursor: int = row[0]
        self._polls = 0

    def poll(self, timeout: float) -> ChangeBatch:
        deadline = time.monotonic() + timeout
        conn = self.store._conn()
        while True:
            rows = conn.execute("SELECT id, pk, sk FROM changes WHERE id > ? ORDER BY id LIMIT 5000", (self.cursor,)).fetchall()
            if rows:
                lost = False
                first_kept = conn.execute("SELECT MIN(id) FROM changes").fetchone()[0]
                if first_kept is not None and first_kept > self.cursor + 1 and self.cursor:
                    lost = True
                self.cursor = rows[-1][0]
                self._maybe_trim(conn)
                return ChangeBatch([Change(pk, sk) for _, pk, sk in rows], lost=lost)
            if time.monotonic() >= deadline:
                return ChangeBatch()
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _maybe_trim(self, conn: sqlite3.Connection) -> None:
        self._polls += 1
        if self._polls % 500 == 0:
            try:
                conn.execute("DELETE FROM changes WHERE id < ?", (self.cursor - CHANGES_KEPT,))
            except sqlite3.OperationalError:
                pass
