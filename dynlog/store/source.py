"""Parse a SOURCE string into a store: ``local:PATH`` or ``aws:REGION/TABLE``."""

from __future__ import annotations

import re

from ..errors import QuietError
from .base import Store
from .metrics import RequestMetrics

AWS_SOURCE = re.compile(r"^aws:(?P<region>[a-z0-9-]+)/(?P<table>[A-Za-z0-9_.-]+)$")


def open_store(source: str, *, endpoint_url: str | None = None, metrics: RequestMetrics | None = None) -> Store:
    """Open (never create) the store named by ``source``; a malformed source is a QuietError."""
    if source.startswith("local:"):
        from .sqlite import SqliteStore

        path = source[len("local:") :]
        if not path:
            raise QuietError("bad source 'local:': give a file path, e.g. local:/var/lib/dynlog/fs.db", 2)
        return SqliteStore(path, metrics=metrics)
    m = AWS_SOURCE.match(source)
    if m:
        from .dynamo import DynamoStore

        table = m.group("table")
        if not 3 <= len(table) <= 249:
            raise QuietError(f"bad source {source!r}: table names are 3 to 249 characters", 2)
        return DynamoStore(m.group("region"), table, endpoint_url=endpoint_url, metrics=metrics)
    raise QuietError(
        f"bad source {source!r}: expected local:PATH (embedded store) or aws:REGION/TABLE (DynamoDB)", 2
    )
