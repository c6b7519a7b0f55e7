"""``dynlog compact`` and ``dynlog fsck``: keeping the journals short and proving them sound."""

from __future__ import annotations

import argparse
import json
import sys

from ..history.compact import DAY, HOUR, MINUTE, CompactOptions, Compactor
from ..history.fsck import Fsck
from ..history.progress import Progress
from ..history.timeparse import parse_duration
from .common import store_from_args
from .history import _out


def _duration(text: str) -> int:
    return parse_duration(text)


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compact", help="snapshot and trim journals, collect unreferenced blocks, expire dead sessions",
                       description="Safe while other clients are mounted and writing; resumable (run it again after "
                                   "an interruption). History inside the retention window stays available to "
                                   "replay --at, restore and diff.")
    c.add_argument("source")
    c.add_argument("--retain", type=_duration, default=7 * DAY, metavar="DURATION",
                   help="keep this much history (default 7d; e.g. 0, 90m, 12h, 30d)")
    c.add_argument("--grace", type=_duration, default=HOUR, metavar="DURATION",
                   help="a block version is deleted only after it was seen unreferenced this long ago (default 1h; "
                        "must exceed the longest time a flush can take to commit)")
    c.add_argument("--session-timeout", type=_duration, default=5 * MINUTE, metavar="DURATION",
                   help="sessions whose heartbeat is older are dead and removed (default 5m)")
    c.add_argument("--settle", type=float, default=5.0, metavar="SECONDS",
                   help="wait between writing snapshots and trimming what they cover (default 5)")
    c.add_argument("--no-blocks", action="store_true", help="leave blocks alone")
    c.add_argument("--dry-run", action="store_true", help="change nothing; report what would be done")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress line on stderr (default: when stderr is a terminal)")
    c.set_defaults(func=cmd_compact)

    f = sub.add_parser("fsck", help="check every invariant of the file system; exit 0 when clean, 1 otherwise",
                       description="Verifies the hash chain of every journal, every snapshot against the replay of "
                                   "its journal, the namespace (names, link counts, cycles, reachability) and the "
                                   "blocks. Run it while the file system is quiet: it reads journals one by one.")
    f.add_argument("source")
    f.add_argument("--repair", action="store_true", help="fix what is safe to fix, and say what was done")
    f.add_argument("--grace", type=_duration, default=HOUR, metavar="DURATION",
                   help="compact's block grace period (default 1h)")
    f.add_argument("--json", action="store_true", help="print the findings as JSON")
    f.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    f.set_defaults(func=cmd_fsck)


def cmd_compact(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    opts = CompactOptions(retain=args.retain, grace=args.grace, session_timeout=args.session_timeout,
                          dry_run=args.dry_run, settle=args.settle, blocks=not args.no_blocks)
    try:
        report = Compactor(store, opts, Progress("compact", enabled=args.progress)).run()
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        head = "compact (dry run: nothing changed)" if args.dry_run else "compact"
        _out(f"{head}:")
        for line in report.lines():
            _out(f"  {line}")
    return 1 if report.problems else 0


def cmd_fsck(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        report = Fsck(store, repair=args.repair, grace=args.grace,
                      progress=Progress("fsck", enabled=args.progress)).run()
    finally:
        store.close()
    if args.json:
        print(json.dumps({
            "clean": report.clean, "journals": report.journals, "records": report.records,
            "snapshots": report.snapshots, "entries": report.entries, "block_versions": report.block_versions,
            "problems": [{"what": p.what, "message": p.message, "repaired": p.repaired or None}
                         for p in report.problems],
            "notes": report.notes, "repairs": report.repairs,
        }, indent=1))
    else:
        for line in report.lines():
            _out(line)
    sys.stdout.flush()
    return 0 if report.clean else 1
