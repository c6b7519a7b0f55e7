"""``dynlog bench SOURCE``: what each operation costs in requests and time.

``--latency-ms N`` puts dynlog.faults.proxy (adding N ms to every request) between dynlog and
the DynamoDB endpoint, because DynamoDB Local answers in well under a millisecond and so hides
the round trips that a real region charges for every request. The same proxy drives
benchmarks/latency.py, the mounted benchmark (tar, rm -rf, git clone, large files) of issue 8.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ..core.superblock import mkfs
from ..errors import QuietError
from .common import store_from_args

if TYPE_CHECKING:
    from ..faults.proxy import FaultProxy

EPILOG = ("Through a real mount (tar -x, rm -rf, git clone, sequential write and cold read; local store and "
          "DynamoDB Local at 0 and N ms side by side): python benchmarks/latency.py --latency-ms 8")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure requests per operation, ops/s and MB/s", epilog=EPILOG)
    p.add_argument("source")
    p.add_argument("-n", type=int, default=200, help="operations per kind (default 200)")
    p.add_argument("--mb", type=int, default=16, help="MiB written and read (default 16)")
    p.add_argument("--latency-ms", type=float, default=None,
                   help="add this many ms to every DynamoDB request, through a proxy in front of "
                        "--endpoint-url (DynamoDB Local); aws: sources only")
    p.set_defaults(func=run)


def start_latency_proxy(upstream: str, latency_ms: float) -> "FaultProxy":
    """A running FaultProxy to ``upstream`` that adds ``latency_ms`` to every request.

    Its replies go out with TCP_NODELAY: the handler writes headers and body separately, and with
    Nagle's algorithm on, the body waits for the client's delayed ACK (about 40 ms a request),
    which would swamp the latency being measured. A no-op once the proxy sets it itself."""
    from ..faults import proxy

    handler = getattr(proxy, "_Handler", None)
    if handler is not None and not getattr(handler, "disable_nagle_algorithm", True):
        handler.disable_nagle_algorithm = True
    return proxy.FaultProxy(upstream, latency_ms=latency_ms).start()


def run(args: argparse.Namespace) -> int:
    from ..benchmark import format_results
    from ..benchmark import run as bench

    proxy = None
    if args.latency_ms is not None:
        upstream = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
        if not args.source.startswith("aws:") or not upstream:
            raise QuietError("--latency-ms needs an aws: source and --endpoint-url (e.g. DynamoDB Local)", 2)
        proxy = start_latency_proxy(upstream, args.latency_ms)
        args.endpoint_url = proxy.endpoint
    try:
        store = store_from_args(args, check=False)
        mkfs(store)
        print(format_results(bench(store, n=args.n, mb=args.mb)))
        if proxy is not None:
            counts = {k: v for k, v in sorted(proxy.counts.items()) if not k.startswith("fault.")}
            calls = ", ".join(f"{k} {v}" for k, v in counts.items())
            print(f"\nat the proxy ({args.latency_ms:g} ms a request): {sum(counts.values())} requests: {calls}")
    finally:
        if proxy is not None:
            proxy.stop()
    return 0
