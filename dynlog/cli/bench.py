"""``dynlog bench SOURCE``: what each operation costs in requests and time."""

from __future__ import annotations

import argparse

from ..core.superblock import mkfs
from .common import store_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure requests per operation, ops/s and MB/s")
    p.add_argument("source")
    p.add_argument("-n", type=int, default=200, help="operations per kind (default 200)")
    p.add_argument("--mb", type=int, default=16, help="MiB written and read (default 16)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import format_results
    from ..benchmark import run as bench

    store = store_from_args(args, check=False)
    mkfs(store)
    print(format_results(bench(store, n=args.n, mb=args.mb)))
    return 0
