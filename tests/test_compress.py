"""The compression policy of file contents (dynlog/compress.py), alone."""

from __future__ import annotations

import os
import zlib

from dynlog.compress import MIN_BYTES, SAMPLE_BYTES, pack, unpack


def text(n: int) -> bytes:
    line = b"def handler(request, response):\n    return response.status(200).json({'ok': True})\n"
    return (line * (n // len(line) + 1))[:n]


def test_text_is_stored_compressed_and_comes_back_whole() -> None:
    data = text(128 * 1024)
    stored, packed = pack(data)
    assert packed and len(stored) < len(data) // 4
    assert zlib.decompress(stored) == data  # plain zlib: any tool can read it
    assert unpack(stored, packed) == data


def test_random_bytes_are_stored_as_they_are() -> None:
    data = os.urandom(128 * 1024)
    assert pack(data) == (data, False)
    small = os.urandom(4000)
    assert pack(small) == (small, False)


def test_short_data_is_not_compressed() -> None:
    data = b"a" * (MIN_BYTES - 1)
    assert pack(data) == (data, False)
    assert pack(b"") == (b"", False)


def test_a_large_buffer_is_judged_by_its_start() -> None:
    """Random bytes first, text after: the sample says incompressible, and the whole is kept raw
    (a wrong guess costs units, never bytes). Text first: compressed."""
    mixed = os.urandom(SAMPLE_BYTES) + text(60 * 1024)
    assert pack(mixed) == (mixed, False)
    stored, packed = pack(text(SAMPLE_BYTES) + os.urandom(8 * 1024) + text(60 * 1024))
    assert packed and unpack(stored, True).endswith(text(60 * 1024))


def test_a_small_saving_is_not_worth_it() -> None:
    """Mostly random with a little redundancy: zlib saves under an eighth, so it is kept raw."""
    data = os.urandom(3000) + b"\0" * 200
    assert pack(data) == (data, False)
