"""On-demand prices and what an idle mount costs, computed from the adaptive-poll timings in
dynlog/cluster (so the projection moves when the timings do).

Prices: Amazon DynamoDB on-demand, US East (N. Virginia), Standard table class, as published
since the 1 November 2024 price cut (checked November 2024): $0.125 per million read request
units, $0.625 per million write request units; DynamoDB Streams $0.02 per 100,000 stream read
request units (one per GetRecords call), the first 2.5 million a month free (ignored here).
Other regions cost more; pass another Prices to price them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cluster.cadence import BULLETIN, RELAY_RENEW, STREAM
from ..cluster.sessions import HEARTBEAT

HOURS_PER_MONTH = 730.0  # AWS's convention for monthly estimates


@dataclass(frozen=True)
class Prices:
    read_unit: float = 0.125e-6  # $ per read request unit
    write_unit: float = 0.625e-6  # $ per write request unit
    stream_read: float = 0.02e-5  # $ per stream read request (GetRecords, DescribeStream...)
    region: str = "us-east-1"
    as_of: str = "2024-11"


ON_DEMAND = Prices()


def cost_per_second(read_units: float, write_units: float, stream_reads: float, prices: Prices = ON_DEMAND) -> float:
    """Dollars per second for these rates (units per second)."""
    return read_units * prices.read_unit + write_units * prices.write_unit + stream_reads * prices.stream_read


@dataclass(frozen=True)
class IdleCost:
    """One idle mount in steady state (quiet long enough for every back-off to reach its end)."""

    role: str
    requests_per_s: float  # DynamoDB requests (capacity-billed)
    read_units_per_s: float
    write_units_per_s: float
    stream_reads_per_s: float

    def dollars_per_month(self, prices: Prices = ON_DEMAND) -> float:
        return cost_per_second(self.read_units_per_s, self.write_units_per_s, self.stream_reads_per_s,
                               prices) * 3600 * HOURS_PER_MONTH


# Units of the idle requests: a bulletin Query of nothing new is an eventually consistent read of
# under 4 KB (0.5 RRU); a heartbeat or lease put is one item under 1 KB (1 WRU).
EC_QUERY_UNITS = 0.5
SMALL_PUT_UNITS = 1.0


def idle_reader() -> IdleCost:
    """A mount reading its bulletin (every mount but the relay on DynamoDB)."""
    polls, beats = 1 / BULLETIN.slow, 1 / HEARTBEAT.slow
    return IdleCost("mount", polls + beats, polls * EC_QUERY_UNITS, beats * SMALL_PUT_UNITS, 0.0)


def idle_relay(shards: int = 1) -> IdleCost:
    """The one mount per file system that reads the stream (and renews the relay lease)."""
    # imported here, not at the top: the streams module imports boto3 (~0.3 s), which `local:`
    # mounts and most commands never need
    from ..store.streams import DISCOVERY_INTERVAL

    beats, renewals = 1 / HEARTBEAT.slow, 1 / RELAY_RENEW.slow
    stream = shards / STREAM.slow + 1 / DISCOVERY_INTERVAL
    return IdleCost("relay", beats + renewals, 0.0, (beats + renewals) * SMALL_PUT_UNITS, stream)


def idle_fixed_polling(relay: bool) -> IdleCost:
    """The same mount before adaptive polling (0.1 s polls, 5 s heartbeats and lease attempts,
    5 s shard listing): for the before/after table in docs/SCALING.md."""
    beats = 1 / 5.0 + 1 / 5.0  # heartbeat + relay lease put (every mount tried it every 5 s)
    if relay:
        # The relay read the stream every 0.1 s and its bulletin after each stream read.
        return IdleCost("relay (fixed 0.1 s)", 10 + beats, 10 * EC_QUERY_UNITS, beats, 10 + 1 / 5.0)
    return IdleCost("mount (fixed 0.1 s)", 10 + beats, 10 * EC_QUERY_UNITS, beats, 0.0)


def projection_lines(prices: Prices = ON_DEMAND) -> list[tuple[str, str]]:
    """``dynlog status`` rows: the idle cost of a mount and of the relay, per month."""
    rows = []
    for c in (idle_reader(), idle_relay()):
        rows.append((f"idle {c.role}", f"{c.requests_per_s:.3f} requests/s, {c.stream_reads_per_s:.2f} stream reads/s, "
                                       f"${c.dollars_per_month(prices):.4f} per month"))
    rows.append(("prices", f"on-demand {prices.region} as of {prices.as_of}: ${prices.read_unit * 1e6:g}/M reads, "
                           f"${prices.write_unit * 1e6:g}/M writes, ${prices.stream_read * 1e5:g}/100k stream reads"))
    rows.append(("timings", f"bulletin poll {BULLETIN.fast:g}-{BULLETIN.slow:g} s, stream poll {STREAM.fast:g}-"
                            f"{STREAM.slow:g} s, heartbeat {HEARTBEAT.fast:g}-{HEARTBEAT.slow:g} s, relay lease renewal "
                            f"{RELAY_RENEW.fast:g}-{RELAY_RENEW.slow:g} s (docs/SCALING.md)"))
    return rows
