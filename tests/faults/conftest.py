"""Fixtures for file systems whose every DynamoDB request goes through the fault proxy.

  ``faulty_fs``   a fresh file system on DynamoDB Local (formatted directly) and a FaultProxy in
                  front of it: ``faulty_fs.source`` mounts through the proxy (``--endpoint-url``
                  is the proxy), ``faulty_fs.direct`` is the same file system without faults (for
                  fsck and checks), ``faulty_fs.proxy`` changes rates and reads the counts.
  ``mounter``     tests/mounted's: every mount is torn down at the end of the test.

The rates of ``PRODUCTION_FAULTS`` are the issue's: throttling 10%, 5xx 5%, lost replies 3%,
resets 2%, and latency spikes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from dynamodb_local import DynamoDBLocal
from dynlog.faults.proxy import FaultProxy, FaultRates
from mounted.conftest import Source, _drop_tables, _make_source, mounter, run_cli  # noqa: F401 (fixture)

PRODUCTION_FAULTS = FaultRates(throttle=0.10, server_error=0.05, lost_reply=0.03, reset=0.02, spike=0.01, spike_ms=200)
FAULT_KINDS = ("throttle", "server_error", "lost_reply", "reset")


@dataclass
class FaultyFs:
    source: Source  # through the proxy
    direct: Source  # the same tables, straight to DynamoDB Local
    proxy: FaultProxy

    def fsck(self) -> dict[str, object]:
        """``dynlog fsck --json`` without faults: the report, asserted clean."""
        res = run_cli(*self.direct.global_args(), "fsck", "--json", self.direct.source, timeout=120)
        report = json.loads(res.stdout) if res.stdout.strip() else {}
        assert res.returncode == 0 and report.get("clean"), f"fsck not clean:\n{res.stdout}\n{res.stderr}"
        return report


@pytest.fixture
def faulty_fs(ddb_local: DynamoDBLocal, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FaultyFs]:
    direct = _make_source("dynamodb", tmp_path, request)
    with FaultProxy(ddb_local.endpoint, latency_ms=1.0, seed=int.from_bytes(os.urandom(4), "big")) as proxy:
        yield FaultyFs(Source(direct.source, proxy.endpoint, "dynamodb"), direct, proxy)
    _drop_tables(direct, request)


def report_faults(name: str, proxy: FaultProxy, **extra: object) -> None:
    """Print what the proxy saw (``pytest -s`` shows it; Testing.md quotes these lines)."""
    data = {"test": name, "requests": sum(v for k, v in proxy.counts.items() if not k.startswith("fault.")),
            "faults": proxy.faults(), **extra}
    print("FAULTS " + json.dumps(data, sort_keys=True), flush=True)


def assert_every_fault_hit(proxy: FaultProxy) -> None:
    """The run is only evidence if each kind of fault really happened."""
    faults = proxy.faults()
    missing = [k for k in FAULT_KINDS if not faults.get(k)]
    assert not missing, f"no {missing} injected (faults: {faults})"
