"""A journal record: one item of a journal, holding the events of one commit.

Each record carries the hash of its predecessor in the same journal and its own hash, so
that a journal is a hash chain: any edit, insertion or deletion of history shows up when
replay or fsck re-computes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .. import schema
from ..compress import pack, unpack
from .events import FORMAT_VERSION, Event

GENESIS_HASH = "0" * 32
# The version of a record whose inline bytes are stored compressed (``inlz``): a dynlog from
# before compression refuses it ("newer than this dynlog") instead of reading empty files.
COMPRESSED_VERSION = 2


def _canonical(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


@dataclass(frozen=True)
class Record:
    jid: str
    seq: int
    events: tuple[Event, ...]
    ts: int  # nanoseconds since the epoch, the committing client's clock
    session: str
    uid: int
    op: str
    prev: str  # hash of record seq-1 (GENESIS_HASH for seq 1)
    hash: str = ""
    version: int = FORMAT_VERSION

    def body(self) -> str:
        return self.encoded()[0]

    def encoded(self) -> tuple[str, bytes]:
        """The events as stored: canonical JSON, with the inline contents of files moved out of
        it into one binary attribute (``inl``), each event pointing at its slice. Raw bytes in a
        binary attribute cost a third fewer write units than base64 inside the JSON."""
        out: list[dict[str, Any]] = []
        blob = bytearray()
        for e in self.events:
            data = getattr(e, "data", None)
            d = e.to_json(inline_ref=isinstance(data, bytes))
            if isinstance(data, bytes):
                d["data"] = {"at": len(blob), "n": len(data)}
                blob += data
            out.append(d)
        return _canonical(out), bytes(blob)

    def compute_hash(self) -> str:
        body, blob = self.encoded()
        h = hashlib.sha256()
        h.update(_canonical([self.prev, self.jid, self.seq, self.ts, self.session, self.uid, self.op]).encode())
        h.update(body.encode())
        if blob:
            h.update(blob)
        return h.hexdigest()[:32]

    def sealed(self) -> "Record":
        return Record(self.jid, self.seq, self.events, self.ts, self.session, self.uid, self.op, self.prev,
                      self.compute_hash(), self.version)

    def to_item(self, compress: bool = False) -> dict[str, Any]:
        """The item as stored. ``compress``: the inline bytes of all its files as one zlib stream
        where that pays (dynlog/compress.py); the hash stays that of the bytes themselves."""
        body, blob = self.encoded()
        item = {
            "path": self.jid, "name": schema.record_key(self.seq), "v": self.version, "ts": self.ts,
            "sess": self.session, "uid": self.uid, "op": self.op, "prev": self.prev, "h": self.hash,
            "ev": body,
        }
        if blob:
            stored, packed = pack(blob) if compress else (blob, False)
            item["inl"] = stored
            if packed:
                item["inlz"] = 1
                item["v"] = max(self.version, COMPRESSED_VERSION)
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Record":
        version = int(item.get("v", 1))
        if version > max(FORMAT_VERSION, COMPRESSED_VERSION):
            raise ValueError(f"record {item['path']}/{item['name']} has format {version}, newer than this dynlog")
        raw = json.loads(item["ev"])
        blob = unpack(bytes(item["inl"]), True) if item.get("inlz") else item.get("inl", b"")
        for d in raw:
            ref = d.get("data")
            if isinstance(ref, dict) and "at" in ref:
                d["data"] = bytes(blob[ref["at"] : ref["at"] + ref["n"]])
        events = tuple(Event.from_json(d) for d in raw)
        return cls(item["path"], schema.record_seq(item["name"]), events, int(item["ts"]), item.get("sess", ""),
                   int(item.get("uid", 0)), item.get("op", ""), item.get("prev", GENESIS_HASH), item.get("h", ""),
                   version)

    def verify(self) -> bool:
        return self.hash == self.compute_hash()
