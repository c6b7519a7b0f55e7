"""Every write is safe to retry, on both stores.

DynamoDB: through the fault proxy, whose lost replies are requests DynamoDB Local really
applied. SQLite: a COMMIT that reaches the file and then reports "database is locked". In both,
a conditional write must never take its own applied first try for someone else's write, and a
real conflict must still be reported. Outages: transient failures are retried for a time
budget, then fail with one warning line.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import structlog

from dynamodb_local import REGION, DynamoDBLocal, unique_table
from dynlog.errors import JournalConflict, StoreError, TransientStoreError
from dynlog.faults.proxy import FaultProxy, FaultRates
from dynlog.store import retry
from dynlog.store.base import ABSENT, Cond, Delete, Put, Store
from dynlog.store.dynamo import DynamoStore
from dynlog.store.sqlite import SqliteStore

pytestmark = pytest.mark.dynamodb  # DynamoDB Local, behind the fault proxy

HARSH = FaultRates(throttle=0.1, server_error=0.1, lost_reply=0.3, reset=0.1)


def rec(path: str, name: str, **attrs: Any) -> dict[str, Any]:
    return {"path": path, "name": name, **attrs}


@pytest.fixture
def proxy(ddb_local: DynamoDBLocal) -> Iterator[FaultProxy]:
    with FaultProxy(ddb_local.endpoint, seed=11) as p:
        yield p


@pytest.fixture
def faulty(proxy: FaultProxy, ddb_local: DynamoDBLocal) -> Iterator[tuple[DynamoStore, DynamoStore]]:
    """A DynamoStore through the proxy, and a direct one on the same tables to check with."""
    table = unique_table()
    direct = DynamoStore(REGION, table, endpoint_url=ddb_local.endpoint)
    direct.create_tables()
    through = DynamoStore(REGION, table, endpoint_url=proxy.endpoint)
    yield through, direct
    through.close()
    direct.close()
    c = ddb_local.client()
    for name in (table, table + "Blocks"):
        c.delete_table(TableName=name)


class CommitThenFail:
    """Makes every other COMMIT of the SQLite store reach the file and then raise "database is
    locked": the ambiguous outcome a busy database can give."""

    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")
        with self.lock:
            self.n += 1
            fail = self.n % 2 == 1
        if fail:
            raise sqlite3.OperationalError("database is locked")


def _workload(s: Store, check: Store, tag: str) -> None:
    """Conditional puts, version bumps, transactions and conditional deletes: none may fail."""
    for i in range(60):
        s.put(Put("meta", rec(f"d/{tag}", f"j/{i:016d}", h=f"hash{i}", ev="[]"), ABSENT))
    for v in range(1, 20):  # a versioned item, as the lock tables and leases are
        when = ABSENT if v == 1 else (Cond("eq", "v", v - 1),)
        s.put(Put("meta", rec(f"lk/{tag}", "t", v=v, locks=f"[{v}]"), when))
    for i in range(20):
        s.transact([Put("meta", rec(f"d/{tag}a", f"j/{i:016d}", h=f"a{i}"), ABSENT),
                    Put("meta", rec(f"d/{tag}b", f"j/{i:016d}", h=f"b{i}"), ABSENT)])
    for i in range(0, 60, 3):
        s.delete(Delete("meta", (f"d/{tag}", f"j/{i:016d}"), (Cond("exists"),)))
    # exact read-back, through a client that saw no faults
    got = {it["name"]: it for it in check.query("meta", f"d/{tag}")}
    assert sorted(got) == [f"j/{i:016d}" for i in range(60) if i % 3]
    assert all(got[f"j/{i:016d}"]["h"] == f"hash{i}" for i in range(60) if i % 3)
    assert check.get("meta", (f"lk/{tag}", "t")) == rec(f"lk/{tag}", "t", v=19, locks="[19]")
    assert len(list(check.query("meta", f"d/{tag}a"))) == 20 and len(list(check.query("meta", f"d/{tag}b"))) == 20
    # a real conflict is still one, faults or not
    with pytest.raises(JournalConflict):
        s.put(Put("meta", rec(f"d/{tag}", "j/0000000000000001", h="someone else"), ABSENT))
    with pytest.raises(JournalConflict):
        s.transact([Put("meta", rec(f"d/{tag}a", "j/0000000000000001", h="other"), ABSENT),
                    Put("meta", rec(f"d/{tag}b", "j/9999999999999999", h="new"), ABSENT)])
    assert check.get("meta", (f"d/{tag}b", "j/9999999999999999")) is None


