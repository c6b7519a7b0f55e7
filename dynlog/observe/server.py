"""The mount daemon's windows on its counters.

- A Unix socket per mount (``socket_path``): a client connects and reads one JSON snapshot
  (snapshot.py) followed by a newline; ``dynlog stats`` connects once a second. Its directory is
  $DYNLOG_RUN_DIR, else /run/dynlog for root, else $XDG_RUNTIME_DIR/dynlog, else
  /tmp/dynlog-<uid>; the name is a hash of the mount point, so any length of path fits the
  108-byte limit of a socket address. Mode 0600 in a 0700 directory: the counters name paths'
  activity, so only the mount's owner reads them.
- An HTTP endpoint in Prometheus text format (``-o metrics=ADDR:PORT``), for operators who scrape.

Both run in daemon threads, cost nothing until asked, and never touch the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import structlog

from ..errors import QuietError
from .prometheus import render

log = structlog.get_logger(__name__)

Snapshot = Callable[[], dict[str, Any]]


def runtime_dirs() -> list[str]:
    """Where stats sockets may live, the preferred one first."""
    out = []
    if os.environ.get("DYNLOG_RUN_DIR"):
        out.append(os.environ["DYNLOG_RUN_DIR"])
    if os.geteuid() == 0:
        out.append("/run/dynlog")
    if os.environ.get("XDG_RUNTIME_DIR"):
        out.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "dynlog"))
    out.append(f"/tmp/dynlog-{os.getuid()}")
    return list(dict.fromkeys(out))


def socket_name(mountpoint: str) -> str:
    key = os.path.abspath(mountpoint).encode("utf-8", "surrogateescape")
    return f"mount-{hashlib.sha256(key).hexdigest()[:16]}.sock"


def socket_path(mountpoint: str) -> str:
    """The socket this daemon serves for ``mountpoint``."""
    return os.path.join(runtime_dirs()[0], socket_name(mountpoint))


def find_socket(mountpoint: str) -> str | None:
    """The socket of the daemon serving ``mountpoint``, wherever its user's runtime dir is."""
    name = socket_name(mountpoint)
    for d in runtime_dirs():
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return None


def read_snapshot(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """One snapshot from a stats socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return json.loads(b"".join(chunks))


class StatsSocket:
    """Serves a snapshot to each connection on a Unix socket."""

    def __init__(self, path: str, snapshot: Snapshot) -> None:
        self.path = path
        self.snapshot = snapshot
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a daemon that died left it; a live one on the same mount point cannot exist
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.listen(8)
        self._thread = threading.Thread(target=self._serve, name="dynlog-stats", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    conn.sendall(json.dumps(self.snapshot(), separators=(",", ":")).encode() + b"\n")
                except Exception as e:  # noqa: BLE001 - a stats reader must never take the mount down
                    log.debug("stats.serve_failed", error=str(e))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def parse_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``:PORT`` (all addresses) or ``[v6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics address {text!r}: use ADDR:PORT, e.g. 127.0.0.1:9567")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsEndpoint:
    """Prometheus text format on http://ADDR:PORT/metrics (any path answers the same)."""

    def __init__(self, address: str, snapshot: Snapshot) -> None:
        host, port = parse_address(address)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = render(snapshot()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
                log.debug("metrics.request", line=format % args)

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="dynlog-metrics", daemon=True)
        self._thread.start()
        log.info("metrics.listening", address=self.address)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Observers:
    """What a mount daemon starts: the stats socket, and the Prometheus endpoint if asked."""

    def __init__(self, fs: Any, mountpoint: str, metrics_address: str | None = None,
                 extra: Callable[[], dict[str, Any]] | None = None) -> None:
        from .snapshot import take

        def snap() -> dict[str, Any]:
            return take(fs, mountpoint, extra)

        self.socket: StatsSocket | None = None
        self.endpoint: MetricsEndpoint | None = None
        try:
            self.socket = StatsSocket(socket_path(mountpoint), snap)
        except OSError as e:  # stats are a convenience: the mount goes on without them
            log.warning("stats.socket_failed", path=socket_path(mountpoint), error=str(e))
        if metrics_address:
            try:
                self.endpoint = MetricsEndpoint(metrics_address, snap)
            except OSError as e:  # asked for explicitly: fail the mount with a clear line
                self.close()
                raise QuietError(f"mount option metrics={metrics_address}: {e.strerror or e}") from None

    def close(self) -> None:
        for o in (self.socket, self.endpoint):
            if o is not None:
                o.close()
