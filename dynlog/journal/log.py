"""Reading and writing journals and snapshots in the meta table.

Appends are conditional puts at ``j/<head+1>`` (attribute_not_exists): the key itself enforces
that exactly one record wins each sequence number. Reads of the tail are strongly consistent.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

from .. import schema
from ..store.base import ABSENT, MAX_ITEM_BYTES, Delete, Put, Store
from .record import Record

SNAPSHOT_PART_BYTES = MAX_ITEM_BYTES - 16 * 1024  # room for the key and bookkeeping attributes
# Records a cold load asks for newest-first while it reads the snapshot (load_latest). A tail of
# this many covers a directory of about 60 files written through a synchronous mount (a create
# and a close each) and never compacted; longer tails cost one more round trip. Over-reading is
# bounded too: on a compacted journal with retained history, at most this many records that the
# snapshot already covers, about 1 KiB each.
TAIL_GUESS = 128
LOAD_WORKERS = 16  # snapshot reads in flight at once: a prefetching walk loads 8 views at a time


class JournalStore:
    def __init__(self, store: Store, parallel_loads: bool = False, compress: bool = False) -> None:
        """``parallel_loads``: a cold load reads the snapshot and the tail at once (load_latest),
        for stores where each request waits on a round trip; the local store reads in turn.
        ``compress``: records store their files' inline bytes compressed where that pays (the
        superblock says whether this file system's writers do)."""
        self.store = store
        self.compress = compress
        self._loads = ThreadPoolExecutor(LOAD_WORKERS, thread_name_prefix="dynlog-load") if parallel_loads else None
        # (journal, seq) of records this client is putting right now. The change feed may bring
        # such a record back before the put has returned: the committer folds it then, so the
        # follower must not take it for someone else's and mark the view stale (a wasted Query).
        self.inflight: set[tuple[str, int]] = set()
        self._inflight_lock = threading.Lock()

    @contextlib.contextmanager
    def _putting(self, recs: Sequence[Record]) -> Iterator[None]:
        keys = [(r.jid, r.seq) for r in recs]
        with self._inflight_lock:
            self.inflight.update(keys)
        try:
            yield
        finally:
            with self._inflight_lock:
                self.inflight.difference_update(keys)

    # -- records ----------------------------------------------------------------------------
    def read_after(self, jid: str, seq: int, until: int | None = None) -> list[Record]:
        stop = schema.record_key(until + 1) if until is not None else "j/~"
        return [Record.from_item(it) for it in self.store.query("meta", jid, start=schema.record_key(seq + 1), stop=stop)]

    def append(self, rec: Record) -> None:
        """One conditional put; raises JournalConflict when ``rec.seq`` is taken."""
        with self._putting([rec]):
            self.store.put(Put("meta", rec.to_item(self.compress), ABSENT))

    def append_many(self, recs: Sequence[Record], extra: Sequence[Put] = ()) -> None:
        """One TransactWriteItems: every record (and ``extra`` conditional puts) or none."""
        with self._putting(recs):
            self.store.transact([Put("meta", r.to_item(self.compress), ABSENT) for r in recs] + list(extra))

    def load_latest(self, jid: str) -> tuple[dict[str, Any] | None, list[Record]]:
        """The latest snapshot and the records after it, for a cold view. With parallel loads the
        two reads go out together, so a cold directory costs one round trip instead of two: the
        snapshot's reverse query on a pool thread, and the newest ``TAIL_GUESS`` records
        newest-first here. Only a tail longer than that needs a third read, of exactly the
        records between the snapshot and the oldest one already read. A record that is missing
        (compact trimmed it meanwhile) shows up as a gap to the caller, who reads again."""
        if self._loads is None:
            snap = self.load_snapshot(jid)
            return snap, self.read_after(jid, snap["head"] if snap else 0)
        pending = self._loads.submit(contextvars.copy_context().run, self.load_snapshot, jid)
        try:
            newest = [Record.from_item(it) for it in self.store.query("meta", jid, start="j/", stop="j/~",
                                                                      reverse=True, limit=TAIL_GUESS)]
        finally:
            snap = pending.result()  # waited for even when the query failed: no read left behind
        head = snap["head"] if snap else 0
        tail = [r for r in reversed(newest) if r.seq > head]
        if len(newest) == TAIL_GUESS and tail and tail[0].seq > head + 1:
            tail = self.read_after(jid, head, until=tail[0].seq - 1) + tail
        return snap, tail

    def close(self) -> None:
        if self._loads is not None:
            self._loads.shutdown(wait=False)

    def first_seq(self, jid: str) -> int | None:
        for it in self.store.query("meta", jid, start="j/", stop="j/~", limit=1):
            return schema.record_seq(it["name"])
        return None

    # -- snapshots --------------------------------------------------------------------------
    def load_snapshot(self, jid: str, at_or_before: int | None = None) -> dict[str, Any] | None:
        """The latest snapshot (or the latest at or before a seq): one reverse query page."""
        stop = schema.snapshot_key(at_or_before + 1, 0) if at_or_before is not None else "s/~"
        parts: list[dict[str, Any]] = []
        seq = None
        for it in self.store.query("meta", jid, start="s/", stop=stop, reverse=True):
            s = schema.snapshot_seq(it["name"])
            if seq is None:
                seq = s
            if s != seq:
                if len(parts) == parts[0]["of"]:
                    break
                parts, seq = [it], s  # an incomplete newer snapshot: fall back to the older one
                continue
            parts.append(it)
            if len(parts) == it["of"]:
                break
        if not parts or len(parts) != parts[0]["of"]:
            return None
        parts.sort(key=lambda it: it["name"])
        return json.loads(zlib.decompress(b"".join(p["data"] for p in parts)))

    def write_snapshot(self, jid: str, state: dict[str, Any]) -> int:
        """Write a snapshot of ``state`` (a View.to_snapshot()) at its head; returns its parts.
        Parts are written last-part-first, so a reader never sees a complete-looking partial."""
        blob = zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 6)
        chunks = [blob[i : i + SNAPSHOT_PART_BYTES] for i in range(0, len(blob), SNAPSHOT_PART_BYTES)] or [b""]
        seq = state["head"]
        items = [
            {"path": jid, "name": schema.snapshot_key(seq, i), "data": c, "of": len(chunks), "h": state["hash"]}
            for i, c in enumerate(chunks)
        ]
        self.store.batch_write("meta", puts=items)
        return len(items)

    def snapshot_seqs(self, jid: str) -> list[int]:
        return sorted({schema.snapshot_seq(it["name"]) for it in self.store.query("meta", jid, start="s/", stop="s/~")})

    def delete_snapshot(self, jid: str, seq: int) -> None:
        keys = [(jid, it["name"]) for it in self.store.query("meta", jid, start=schema.snapshot_key(seq, 0),
                                                              stop=schema.snapshot_key(seq, 9999) + "~")]
        self.store.delete_items("meta", keys)

    def delete_records(self, jid: str, upto: int) -> int:
        keys = [(jid, it["name"]) for it in self.store.query("meta", jid, start="j/", stop=schema.record_key(upto + 1))]
        self.store.delete_items("meta", keys)
        return len(keys)


def conditional_delete(jid: str, name: str) -> Delete:
    return Delete("meta", (jid, name))
