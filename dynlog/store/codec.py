"""Lossless JSON for item attributes (str, int, float, bytes): the embedded store's row format."""

from __future__ import annotations

import base64
import json
from typing import Any


def dumps_attrs(attrs: dict[str, Any]) -> str:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            out[k] = {"$b": base64.b64encode(v).decode()}
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
            out[k] = v
        else:
            raise TypeError(f"attribute {k!r}: unsupported type {type(v).__name__}")
    return json.dumps(out, separators=(",", ":"))


def loads_attrs(text: str) -> dict[str, Any]:
    raw = json.loads(text)
    return {k: (base64.b64decode(v["$b"]) if isinstance(v, dict) else v) for k, v in raw.items()}
