"""The store contract (dynlog/store/base.py), run against both stores.

Every test taking ``store`` runs once on SQLite and once on DynamoDB Local; whatever one store
does, the other must do too. A few tests at the end are about one backend's table checks.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from dynlog.errors import JournalConflict, QuietError, StoreError, TransientStoreError
from dynlog.store.base import (
    ABSENT,
    EXISTS,
    MAX_BATCH_GET,
    MAX_BATCH_WRITE,
    MAX_ITEM_BYTES,
    MAX_TRANSACTION_ITEMS,
    QUERY_PAGE_BYTES,
    Change,
    ChangeFeed,
    Cond,
    Delete,
    Put,
    Store,
)
from dynlog.store.dynamo import DynamoStore
from dynlog.store.metrics import operation
from dynlog.store.source import open_store
from dynlog.store.sqlite import SqliteStore

from dynamodb_local import REGION, unique_table


def meta(path: str, name: str, **attrs: Any) -> dict[str, Any]:
    return {"path": path, "name": name, **attrs}


def block(block_id: str, num: int, **attrs: Any) -> dict[str, Any]:
    return {"blockId": block_id, "blockNum": num, **attrs}


def names(items: Any) -> list[str]:
    return [it["name"] for it in items]


# -- items -----------------------------------------------------------------------------------


def test_roundtrip_attribute_types(store: Store) -> None:
    item = meta(
        "/dir/ünïcødé ✓", "名前 😀",
        s="héllo wörld ✓ 日本語 😀 \t\n", empty="", i=0, neg=-42, big=2**53 + 1, f=1.5, nf=-0.25, tiny=1e-7,
        b=bytes(range(256)) * 4, eb=b"",
    )
    store.put(Put("meta", item))
    got = store.get("meta", ("/dir/ünïcødé ✓", "名前 😀"))
    assert got == item
    for k in ("s", "empty"):
        assert type(got[k]) is str
    for k in ("i", "neg", "big"):
        assert type(got[k]) is int
    for k in ("f", "nf", "tiny"):
        assert type(got[k]) is float
    for k in ("b", "eb"):
        assert type(got[k]) is bytes


def test_integral_floats_keep_their_value(store: Store) -> None:
    # DynamoDB normalises numbers, so 2.0 may come back as the int 2: equal, but not always a float.
    store.put(Put("meta", meta("/", "f", whole=2.0, huge=1e20, neg=-3.0)))
    got = store.get("meta", ("/", "f"))
    assert got == meta("/", "f", whole=2, huge=10**20, neg=-3)


def test_roundtrip_blocks_table(store: Store) -> None:
    data = os.urandom(64 * 1024)
    store.put(Put("blocks", block("abc", 7, data=data, n=3)))
    got = store.get("blocks", ("abc", 7))
    assert got == {"blockId": "abc", "blockNum": 7, "data": data, "n": 3}
    assert type(got["blockNum"]) is int
    assert store.get("blocks", ("abc", 8)) is None


def test_data_attribute_may_be_a_string(store: Store) -> None:
    store.put(Put("meta", meta("/", "x", data="not bytes")))
    assert store.get("meta", ("/", "x")) == meta("/", "x", data="not bytes")


def test_get_missing_is_none(store: Store) -> None:
    assert store.get("meta", ("/nope", "nope")) is None


def test_unconditional_put_replaces_whole_item(store: Store) -> None:
    store.put(Put("meta", meta("/", "a", x=1, y="old")))
    store.put(Put("meta", meta("/", "a", x=2)))
    assert store.get("meta", ("/", "a")) == meta("/", "a", x=2)


def test_item_over_400kb_rejected(store: Store) -> None:
    store.put(Put("meta", meta("/", "ok", data=b"x" * (300 * 1024))))
    with pytest.raises(StoreError) as ei:
        store.put(Put("meta", meta("/", "big", data=b"x" * (MAX_ITEM_BYTES + 1))))
    assert not isinstance(ei.value, JournalConflict)
    assert store.get("meta", ("/", "big")) is None


def test_second_client_reads_writes_at_once(store: Store, store_factory: Callable[[], Store]) -> None:
    other = store_factory()
    store.put(Put("meta", meta("/", "a", v=1)))
    assert other.get("meta", ("/", "a")) == meta("/", "a", v=1)
    other.put(Put("meta", meta("/", "a", v=2)))
    assert store.get("meta", ("/", "a")) == meta("/", "a", v=2)


# -- conditions ------------------------------------------------------------------------------


def test_put_absent(store: Store) -> None:
    store.put(Put("meta", meta("/", "a", v=1), ABSENT))
    with pytest.raises(JournalConflict) as ei:
        store.put(Put("meta", meta("/", "a", v=2), ABSENT))
    assert ei.value.keys == (("/", "a"),)
    assert store.get("meta", ("/", "a")) == meta("/", "a", v=1)


def test_put_exists(store: Store) -> None:
    with pytest.raises(JournalConflict):
        store.put(Put("meta", meta("/", "a", v=1), EXISTS))
    assert store.get("meta", ("/", "a")) is None
    store.put(Put("meta", meta("/", "a", v=1)))
    store.put(Put("meta", meta("/", "a", v=2), EXISTS))
    assert store.get("meta", ("/", "a"))["v"] == 2


@pytest.mark.parametrize(
    "when, ok",
    [
        ((Cond("eq", "v", 3),), True),
        ((Cond("eq", "v", 2),), False),
        ((Cond("eq", "s", "three"),), True),
        ((Cond("eq", "s", "four"),), False),
        ((Cond("eq", "b", b"\x00\x01"),), True),
        ((Cond("eq", "b", b"\x00\x02"),), False),
        ((Cond("eq", "missing", 3),), False),
        ((Cond("lt", "v", 4),), True),
        ((Cond("lt", "v", 3),), False),  # strictly less
        ((Cond("lt", "v", 2),), False),
        ((Cond("lt", "missing", 100),), False),
        ((Cond("lt", "s", "z"),), True),
        ((Cond("eq", "v", 99), Cond("lt", "v", 10)), True),  # alternatives: OR
        ((Cond("eq", "v", 99), Cond("lt", "v", 1)), False),
        (ABSENT + (Cond("eq", "v", 3),), True),
        (ABSENT + (Cond("eq", "v", 4),), False),
        (EXISTS, True),
        (ABSENT, False),
    ],
    ids=lambda x: repr(x) if isinstance(x, bool) else "-".join(f"{c.kind}:{c.attr}" for c in x),
)
def test_conditions_on_existing_item(store: Store, when: tuple[Cond, ...], ok: bool) -> None:
    original = meta("/", "a", v=3, s="three", b=b"\x00\x01")
    store.put(Put("meta", original))
    new = meta("/", "a", v=100)
    if ok:
        store.put(Put("meta", new, when))
        assert store.get("meta", ("/", "a")) == new
    else:
        with pytest.raises(JournalConflict) as ei:
            store.put(Put("meta", new, when))
        assert ei.value.keys == (("/", "a"),)
        assert store.get("meta", ("/", "a")) == original


def test_conditions_on_missing_item(store: Store) -> None:
    for when in [(Cond("eq", "v", 1),), (Cond("lt", "v", 1),), EXISTS]:
        with pytest.raises(JournalConflict):
            store.put(Put("meta", meta("/", "a", v=1), when))
    store.put(Put("meta", meta("/", "a", v=1), (Cond("eq", "v", 1),) + ABSENT))
    assert store.get("meta", ("/", "a")) == meta("/", "a", v=1)


def test_conditions_on_blocks_table(store: Store) -> None:
    store.put(Put("blocks", block("f", 0, data=b"a"), ABSENT))
    with pytest.raises(JournalConflict) as ei:
        store.put(Put("blocks", block("f", 0, data=b"b"), ABSENT))
    assert ei.value.keys == (("f", 0),)


def test_delete(store: Store) -> None:
    store.put(Put("meta", meta("/", "a", v=1)))
    with pytest.raises(JournalConflict) as ei:
        store.delete(Delete("meta", ("/", "a"), (Cond("eq", "v", 2),)))
    assert ei.value.keys == (("/", "a"),)
    assert store.get("meta", ("/", "a")) is not None
    store.delete(Delete("meta", ("/", "a"), (Cond("eq", "v", 1),)))
    assert store.get("meta", ("/", "a")) is None
    with pytest.raises(JournalConflict):
        store.delete(Delete("meta", ("/", "a"), EXISTS))
    store.delete(Delete("meta", ("/", "a")))  # unconditional delete of a missing item: fine
    store.put(Put("blocks", block("f", 1)))
    store.delete(Delete("blocks", ("f", 1)))
    assert store.get("blocks", ("f", 1)) is None


def test_racing_absent_puts_have_one_winner(store: Store, store_factory: Callable[[], Store]) -> None:
    stores = [store, store_factory()]
    wins: list[tuple[int, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def racer(i: int) -> None:
        s = stores[i % 2]
        barrier.wait()
        try:
            for k in range(15):
                try:
                    s.put(Put("meta", meta("/race", f"k{k}", who=i), ABSENT))
                    with lock:
                        wins.append((i, f"k{k}"))
                except JournalConflict:
                    pass
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(k for _, k in wins) == sorted(f"k{k}" for k in range(15))
    for i, k in wins:
        assert store.get("meta", ("/race", k))["who"] == i


# -- transactions ----------------------------------------------------------------------------


def test_transact_applies_all(store: Store) -> None:
    store.put(Put("meta", meta("/", "old", v=1)))
    store.put(Put("meta", meta("/", "gone")))
    store.transact([
        Put("meta", meta("/", "new", v=1), ABSENT),
        Put("meta", meta("/", "old", v=2), (Cond("eq", "v", 1),)),
        Delete("meta", ("/", "gone"), EXISTS),
        Put("blocks", block("f", 0, data=b"d")),
    ])
    assert store.get("meta", ("/", "new")) == meta("/", "new", v=1)
    assert store.get("meta", ("/", "old")) == meta("/", "old", v=2)
    assert store.get("meta", ("/", "gone")) is None
    assert store.get("blocks", ("f", 0)) == block("f", 0, data=b"d")


def test_transact_all_or_nothing(store: Store) -> None:
    store.put(Put("meta", meta("/", "taken", v=1)))
    store.put(Put("meta", meta("/", "del", v=1)))
    with pytest.raises(JournalConflict) as ei:
        store.transact([
            Put("meta", meta("/", "n1"), ABSENT),
            Delete("meta", ("/", "del")),
            Put("blocks", block("f", 0, data=b"x")),
            Put("meta", meta("/", "taken", v=2), ABSENT),
            Put("meta", meta("/", "n2")),
        ])
    assert ei.value.keys == (("/", "taken"),)
    assert store.get("meta", ("/", "n1")) is None
    assert store.get("meta", ("/", "n2")) is None
    assert store.get("meta", ("/", "del")) == meta("/", "del", v=1)
    assert store.get("meta", ("/", "taken")) == meta("/", "taken", v=1)
    assert store.get("blocks", ("f", 0)) is None


def test_transact_names_every_failed_item(store: Store) -> None:
    store.put(Put("meta", meta("/", "a", v=1)))
    with pytest.raises(JournalConflict) as ei:
        store.transact([
            Put("meta", meta("/", "a", v=2), ABSENT),
            Put("meta", meta("/", "b"), ABSENT),
            Delete("meta", ("/", "c"), EXISTS),
            Delete("blocks", ("f", 3), (Cond("eq", "v", 1),)),
        ])
    assert set(ei.value.keys) == {("/", "a"), ("/", "c"), ("f", 3)}
    assert store.get("meta", ("/", "b")) is None


def test_transact_limits(store: Store) -> None:
    store.transact([Put("meta", meta("/t", f"{i:03}"), ABSENT) for i in range(MAX_TRANSACTION_ITEMS)])
    assert len(list(store.query("meta", "/t"))) == MAX_TRANSACTION_ITEMS
    with pytest.raises(StoreError) as ei:
        store.transact([Put("meta", meta("/u", f"{i:03}")) for i in range(MAX_TRANSACTION_ITEMS + 1)])
    assert not isinstance(ei.value, JournalConflict)
    assert list(store.query("meta", "/u")) == []
    with pytest.raises(StoreError):
        store.transact([])
    with pytest.raises(StoreError) as ei:
        store.transact([Put("meta", meta("/", "a")), Delete("meta", ("/", "a"))])  # one item twice
    assert not isinstance(ei.value, JournalConflict)
    assert store.get("meta", ("/", "a")) is None


def test_transact_over_4mb_rejected(store: Store) -> None:
    writes = [Put("meta", meta("/big", f"{i}", data=b"x" * (390 * 1024))) for i in range(11)]
    with pytest.raises(StoreError) as ei:
        store.transact(writes)
    assert not isinstance(ei.value, JournalConflict)
    assert list(store.query("meta", "/big")) == []


def test_transact_item_over_400kb_rejected(store: Store) -> None:
    with pytest.raises(StoreError) as ei:
        store.transact([Put("meta", meta("/", "a")), Put("meta", meta("/", "big", data=b"x" * (MAX_ITEM_BYTES + 1)))])
    assert not isinstance(ei.value, JournalConflict)
    assert store.get("meta", ("/", "a")) is None


# -- queries ---------------------------------------------------------------------------------

LETTERS = [chr(c) for c in range(ord("a"), ord("k"))]  # a..j


@pytest.fixture
def letters(store: Store) -> Store:
    store.batch_write("meta", [meta("/q", n, i=i) for i, n in enumerate(LETTERS)])
    store.batch_write("meta", [meta("/p", "a"), meta("/qq", "a"), meta("/q/", "a")])  # neighbours
    return store


@pytest.mark.parametrize(
    "kw, want",
    [
        ({}, LETTERS),
        ({"start": "c"}, LETTERS[2:]),
        ({"start": "cc"}, LETTERS[3:]),
        ({"stop": "c"}, LETTERS[:2]),
        ({"stop": "cc"}, LETTERS[:3]),
        ({"start": "c", "stop": "f"}, ["c", "d", "e"]),
        ({"start": "c", "stop": "f", "reverse": True}, ["e", "d", "c"]),
        ({"reverse": True}, LETTERS[::-1]),
        ({"start": "h", "reverse": True}, ["j", "i", "h"]),
        ({"stop": "c", "reverse": True}, ["b", "a"]),
        ({"limit": 3}, ["a", "b", "c"]),
        ({"limit": 3, "reverse": True}, ["j", "i", "h"]),
        ({"start": "c", "stop": "f", "limit": 2}, ["c", "d"]),
        ({"start": "c", "stop": "f", "limit": 3}, ["c", "d", "e"]),
        ({"start": "c", "stop": "f", "limit": 5}, ["c", "d", "e"]),
        ({"start": "c", "stop": "f", "limit": 1, "reverse": True}, ["e"]),
        ({"start": "c", "stop": "f", "limit": 3, "reverse": True}, ["e", "d", "c"]),
        ({"limit": 100}, LETTERS),
        ({"limit": 0}, []),
        ({"start": "c", "stop": "c"}, []),
        ({"start": "f", "stop": "c"}, []),
        ({"start": "z"}, []),
    ],
    ids=lambda x: (",".join(f"{k}={v}" for k, v in x.items()) or "all") if isinstance(x, dict) else None,
)
def test_query_ranges(letters: Store, kw: dict[str, Any], want: list[str]) -> None:
    got = list(letters.query("meta", "/q", **kw))
    assert names(got) == want
    assert all(it["path"] == "/q" for it in got)
    assert [it["i"] for it in got] == [LETTERS.index(n) for n in want]


def test_query_missing_partition(store: Store) -> None:
    assert list(store.query("meta", "/nothing")) == []
    assert list(store.query("blocks", "nothing")) == []


def test_query_blocks_in_numeric_order(store: Store) -> None:
    store.batch_write("blocks", [block("f", n, data=bytes([n])) for n in range(25)])
    assert [b["blockNum"] for b in store.query("blocks", "f")] == list(range(25))
    assert [b["blockNum"] for b in store.query("blocks", "f", start=2, stop=11)] == list(range(2, 11))
    assert [b["blockNum"] for b in store.query("blocks", "f", start=9, reverse=True, limit=3)] == [24, 23, 22]
    assert [b["data"] for b in store.query("blocks", "f", stop=3)] == [b"\x00", b"\x01", b"\x02"]


def test_query_prefix(store: Store) -> None:
    keys = ["a", "ab", "abc", "abd", "ab😀", "ab\uffff", "ab\uffffz", "ac", "b", "😀"]
    store.batch_write("meta", [meta("/d", k) for k in keys])
    assert names(store.query_prefix("meta", "/d", "ab")) == ["ab", "abc", "abd", "ab\uffff", "ab\uffffz", "ab😀"]
    assert names(store.query_prefix("meta", "/d", "ab", reverse=True, limit=2)) == ["ab😀", "ab\uffffz"]
    assert names(store.query_prefix("meta", "/d", "")) == sorted(keys, key=lambda k: k.encode())
    assert names(store.query_prefix("meta", "/d", "😀")) == ["😀"]
    assert names(store.query_prefix("meta", "/d", "x")) == []


def test_query_sort_order_is_utf8_byte_order(store: Store) -> None:
    keys = ["Z", "a", "é", "\u4e00", "\uff5e", "😀", "~", " ", "0"]
    store.batch_write("meta", [meta("/o", k) for k in keys])
    assert names(store.query("meta", "/o")) == sorted(keys, key=lambda k: k.encode())


def test_query_pages_over_1mb(store: Store) -> None:
    payload = 100 * 1024
    items = [meta("/big", f"{i:03}", data=bytes([i]) * payload) for i in range(30)]
    store.batch_write("meta", items)
    store.metrics.reset()
    got = list(store.query("meta", "/big"))
    assert names(got) == [it["name"] for it in items]
    assert got == items
    pages = store.metrics.requests(call="Query")
    assert pages >= -(-30 * payload // QUERY_PAGE_BYTES), "each page is at most 1 MB and is one request"
    assert pages <= 5

    assert names(store.query("meta", "/big", reverse=True)) == [it["name"] for it in reversed(items)]
    assert names(store.query("meta", "/big", start="005", stop="025", limit=15)) == [f"{i:03}" for i in range(5, 20)]
    assert names(store.query("meta", "/big", start="005", stop="025", reverse=True)) == [
        f"{i:03}" for i in range(24, 4, -1)
    ]


# -- batches ---------------------------------------------------------------------------------


def test_batch_write_and_get(store: Store) -> None:
    n = 4 * MAX_BATCH_WRITE + 7
    items = [meta(f"/b{i % 3}", f"n{i:04}", v=i, data=os.urandom(50)) for i in range(n)]
    store.metrics.reset()
    store.batch_write("meta", items)
    assert store.metrics.requests(call="BatchWriteItem") >= -(-n // MAX_BATCH_WRITE)

    keys = [(it["path"], it["name"]) for it in items]
    missing = [(f"/b{i}", f"missing{i}") for i in range(MAX_BATCH_GET // 2)]
    want_keys = keys + missing
    assert len(want_keys) > MAX_BATCH_GET
    got = store.batch_get("meta", want_keys)
    assert len(got) == n
    by_key = {(it["path"], it["name"]): it for it in got}
    assert by_key == {(it["path"], it["name"]): it for it in items}
    assert store.batch_get("meta", []) == []
    assert store.batch_get("meta", missing) == []

    # deletes and puts in one call
    store.batch_write("meta", puts=[meta("/b0", "new")], deletes=keys[: 2 * MAX_BATCH_WRITE + 1])
    left = store.batch_get("meta", keys + [("/b0", "new")])
    assert len(left) == n - (2 * MAX_BATCH_WRITE + 1) + 1
    assert store.get("meta", keys[0]) is None
    store.delete_items("meta", keys)
    assert store.batch_get("meta", keys) == []
    assert store.get("meta", ("/b0", "new")) is not None


def test_batch_on_blocks_table(store: Store) -> None:
    blocks = [block(f"f{i % 2}", i, data=os.urandom(1000)) for i in range(60)]
    store.batch_write("blocks", blocks)
    got = store.batch_get("blocks", [("f0", i) for i in range(0, 60, 2)] + [("f1", 0)])
    assert sorted(got, key=lambda b: b["blockNum"]) == blocks[0::2]
    assert [b["blockNum"] for b in store.query("blocks", "f1")] == list(range(1, 60, 2))


def test_an_eventually_consistent_batch_get_costs_half(store: Store) -> None:
    """Blocks never change once written, so the block store reads them eventually consistent:
    the same items, at half the read units (as DynamoDB bills, and the local store counts)."""
    blocks = [block("f", i, data=os.urandom(10_000)) for i in range(8)]
    store.batch_write("blocks", blocks)
    keys = [("f", i) for i in range(8)]
    units = {}
    for consistent in (True, False):
        store.metrics.reset()
        got = store.batch_get("blocks", keys, consistent=consistent)
        assert sorted(got, key=lambda b: b["blockNum"]) == blocks
        assert store.metrics.requests(call="BatchGetItem") == 1
        units[consistent] = store.metrics.capacity()
    assert units[True] > 0 and units[False] == units[True] / 2, units


def test_batch_write_overwrites(store: Store) -> None:
    store.put(Put("meta", meta("/", "a", v=1, extra="x")))
    store.batch_write("meta", [meta("/", "a", v=2)])
    assert store.get("meta", ("/", "a")) == meta("/", "a", v=2)


# -- counters --------------------------------------------------------------------------------


def test_add(store: Store) -> None:
    assert store.add("meta", ("/", "ctr"), "n", 5) == 5
    assert store.add("meta", ("/", "ctr"), "n", -2) == 3
    assert store.add("meta", ("/", "ctr"), "m", 1) == 1
    assert store.get("meta", ("/", "ctr")) == meta("/", "ctr", n=3, m=1)
    store.put(Put("meta", meta("/", "other", s="keep", data=b"\x01")))
    assert store.add("meta", ("/", "other"), "n", 10) == 10
    assert store.get("meta", ("/", "other")) == meta("/", "other", s="keep", data=b"\x01", n=10)


def test_add_is_atomic_across_threads(store: Store, store_factory: Callable[[], Store]) -> None:
    stores = [store, store_factory()]
    results: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        s = stores[i % 2]
        barrier.wait()
        try:
            for _ in range(50):
                v = s.add("meta", ("/", "ctr"), "n", 1)
                with lock:
                    results.append(v)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == list(range(1, 201))  # every add saw a distinct value
    assert store.get("meta", ("/", "ctr"))["n"] == 200


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_count_each_request(store: Store) -> None:
    m = store.metrics
    m.reset()
    store.put(Put("meta", meta("/", "a")))
    assert m.requests(call="PutItem") == 1
    store.put(Put("meta", meta("/", "b"), ABSENT))
    assert m.requests(call="PutItem") == 2
    with pytest.raises(JournalConflict):
        store.put(Put("meta", meta("/", "b"), ABSENT))
    assert m.requests(call="PutItem") == 3  # a refused write is still a request
    store.get("meta", ("/", "a"))
    store.get("meta", ("/", "zzz"))
    assert m.requests(call="GetItem") == 2
    store.delete(Delete("meta", ("/", "a")))
    assert m.requests(call="DeleteItem") == 1
    store.transact([Put("meta", meta("/", "c")), Put("meta", meta("/", "d"))])
    assert m.requests(call="TransactWriteItems") == 1
    list(store.query("meta", "/"))
    assert m.requests(call="Query") == 1
    store.add("meta", ("/", "n"), "v", 1)
    assert m.requests(call="UpdateItem") == 1
    assert m.requests() == 9
    assert m.by_call() == {"PutItem": 3, "GetItem": 2, "DeleteItem": 1, "TransactWriteItems": 1, "Query": 1,
                           "UpdateItem": 1}
    assert m.capacity() > 0


def test_metrics_attributed_to_operation(store: Store) -> None:
    m = store.metrics
    m.reset()
    with operation("create"):
        store.put(Put("meta", meta("/", "a"), ABSENT))
        store.transact([Put("meta", meta("/", "b"))])
    with operation("lookup"):
        store.get("meta", ("/", "a"))
    store.get("meta", ("/", "b"))
    assert m.requests(op="create") == 2
    assert m.requests(op="create", call="PutItem") == 1
    assert m.requests(op="create", call="TransactWriteItems") == 1
    assert m.requests(op="lookup") == 1
    assert m.requests(op="lookup", call="GetItem") == 1
    assert m.requests(op="other", call="GetItem") == 1
    assert m.by_call("create") == {"PutItem": 1, "TransactWriteItems": 1}
    assert m.capacity("create") > 0


def test_metrics_are_per_store_object(store: Store, store_factory: Callable[[], Store]) -> None:
    other = store_factory()
    store.metrics.reset()
    other.put(Put("meta", meta("/", "a")))
    assert other.metrics.requests(call="PutItem") == 1
    assert store.metrics.requests() == 0


# -- change feed -----------------------------------------------------------------------------


def wait_for(feed: ChangeFeed, want: set[tuple[str, str]], timeout: float = 10.0) -> list[Change]:
    """Poll until every (path, name) in ``want`` was seen; return all changes seen."""
    seen: list[Change] = []
    deadline = time.monotonic() + timeout
    while not want <= {(c.path, c.name) for c in seen} and time.monotonic() < deadline:
        seen.extend(feed.poll(timeout=5).changes)
    return seen


def test_change_feed_sees_other_clients_writes(store: Store, store_factory: Callable[[], Store]) -> None:
    store.put(Put("meta", meta("/before", "x")))
    feed = store.change_feed()
    assert feed is not None
    try:
        other = store_factory()
        other.put(Put("meta", meta("/dir", "file", v=1, data=b"\x00\x01")))
        seen = wait_for(feed, {("/dir", "file")})
        assert ("/dir", "file") in {(c.path, c.name) for c in seen}
        assert ("/before", "x") not in {(c.path, c.name) for c in seen}, "the feed starts at 'now'"
        for c in seen:
            if (c.path, c.name) == ("/dir", "file") and c.item is not None:  # DynamoDB streams carry images
                assert c.item == meta("/dir", "file", v=1, data=b"\x00\x01")

        other.transact([Put("meta", meta("/dir", "t1")), Delete("meta", ("/dir", "file"))])
        other.put(Put("blocks", block("blk", 0, data=b"x")))  # not the meta table: not in the feed
        seen = wait_for(feed, {("/dir", "t1"), ("/dir", "file")})
        keys = [(c.path, c.name) for c in seen]
        assert ("/dir", "t1") in keys and ("/dir", "file") in keys
        deleted = [c for c in seen if (c.path, c.name) == ("/dir", "file")]
        assert all(c.item is None for c in deleted)
        assert all(c.path != "blk" for c in seen)
    finally:
        feed.close()


def test_change_feed_idle_poll_waits_and_returns_empty(store: Store) -> None:
    feed = store.change_feed()
    assert feed is not None
    try:
        t0 = time.monotonic()
        batch = feed.poll(timeout=0.3)
        elapsed = time.monotonic() - t0
        assert batch.changes == [] and not batch.lost
        assert 0.2 <= elapsed < 5
    finally:
        feed.close()


# -- scans -----------------------------------------------------------------------------------


def test_scan_partitions(store: Store) -> None:
    parts = ["/a", "/b", "/b/c", "/bb", "x", "😀", "/b\uffff"]
    store.batch_write("meta", [meta(p, f"n{i}") for p in parts for i in range(3)])
    store.batch_write("blocks", [block(f"blk{i}", n) for i in range(4) for n in range(2)])
    assert list(store.scan_partitions("meta")) == sorted(parts)
    assert list(store.scan_partitions("meta", "/b")) == sorted(["/b", "/b/c", "/bb", "/b\uffff"])
    assert list(store.scan_partitions("meta", "/b/")) == ["/b/c"]
    assert list(store.scan_partitions("meta", "😀")) == ["😀"]
    assert list(store.scan_partitions("meta", "nope")) == []
    assert list(store.scan_partitions("blocks")) == [f"blk{i}" for i in range(4)]


def test_scan_partitions_empty(store: Store) -> None:
    assert list(store.scan_partitions("meta")) == []


# -- tables ----------------------------------------------------------------------------------


def test_create_tables_idempotent(store: Store, store_factory: Callable[[], Store]) -> None:
    store.put(Put("meta", meta("/", "keep")))
    assert store.create_tables() is False
    other = store_factory()
    assert other.create_tables() is False
    other.check_tables()
    assert other.get("meta", ("/", "keep")) == meta("/", "keep")


def test_check_tables_ok(store: Store) -> None:
    store.check_tables()


def test_sqlite_missing_file(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "nope.db"))
    with pytest.raises(StoreError, match="no such file system"):
        s.check_tables()
    assert not (tmp_path / "nope.db").exists(), "checking must not create the file"


def test_sqlite_missing_directory(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "no" / "dir" / "fs.db"))
    with pytest.raises(StoreError):
        s.check_tables()
    with pytest.raises(StoreError, match="does not exist"):
        s.create_tables()


def test_sqlite_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a dynlog store"):
        SqliteStore(str(junk)).check_tables()
    import sqlite3

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(StoreError, match="not a dynlog store"):
        SqliteStore(str(other)).check_tables()


def test_sqlite_create_tables_returns_true_once(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "fs.db"))
    assert s.create_tables() is True
    assert s.create_tables() is False
    s.close()
    s2 = SqliteStore(str(tmp_path / "fs.db"))
    assert s2.create_tables() is False
    s2.check_tables()
    s2.close()


@pytest.mark.dynamodb
def test_dynamo_missing_table(ddb_local: Any) -> None:
    name = unique_table()
    s = DynamoStore(REGION, name, endpoint_url=ddb_local.endpoint)
    with pytest.raises(StoreError) as ei:
        s.check_tables()
    assert name in str(ei.value) and "does not exist" in str(ei.value)
    with pytest.raises(StoreError, match="not found"):
        s.get("meta", ("/", "a"))


@pytest.mark.dynamodb
def test_dynamo_create_tables_returns_true_once(ddb_local: Any) -> None:
    s = DynamoStore(REGION, unique_table(), endpoint_url=ddb_local.endpoint)
    try:
        assert s.create_tables() is True
        assert s.create_tables() is False
        s.check_tables()
    finally:
        _drop(ddb_local, s)


def _drop(ddb_local: Any, s: DynamoStore) -> None:
    client = ddb_local.client()
    for name in (s.meta_table, s.blocks_table):
        try:
            client.delete_table(TableName=name)
        except client.exceptions.ResourceNotFoundException:
            pass


def _make_table(ddb_local: Any, name: str, hash_: tuple[str, str], range_: tuple[str, str] | None,
                stream: bool) -> None:
    keys = [{"AttributeName": hash_[0], "KeyType": "HASH"}]
    attrs = [{"AttributeName": hash_[0], "AttributeType": hash_[1]}]
    if range_:
        keys.append({"AttributeName": range_[0], "KeyType": "RANGE"})
        attrs.append({"AttributeName": range_[0], "AttributeType": range_[1]})
    spec: dict[str, Any] = dict(TableName=name, KeySchema=keys, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST")
    if stream:
        spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ddb_local.client().create_table(**spec)


@pytest.mark.dynamodb
@pytest.mark.parametrize(
    "meta_hash, meta_range",
    [(("id", "S"), None), (("path", "S"), ("sort", "S")), (("path", "S"), ("name", "N")), (("path", "N"), ("name", "S"))],
    ids=["hash-only", "wrong-range-name", "wrong-range-type", "wrong-hash-type"],
)
def test_dynamo_wrong_key_schema(ddb_local: Any, meta_hash: tuple[str, str], meta_range: Any) -> None:
    s = DynamoStore(REGION, unique_table(), endpoint_url=ddb_local.endpoint)
    try:
        _make_table(ddb_local, s.meta_table, meta_hash, meta_range, stream=True)
        _make_table(ddb_local, s.blocks_table, ("blockId", "S"), ("blockNum", "N"), stream=False)
        with pytest.raises(StoreError, match="wrong key schema") as ei:
            s.check_tables()
        assert s.meta_table in str(ei.value)
        with pytest.raises(StoreError, match="wrong key schema"):
            s.create_tables()  # refuses tables of the wrong shape
    finally:
        _drop(ddb_local, s)


@pytest.mark.dynamodb
def test_dynamo_wrong_blocks_schema(ddb_local: Any) -> None:
    s = DynamoStore(REGION, unique_table(), endpoint_url=ddb_local.endpoint)
    try:
        _make_table(ddb_local, s.meta_table, ("path", "S"), ("name", "S"), stream=True)
        _make_table(ddb_local, s.blocks_table, ("blockId", "S"), ("blockNum", "S"), stream=False)
        with pytest.raises(StoreError, match="wrong key schema") as ei:
            s.check_tables()
        assert s.blocks_table in str(ei.value)
    finally:
        _drop(ddb_local, s)


@pytest.mark.dynamodb
def test_dynamo_meta_without_stream(ddb_local: Any) -> None:
    s = DynamoStore(REGION, unique_table(), endpoint_url=ddb_local.endpoint)
    try:
        _make_table(ddb_local, s.meta_table, ("path", "S"), ("name", "S"), stream=False)
        _make_table(ddb_local, s.blocks_table, ("blockId", "S"), ("blockNum", "N"), stream=False)
        with pytest.raises(StoreError, match="no stream"):
            s.check_tables()
        assert s.change_feed() is None
    finally:
        _drop(ddb_local, s)


@pytest.mark.dynamodb
def test_dynamo_missing_blocks_table(ddb_local: Any) -> None:
    s = DynamoStore(REGION, unique_table(), endpoint_url=ddb_local.endpoint)
    try:
        _make_table(ddb_local, s.meta_table, ("path", "S"), ("name", "S"), stream=True)
        with pytest.raises(StoreError, match="does not exist") as ei:
            s.check_tables()
        assert s.blocks_table in str(ei.value)
    finally:
        _drop(ddb_local, s)


# -- sources ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["", "local:", "local", "aws:", "aws:us-east-1", "aws:us-east-1/", "aws:/table", "aws:US-EAST-1/table",
     "aws:us-east-1/ab", "aws:us-east-1/has space", "aws:us-east-1/a/b", "aws:us-east-1/tbl$", "s3://bucket/x",
     "dynamodb:us-east-1/table", "/var/lib/fs.db", "aws:us-east-1/" + "t" * 250],
)
def test_open_store_bad_sources(source: str) -> None:
    with pytest.raises(QuietError) as ei:
        open_store(source)
    assert ei.value.exitcode == 2
    assert "\n" not in str(ei.value)


def test_open_store_local(tmp_path: Path) -> None:
    path = tmp_path / "fs.db"
    s = open_store(f"local:{path}")
    assert isinstance(s, SqliteStore)
    assert s.source == f"local:{path}"
    assert not path.exists(), "open_store never creates"
    rel = open_store("local:rel/fs.db")
    assert rel.source == f"local:{os.path.abspath('rel/fs.db')}"


def test_open_store_aws() -> None:
    s = open_store("aws:eu-west-2/my_fs.1-x")
    assert isinstance(s, DynamoStore)
    assert (s.region, s.meta_table, s.blocks_table) == ("eu-west-2", "my_fs.1-x", "my_fs.1-xBlocks")
    assert s.source == "aws:eu-west-2/my_fs.1-x"
    assert isinstance(open_store("aws:us-east-1/" + "t" * 249), DynamoStore)


def test_open_store_reopens_same_tables(store: Store, backend: str, request: pytest.FixtureRequest) -> None:
    store.put(Put("meta", meta("/", "a", v=1)))
    endpoint = request.getfixturevalue("ddb_local").endpoint if backend == "dynamodb" else None
    again = open_store(store.source, endpoint_url=endpoint)
    try:
        again.check_tables()
        assert again.get("meta", ("/", "a")) == meta("/", "a", v=1)
    finally:
        again.close()


def test_batch_duplicate_keys(store: Store) -> None:
    store.put(Put("meta", meta("/", "a", v=1)))
    assert store.batch_get("meta", [("/", "a"), ("/", "a"), ("/", "b")]) == [meta("/", "a", v=1)]
    with pytest.raises(StoreError) as ei:
        store.batch_write("meta", [meta("/", "x", v=1), meta("/", "x", v=2)])
    assert not isinstance(ei.value, JournalConflict)
    with pytest.raises(StoreError):
        store.batch_write("meta", puts=[meta("/", "a", v=3)], deletes=[("/", "a")])
    assert store.get("meta", ("/", "a")) == meta("/", "a", v=1)


@pytest.mark.parametrize(
    "codes, error",
    [
        (["None", "ConditionalCheckFailed"], JournalConflict),
        (["TransactionConflict", "None"], TransientStoreError),
        (["ThrottlingError"], TransientStoreError),
        (["ValidationError", "None"], StoreError),
        (["ConditionalCheckFailed", "TransactionConflict"], JournalConflict),
    ],
)
def test_dynamo_cancellation_reasons(codes: list[str], error: type[Exception]) -> None:
    """How a cancelled TransactWriteItems is translated (no server needed: a synthetic error)."""
    import botocore.exceptions

    s = DynamoStore(REGION, "tcancel", endpoint_url="http://127.0.0.1:9")
    items = [{"Put": {"TableName": "tcancel", "Item": {"path": {"S": "/"}, "name": {"S": f"n{i}"}}}}
             for i in range(len(codes))]
    err = botocore.exceptions.ClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
         "CancellationReasons": [{"Code": c} for c in codes]},
        "TransactWriteItems",
    )
    out = s._cancellation(err, {"TransactItems": items})
    assert type(out) is error
    if error is JournalConflict:
        assert out.keys == tuple(("/", f"n{i}") for i, c in enumerate(codes) if c == "ConditionalCheckFailed")
