"""``dynlog mount SOURCE MOUNTPOINT [-o OPTIONS] [-f]`` and ``dynlog umount MOUNTPOINT``.

Background mode (the default) checks everything it can in the foreground (source syntax,
credentials, tables, mount point), then starts ``dynlog mount -f`` as a detached child whose
output goes to a log file, and returns once the mount answers. If the child dies first, its
last message is printed and the exit code is non-zero.

A ``local:`` source that does not exist yet is formatted on first mount (mkfs with default
block size); an ``aws:`` source must have been formatted with ``dynlog mkfs``.
"""

from __future__ import annotations

import argparse
import errno
import faulthandler
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import structlog

from ..errors import QuietError
from ..fuse import mounttab
from ..store.base import Store
from ..store.source import open_store

log = structlog.get_logger(__name__)

MOUNT_WAIT = 60.0  # seconds the background parent waits for the mount to answer

# Options handed to libfuse as they are (kernel mount flags and FUSE mount options).
FUSE_FLAGS = {"allow_other", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
              "noatime", "atime", "relatime", "strictatime", "nodiratime", "sync", "async",
              "dirsync", "auto_unmount", "debug"}
FUSE_VALUED = {"fsname", "max_read", "max_threads", "max_idle_threads"}
# Options mount(8) and /etc/fstab use that mean nothing to a FUSE daemon: accepted, ignored.
FSTAB_ONLY = {"defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev",
              "nofail", "default_permissions", "loop", "nosymfollow", "lazytime", "nolazytime",
              "silent", "loud", "iversion", "noiversion", "mand", "nomand", "bg", "fg"}
FSTAB_ONLY_PREFIXES = ("x-", "comment=", "uhelper=", "helper=")
FRESHNESS = ("auto", "direct", "relay", "ttl")
MAX_PREFETCH = 64


@dataclass
class MountOptions:
    """The parsed ``-o`` list: what goes to libfuse, and dynlog's own knobs."""

    fuse: dict[str, object] = field(default_factory=dict)
    endpoint_url: str | None = None
    ttl: float = 1.0
    entry_timeout: float | None = None
    attr_timeout: float | None = None
    log_file: str | None = None
    freshness: str = "auto"
    outage_limit: float | None = None  # seconds the store may stay unreachable before EIO
    metrics: str | None = None  # ADDR:PORT of the Prometheus endpoint (dynlog/observe)
    writebehind: bool = False  # -o writebehind: write-behind directories (docs/ARCHITECTURE.md)
    prefetch: int | None = None  # -o prefetch=N: views a walk loads at once (None: the store's default)
    nocto: bool = False  # -o nocto: open() trusts the change feed instead of re-reading (as NFS's nocto)

    @property
    def allow_other(self) -> bool:
        return bool(self.fuse.get("allow_other"))


