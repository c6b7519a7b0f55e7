"""Times and durations as the history commands take them."""

from __future__ import annotations

import pytest

from dynlog.errors import QuietError
from dynlog.history.timeparse import NS, format_duration, format_time, parse_duration, parse_time

T = 1_700_000_000 * NS  # 2023-11-14T22:13:20Z


def test_iso_times_with_zones_and_precision():
    assert parse_time("2023-11-14T22:13:20Z").start == T
    assert parse_time("2023-11-14T22:13:20Z").end == T + NS - 1  # the whole second
    assert parse_time("2023-11-14T23:13:20+01:00").start == T
    assert parse_time("2023-11-14T17:13:20-0500").start == T
    assert parse_time("2023-11-14 22:13:20").start == T  # no zone: UTC
    assert parse_time("2023-11-14T22:13:20.5Z").start == T + NS // 2
    spec = parse_time("2023-11-14T22:13:20.123456789Z")
    assert spec.start == spec.end == T + 123_456_789
    assert parse_time("2023-11-14T22:13Z").end == T - 20 * NS + 60 * NS - 1
    assert parse_time("2023-11-14").end == T - (22 * 3600 + 13 * 60 + 20) * NS + 86400 * NS - 1


def test_round_trip_of_what_replay_prints():
    for ns in (T, T + 1, T + 999_999_999, T + 123_000):
        assert parse_time(format_time(ns, 9)).start == ns
        assert parse_time(format_time(ns)).start <= ns <= parse_time(format_time(ns)).end


def test_relative_times_and_now():
    assert parse_time("now", now=T).start == T
    assert parse_time("-5m", now=T).start == T - 300 * NS
    assert parse_time("2h ago", now=T).start == T - 7200 * NS


def test_durations():
    assert parse_duration("0") == 0
    assert parse_duration("90") == 90 * NS
    assert parse_duration("1d12h") == 36 * 3600 * NS
    assert parse_duration("2w") == 14 * 86400 * NS
    assert format_duration(parse_duration("1d2h3m4s")) == "1d2h3m4s"


@pytest.mark.parametrize("bad", ["yesterday", "2023-13-01", "2023-11-14T25:00Z", "5 parsecs", ""])
def test_bad_input_is_a_clean_error(bad):
    with pytest.raises(QuietError):
        parse_time(bad) if bad != "5 parsecs" else parse_duration(bad)