def test_dynamo_writes_survive_lost_replies(faulty: tuple[DynamoStore, DynamoStore], proxy: FaultProxy) -> None:
    through, direct = faulty
    proxy.set(rates=HARSH)
    _workload(through, direct, "x")
    faults = proxy.faults()
    assert faults.get("lost_reply", 0) >= 20 and faults.get("throttle", 0) and faults.get("server_error", 0)
    reads = sum(t.requests for (op, call), t in through.metrics.snapshot().items() if call == "GetItem")
    assert reads > 0  # read-backs are counted like any request


def test_dynamo_transaction_token_makes_a_retry_succeed(faulty: tuple[DynamoStore, DynamoStore],
                                                        proxy: FaultProxy) -> None:
    """Every TransactWriteItems whose reply is lost is applied; its retry (same token) answers
    success without reading back."""
    through, direct = faulty
    proxy.set(rates=FaultRates(lost_reply=0.5))
    for i in range(20):
        through.transact([Put("meta", rec("d/t1", f"j/{i:016d}", h=f"t{i}"), ABSENT),
                          Put("meta", rec("d/t2", f"j/{i:016d}", h=f"u{i}"), ABSENT)])
    assert proxy.faults()["lost_reply"] >= 3
    assert len(list(direct.query("meta", "d/t1"))) == 20
    reads = sum(t.requests for (op, call), t in through.metrics.snapshot().items() if call == "GetItem")
    assert reads == 0


def test_dynamo_batch_writes_survive_faults(faulty: tuple[DynamoStore, DynamoStore], proxy: FaultProxy) -> None:
    through, direct = faulty
    proxy.set(rates=HARSH)
    blocks = [{"blockId": "7.w1", "blockNum": n, "data": bytes([n]) * 1000} for n in range(100)]
    through.batch_write("blocks", blocks)
    assert sorted(direct.batch_get("blocks", [("7.w1", n) for n in range(100)]),
                  key=lambda b: b["blockNum"]) == blocks
    assert sorted(through.batch_get("blocks", [("7.w1", n) for n in range(100)]),
                  key=lambda b: b["blockNum"]) == blocks


def test_sqlite_ambiguous_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = SqliteStore(str(tmp_path / "fs.db"))
    s.create_tables()
    check = SqliteStore(str(tmp_path / "fs.db"))
    fail = CommitThenFail()
    monkeypatch.setattr(s, "_commit", fail)
    try:
        _workload(s, check, "s")
        assert fail.n > 50
    finally:
        s.close()
        check.close()


def test_local_store_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        s = SqliteStore(str(tmp_path / "fs.db"))
        s.create_tables()
        s.put(Put("meta", rec("p", "n", v=1)))
        for suffix in ("", "-wal", "-shm"):
            p = tmp_path / f"fs.db{suffix}"
            assert p.exists(), p
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
        s.close()
    finally:
        os.umask(old)


@pytest.fixture
def short_limit() -> Iterator[float]:
    old = retry.outage_limit()
    retry.set_outage_limit(1.5)
    yield 1.5
    retry.set_outage_limit(old)


def test_outage_past_the_limit_fails_with_one_warning(faulty: tuple[DynamoStore, DynamoStore], proxy: FaultProxy,
                                                      short_limit: float) -> None:
    through, direct = faulty
    proxy.outage(True)
    with structlog.testing.capture_logs() as logs:
        t0 = time.monotonic()
        with pytest.raises(StoreError) as e:
            through.put(Put("meta", rec("o", "a", v=1), ABSENT))
        assert not isinstance(e.value, TransientStoreError) and "unreachable" in str(e.value)
        assert time.monotonic() - t0 >= short_limit
        # later calls in the same outage fail at once, without another warning
        for _ in range(3):
            with pytest.raises(StoreError):
                through.get("meta", ("o", "a"))
        proxy.outage(False)
        through.put(Put("meta", rec("o", "b", v=1), ABSENT))  # carries on when it is over
    warnings = [x for x in logs if x["log_level"] == "warning"]
    assert [w["event"] for w in warnings] == ["store.unreachable", "store.reachable_again"]
    assert direct.get("meta", ("o", "b")) == rec("o", "b", v=1)


def test_outage_within_the_limit_is_waited_out(faulty: tuple[DynamoStore, DynamoStore], proxy: FaultProxy) -> None:
    through, direct = faulty
    proxy.outage(True)
    done: list[object] = []

    def writer() -> None:
        try:
            for i in range(5):
                through.put(Put("meta", rec("w", f"j/{i}", v=i), ABSENT))
            done.append("ok")
        except Exception as e:  # noqa: BLE001 - reported below
            done.append(e)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(4)
    assert not done  # still waiting
    proxy.outage(False)
    t.join(timeout=60)
    assert done == ["ok"]
    assert len(list(direct.query("meta", "w"))) == 5
