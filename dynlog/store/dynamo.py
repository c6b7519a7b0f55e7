"""The DynamoDB store (boto3). Works against AWS, DynamoDB Local or any compatible endpoint.

Retries: botocore's own retries are switched off (total_max_attempts=1) so that the one policy
in ``retry.py`` is the only one, and every attempt is counted. Every call asks for
ReturnConsumedCapacity=TOTAL and records it.

Every write is safe to retry. A failure is *ambiguous* (AmbiguousStoreError) when the request
may have been applied: a read timeout, a connection closed or reset once the request was
sent, a 5xx. Throttling, a refused connection and a connect timeout are known not to have
been applied. After an ambiguous attempt, a conditional put or delete whose retry fails its
condition reads the item back (one consistent GetItem, counted like any request) and succeeds
when the item is exactly what it wrote (a delete: when it is gone). A TransactWriteItems
carries a ClientRequestToken, the same for every retry of one call, so DynamoDB itself
answers a retry of an applied transaction with success (DynamoDB Local honours it too); if it
still comes back cancelled on a condition after an ambiguous attempt, its puts are read back
the same way. Batch writes put immutable items or delete unconditionally, so repeating them
is harmless; their unprocessed items are retried. ``add`` (UpdateItem ADD) is the one write
that is not idempotent: a retried ADD whose first try was applied adds twice. The inode
allocator is its only user, and a double add only skips a range of inode numbers.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from typing import Any, Iterator, Sequence

import boto3
import botocore.exceptions
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.config import Config

from ..errors import JournalConflict, StoreError, TransientStoreError
from .base import (
    KEY_ATTRS,
    MAX_TRANSACTION_ITEMS,
    ChangeFeed,
    Cond,
    Delete,
    Item,
    Put,
    Store,
    Table,
    Write,
    check_unique_keys,
    key_of,
)
from .metrics import RequestMetrics, timed
from .retry import MAX_DELAY, AmbiguousStoreError, backoff_delay, outage_limit, retry_transient, retry_write
from .wire import STREAMS_TARGET, WireClient, wanted

_ser = TypeSerializer()
_deser = TypeDeserializer()

# Refused before being applied: a retry is safe and the first try left nothing behind.
TRANSIENT_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
}
# May have been applied (an earlier try of the same ClientRequestToken is still running, or the
# server failed mid-way): like every 5xx, these make the call ambiguous.
AMBIGUOUS_CODES = {"InternalServerError", "ServiceUnavailable", "TransactionInProgressException"}

# Cancellation reasons of a TransactWriteItems that a retry may cure.
TRANSIENT_CANCELLATION_CODES = {"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError"}

# The calls a mount makes all the time go out through wire.py (a fraction of botocore's CPU per
# request); the rare ones (tables) through the boto3 client.
WIRE_CALLS = {"put_item", "delete_item", "get_item", "query", "scan", "batch_get_item", "batch_write_item",
              "transact_write_items", "update_item"}


def to_ddb(item: Item) -> dict[str, Any]:
    out = {}
    for k, v in item.items():
        if isinstance(v, str):
            out[k] = {"S": v}
        elif isinstance(v, bool):
            raise TypeError(f"attribute {k!r}: bool unsupported")
        elif isinstance(v, (int, float)):
            out[k] = {"N": repr(v)}
        elif isinstance(v, bytes):
            out[k] = {"B": v}
        else:
            raise TypeError(f"attribute {k!r}: unsupported type {type(v).__name__}")
    return out


def from_ddb(raw: dict[str, Any]) -> Item:
    out: Item = {}
    for k, v in raw.items():
        if "N" in v:
            n = v["N"]
            out[k] = int(n) if n.lstrip("-").isdigit() else float(n)
        elif "B" in v:
            b = v["B"]
            out[k] = b.value if isinstance(b, Binary) else bytes(b)
        elif "S" in v:
            out[k] = v["S"]
        else:
            out[k] = _deser.deserialize(v)
    return out


def condition_expression(table: Table, when: tuple[Cond, ...]) -> dict[str, Any]:
    """Render our condition alternatives as a DynamoDB ConditionExpression."""
    if not when:
        return {}
    parts, names, values = [], {}, {}
    for i, c in enumerate(when):
        if c.kind == "absent":
            names["#pk"] = KEY_ATTRS[table][0]
            parts.append("attribute_not_exists(#pk)")
        elif c.kind == "exists":
            names["#pk"] = KEY_ATTRS[table][0]
            parts.append("attribute_exists(#pk)")
        else:
            names[f"#a{i}"] = c.attr
            values[f":v{i}"] = to_ddb({"x": c.value})["x"]
            parts.append(f"#a{i} {'=' if c.kind == 'eq' else '<'} :v{i}")
    out: dict[str, Any] = {"ConditionExpression": " OR ".join(parts), "ExpressionAttributeNames": names}
    if values:
        out["ExpressionAttributeValues"] = values
    return out


def _translate(e: botocore.exceptions.ClientError) -> Exception:
    code = e.response.get("Error", {}).get("Code", "")
    msg = e.response.get("Error", {}).get("Message", str(e))
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "ConditionalCheckFailedException":
        return JournalConflict(msg)
    if code in AMBIGUOUS_CODES or status >= 500:
        return AmbiguousStoreError(f"{code}: {msg}")
    if code in TRANSIENT_CODES:
        return TransientStoreError(f"{code}: {msg}")
    if code == "ResourceNotFoundException":
        return StoreError(f"table not found: {msg}")
    if code in ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException", "AccessDeniedException"):
        return StoreError(f"credentials refused ({code}): {msg}")
    return StoreError(f"{code}: {msg}")


# One boto3 Session per process: a Session loads and caches the service models and resolves the
# credentials, about 0.1 s of CPU, which a Session per store paid again for every store opened
# (the CLI, fsck and tests open many). Sessions are not thread-safe, so clients are made under
# a lock; the clients themselves are.
_SESSION_LOCK = threading.Lock()


@functools.cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


class DynamoStore(Store):
    def __init__(self, region: str, table: str, *, endpoint_url: str | None = None,
                 metrics: RequestMetrics | None = None, session: boto3.session.Session | None = None) -> None:
        if not 3 <= len(table) <= 255 - len("Blocks"):
            raise StoreError(f"table name {table!r} must be 3 to 249 characters")
        self.region = region
        self.meta_table = table
        self.blocks_table = table + "Blocks"
        self.source = f"aws:{region}/{table}"
        self.metrics = metrics or RequestMetrics()
        endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
        self.endpoint_url = endpoint_url
        cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=64,
                     connect_timeout=5, read_timeout=20, tcp_keepalive=True)
        try:
            with _SESSION_LOCK:
                sess = session or _shared_session()
                self.client = sess.client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=cfg)
                self.streams = sess.client("dynamodbstreams", region_name=region, endpoint_url=endpoint_url, config=cfg)
                # the clients above resolved the credentials already: the session hands out the same
                creds = sess.get_credentials()
        except botocore.exceptions.BotoCoreError as e:
            raise StoreError(f"{self.source}: {e}") from e
        self.wire: WireClient | None = None
        self.streams_wire: WireClient | None = None
        if wanted():
            self.wire = WireClient(self.client.meta.endpoint_url, region, creds, connect_timeout=cfg.connect_timeout,
                                   read_timeout=cfg.read_timeout)
            self.streams_wire = WireClient(self.streams.meta.endpoint_url, region, creds, STREAMS_TARGET,
                                           connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout)

    def _name(self, table: Table) -> str:
        return self.meta_table if table == "meta" else self.blocks_table

    @timed  # latency per request, for dynlog stats (dynlog/store/metrics.py)
    def _call(self, op: str, **kw: Any) -> dict[str, Any]:
        """Every request passes here: counted, capacity recorded, errors translated."""
        name = _call_name(op)
        if op not in ("describe_table", "create_table", "list_tables", "describe_stream", "get_shard_iterator",
                      "get_records", "scan"):
            kw.setdefault("ReturnConsumedCapacity", "TOTAL")
        try:
            if self.wire is not None and op in WIRE_CALLS:
                resp = self.wire.call(name, kw)
            else:
                resp = getattr(self.client, op)(**kw)
        except botocore.exceptions.ClientError as e:
            self.metrics.record(name)
            err = _translate(e)
            if op == "transact_write_items" and e.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                err = self._cancellation(e, kw)
            raise err from e
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError) as e:
            self.metrics.record(name)  # never connected: nothing was sent
            raise TransientStoreError(str(e)) from e
        except botocore.exceptions.HTTPClientError as e:
            # ConnectionClosedError, ReadTimeoutError and the like: the request may have been
            # applied and only the reply lost.
            self.metrics.record(name)
            raise AmbiguousStoreError(str(e)) from e
        except botocore.exceptions.NoCredentialsError as e:
            raise StoreError("no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)") from e
        except botocore.exceptions.BotoCoreError as e:
            raise StoreError(str(e)) from e
        cc = resp.get("ConsumedCapacity")
        cap = sum(c.get("CapacityUnits", 0.0) for c in cc) if isinstance(cc, list) else (cc or {}).get("CapacityUnits", 0.0)
        self.metrics.record(name, capacity=float(cap or 0.0), items=_items_in(op, kw))
        return resp

    def _cancellation(self, e: botocore.exceptions.ClientError, kw: dict[str, Any]) -> Exception:
        reasons = e.response.get("CancellationReasons") or []
        keys = []
        for r, w in zip(reasons, kw.get("TransactItems", [])):
            if r.get("Code") == "ConditionalCheckFailed":
                body = w.get("Put") or w.get("Delete") or {}
                raw = body.get("Item") or body.get("Key") or {}
                table: Table = "meta" if body.get("TableName") == self.meta_table else "blocks"
                keys.append(key_of(table, from_ddb(raw)))
        other = {str(r.get("Code")) for r in reasons} - {"None", "ConditionalCheckFailed"}
        if not keys and other:
            codes = ",".join(str(r.get("Code")) for r in reasons)
            if other <= TRANSIENT_CANCELLATION_CODES:
                return TransientStoreError(f"transaction cancelled: {codes}")
            return StoreError(f"transaction cancelled: {codes}")  # ValidationError and the like: no retry
        return JournalConflict("transaction cancelled: condition failed", keys=tuple(keys))

    # -- tables ------------------------------------------------------------------------
    def create_tables(self) -> bool:
        created = False
        for table in ("meta", "blocks"):
            h, r = KEY_ATTRS[table]
            rtype = "S" if table == "meta" else "N"
            spec: dict[str, Any] = dict(
                TableName=self._name(table),
                KeySchema=[{"AttributeName": h, "KeyType": "HASH"}, {"AttributeName": r, "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": h, "AttributeType": "S"}, {"AttributeName": r, "AttributeType": rtype}],
                BillingMode="PAY_PER_REQUEST",
            )
            if table == "meta":
                spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
            try:
                self._call("create_table", **spec)
                created = True
            except StoreError as e:
                if "ResourceInUse" not in str(e) and "already exists" not in str(e):
                    raise
        for table in ("meta", "blocks"):
            self._wait_active(self._name(table))
        self.check_tables()
        return created

    def _wait_active(self, name: str) -> None:
        for _ in range(300):
            st = self._call("describe_table", TableName=name)["Table"]["TableStatus"]
            if st == "ACTIVE":
                return
            time.sleep(0.2)
        raise StoreError(f"table {name} did not become ACTIVE")

    def check_tables(self) -> None:
        for table in ("meta", "blocks"):
            name = self._name(table)
            try:
                desc = self._call("describe_table", TableName=name)["Table"]
            except StoreError as e:
                if "not found" in str(e) or "ResourceNotFound" in str(e) or "non-existent" in str(e):
                    raise StoreError(f"table {name} does not exist (run: dynlog mkfs {self.source})") from e
                raise
            h, r = KEY_ATTRS[table]
            keys = {k["KeyType"]: k["AttributeName"] for k in desc["KeySchema"]}
            types = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
            want_r = "S" if table == "meta" else "N"
            if keys.get("HASH") != h or keys.get("RANGE") != r or types.get(h) != "S" or types.get(r) != want_r:
                raise StoreError(
                    f"table {name} has the wrong key schema: want HASH {h} (S), RANGE {r} ({want_r}); "
                    f"found {keys} {types}"
                )
            if table == "meta":
                stream = desc.get("StreamSpecification") or {}
                if not stream.get("StreamEnabled") or stream.get("StreamViewType") not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
                    raise StoreError(f"table {name} has no stream with NEW_IMAGE: enable it (StreamViewType NEW_IMAGE)")

    # -- primitives --------------------------------------------------------------------
    def put(self, put: Put) -> None:
        key = key_of(put.table, put.item)

        def attempt() -> None:
            try:
                self._call("put_item", TableName=self._name(put.table), Item=to_ddb(put.item),
                           **condition_expression(put.table, put.when))
            except JournalConflict as e:
                raise JournalConflict(str(e), keys=(key,)) from e

        retry_write(attempt, lambda: self.holds([put]), "put")

    def delete(self, delete: Delete) -> None:
        h, r = KEY_ATTRS[delete.table]

        def attempt() -> None:
            try:
                self._call("delete_item", TableName=self._name(delete.table),
                           Key=to_ddb({h: delete.key[0], r: delete.key[1]}),
                           **condition_expression(delete.table, delete.when))
            except JournalConflict as e:
                raise JournalConflict(str(e), keys=(delete.key,)) from e

        retry_write(attempt, lambda: self.holds([delete]), "delete")

    def transact(self, writes: Sequence[Write]) -> None:
        if not writes or len(writes) > MAX_TRANSACTION_ITEMS:
            raise StoreError(f"a transaction takes 1 to {MAX_TRANSACTION_ITEMS} items, not {len(writes)}")
        items = []
        for w in writes:
            if isinstance(w, Put):
                items.append({"Put": {"TableName": self._name(w.table), "Item": to_ddb(w.item),
                                      **condition_expression(w.table, w.when)}})
            else:
                h, r = KEY_ATTRS[w.table]
                items.append({"Delete": {"TableName": self._name(w.table), "Key": to_ddb({h: w.key[0], r: w.key[1]}),
                                         **condition_expression(w.table, w.when)}})
        token = uuid.uuid4().hex  # one logical transaction: the same token on every retry
        retry_write(lambda: self._call("transact_write_items", TransactItems=items, ClientRequestToken=token),
                    lambda: self.holds(writes), "transact")

    @retry_transient
    def get(self, table: Table, key: tuple[Any, Any]) -> Item | None:
        h, r = KEY_ATTRS[table]
        resp = self._call("get_item", TableName=self._name(table), Key=to_ddb({h: key[0], r: key[1]}), ConsistentRead=True)
        return from_ddb(resp["Item"]) if "Item" in resp else None

    def query(self, table: Table, partition: Any, *, start: Any = None, stop: Any = None,
              reverse: bool = False, limit: int | None = None) -> Iterator[Item]:
        if (limit is not None and limit <= 0) or (start is not None and stop is not None and start >= stop):
            return  # an empty range (DynamoDB rejects BETWEEN with bounds reversed)
        h, r = KEY_ATTRS[table]
        names = {"#h": h, "#r": r}
        values = to_ddb({":h": partition})
        cond = "#h = :h"
        if start is not None and stop is not None:
            # BETWEEN is inclusive; exclude ``stop`` by filtering below.
            cond += " AND #r BETWEEN :a AND :b"
            values.update(to_ddb({":a": start, ":b": stop}))
        elif start is not None:
            cond += " AND #r >= :a"
            values.update(to_ddb({":a": start}))
        elif stop is not None:
            cond += " AND #r < :b"
            values.update(to_ddb({":b": stop}))
        if "#r" not in cond:
            del names["#r"]  # DynamoDB rejects unused names
        kw: dict[str, Any] = dict(TableName=self._name(table), KeyConditionExpression=cond,
                                  ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                                  ConsistentRead=True, ScanIndexForward=not reverse)
        remaining = limit
        while True:
            if remaining is not None:
                kw["Limit"] = remaining + (1 if start is not None and stop is not None else 0)
            resp = self._page(kw)
            for raw in resp.get("Items", []):
                item = from_ddb(raw)
                if stop is not None and item[r] == stop:
                    continue
                yield item
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return
            lek = resp.get("LastEvaluatedKey")
            if not lek:
                return
            kw["ExclusiveStartKey"] = lek

    @retry_transient
    def _page(self, kw: dict[str, Any]) -> dict[str, Any]:
        return self._call("query", **kw)

    def batch_get(self, table: Table, keys: Sequence[tuple[Any, Any]], consistent: bool = True) -> list[Item]:
        keys = list(dict.fromkeys(keys))  # DynamoDB refuses duplicate keys; return such an item once
        h, r = KEY_ATTRS[table]
        name = self._name(table)
        out: list[Item] = []
        for i in range(0, len(keys), 100):
            pending: list[dict[str, Any]] = [to_ddb({h: k[0], r: k[1]}) for k in keys[i : i + 100]]
            attempt = 0
            while pending:
                resp = self._batch_get_page({name: {"Keys": pending, "ConsistentRead": consistent}})
                out.extend(from_ddb(x) for x in resp.get("Responses", {}).get(name, []))
                pending = resp.get("UnprocessedKeys", {}).get(name, {}).get("Keys", [])
                attempt = self._backoff_unprocessed(pending, attempt)
        return out

    @retry_transient
    def _batch_get_page(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("batch_get_item", RequestItems=request)

    def batch_write(self, table: Table, puts: Sequence[Item] = (), deletes: Sequence[tuple[Any, Any]] = ()) -> None:
        h, r = KEY_ATTRS[table]
        check_unique_keys([key_of(table, p) for p in puts] + [tuple(k) for k in deletes], "a batch write")
        name = self._name(table)
        reqs = [{"PutRequest": {"Item": to_ddb(p)}} for p in puts]
        reqs += [{"DeleteRequest": {"Key": to_ddb({h: k[0], r: k[1]})}} for k in deletes]
        for i in range(0, len(reqs), 25):
            pending = reqs[i : i + 25]
            attempt = 0
            while pending:
                resp = self._batch_write_page({name: pending})
                pending = resp.get("UnprocessedItems", {}).get(name, [])
                attempt = self._backoff_unprocessed(pending, attempt)

    @retry_transient
    def _batch_write_page(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("batch_write_item", RequestItems=request)

    @staticmethod
    def _backoff_unprocessed(pending: list[Any], attempt: int) -> int:
        """Unprocessed items are throttling in another form: wait, then send them again. The
        wait is bounded by the same outage limit as every other retry."""
        if not pending:
            return 0
        if attempt * MAX_DELAY / 2 > outage_limit() + 1:  # the mean backoff at the cap, summed
            raise StoreError(f"{len(pending)} items stayed unprocessed after {attempt} attempts")
        time.sleep(backoff_delay(attempt))
        return attempt + 1

    @retry_transient
    def add(self, table: Table, key: tuple[Any, Any], attr: str, amount: int) -> int:
        h, r = KEY_ATTRS[table]
        resp = self._call("update_item", TableName=self._name(table), Key=to_ddb({h: key[0], r: key[1]}),
                          UpdateExpression="ADD #a :n", ExpressionAttributeNames={"#a": attr},
                          ExpressionAttributeValues={":n": {"N": str(amount)}}, ReturnValues="UPDATED_NEW")
        return int(resp["Attributes"][attr]["N"])

    def scan_partitions(self, table: Table, prefix: str = "") -> Iterator[Any]:
        h, _ = KEY_ATTRS[table]
        kw: dict[str, Any] = dict(TableName=self._name(table), ProjectionExpression="#h", ExpressionAttributeNames={"#h": h},
                                  ConsistentRead=True)
        seen: set[Any] = set()
        while True:
            resp = self._scan_page(kw)
            for raw in resp.get("Items", []):
                pk = from_ddb(raw)[h]
                if pk not in seen and str(pk).startswith(prefix):
                    seen.add(pk)
            if not resp.get("LastEvaluatedKey"):
                break
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        yield from sorted(seen)

    @retry_transient
    def _scan_page(self, kw: dict[str, Any]) -> dict[str, Any]:
        return self._call("scan", **kw)

    def change_feed(self) -> "ChangeFeed | None":
        from .streams import DynamoStreamFeed

        try:
            arn = self._call("describe_table", TableName=self.meta_table)["Table"].get("LatestStreamArn")
        except StoreError:
            return None
        return DynamoStreamFeed(self, arn) if arn else None


def _call_name(op: str) -> str:
    """boto3's method name as the API names the operation: put_item -> PutItem."""
    return "".join(p.capitalize() for p in op.split("_"))


def _items_in(op: str, kw: dict[str, Any]) -> int:
    if op == "transact_write_items":
        return len(kw.get("TransactItems", []))
    if op in ("batch_write_item", "batch_get_item"):
        req = kw.get("RequestItems", {})
        return sum(len(v) if isinstance(v, list) else len(v.get("Keys", [])) for v in req.values())
    return 1