def _number(key: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise QuietError(f"mount option {key}={value!r}: not a number", 2) from None
    if v < 0:
        raise QuietError(f"mount option {key}={value!r}: must not be negative", 2)
    return v


def parse_options(values: list[str], sloppy: bool = False) -> MountOptions:
    """Parse ``-o a,b=c`` (given any number of times). Unknown options are an error, or
    ignored when ``sloppy`` (mount -s)."""
    opts = MountOptions()
    for value in values:
        for raw in value.split(","):
            item = raw.strip()
            if not item:
                continue
            key, eq, val = item.partition("=")
            if key in FUSE_FLAGS and not eq:
                if key == "rw":
                    opts.fuse.pop("ro", None)
                else:
                    opts.fuse[key] = True
            elif key in FUSE_VALUED and eq:
                if key in ("max_threads", "max_idle_threads", "max_read") and not (val.isdigit() and int(val) > 0):
                    raise QuietError(f"mount option {item!r}: must be a whole number above 0", 2)
                opts.fuse[key] = val
            elif key == "endpoint_url" and eq:
                opts.endpoint_url = val
            elif key == "ttl" and eq:
                opts.ttl = _number(key, val)
            elif key in ("entry_timeout", "attr_timeout", "outage_limit") and eq:
                setattr(opts, key, _number(key, val))
                if key == "outage_limit" and not opts.outage_limit:
                    raise QuietError(f"mount option {item!r}: must be more than 0 seconds", 2)
            elif key == "log" and eq:
                opts.log_file = val
            elif key == "prefetch" and eq:
                if not val.isdigit() or int(val) > MAX_PREFETCH:
                    raise QuietError(f"mount option {item!r}: a whole number from 0 to {MAX_PREFETCH}", 2)
                opts.prefetch = int(val)
            elif key in ("writebehind", "sync_dirops") and not eq:
                opts.writebehind = key == "writebehind"
            elif key in ("nocto", "cto") and not eq:
                opts.nocto = key == "nocto"
            elif key == "metrics" and eq:
                from ..observe.server import parse_address

                try:
                    parse_address(val)
                except ValueError as e:
                    raise QuietError(f"mount option {item!r}: {e}", 2) from None
                opts.metrics = val
            elif key == "freshness" and eq:
                if val not in FRESHNESS:
                    raise QuietError(f"mount option freshness={val!r}: one of {', '.join(FRESHNESS)}", 2)
                opts.freshness = val
            elif (key in FSTAB_ONLY and not eq) or item.startswith(FSTAB_ONLY_PREFIXES):
                continue
            elif sloppy:
                log.warning("mount.option_ignored", option=item)
            else:
                raise QuietError(
                    f"unknown mount option {item!r} (known: {', '.join(sorted(FUSE_FLAGS | FUSE_VALUED))}, "
                    "endpoint_url=URL, freshness=auto|direct|relay|ttl, ttl=SECONDS, entry_timeout=SECONDS, "
                    "attr_timeout=SECONDS, outage_limit=SECONDS, metrics=ADDR:PORT, log=FILE, prefetch=N, writebehind, "
                    "sync_dirops, nocto, cto)", 2)
    return opts


def format_options(opts: MountOptions) -> str:
    """The inverse of parse_options (for handing the options to the background child)."""
    parts: list[str] = []
    for k, v in opts.fuse.items():
        parts.append(k if v is True else f"{k}={v}")
    if opts.endpoint_url:
        parts.append(f"endpoint_url={opts.endpoint_url}")
    if opts.ttl != 1.0:
        parts.append(f"ttl={opts.ttl}")
    for k in ("entry_timeout", "attr_timeout", "outage_limit"):
        if getattr(opts, k) is not None:
            parts.append(f"{k}={getattr(opts, k)}")
    if opts.log_file:
        parts.append(f"log={opts.log_file}")
    if opts.metrics:
        parts.append(f"metrics={opts.metrics}")
    if opts.freshness != "auto":
        parts.append(f"freshness={opts.freshness}")
    if opts.prefetch is not None:
        parts.append(f"prefetch={opts.prefetch}")
    if opts.writebehind:
        parts.append("writebehind")
    if opts.nocto:
        parts.append("nocto")
    return ",".join(parts)


# -- checks ----------------------------------------------------------------------------------------
def check_mountpoint(path: str) -> str:
    """The absolute mount point, or a QuietError saying why it cannot be mounted on."""
    entry = mounttab.find_mount(path)
    if entry is not None:
        raise QuietError(f"mount point {path} is busy: {entry.source} ({entry.fstype}) is mounted there "
                         f"(run: dynlog umount {path})")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise QuietError(f"mount point {path} does not exist (create it: mkdir -p {path})") from None
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise QuietError(f"mount point {path} is a dead FUSE mount (run: dynlog umount {path})") from None
        raise QuietError(f"mount point {path}: {e.strerror}") from None
    import stat as stat_mod

    if not stat_mod.S_ISDIR(st.st_mode):
        raise QuietError(f"mount point {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK) and os.geteuid() != 0:
        raise QuietError(f"mount point {path}: permission denied")
    return os.path.abspath(path)


def open_for_mount(source: str, endpoint_url: str | None) -> Store:
    """Open the store, formatting a new ``local:`` one; raise QuietError/StoreError if unusable."""
    store = open_store(source, endpoint_url=endpoint_url)
    if source.startswith("local:") and not os.path.exists(store.source[len("local:"):]):
        from ..core.superblock import mkfs

        mkfs(store)
        log.info("mkfs.auto", source=store.source)
    store.check_tables()
    from ..core.superblock import load_superblock

    load_superblock(store)  # a clear error for tables that hold no file system
    return store


# -- mount -----------------------------------------------------------------------------------------
def cmd_mount(args: argparse.Namespace) -> int:
    opts = parse_options(args.options)
    endpoint = opts.endpoint_url or args.endpoint_url
    mountpoint = check_mountpoint(args.mountpoint)
    if args.foreground:
        return mount_foreground(args.source, mountpoint, opts, endpoint)
    return mount_background(args, mountpoint, opts, endpoint)


def prefetch_workers(asked: int | None, source: str) -> int:
    """Views a walk loads at once: as asked, else 8 where each load waits on round trips
    (DynamoDB) and none on the local store, whose reads take microseconds."""
    from ..materialize.prefetch import DEFAULT_WORKERS

    if asked is not None:
        return asked
    return 0 if source.startswith("local:") else DEFAULT_WORKERS


def mount_foreground(source: str, mountpoint: str, opts: MountOptions, endpoint: str | None) -> int:
    """Serve the mount in this process until it is unmounted (or SIGTERM/SIGINT/SIGHUP: libfuse
    then leaves its loop and unmounts). Open files are flushed and the store closed at the end."""
    from ..core.filesystem import FileSystem
    from ..fuse.kernel import ATTR_TIMEOUT, ENTRY_TIMEOUT
    from ..fuse.lowlevel import Session
    from ..fuse.operations import DynlogOperations
    from ..fuse.threadstate import worker_threads

    if opts.outage_limit:
        from ..store.retry import set_outage_limit

        set_outage_limit(opts.outage_limit)  # else DYNLOG_OUTAGE_LIMIT, or 120 s
    # `kill -USR1 <pid>` writes every thread's stack to the log (stderr), even while libfuse's
    # loop or a deadlock holds the interpreter's threads (docs/OPERATIONS.md, Troubleshooting)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    # and a crash (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) writes them before the daemon dies:
    # its callers see ENOTCONN, and without this the log would not say where it stopped
    faulthandler.enable(file=sys.stderr, all_threads=True)
    store = open_for_mount(source, endpoint)
    # noatime by default: a read that writes costs a PutItem and a notice to every mount (docs/OPERATIONS.md, atime)
    atime = next((k for k in ("strictatime", "relatime", "atime") if opts.fuse.get(k)), "noatime")
    fs = FileSystem(store, ttl=opts.ttl, atime_policy="relatime" if atime == "atime" else atime,
                    writebehind=opts.writebehind, prefetch_workers=prefetch_workers(opts.prefetch, store.source),
                    close_to_open=not opts.nocto)
    ops = DynlogOperations(
        fs,
        entry_timeout=ENTRY_TIMEOUT if opts.entry_timeout is None else opts.entry_timeout,
        attr_timeout=ATTR_TIMEOUT if opts.attr_timeout is None else opts.attr_timeout,
    )
    fuse_opts = dict(opts.fuse)
    debug = bool(fuse_opts.pop("debug", False))
    # dynlog's atime policy (above; directories never record one): libfuse refuses these as options
    for k in ("relatime", "strictatime", "nodiratime"):
        fuse_opts.pop(k, None)
    ops.max_read = int(str(fuse_opts.get("max_read", 0)))
    fuse_opts.setdefault("fsname", store.source.replace(",", "\\,"))
    max_threads = int(fuse_opts.pop("max_threads", 64))
    # As many idle threads as threads: libfuse then never ends a worker thread, and each keeps the
    # Python thread state it pinned (fuse/threadstate.py). (libfuse 3.14 complains when unset.)
    max_idle_threads = int(fuse_opts.pop("max_idle_threads", max_threads))
    log.info("mount.start", source=store.source, mountpoint=mountpoint, pid=os.getpid())
    observers = None
    try:
        fs.start_services(mountpoint, on_invalidate=ops.on_invalidate, freshness=opts.freshness)
        from ..observe.server import Observers

        observers = Observers(fs, mountpoint, opts.metrics,  # dynlog stats socket, -o metrics endpoint
                              extra=lambda: {"fuse": {"worker_threads": worker_threads()}})
        session = Session(ops.callbacks(), mountpoint, {"default_permissions": True, "subtype": "dynlog", **fuse_opts},
                          debug=debug, max_threads=max_threads, max_idle_threads=max_idle_threads)
        ops.session = session
        status = session.run()
        if status:
            raise RuntimeError(f"session loop ended with status {status}")
    except RuntimeError as e:
        if not ops.initialized:
            raise QuietError(f"mounting {source} at {mountpoint} failed (libfuse: {e}; see its message above)") from None
        # libfuse's loop reports a non-zero status when a signal (SIGTERM, SIGINT, SIGHUP) ended
        # it: that is the clean way down, and libfuse has unmounted already.
        log.info("mount.signalled", status=str(e))
    finally:
        if observers is not None:
            observers.close()
        ops.close()
        store.close()
    log.info("mount.end", mountpoint=mountpoint)
    return 0


def default_log_file(mountpoint: str) -> str:
    base = os.environ.get("DYNLOG_LOG_DIR")
    if not base:
        home = os.path.expanduser("~")
        base = os.path.join(home, ".cache", "dynlog") if home not in ("~", "/") else f"/tmp/dynlog-{os.getuid()}"
    slug = mountpoint.strip("/").replace("/", "_") or "root"
    return os.path.join(base, f"mount-{slug}.log")


def mount_background(args: argparse.Namespace, mountpoint: str, opts: MountOptions, endpoint: str | None) -> int:
    open_for_mount(args.source, endpoint).close()  # clear errors here, not in a log file
    log_file = opts.log_file or default_log_file(mountpoint)
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    child_opts = MountOptions(**{**opts.__dict__, "log_file": None})
    cmd = [sys.executable, "-m", "dynlog.cli.main"]
    cmd += ["-v"] * args.verbose
    if endpoint:
        cmd += ["--endpoint-url", endpoint]
    cmd += ["mount", "-f", args.source, mountpoint]
    o = format_options(child_opts)
    if o:
        cmd += ["-o", o]
    with open(log_file, "ab") as logf:
        start = logf.tell()
        logf.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} dynlog mount {args.source} {mountpoint}\n".encode())
        logf.flush()
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
                                 close_fds=True)
    deadline = time.monotonic() + MOUNT_WAIT
    while time.monotonic() < deadline:
        rc = child.poll()
        entry = mounttab.find_mount(mountpoint)
        if entry is not None and entry.is_fuse:
            try:
                os.stat(mountpoint)  # answers: the daemon serves requests
            except OSError as e:
                raise QuietError(f"mounted {mountpoint} but it does not answer: {e.strerror} (log: {log_file})") from None
            if args.verbose:
                print(f"dynlog: mounted {args.source} at {mountpoint} (pid {child.pid}, log {log_file})",
                      file=sys.stderr)
            return 0
        if rc is not None:
            raise QuietError(f"{_last_error(log_file, start) or f'mount process exited with {rc}'} (log: {log_file})",
                             rc or 1)
        time.sleep(0.05)
    child.terminate()
    raise QuietError(f"{mountpoint}: the mount did not come up within {MOUNT_WAIT:.0f} s (log: {log_file})")


