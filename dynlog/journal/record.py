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
from .events import FORMAT_VERSION, Event

GENESIS_HASH = "0" * 32


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
        return _canonical([e.to_json() for e in self.events])

    def compute_hash(self) -> str:
        h = hashlib.sha256()
        h.update(_canonical([self.prev, self.jid, self.seq, self.ts, self.session, self.uid, self.op]).encode())
        h.update(self.body().encode())
        return h.hexdigest()[:32]

    def sealed(self) -> "Record":
        return Record(self.jid, self.seq, self.events, self.ts, self.session, self.uid, self.op, self.prev,
                      self.compute_hash(), self.version)

    def to_item(self) -> dict[str, Any]:
        return {
            "path": self.jid, "name": schema.record_key(self.seq), "v": self.version, "ts": self.ts,
            "sess": self.session, "uid": self.uid, "op": self.op, "prev": self.prev, "h": self.hash,
            "ev": self.body(),
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Record":
        version = int(item.get("v", 1))
        if version > FORMAT_VERSION:
            raise ValueError(f"record {item['path']}/{item['name']} has format {version}, newer than this dynlog")
        events = tuple(Event.from_json(d) for d in json.loads(item["ev"]))
        return cls(item["path"], schema.record_seq(item["name"]), events, int(item["ts"]), item.get("sess", ""),
                   int(item.get("uid", 0)), item.get("op", ""), item.get("prev", GENESIS_HASH), item.get("h", ""),
                   version)

    def verify(self) -> bool:
        return self.hash == self.compute_hash()
