"""The ``dynlog`` command. Each subcommand lives in its own module with ``register(sub)``;
failures the user can act on are QuietError: one line on stderr and an exit code, no traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import QuietError, StoreError
from .logging import configure_logging

# module name -> registers these subcommands
COMMAND_MODULES = ("mountcmd", "admin", "history", "maintenance", "bench", "iam", "stats")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynlog", description="A serverless network file system on DynamoDB.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v debug)")
    parser.add_argument("--endpoint-url", default=None,
                        help="DynamoDB endpoint (DynamoDB Local, a compatible service); default: AWS configuration")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(f"dynlog.cli.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"dynlog.cli.{mod}":
                raise
            continue
        m.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith(("local:", "aws:")):
        # mount.fuse3's form for `mount -t fuse.dynlog` without our helper: dynlog SOURCE MOUNTPOINT -o ...
        from .fstab import main as mount_helper

        return mount_helper(argv, prog="dynlog")
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        rc = args.func(args)
        sys.stdout.flush()  # here, where a reader that went away is caught below
        return int(rc or 0)
    except QuietError as e:
        print(f"dynlog: {e}", file=sys.stderr)
        return e.exitcode
    except StoreError as e:
        print(f"dynlog: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (``dynlog status | head``): stop quietly, and keep the interpreter
        # from failing again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
