"""Direct reader of the meta table's DynamoDB Stream: every shard, following lineage.

Starts at LATEST for the shards open now; shards that appear later (splits, rotation) are
read from TRIM_HORIZON so nothing between parent and child is missed. A closed shard is
dropped once its iterator runs out. DynamoDB advises at most two readers per shard: see
docs/SCALING.md for how many mounts may read directly and what the relay does beyond that.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from ..errors import StoreError, TransientStoreError
from .base import Change, ChangeBatch, ChangeFeed
from .dynamo import DynamoStore, _call_name, _translate, from_ddb
from .retry import retry_call

log = structlog.get_logger(__name__)

# Shards are listed again this often. A split or rotation closes the parent shard, and reading
# a closed shard to its end triggers a listing at once (below), so the timer is only a safety
# net: at 5 s it was 0.2 DescribeStream/s, half of an idle file system's stream budget.
DISCOVERY_INTERVAL = 60.0
STREAM_RETRY_BUDGET = 3.0  # seconds one Streams request is retried before the poll fails


class DynamoStreamFeed(ChangeFeed):
    def __init__(self, store: DynamoStore, arn: str) -> None:
        self.store = store
        self.arn = arn
        self.iterators: dict[str, str | None] = {}
        self.known: set[str] = set()
        self._last_discovery = 0.0
        self._discover(initial=True)

    def _streams(self, op: str, **kw: Any) -> dict[str, Any]:
        """One Streams request; throttling, 5xx and dropped connections are retried briefly
        (stream reads are idempotent: an iterator may be read again), so that a fault costs a
        short wait instead of a failed poll. A longer outage still surfaces to the follower."""
        return retry_call(lambda: self._streams_once(op, **kw), "Streams." + op, budget=STREAM_RETRY_BUDGET)

    def _streams_once(self, op: str, **kw: Any) -> dict[str, Any]:
        self.store.metrics.record("Streams." + op)
        import botocore.exceptions

        try:
            wire = self.store.streams_wire
            if wire is not None:
                return wire.call(_call_name(op), kw)
            return getattr(self.store.streams, op)(**kw)
        except botocore.exceptions.ClientError as e:
            err = _translate(e)
            raise (err if isinstance(err, TransientStoreError) else StoreError(str(e))) from e
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.HTTPClientError) as e:
            raise TransientStoreError(str(e)) from e
        except botocore.exceptions.BotoCoreError as e:
            raise StoreError(str(e)) from e

    def _discover(self, initial: bool = False) -> None:
        self._last_discovery = time.monotonic()
        shards: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"StreamArn": self.arn}
        while True:
            desc = self._streams("describe_stream", **kw)["StreamDescription"]
            shards.extend(desc.get("Shards", []))
            last = desc.get("LastEvaluatedShardId")
            if not last:
                break
            kw["ExclusiveStartShardId"] = last
        for sh in shards:
            sid = sh["ShardId"]
            if sid in self.known:
                continue
            self.known.add(sid)
            open_now = "EndingSequenceNumber" not in sh.get("SequenceNumberRange", {})
            if initial and not open_now:
                continue  # history before we started: not ours to replay
            kind = "LATEST" if initial else "TRIM_HORIZON"
            it = self._streams("get_shard_iterator", StreamArn=self.arn, ShardId=sid, ShardIteratorType=kind)
            self.iterators[sid] = it.get("ShardIterator")

    def poll(self, timeout: float) -> ChangeBatch:
        deadline = time.monotonic() + timeout
        lost = False
        while True:
            if time.monotonic() - self._last_discovery > DISCOVERY_INTERVAL:
                self._discover()
            changes: list[Change] = []
            for sid, it in list(self.iterators.items()):
                if it is None:
                    continue
                try:
                    resp = self._streams("get_records", ShardIterator=it, Limit=1000)
                except StoreError as e:
                    if "TrimmedDataAccess" in str(e) or "ExpiredIterator" in str(e):
                        lost = True
                        self.iterators[sid] = self._streams("get_shard_iterator", StreamArn=self.arn, ShardId=sid,
                                                            ShardIteratorType="LATEST").get("ShardIterator")
                        continue
                    raise
                nxt = resp.get("NextShardIterator")
                if nxt is None:
                    del self.iterators[sid]  # closed shard fully read; children come via discovery
                    self._last_discovery = 0.0
                else:
                    self.iterators[sid] = nxt
                for rec in resp.get("Records", []):
                    ddb = rec.get("dynamodb", {})
                    keys = from_ddb(ddb.get("Keys", {}))
                    image = from_ddb(ddb["NewImage"]) if "NewImage" in ddb else None
                    changes.append(Change(keys.get("path", ""), keys.get("name", ""), image))
            if changes or lost or time.monotonic() >= deadline:
                return ChangeBatch(changes, lost=lost)
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
