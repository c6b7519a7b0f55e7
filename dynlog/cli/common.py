"""Helpers shared by subcommands: opening a source as the user named it."""

from __future__ import annotations

import argparse

from ..core.filesystem import FileSystem
from ..store.base import Store
from ..store.source import open_store


def store_from_args(args: argparse.Namespace, check: bool = True) -> Store:
    store = open_store(args.source, endpoint_url=getattr(args, "endpoint_url", None))
    if check:
        store.check_tables()
    return store


def filesystem_from_args(args: argparse.Namespace) -> FileSystem:
    return FileSystem(store_from_args(args))
