"""The fault proxy itself, against DynamoDB Local with a raw boto3 client (no retries): each
fault does what it claims on the wire and at the server."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import boto3
import botocore.config
import botocore.exceptions
import pytest

from dynamodb_local import FAKE_ENV, DynamoDBLocal, unique_table
from dynlog.faults.proxy import FaultProxy, FaultRates

pytestmark = pytest.mark.dynamodb  # DynamoDB Local, behind the fault proxy


def _client(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name=FAKE_ENV["AWS_DEFAULT_REGION"],
                        aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
                        config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=10))


@pytest.fixture
def table(ddb_local: DynamoDBLocal) -> Iterator[str]:
    name = unique_table()
    c = ddb_local.client()
    c.create_table(TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    yield name
    c.delete_table(TableName=name)


@pytest.fixture
def proxy(ddb_local: DynamoDBLocal) -> Iterator[FaultProxy]:
    with FaultProxy(ddb_local.endpoint, seed=7) as p:
        yield p


def _put(c: Any, table: str, k: str) -> None:
    c.put_item(TableName=table, Item={"k": {"S": k}}, ConditionExpression="attribute_not_exists(k)")


def _exists(ddb: DynamoDBLocal, table: str, k: str) -> bool:
    return "Item" in ddb.client().get_item(TableName=table, Key={"k": {"S": k}}, ConsistentRead=True)


def test_clean_pass_through_and_counts(proxy: FaultProxy, table: str, ddb_local: DynamoDBLocal) -> None:
    c = _client(proxy.endpoint)
    for i in range(5):
        _put(c, table, f"a{i}")
    assert c.get_item(TableName=table, Key={"k": {"S": "a3"}}, ConsistentRead=True)["Item"]["k"]["S"] == "a3"
    assert proxy.counts["PutItem"] == 5 and proxy.counts["GetItem"] == 1
    assert proxy.faults() == {}
    with pytest.raises(botocore.exceptions.ClientError) as e:  # the server's own errors pass through
        _put(c, table, "a0")
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_lost_reply_was_applied(proxy: FaultProxy, table: str, ddb_local: DynamoDBLocal) -> None:
    c = _client(proxy.endpoint)
    proxy.set(rates=FaultRates(lost_reply=1.0))
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        _put(c, table, "lost")
    assert proxy.counts["fault.lost_reply"] == 1 and proxy.counts["PutItem"] == 1
    assert _exists(ddb_local, table, "lost")  # DynamoDB applied it; only the answer was lost
    proxy.set(rates=FaultRates())
    with pytest.raises(botocore.exceptions.ClientError) as e:  # so a blind retry fails its condition
        _put(c, table, "lost")
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


@pytest.mark.parametrize("kind,status,codes", [
    ("throttle", 400, {"ThrottlingException", "ProvisionedThroughputExceededException"}),
    ("server_error", 500, {"InternalServerError"}),
])
def test_error_answers_are_not_forwarded(proxy: FaultProxy, table: str, ddb_local: DynamoDBLocal, kind: str,
                                         status: int, codes: set[str]) -> None:
    c = _client(proxy.endpoint)
    proxy.set(rates=FaultRates(**{kind: 1.0}))
    seen = set()
    for i in range(6):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            _put(c, table, f"{kind}{i}")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        seen.add(e.value.response["Error"]["Code"])
        assert not _exists(ddb_local, table, f"{kind}{i}")
    assert seen <= codes and seen
    assert proxy.counts[f"fault.{kind}"] == 6 and "PutItem" not in proxy.counts
    c.describe_table(TableName=table)  # table administration is never faulted


def test_reset_is_not_forwarded(proxy: FaultProxy, table: str, ddb_local: DynamoDBLocal) -> None:
    c = _client(proxy.endpoint)
    proxy.set(rates=FaultRates(reset=1.0))
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
        _put(c, table, "r")
    assert proxy.counts["fault.reset"] == 1 and "PutItem" not in proxy.counts
    assert not _exists(ddb_local, table, "r")
    proxy.set(rates=FaultRates())
    _put(c, table, "r")  # the client reconnects
    assert _exists(ddb_local, table, "r")


def test_outage_drops_everything_until_over(proxy: FaultProxy, table: str, ddb_local: DynamoDBLocal) -> None:
    c = _client(proxy.endpoint)
    proxy.outage(True)
    for op in (lambda: c.describe_table(TableName=table), lambda: _put(c, table, "o")):
        with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
            op()
    assert not _exists(ddb_local, table, "o")
    proxy.outage(False)
    _put(c, table, "o")
    assert _exists(ddb_local, table, "o") and proxy.counts["fault.outage"] == 2


def test_latency_is_added_to_every_request_and_paid_in_parallel(proxy: FaultProxy, table: str) -> None:
    proxy.set(latency_ms=150)
    c = _client(proxy.endpoint)
    t0 = time.monotonic()
    c.describe_table(TableName=table)
    _put(c, table, "lat")
    assert time.monotonic() - t0 >= 0.3
    # Parallel requests on separate connections are each delayed: all of them arrive, and
    # each thread's own request took at least the latency.
    took: list[float] = []

    def one(i: int) -> None:
        cc = _client(proxy.endpoint)
        t = time.monotonic()
        cc.get_item(TableName=table, Key={"k": {"S": "lat"}}, ConsistentRead=True)
        took.append(time.monotonic() - t)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(took) == 6 and min(took) >= 0.15


def test_spike_adds_delay(proxy: FaultProxy, table: str) -> None:
    proxy.set(rates=FaultRates(spike=1.0, spike_ms=200))
    c = _client(proxy.endpoint)
    t0 = time.monotonic()
    _put(c, table, "s")
    assert time.monotonic() - t0 >= 0.2 and proxy.counts["fault.spike"] == 1


def test_command_line(ddb_local: DynamoDBLocal, table: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "dynlog.faults.proxy", "--upstream", ddb_local.endpoint,
                             "--throttle", "1.0", "--seed", "3"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("fault proxy http://127.0.0.1:"), line
        endpoint = line.split()[2]
        c = _client(endpoint)
        with pytest.raises(botocore.exceptions.ClientError):
            _put(c, table, "cli")
        c.describe_table(TableName=table)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert '"fault.throttle": 1' in out and '"DescribeTable": 1' in out
