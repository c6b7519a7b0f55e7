"""File contents compressed at rest: what DynamoDB bills by is the byte.

Why: on-demand DynamoDB charges a write request unit per KB written and a read unit per 4 KB
read, and stores by the GB-month, so a file's bytes cost what they weigh. Source trees, logs,
build outputs and CI caches are text and object code that zlib shrinks two to four times.
Compressing them before they leave the client divides the write units of a block and of a small
file's close record by as much, and the bytes every later cold read moves.

What: zlib at level 1. It is in the standard library (no new dependency), it releases the GIL
while it works, so the block pool's threads compress in parallel, and level 1 is the fastest
of its levels, at a ratio close to the default level's on text. Data that does not shrink is
stored as it is: already compressed files (archives, images, packs) and random bytes. To spend
little CPU on those, a large buffer is judged first by a sample of its start.

Where the choice is recorded: a file system's superblock says whether its writers compress
(``mkfs --compression``). Each stored item says whether its own bytes are compressed (a block's
``z``, a record's ``inlz``), so readers never guess and old items stay readable.
"""

from __future__ import annotations

import zlib

LEVEL = 1
# Below this a write can save at most a few hundred bytes, less than zlib's own framing on
# short text often costs, and the items a write unit rounds up to are 1 KB.
MIN_BYTES = 256
SAMPLE_BYTES = 4096  # a buffer larger than twice this is judged by its first SAMPLE_BYTES
# Kept compressed only when it saves at least this fraction: decompressing costs every reader
# CPU, which a saving of a few percent does not pay for.
MIN_SAVING = 1 / 8


def pack(data: bytes) -> tuple[bytes, bool]:
    """``data`` as stored: (zlib-compressed bytes, True) when that saves at least ``MIN_SAVING``,
    else (``data``, False)."""
    n = len(data)
    if n < MIN_BYTES:
        return data, False
    if n > 2 * SAMPLE_BYTES and not _pays(zlib.compress(data[:SAMPLE_BYTES], LEVEL), SAMPLE_BYTES):
        return data, False
    packed = zlib.compress(data, LEVEL)
    return (packed, True) if _pays(packed, n) else (data, False)


def unpack(stored: bytes, compressed: bool) -> bytes:
    return zlib.decompress(stored) if compressed else stored


def _pays(packed: bytes, raw_length: int) -> bool:
    return len(packed) <= raw_length * (1 - MIN_SAVING)
