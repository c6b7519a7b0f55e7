"""``mount.fuse.dynlog``: the helper mount(8) runs for ``mount -t fuse.dynlog`` and fstab lines.

mount(8) calls ``/sbin/mount.fuse.dynlog SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]``
and expects it to return once the file system is mounted. Install the link once with
``dynlog install-mount-helper`` (scripts/demo does). An /etc/fstab line then looks like:

    local:/var/lib/dynlog/fs.db  /mnt/shared  fuse.dynlog  allow_other,noatime,_netdev  0 0
    aws:eu-west-1/shared         /mnt/shared  fuse.dynlog  allow_other,_netdev,nofail   0 0

fstab-only options (defaults, noauto, user, _netdev, nofail, x-systemd.*, ...) are ignored.
A DynamoDB endpoint other than AWS goes in as ``endpoint_url=URL``. Without the link, mount(8)
falls back to mount.fuse3, which runs ``dynlog SOURCE MOUNTPOINT -o OPTIONS``; ``dynlog`` treats
that form the same way (see dynlog.cli.main).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import QuietError, StoreError
from .logging import configure_logging
from .mountcmd import check_mountpoint, mount_background, parse_options

# mount(8)'s exit codes: incorrect invocation, mount failure
EX_USAGE, EX_FAIL = 1, 32


def build_parser(prog: str = "mount.fuse.dynlog") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="mount(8) helper for dynlog file systems")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("-o", dest="options", action="append", default=[])
    p.add_argument("-t", dest="type", default="fuse.dynlog")
    p.add_argument("-N", dest="namespace", default=None)
    p.add_argument("-s", dest="sloppy", action="store_true", help="tolerate unknown options")
    p.add_argument("-f", dest="fake", action="store_true", help="do everything but the mount")
    p.add_argument("-n", dest="nomtab", action="store_true", help="(ignored: no mtab)")
    p.add_argument("-v", dest="verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None, prog: str = "mount.fuse.dynlog") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.verbose)
    try:
        if args.namespace:
            raise QuietError("-N (mount namespaces) is not supported")
        opts = parse_options(args.options, sloppy=args.sloppy)
        mountpoint = check_mountpoint(args.mountpoint)
        if args.fake:
            return 0
        ns = argparse.Namespace(source=args.source, verbose=args.verbose)
        return mount_background(ns, mountpoint, opts, opts.endpoint_url)
    except QuietError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EX_USAGE if e.exitcode == 2 else EX_FAIL
    except StoreError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EX_FAIL


if __name__ == "__main__":
    sys.exit(main())