def _last_error(log_file: str, start: int) -> str:
    try:
        with open(log_file, "rb") as f:
            f.seek(start)
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    libfuse = [ln for ln in lines if ln.startswith(("fuse:", "fusermount"))]
    for ln in reversed(lines):
        if ln.startswith("dynlog:"):
            msg = ln.removeprefix("dynlog: ")
            if libfuse and " (libfuse" in msg:  # name libfuse's own complaint instead of "see above"
                msg = f"{msg.split(' (libfuse')[0]}: {libfuse[-1]}"
            return msg
    if libfuse:
        return libfuse[-1]
    return lines[-1] if len(lines) > 1 else ""


# -- umount ----------------------------------------------------------------------------------------
def cmd_umount(args: argparse.Namespace) -> int:
    path = args.mountpoint
    entry = mounttab.find_mount(path)
    if entry is None:
        if not os.path.exists(path):
            raise QuietError(f"{path} does not exist")
        raise QuietError(f"{path} is not a mount point")
    if not entry.is_fuse:
        raise QuietError(f"{path} is not a FUSE mount ({entry.fstype}); use umount(8)")
    res = mounttab.unmount(path, lazy=args.lazy)
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        detail = msg[-1] if msg else f"exit {res.returncode}"
        if "busy" in detail.lower():
            raise QuietError(f"{path} is busy (files are open or a process has its cwd there); "
                             f"close them or use: dynlog umount --lazy {path}")
        raise QuietError(f"unmounting {path} failed: {detail}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mount", help="mount a dynlog file system",
                       description="Mount SOURCE (local:PATH or aws:REGION/TABLE) at MOUNTPOINT. "
                                   "Runs in the background and returns once the mount answers, "
                                   "unless -f is given.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS",
                   help="comma-separated: allow_other, ro, noatime, nosuid, nodev, noexec, fsname=, "
                        "endpoint_url=URL, ttl=SECONDS, entry_timeout=, attr_timeout=, log=FILE, "
                        "metrics=ADDR:PORT (Prometheus endpoint), prefetch=N (views a walk loads at once), "
                        "writebehind, nocto (open trusts the change feed), freshness=, outage_limit=")
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (serve until unmounted)")
    p.set_defaults(func=cmd_mount)

    u = sub.add_parser("umount", help="unmount a dynlog mount", description="Unmount MOUNTPOINT (fusermount3 -u).")
    u.add_argument("mountpoint", metavar="MOUNTPOINT")
    u.add_argument("-l", "--lazy", action="store_true", help="detach now, clean up when no longer busy")
    u.set_defaults(func=cmd_umount)
