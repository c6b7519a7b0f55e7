"""benchmarks/writebehind.py in a tiny configuration: it runs to the end on the local store and
DynamoDB Local with write-behind on, what tar wrote reads back, and its counts are sane; with
``--cpu`` its daemon runs where it was put. Why a
test: the benchmark is how issue 9's targets are judged, so it must not rot. No timed asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynamodb_local import DynamoDBLocal

REPO = Path(__file__).resolve().parents[2]
FILES, DIRS, GIT_FILES = 24, 2, 10

pytestmark = [pytest.mark.mounted, pytest.mark.dynamodb, pytest.mark.timeout(240)]


def test_writebehind_bench_tiny(ddb_local: DynamoDBLocal, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "writebehind.py"), "--files", str(FILES), "--dirs", str(DIRS),
         "--git-files", str(GIT_FILES), "--columns", "local+wb,ddb0+wb", "--warmup-files", "0",
         "--propagation-rounds", "1", "--stage-timeout", "90", "--ddb-endpoint", ddb_local.endpoint,
         "--cpu", "0", "--json-out", str(out)],
        capture_output=True, text=True, timeout=220, cwd=str(REPO))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "| tar: write requests per 1,000 files, own |" in res.stdout, res.stdout
    cols = json.loads(out.read_text())["columns"]
    assert [(c["latency_ms"], c["writebehind"]) for c in cols] == [(None, True), (0.0, True)]
    for c in cols:
        assert c["error"] == "", c["error"]
        st = c["stages"]
        assert st["tar"]["verified"] and st["tar"]["count"] == FILES
        # the kernel asks several operations per file (lookup, create, write, setattrs, flush, release)
        assert st["tar"]["fuse_ops_per"].get("create") == 1.0 and sum(st["tar"]["fuse_ops_per"].values()) > 5
        assert st["tar"]["cpu_seconds"] > 0
        assert st["tar"]["daemon_cpus"] == [0]  # --cpu 0: every thread of the daemon stayed there
        # under a lease, a file costs less than the two puts it costs without one
        assert 0 < st["tar"]["own_writes_per_1000"] < 2000
        assert st["rm"]["count"] == FILES + DIRS + 1 and st["git"]["own"] > 0
        prop = st["propagation"]
        assert len(prop["list_s"]["all"]) == 1 and len(prop["lookup_s"]["all"]) == 1
        if c["latency_ms"] is not None:  # the proxy saw every write dynlog counted (and the relay's)
            assert st["tar"]["all_writes_per_1000"] >= st["tar"]["own_writes_per_1000"]


@pytest.mark.parametrize("script", ["writebehind.py", "latency.py"])
@pytest.mark.parametrize(("arg", "why"), [("4096", "CPU 4096 is not one this process may use"),
                                          ("one", "not a CPU number: 'one'")])
def test_bench_refuses_a_cpu_it_may_not_use(script: str, arg: str, why: str, tmp_path: Path) -> None:
    """A --cpu that this machine does not give us is refused before anything is mounted or made,
    with argparse's exit code 2 and a line that says why."""
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--cpu", arg],
                         capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"argument --cpu: {why}" in res.stderr, res.stderr
    assert not list(tmp_path.iterdir())  # nothing made
