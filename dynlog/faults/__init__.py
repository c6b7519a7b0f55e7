"""Fault injection between a dynlog client and DynamoDB (tests, benchmarks, manual trials).

A room of its own: nothing here imports the rest of dynlog, so any layer's tests (and the
benchmark) can use it without dragging the file system in.
"""

from .proxy import FaultProxy, FaultRates

__all__ = ["FaultProxy", "FaultRates"]
