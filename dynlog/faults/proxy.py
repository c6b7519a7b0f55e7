"""A fault-injecting HTTP proxy for the DynamoDB JSON protocol.

Put it between a client and DynamoDB (Local) to see what the client does when the network
and the service misbehave the way a real region does now and then::

    with FaultProxy(ddb.endpoint, latency_ms=8, rates=FaultRates(lost_reply=0.03), seed=1) as p:
        DynamoStore("us-east-1", "t1", endpoint_url=p.endpoint)

Why a proxy and not a botocore hook: a *lost reply* must be a request that DynamoDB really
applied and whose answer never arrived. Only something on the wire can forward the request,
let the server apply it, and then drop the connection, so the client meets exactly what it
would meet in production (``ConnectionClosedError``) with the write done behind its back.

Faults hit only data-plane requests (everything but table administration), so that a test
can still create and describe its tables; latency hits every request. The proxy is threaded,
one thread per client connection with HTTP/1.1 keep-alive on both sides, so that parallel
requests pay ``latency_ms`` concurrently, as parallel round trips to a region do.

Command line, for trying things by hand::

    python -m dynlog.faults.proxy --upstream http://127.0.0.1:8000 --port 8001 \\
        --latency-ms 8 --throttle 0.1 --server-error 0.05 --lost-reply 0.03 --reset 0.02
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

# Table administration: never faulted (a test must be able to create and check its tables).
ADMIN_OPERATIONS = frozenset({
    "CreateTable", "DescribeTable", "ListTables", "DeleteTable", "UpdateTable", "DescribeTimeToLive",
    "UpdateTimeToLive", "DescribeLimits", "DescribeEndpoints", "TagResource", "UntagResource",
    "ListTagsOfResource", "DescribeContinuousBackups", "UpdateContinuousBackups", "CreateBackup",
    "DeleteBackup", "ListBackups", "DescribeBackup", "CreateGlobalTable", "UpdateGlobalTable",
    "DescribeGlobalTable", "ListGlobalTables",
})

_JSON = "application/x-amz-json-1.0"


@dataclass
class FaultRates:
    """Probabilities, per data-plane request, of each fault (they are drawn in this order)."""

    throttle: float = 0.0  # answer 400 ThrottlingException / ProvisionedThroughputExceededException, not forwarded
    server_error: float = 0.0  # answer 500 InternalServerError, not forwarded
    lost_reply: float = 0.0  # forward, let DynamoDB apply it, then close the connection with no reply
    reset: float = 0.0  # close the connection (TCP reset) before forwarding
    spike: float = 0.0  # add spike_ms of extra delay
    spike_ms: float = 300.0


class FaultProxy:
    """A threaded HTTP proxy to ``upstream`` that injects faults at ``rates`` (see the module doc).

    ``counts`` holds the requests forwarded per X-Amz-Target operation (``"PutItem"``...) and
    the faults injected per kind (``"fault.throttle"``, ``"fault.server_error"``,
    ``"fault.lost_reply"``, ``"fault.reset"``, ``"fault.spike"``, ``"fault.outage"``).
    """

    def __init__(self, upstream: str, *, latency_ms: float = 0.0, rates: FaultRates | None = None,
                 seed: int | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        u = urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"upstream must be http://HOST:PORT, not {upstream!r}")
        self.upstream_host = u.hostname
        self.upstream_port = u.port or 80
        self.latency_ms = latency_ms
        self.rates = rates or FaultRates()
        self.counts: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._outage = False
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = _QuietServer((self._host, self._port), Handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def set(self, *, latency_ms: float | None = None, rates: FaultRates | None = None) -> None:
        """Change the latency and/or the fault rates while running (takes effect per request)."""
        with self._lock:
            if latency_ms is not None:
                self.latency_ms = latency_ms
            if rates is not None:
                self.rates = replace(rates)

    def outage(self, on: bool) -> None:
        """While on, every request (of any kind) is dropped with a reset and nothing is forwarded:
        to the client, DynamoDB is unreachable."""
        with self._lock:
            self._outage = on

    def faults(self) -> dict[str, int]:
        """The injected faults so far, by kind (without the ``fault.`` prefix)."""
        with self._lock:
            return {k[6:]: v for k, v in self.counts.items() if k.startswith("fault.")}

    # -- used by the handler ---------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def _decide(self, op: str) -> tuple[str | None, float]:
        """Which fault (or None) this request meets, and its delay in seconds."""
        with self._lock:
            if self._outage:
                return "outage", 0.0
            delay = self.latency_ms / 1000.0
            if op in ADMIN_OPERATIONS:
                return None, delay
            r, rng = self.rates, self._rng
            if r.spike and rng.random() < r.spike:
                delay += r.spike_ms / 1000.0
                self.counts["fault.spike"] = self.counts.get("fault.spike", 0) + 1
            for kind in ("throttle", "server_error", "lost_reply", "reset"):
                p = getattr(r, kind)
                if p and rng.random() < p:
                    return kind, delay
            return None, delay

    def _throttle_code(self) -> str:
        with self._lock:
            return self._rng.choice(["ThrottlingException", "ProvisionedThroughputExceededException"])


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away mid-reply (a SIGKILLed mount, a timeout) is normal here: no
    traceback on stderr for it."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One client connection (one thread), with its own keep-alive connection upstream."""

    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY, a reply written as headers then body waits for the client's delayed
    # ACK (40 ms on Linux): the proxy would add far more latency than it was asked to.
    disable_nagle_algorithm = True
    _up: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Quiet: a test run makes tens of thousands of requests."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        op = target.rsplit(".", 1)[-1] if target else ""
        p = self.owner
        fault, delay = p._decide(op)
        if fault in ("outage", "reset"):
            p._count(f"fault.{fault}")
            self._reset()
            return
        if delay > 0:
            time.sleep(delay)
        if fault == "throttle":
            p._count("fault.throttle")
            code = p._throttle_code()
            self._answer(400, code, "Rate of requests exceeds the allowed throughput (injected).",
                         "com.amazonaws.dynamodb.v20120810")
            return
        if fault == "server_error":
            p._count("fault.server_error")
            self._answer(500, "InternalServerError", "Internal server error (injected).", "com.amazon.coral.service")
            return
        try:
            status, reason, headers, data = self._forward(body)
        except OSError:
            self._reset()  # upstream unreachable: to the client, the network failed
            return
        p._count(op or self.command)
        if fault == "lost_reply":
            p._count("fault.lost_reply")
            self._reset()
            return
        self.send_response_only(status, reason)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send the request upstream on this connection's keep-alive link; a link the server
        closed while idle is reopened once (the request was then never read by the server)."""
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        for attempt in (0, 1):
            fresh = self._up is None
            if self._up is None:
                self._up = http.client.HTTPConnection(self.owner.upstream_host, self.owner.upstream_port, timeout=60)
            try:
                self._up.request(self.command, self.path, body=body, headers=hdrs)
                resp = self._up.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self._up.close()
                self._up = None
                if fresh or attempt:
                    raise OSError(str(e)) from e
            except (OSError, http.client.HTTPException) as e:
                self._up.close()
                self._up = None
                raise OSError(str(e)) from e
        raise AssertionError("unreachable")

    def _answer(self, status: int, code: str, message: str, namespace: str) -> None:
        data = json.dumps({"__type": f"{namespace}#{code}", "message": message}).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", _JSON)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "INJECTED")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _reset(self) -> None:
        """Drop the client connection abruptly: SO_LINGER 0 makes the close send an RST."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    def finish(self) -> None:
        super().finish()
        if self._up is not None:
            self._up.close()
            self._up = None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynlog.faults.proxy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="DynamoDB endpoint, e.g. http://127.0.0.1:8000")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    ap.add_argument("--throttle", type=float, default=0.0)
    ap.add_argument("--server-error", type=float, default=0.0)
    ap.add_argument("--lost-reply", type=float, default=0.0)
    ap.add_argument("--reset", type=float, default=0.0)
    ap.add_argument("--spike", type=float, default=0.0)
    ap.add_argument("--spike-ms", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    rates = FaultRates(throttle=a.throttle, server_error=a.server_error, lost_reply=a.lost_reply, reset=a.reset,
                       spike=a.spike, spike_ms=a.spike_ms)
    proxy = FaultProxy(a.upstream, latency_ms=a.latency_ms, rates=rates, seed=a.seed, host=a.host, port=a.port).start()
    print(f"fault proxy {proxy.endpoint} -> {a.upstream}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    proxy.stop()
    print(json.dumps(proxy.counts, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
