"""A snapshot (snapshot.py) in Prometheus text exposition format 0.0.4."""

from __future__ import annotations

from typing import Any

from ..store.metrics import LATENCY_BOUNDS
from .rates import totals_cost

# Every fourth latency bound (about three a decade, 50 us to 60 s) keeps the series few.
EXPORTED_BOUNDS = tuple(range(0, len(LATENCY_BOUNDS), 4))


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def render(s: dict[str, Any]) -> str:
    lines: list[str] = []
    mount = f'mountpoint="{_esc(s.get("mountpoint", ""))}",source="{_esc(s.get("source", ""))}"'

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = mount + ("," + labels if labels else "")
            lines.append(f"{name}{{{lab}}} {_num(value)}")

    metric("dynlog_operations_total", "counter", "File-system operations by kind (background work included).",
           [(f'op="{_esc(k)}"', v) for k, v in sorted(s["ops"].items())])
    metric("dynlog_store_requests_total", "counter", "Store requests by call (Streams.* are stream reads).",
           [(f'call="{_esc(k)}"', v) for k, v in sorted(s["calls"].items())])
    metric("dynlog_operation_requests_total", "counter",
           "Store requests (not stream reads) by the file-system operation that made them.",
           [(f'op="{_esc(k)}"', v) for k, v in sorted(s.get("requests_by_op", {}).items())])
    metric("dynlog_store_read_units_total", "counter", "Read request units consumed.", [("", s["read_units"])])
    metric("dynlog_store_write_units_total", "counter", "Write request units consumed.", [("", s["write_units"])])
    metric("dynlog_cost_dollars_total", "counter", "On-demand cost of the requests so far (dynlog/observe/cost.py).",
           [("", totals_cost(s))])
    lines.append("# HELP dynlog_store_request_seconds Store request latency.")
    lines.append("# TYPE dynlog_store_request_seconds histogram")
    for call, h in sorted(s["latency"].items()):
        lab = f'{mount},call="{_esc(call)}"'
        counts = h["counts"]
        for i in EXPORTED_BOUNDS:
            lines.append(f'dynlog_store_request_seconds_bucket{{{lab},le="{LATENCY_BOUNDS[i]!r}"}} {sum(counts[:i + 1])}')
        lines.append(f'dynlog_store_request_seconds_bucket{{{lab},le="+Inf"}} {sum(counts)}')
        lines.append(f"dynlog_store_request_seconds_sum{{{lab}}} {_num(float(h['sum']))}")
        lines.append(f"dynlog_store_request_seconds_count{{{lab}}} {sum(counts)}")
    f = s.get("follower")
    if f:
        metric("dynlog_follower_poll_interval_seconds", "gauge", "Current change-feed poll interval.", [("", f["interval"])])
        metric("dynlog_follower_quiet_seconds", "gauge", "Seconds since the last change or own activity.", [("", f["quiet"])])
        if f.get("confirmed_age") is not None:
            metric("dynlog_follower_confirmed_age_seconds", "gauge",
                   "Age of the time before which every remote change is applied.", [("", f["confirmed_age"])])
        metric("dynlog_follower_healthy", "gauge", "1 if the last feed poll succeeded.", [("", int(f["healthy"]))])
        metric("dynlog_relay_leading", "gauge", "1 if this mount is the file system's relay.", [("", int(f["relay"]))])
    hb = s.get("heartbeat")
    if hb:
        metric("dynlog_session_heartbeat_interval_seconds", "gauge", "Seconds to the next session heartbeat.",
               [("", hb["interval"])])
        metric("dynlog_session_lease_seconds", "gauge", "The lease the last heartbeat wrote.", [("", hb["lease"])])
    wb = s.get("writebehind")
    if wb:
        metric("dynlog_writebehind_leases_held", "gauge", "Write-behind leases this mount holds.", [("", wb["held"])])
        metric("dynlog_writebehind_queued_operations", "gauge", "Acknowledged operations not yet committed.",
               [("", wb["pending"])])
        metric("dynlog_writebehind_operations_total", "counter", "Operations committed in write-behind records.",
               [("", wb["ops"])])
        metric("dynlog_writebehind_records_total", "counter", "Write-behind records committed.", [("", wb["records"])])
        metric("dynlog_writebehind_leases_taken_total", "counter", "Write-behind leases taken.", [("", wb["taken"])])
        metric("dynlog_writebehind_leases_revoked_total", "counter", "Leases released because another mount asked.",
               [("", wb["revoked"])])
        metric("dynlog_writebehind_leases_lost_total", "counter", "Leases found lost (another mount appended).",
               [("", wb["rescues"])])
        metric("dynlog_writebehind_dropped_operations_total", "counter",
               "Acknowledged operations a lost lease dropped (they conflicted with another mount's).",
               [("", wb["lost"])])
    return "\n".join(lines) + "\n"
