"""dynlog/store/wire.py: DynamoDB's JSON protocol without botocore's request pipeline.

DynamoDB Local accepts any signature, so the signature is checked here against botocore's own
SigV4 signer on the same request: a mistake would otherwise show only against AWS. The rest of
the store suite (test_store_contract.py and everything above it) runs on DynamoDB through this
client; the last test keeps the boto3 path (``DYNLOG_STORE_CLIENT=boto3``) working too.
"""

from __future__ import annotations

import datetime
import http.server
import threading
from typing import Any, Iterator

import botocore.auth
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dynlog.errors import JournalConflict
from dynlog.store.base import Cond, Put
from dynlog.store.dynamo import DynamoStore
from dynlog.store.wire import CONTENT_TYPE, Signer, WireClient, decode, encode

from dynamodb_local import REGION, unique_table

NOW = datetime.datetime(2026, 12, 1, 14, 59, 7, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEXAMPLETOKEN"])
@pytest.mark.parametrize("host", ["dynamodb.eu-west-1.amazonaws.com", "127.0.0.1:8000"])
def test_signature_is_botocores(monkeypatch: pytest.MonkeyPatch, token: str | None, host: str) -> None:
    body = encode({"TableName": "t", "Item": {"path": {"S": "d/1"}, "body": {"B": b"\x00\xffbytes"}}})
    target = "DynamoDB_20120810.PutItem"
    ours = Signer("eu-west-1").headers(host, target, body, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                       token, NOW)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    req = AWSRequest(method="POST", url=f"https://{host}/", data=body,
                     headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": target})
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    botocore.auth.SigV4Auth(creds, "dynamodb", "eu-west-1").add_auth(req)

    assert ours["Authorization"] == req.headers["Authorization"]
    assert ours["X-Amz-Date"] == req.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == req.headers.get("X-Amz-Security-Token")


def test_binary_values_travel_as_base64_and_come_back_as_bytes() -> None:
    item = {"path": {"S": "d/1"}, "data": {"B": b"\x00\x01\xfe"}, "set": {"BS": [b"a", b"\xff"]}, "n": {"N": "7"}}
    sent = encode({"Item": item})
    assert b'"B":"AAH+"' in sent
    assert decode(sent) == {"Item": item}
    # an attribute named "B" maps to an attribute value, never to a string: left alone
    assert decode(b'{"Item":{"B":{"S":"text"}}}') == {"Item": {"B": {"S": "text"}}}


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``reply`` (status, body); ``hang`` makes it never answer."""

    protocol_version = "HTTP/1.1"
    reply: tuple[int, bytes] = (200, b"{}")
    seen: list[dict[str, str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(dict(self.headers))
        status, body = self.reply
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def canned() -> Iterator[tuple[type[_Canned], WireClient]]:
    handler = type("Handler", (_Canned,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    host, port = server.server_address[:2]
    client = WireClient(f"http://{host}:{port}", REGION, Credentials("a", "b"), read_timeout=1.0)
    yield handler, client
    server.shutdown()
    server.server_close()


def test_error_replies_become_botocores_client_error(canned: tuple[type[_Canned], WireClient]) -> None:
    handler, client = canned
    handler.reply = (400, b'{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",'
                          b'"message":"Transaction cancelled","CancellationReasons":[{"Code":"ConditionalCheckFailed"},'
                          b'{"Code":"None"}]}')
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.call("TransactWriteItems", {"TransactItems": []})
    r = info.value.response
    assert r["Error"] == {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert [c["Code"] for c in r["CancellationReasons"]] == ["ConditionalCheckFailed", "None"]
    assert handler.seen[-1]["X-Amz-Target"] == "DynamoDB_20120810.TransactWriteItems"

    handler.reply = (503, b"<html>busy</html>")  # not JSON: the status still tells
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.call("PutItem", {})
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "busy" in info.value.response["Error"]["Message"]


def test_network_failures_keep_botocores_meaning(canned: tuple[type[_Canned], WireClient]) -> None:
    """Nothing listening: EndpointConnectionError (never sent, safe to retry). No reply in time:
    ReadTimeoutError (may have been applied). The next call opens a fresh connection."""
    handler, client = canned
    gone = WireClient("http://127.0.0.1:9", REGION, Credentials("a", "b"))
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        gone.call("GetItem", {})

    slow = threading.Event()
    original = handler.do_POST

    def hang(self: _Canned) -> None:
        slow.wait(3)
        original(self)

    handler.do_POST = hang  # type: ignore[method-assign]
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.call("PutItem", {})
    slow.set()
    handler.do_POST = original  # type: ignore[method-assign]
    handler.reply = (200, b'{"Item":{"k":{"B":"eA=="}}}')
    assert client.call("GetItem", {}) == {"Item": {"k": {"B": b"x"}}}


def test_the_boto3_path_still_works(ddb_local: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNLOG_STORE_CLIENT", "boto3")
    store = DynamoStore(REGION, unique_table(), endpoint_url=ddb_local.endpoint)
    try:
        assert store.wire is None and store.streams_wire is None
        store.create_tables()
        store.put(Put("meta", {"path": "d/1", "name": "a", "body": b"\x00bytes"}, when=(Cond("absent"),)))
        with pytest.raises(JournalConflict):
            store.put(Put("meta", {"path": "d/1", "name": "a", "body": b"other"}, when=(Cond("absent"),)))
        assert store.get("meta", ("d/1", "a"))["body"] == b"\x00bytes"
        assert [i["name"] for i in store.query("meta", "d/1")] == ["a"]
    finally:
        store.close()


def test_an_idle_connection_the_server_closed_is_replaced_before_use(canned: tuple[type[_Canned], WireClient],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A keep-alive connection that the server closed while idle must not take the next request
    (it would fail after sending: an ambiguous error for nothing)."""
    import socket

    import dynlog.store.wire as wire

    handler, client = canned
    monkeypatch.setattr(wire, "IDLE_CHECK_S", 0.0)
    client.call("GetItem", {})
    first = client._local.conn
    client.call("GetItem", {})
    assert client._local.conn is first, "a live idle connection is reused"
    first.sock.shutdown(socket.SHUT_RDWR)  # as when the server closes it: readable at EOF
    handler.reply = (200, b'{"Item":{}}')
    assert client.call("GetItem", {}) == {"Item": {}}
    assert client._local.conn is not first
