"""benchmarks/compression.py in a tiny configuration: it runs to the end on real mounts, and the
figures it prints say what compression must do: the same requests, fewer units. No timed asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynamodb_local import DynamoDBLocal

REPO = Path(__file__).resolve().parents[2]
FILES, MB = 30, 2

pytestmark = [pytest.mark.mounted, pytest.mark.dynamodb, pytest.mark.timeout(240)]


def test_compression_bench_tiny(ddb_local: DynamoDBLocal, tmp_path: Path) -> None:
    out = tmp_path / "compression.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "compression.py"), "--files", str(FILES), "--mb", str(MB),
         "--latency-ms", "1", "--stage-timeout", "90", "--ddb-endpoint", ddb_local.endpoint, "--json-out", str(out)],
        capture_output=True, text=True, timeout=220, cwd=str(REPO))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"| tar -x of {FILES} files" in res.stdout, res.stdout
    none, zlib = json.loads(out.read_text())
    assert (none["compression"], zlib["compression"]) == ("none", "zlib")
    # the same operations whatever the storage: tar's two requests a file, no more for zlib
    assert zlib["stages"]["tar -x"]["requests"] <= none["stages"]["tar -x"]["requests"] + 2
    # text: well under half the write units, and under half the read units of a cold read
    for stage, units in (("tar -x", "write_units"), ("write", "write_units"), ("read (cold)", "read_units")):
        assert 0 < zlib["stages"][stage][units] < none["stages"][stage][units] / 2, (stage, none, zlib)
