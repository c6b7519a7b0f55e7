"""DynamoDB's JSON protocol spoken directly: one keep-alive HTTP connection per thread, each
request signed with AWS Signature Version 4.

Why not botocore for these calls: a PutItem through a boto3 client cost 2.0 ms of client CPU
on the test machine (it builds its User-Agent string twice per request, runs a dozen event
hooks, validates and serialises against the service model, and parses the reply the same
way), as much as DynamoDB Local's own Java needed to apply the write. A mount's requests are
its critical path: tar's two puts a file pay that CPU on every file. Here a request is one
``json.dumps``, a SHA-256, two HMACs and one ``send``.

boto3 still does what it does well and rarely: finding and refreshing credentials (the
session's provider chain), resolving the endpoint, and the calls made once (tables). Errors
come out as botocore's own exceptions, with botocore's meaning, so ``dynamo.py`` translates
them in one place whichever client sent the request:

- refused or timed out while connecting: ``EndpointConnectionError`` / ``ConnectTimeoutError``
  (nothing was sent);
- the connection failed once the request may have left, or no reply came in time:
  ``ConnectionClosedError`` / ``ReadTimeoutError`` (the request may have been applied);
- an error reply: ``ClientError`` with the code, message, HTTP status and any extra fields
  (a cancelled transaction's ``CancellationReasons``).

Set ``DYNLOG_STORE_CLIENT=boto3`` to send everything through boto3 instead; an HTTP(S) proxy in
the environment does the same, since this client does not speak to proxies.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import select
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions

DYNAMODB_TARGET = "DynamoDB_20120810"
STREAMS_TARGET = "DynamoDBStreams_20120810"
CONTENT_TYPE = "application/x-amz-json-1.0"
SIGNING_SERVICE = "dynamodb"  # the Streams API signs as dynamodb too
USER_AGENT = "dynlog-wire/1"
IDLE_CHECK_S = 1.0  # a connection idle longer than this is checked for a server-side close first


def wanted() -> bool:
    """Use this client unless told not to, or unless requests must go through a proxy."""
    if os.environ.get("DYNLOG_STORE_CLIENT", "").lower() == "boto3":
        return False
    return not any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                                "ALL_PROXY", "all_proxy"))


def encode(params: dict[str, Any]) -> bytes:
    """The request body: binary attribute values (the only bytes in a request) in base64."""
    return json.dumps(params, separators=(",", ":"), default=_b64).encode()


def _b64(o: Any) -> str:
    if isinstance(o, (bytes, bytearray, memoryview)):
        return base64.b64encode(o).decode()
    raise TypeError(f"cannot send a {type(o).__name__}")


def decode(data: bytes) -> dict[str, Any]:
    """A reply, binary attribute values back to bytes: in DynamoDB JSON a one-key object
    ``{"B": <str>}`` (or ``{"BS": [<str>...]}``) is always an attribute value, since an item
    maps each name to such an object."""
    return json.loads(data, object_hook=_blobs) if data else {}


def _blobs(d: dict[str, Any]) -> dict[str, Any]:
    if len(d) == 1:
        b = d.get("B")
        if b.__class__ is str:
            return {"B": base64.b64decode(b)}
        bs = d.get("BS")
        if bs.__class__ is list:
            return {"BS": [base64.b64decode(x) for x in bs]}
    return d


class Signer:
    """AWS Signature Version 4 for a JSON POST to ``/``: the signing key is derived once a day."""

    def __init__(self, region: str, service: str = SIGNING_SERVICE) -> None:
        self.region = region
        self.service = service
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == date:
            return cached[2]
        k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
        for part in (self.region, self.service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        self._key = (secret, date, k)
        return k

    def headers(self, host: str, target: str, body: bytes, access_key: str, secret: str, token: str | None,
                now: datetime.datetime) -> dict[str, str]:
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        signed = {"content-type": CONTENT_TYPE, "host": host, "x-amz-date": amz_date, "x-amz-target": target}
        if token:
            signed["x-amz-security-token"] = token
        names = sorted(signed)
        canonical = "\n".join([
            "POST", "/", "",
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ])
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(secret, date), to_sign.encode(), hashlib.sha256).hexdigest()
        out = {"Content-Type": CONTENT_TYPE, "Host": host, "X-Amz-Date": amz_date, "X-Amz-Target": target,
               "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}"}
        if token:
            out["X-Amz-Security-Token"] = token
        return out


class WireClient:
    """Sends ``Operation`` requests of one API (``target``) to one endpoint; thread-safe, one
    connection per calling thread."""

    def __init__(self, endpoint_url: str, region: str, credentials: Any, target: str = DYNAMODB_TARGET, *,
                 connect_timeout: float = 5.0, read_timeout: float = 20.0) -> None:
        u = urlsplit(endpoint_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"endpoint must be http(s)://HOST[:PORT], not {endpoint_url!r}")
        self.endpoint_url = endpoint_url
        self.https = u.scheme == "https"
        self.hostname = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.host = u.netloc  # as signed and sent: with the port when the URL names one
        self.target = target
        self.credentials = credentials
        self.signer = Signer(region)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl: ssl.SSLContext | None = None
        if self.https:
            from botocore.httpsession import get_cert_path

            self._ssl = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True))
        self._local = threading.local()

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        creds = self.credentials.get_frozen_credentials()
        body = encode(params)
        headers = self.signer.headers(self.host, f"{self.target}.{operation}", body, creds.access_key,
                                      creds.secret_key, creds.token, datetime.datetime.now(datetime.timezone.utc))
        headers["User-Agent"] = USER_AGENT
        conn = self._connection()
        try:
            conn.request("POST", "/", body=body, headers=headers)
        except (OSError, http.client.HTTPException) as e:
            self._drop(conn)
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=self.endpoint_url, error=e) from e
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (TimeoutError, socket.timeout) as e:
            self._drop(conn)
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=self.endpoint_url, error=e) from e
        except (OSError, http.client.HTTPException) as e:
            self._drop(conn)
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=self.endpoint_url, error=e) from e
        self._local.idle_since = time.monotonic()
        if resp.will_close:
            self._drop(conn)
        if resp.status == 200:
            return decode(data)
        raise _client_error(operation, resp.status, data)

    # -- connections -----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - self._local.idle_since > IDLE_CHECK_S and _closed_by_peer(conn):
            self._drop(conn)
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._local.idle_since = time.monotonic()
        return conn

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.hostname, self.port, timeout=self.connect_timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self.hostname, self.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except (TimeoutError, socket.timeout) as e:
            conn.close()
            raise botocore.exceptions.ConnectTimeoutError(endpoint_url=self.endpoint_url, error=e) from e
        except OSError as e:
            conn.close()
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=self.endpoint_url, error=e) from e
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn.sock.settimeout(self.read_timeout)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection with something to read has been closed by the server
    (or carries garbage): either way it must not take a request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        p = select.poll()  # not select(): a daemon with many files open has descriptors past 1024
        p.register(sock, select.POLLIN)
        return bool(p.poll(0))
    except (OSError, ValueError):
        return True


def _client_error(operation: str, status: int, data: bytes) -> botocore.exceptions.ClientError:
    """An error reply as botocore reports it: ``{"__type": "...#Code", "message": ...}``."""
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("__type", "")).rpartition("#")[2]
    message = str(body.get("message") or body.get("Message") or data[:200].decode(errors="replace"))
    response: dict[str, Any] = {k: v for k, v in body.items() if k not in ("__type", "message", "Message")}
    response["Error"] = {"Code": code, "Message": message}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return botocore.exceptions.ClientError(response, operation)
