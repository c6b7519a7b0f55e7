"""``dynlog replay``, ``dynlog restore``, ``dynlog diff``: reading the file system's history."""

from __future__ import annotations

import argparse
import json
import re
import stat
import sys
import threading
from typing import Any

from .. import schema
from ..errors import DynlogError, FsError, QuietError
from ..history.diff import diff
from ..history.replay import Line, Replayer, Scope, follow, line_json
from ..history.restore import RestoreError, restore
from ..history.timeparse import format_time, parse_time
from ..history.walk import Entry, HistoryUnavailable, Journals, NotFound, Point, Tree
from .common import store_from_args

TIME_HELP = "ISO 8601 (2026-03-01T12:00:00Z, offsets accepted, no zone = UTC), 'now', or relative (-5m, -2h, -1d)"

# argparse takes any word that starts with "-" and is not a negative number for an option, so
# "--at -1h" failed with "expected one argument" and "diff SRC / -1d now" with "unrecognized
# arguments". A relative time (the form the help shows) is made to count as a value instead.
RELATIVE_TIME = re.compile(r"^-\d+$|^-\d*\.\d+$|^-(?:\d+(?:\.\d+)?(?:ns|us|ms|s|m|h|d|w))+$", re.IGNORECASE)


def accept_relative_times(parser: argparse.ArgumentParser) -> None:
    """Let ``parser`` read ``-1h``, ``-2h30m``, ``-90s`` as values (of --at, --since, --until,
    and of positionals), not as unknown options. None of these commands has an option that
    looks like that, so nothing is shadowed."""
    if not hasattr(parser, "_negative_number_matcher"):  # argparse internals moved: fail loudly in tests
        raise RuntimeError("argparse has no _negative_number_matcher; relative times need another way in")
    parser._negative_number_matcher = RELATIVE_TIME


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="the history of the file system, a directory or a file, as events; "
                                      "or a directory as it was at a time (--at)",
                       description="Show the events under PATH in time order (text, or JSON lines with --json); "
                                   "with --at, list a directory as it was then.")
    p.add_argument("source", help="local:PATH or aws:REGION/TABLE")
    p.add_argument("path", nargs="?", default="/", help="a directory or file in the file system (default: /, everything)")
    p.add_argument("--since", help=f"only events at or after this time; {TIME_HELP}")
    p.add_argument("--until", help="only events at or before this time")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="include the directories below PATH (always on for /); with --at, list them too")
    p.add_argument("--at", metavar="TIME_OR_SEQ",
                   help="list PATH as it was at this time, or at this sequence number of its journal (an integer)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.add_argument("--all", action="store_true", help="also show internal bookkeeping events in the text output")
    p.add_argument("-f", "--follow", action="store_true", help="after the history, print new events as they happen")
    p.add_argument("--poll", action="store_true",
                   help="with --follow: poll the journals' tails instead of reading the change feed (on DynamoDB the "
                        "feed is a Streams reader, and at most two readers per shard are advised)")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--idle-exit", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_replay)
    accept_relative_times(p)

    r = sub.add_parser("restore", help="bring back a file or tree as it was at a time",
                       description="Copy PATH as it was at TIME (exact bytes, mode, owner, times, xattrs, symlinks, "
                                   "hard links within the tree) to DEST, a new path in the same file system.")
    r.add_argument("source")
    r.add_argument("path", help="the file or directory as it was named then")
    r.add_argument("--at", required=True, metavar="TIME", help=TIME_HELP)
    r.add_argument("--to", required=True, metavar="DEST", help="where to put it (must not exist; an existing directory "
                                                                "receives it under its old name)")
    r.add_argument("-l", "--list", action="store_true", help="list every path restored")
    r.set_defaults(func=cmd_restore)
    accept_relative_times(r)

    d = sub.add_parser("diff", help="what changed under a path between two times",
                       description="Added (A), removed (D), renamed (R) and modified (M) names under PATH between "
                                   "T1 and T2, recursively. Exit status 0: no changes, 1: changes.")
    d.add_argument("source")
    d.add_argument("path")
    d.add_argument("t1", metavar="T1", help=TIME_HELP)
    d.add_argument("t2", metavar="T2", help="the later time ('now' for the present)")
    d.add_argument("--json", action="store_true", help="JSON lines instead of text")
    d.set_defaults(func=cmd_diff)
    accept_relative_times(d)


def _out(text: str) -> None:
    """One line on stdout; names that are not UTF-8 (surrogate-escaped) go out as their own bytes."""
    try:
        sys.stdout.write(text + "\n")
    except UnicodeEncodeError:
        raw = (text + "\n").encode("utf-8", "surrogateescape")
        buf = getattr(sys.stdout, "buffer", None)
        if buf is None:
            sys.stdout.write(raw.decode("utf-8", "backslashreplace"))
        else:
            sys.stdout.flush()
            buf.write(raw)
            buf.flush()


def _warn(msg: str) -> None:
    print(f"dynlog: warning: {msg}", file=sys.stderr)


def _norm(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


# -- replay -------------------------------------------------------------------------------------------------

def cmd_replay(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        if args.at is not None:
            return _replay_at(store, args)
        return _replay_events(store, args)
    except (NotFound, HistoryUnavailable) as e:
        raise QuietError(str(e)) from None
    except BrokenPipeError:  # the reader went away (| head): that is fine
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        store.close()


def _replay_events(store: Any, args: argparse.Namespace) -> int:
    since = parse_time(args.since).start if args.since else None
    until = parse_time(args.until).end if args.until else None
    journals = Journals(store)
    # The feed is opened before the history is read, so nothing falls between the two.
    feed = store.change_feed() if args.follow and not args.poll else None
    replayer = Replayer(store, journals, warn=_warn)
    path = _norm(args.path)
    scope = Scope(store, journals, path, args.recursive or path == "/", until)
    if path != "/" and scope.ino is None:
        _warn(f"{path} does not exist {'then' if until else 'now'}: matching events by the paths they had")

    def emit(line: Line) -> None:
        if since is not None and line.ts < since:
            return
        if until is not None and line.ts > until:
            return
        if not scope.wants(line, replayer):
            return
        if args.json:
            _out(line_json(line))
        elif not line.internal or args.all:
            _out(line.to_text())

    for line in replayer.history():
        emit(line)
    sys.stdout.flush()
    if replayer.horizon is not None and (since is None or since < replayer.horizon):
        print(f"dynlog: note: history before {format_time(replayer.horizon)} was compacted (dynlog compact "
              "--retain); earlier events are partly or wholly gone", file=sys.stderr)
    if args.follow:
        stop = threading.Event()
        try:
            follow(replayer, lambda ln: (emit(ln), sys.stdout.flush()), stop=stop, interval=args.interval,
                   idle_exit=args.idle_exit, feed=feed)
        except KeyboardInterrupt:
            stop.set()
        finally:
            if feed is not None:
                feed.close()
    return 0


def _parse_point(text: str) -> Point:
    t = text.strip()
    if t.isdigit():
        return Point(seq=int(t))
    if t.lower().startswith("seq:") and t[4:].isdigit():
        return Point(seq=int(t[4:]))
    return Point(ts=parse_time(t).end)


def _replay_at(store: Any, args: argparse.Namespace) -> int:
    journals = Journals(store)
    point = _parse_point(args.at)
    path = _norm(args.path)
    if point.seq is not None:
        now = Tree(journals, None).lookup(path)
        if not now.inode.is_dir:
            raise QuietError(f"{path}: a sequence number needs a directory (its journal); use a time for a file")
        jid = schema.dir_journal(now.ino)
        ts = journals.seq_time(jid, point.seq) if point.seq else 0
        tree = Tree(journals, ts)
        tree.pin(jid, journals.view_at(jid, point))
        head = f"{path} at {jid} seq {point.seq} ({format_time(ts, 9)})"
    else:
        tree = Tree(journals, point.ts)
        head = f"{path} at {format_time(point.ts or 0, 9)}"
    top = tree.lookup(path)
    if args.json:
        for e in (tree.walk(top) if args.recursive else [top] + tree.children(top)):
            _out(json.dumps(_entry_json(e), ensure_ascii=True))
        return 0
    if not top.inode.is_dir:
        _out(_ls_line(top, top.path))
        return 0
    first = True
    for e in (tree.walk(top) if args.recursive else [top]):
        if not e.inode.is_dir:
            continue
        kids = tree.children(e)
        if not first:
            _out("")
        first = False
        _out(f"{head}:" if e is top else f"{e.path}:")
        _out(f"total {len(kids)}")
        for k in kids:
            _out(_ls_line(k, k.name))
    return 0


def _ls_line(e: Entry, name: str) -> str:
    i = e.inode
    size = len(i.target.encode("utf-8", "surrogateescape")) if i.is_link else (4096 if i.is_dir else i.size)
    text = f"{stat.filemode(i.mode)} {i.nlink:>3} {i.uid:>5} {i.gid:>5} {size:>10} {format_time(i.mtime, 0)[:-1].replace('T', ' ')} {name}"
    if i.is_link:
        text += f" -> {i.target}"
    return text


def _entry_json(e: Entry) -> dict[str, Any]:
    i = e.inode
    d: dict[str, Any] = {
        "path": e.path, "name": e.name, "ino": i.ino, "type": _type(i.mode), "mode": i.mode & 0o7777,
        "uid": i.uid, "gid": i.gid, "size": i.size, "nlink": i.nlink,
        "mtime": format_time(i.mtime, 9), "ctime": format_time(i.ctime, 9), "atime": format_time(i.atime, 9),
    }
    if i.is_link:
        d["target"] = i.target
    if i.xattrs:
        d["xattrs"] = {k: v.hex() for k, v in i.xattrs}
    if i.rdev:
        d["rdev"] = i.rdev
    return d


def _type(mode: int) -> str:
    from ..history.walk import type_name

    return type_name(mode)


# -- restore ------------------------------------------------------------------------------------------------

def cmd_restore(args: argparse.Namespace) -> int:
    from ..core.filesystem import FileSystem

    store = store_from_args(args)
    spec = parse_time(args.at)
    fs = FileSystem(store, session="restore")
    try:
        report = restore(fs, Journals(store), _norm(args.path), spec.end, _norm(args.to),
                         progress=(lambda p: _out(f"restoring {p}")) if args.list else None)
    except (NotFound, HistoryUnavailable, RestoreError) as e:
        raise QuietError(str(e)) from None
    except FsError as e:
        raise QuietError(f"restore failed: {e}") from None
    finally:
        fs.close()
        store.close()
    src, dest = report.paths[0]
    parts = [f"{n} {one if n == 1 else many}" for n, one, many in (
        (report.files, "file", "files"), (report.dirs, "directory", "directories"),
        (report.symlinks, "symlink", "symlinks"), (report.other, "special file", "special files"),
        (report.links, "hard link", "hard links")) if n]
    _out(f"restored {src} as of {format_time(spec.end, 9)} to {dest}: {', '.join(parts)}, {report.bytes} bytes")
    return 0


# -- diff ------------------------------------------------------------------------------------------------------

def cmd_diff(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        t1, t2 = parse_time(args.t1).end, parse_time(args.t2).end
        result = diff(Journals(store), _norm(args.path), t1, t2)
    except (HistoryUnavailable, DynlogError) as e:
        if isinstance(e, QuietError):
            raise
        raise QuietError(str(e)) from None
    finally:
        store.close()
    for c in result.changes:
        _out(json.dumps(c.to_json(), ensure_ascii=True) if args.json else c.to_text())
    return 1 if result.changes else 0
