"""Times and durations as the history tools take and show them.

A time is ISO 8601 (``2026-03-01T12:00:00Z``, ``2026-03-01T13:00:00.123+01:00``, ``2026-03-01``),
``now``, or relative to now (``-5m``, ``-2h30m``, ``-1d``). A time without a zone is UTC. Journal
times are nanoseconds since the epoch, so fractions of a second may have up to nine digits.

A time written at some precision means the whole interval it names: ``--at 12:00:05Z`` is "as
of the end of that second", so it includes every event that ``replay`` prints with that second.
``parse_time`` returns the interval; callers take ``start`` for a lower bound (``--since``) and
``end`` for an upper bound (``--at``, ``--until``).

A duration (``--retain``, ``--grace``) is ``0``, a number of seconds, or units: ``90s``, ``5m``,
``12h``, ``7d``, ``2w``, ``1d12h``.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

from ..errors import QuietError

NS = 1_000_000_000
UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS,
         "w": 7 * 86400 * NS}

_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hh>\d{2})(?::(?P<mm>\d{2})(?::(?P<ss>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?)?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d|w)")


@dataclass(frozen=True)
class TimeSpec:
    """The interval a written time names: [start, end], nanoseconds since the epoch."""

    start: int
    end: int
    text: str = ""


def parse_duration(text: str) -> int:
    """A duration in nanoseconds."""
    s = text.strip().lower().replace(" ", "")
    if not s:
        raise QuietError(f"bad duration {text!r}", 2)
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return int(float(s) * NS)
    pos, total = 0, 0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * UNITS[m.group(2)])
        pos = m.end()
    if pos != len(s):
        raise QuietError(f"bad duration {text!r}: use e.g. 30s, 5m, 12h, 7d, 1d12h", 2)
    return total


def parse_time(text: str, now: int | None = None) -> TimeSpec:
    s = text.strip()
    now = time.time_ns() if now is None else now
    if s.lower() == "now":
        return TimeSpec(now, now, text)
    if s.startswith("-") or s.lower().endswith(" ago"):
        d = parse_duration(s.lstrip("-").lower().removesuffix(" ago").strip())
        return TimeSpec(now - d, now - d, text)
    m = _ISO.match(s)
    if not m:
        raise QuietError(f"bad time {text!r}: use ISO 8601 (2026-03-01T12:00:00Z), 'now' or -5m", 2)
    try:
        day = dt.date.fromisoformat(m.group("date"))
    except ValueError as e:
        raise QuietError(f"bad time {text!r}: {e}", 2) from None
    hh, mm, ss, frac = m.group("hh"), m.group("mm"), m.group("ss"), m.group("frac")
    try:
        base = dt.datetime(day.year, day.month, day.day, int(hh or 0), int(mm or 0), int(ss or 0),
                           tzinfo=dt.timezone.utc)
    except ValueError as e:
        raise QuietError(f"bad time {text!r}: {e}", 2) from None
    if frac:
        sub, unit = int(frac.ljust(9, "0")), 10 ** (9 - len(frac))
    elif ss:
        sub, unit = 0, NS
    elif mm:
        sub, unit = 0, 60 * NS
    elif hh:
        sub, unit = 0, 3600 * NS
    else:
        sub, unit = 0, 86400 * NS
    offset = 0
    tz = m.group("tz")
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60) * NS
    start = (int(base.timestamp()) * NS) + sub - offset
    return TimeSpec(start, start + unit - 1, text)


def format_time(ns: int, digits: int = 6) -> str:
    """ISO 8601 in UTC with ``digits`` fractional digits (0 to 9), e.g. 2026-03-01T12:00:05.123456Z."""
    secs, rest = divmod(ns, NS)
    stamp = dt.datetime.fromtimestamp(secs, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        stamp += "." + f"{rest:09d}"[:digits]
    return stamp + "Z"


def format_duration(ns: int) -> str:
    if ns == 0:
        return "0"
    out, rest = [], ns
    for unit in ("w", "d", "h", "m", "s"):
        n, rest = divmod(rest, UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or f"{ns}ns"
