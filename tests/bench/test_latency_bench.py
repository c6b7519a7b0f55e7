"""benchmarks/latency.py in a tiny configuration: it must run to the end on every column and
report sane numbers. Why a test: the benchmark is how issue 8's targets are judged, so it must
not rot while the code under it changes. No timed asserts: only counts and correctness (the
extracted tree, the cloned HEAD and the large file's bytes are checked by the benchmark itself
and reported as ``verified``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynamodb_local import DynamoDBLocal

REPO = Path(__file__).resolve().parents[2]
FILES, GIT_FILES, MB = 20, 10, 2

pytestmark = [pytest.mark.mounted, pytest.mark.dynamodb, pytest.mark.timeout(240)]


def test_latency_bench_tiny(ddb_local: DynamoDBLocal, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "latency.py"), "--files", str(FILES), "--dirs", "4",
         "--git-files", str(GIT_FILES), "--mb", str(MB), "--columns", "local,ddb2", "--idle-seconds", "0.5",
         "--warmup-files", "0", "--stage-timeout", "90", "--ddb-endpoint", ddb_local.endpoint, "--json-out", str(out)],
        capture_output=True, text=True, timeout=220, cwd=str(REPO))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "| requests per file, tar: own" in res.stdout and "| cold read" in res.stdout, res.stdout
    doc = json.loads(out.read_text())
    cols = doc["columns"]
    assert [c["latency_ms"] for c in cols] == [None, 2.0]  # ddb0 is the same column without the delay
    for c in cols:
        assert c["error"] == "", c["error"]
        st = c["stages"]
        assert st["tar"]["verified"] and st["read"]["verified"]
        assert st["tar"]["count"] == FILES and st["rm"]["count"] == FILES + 4 + 1
        # a created file costs at least one request of its own; removing an entry too
        assert st["tar"]["own"] >= FILES and st["tar"]["own_per"] >= 1
        assert st["rm"]["own"] >= FILES
        assert st["git"]["own"] > GIT_FILES
        assert st["write"]["own"] > 0 and st["read"]["own"] > 0
        for stage in ("tar", "rm", "git", "write", "read"):
            assert st[stage]["work_seconds"] > 0
        if c["latency_ms"] is not None:
            # the proxy saw at least what dynlog counted for the file operations (plus the feed)
            for stage in ("tar", "rm", "git", "write", "read"):
                assert st[stage]["all"] >= st[stage]["own"], (stage, st[stage])
            assert st["tar"]["all_by_call"].get("PutItem", 0) + st["tar"]["all_by_call"].get("TransactWriteItems", 0) > 0


def test_latency_bench_leaves_out_the_stages_set_to_zero(tmp_path: Path) -> None:
    """--git-files 0 and --mb 0 measure tar and rm -rf alone (they used to fail: git committed
    an empty repository, and the I/O stages divided by zero)."""
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "latency.py"), "--files", "6", "--dirs", "2", "--git-files", "0",
         "--mb", "0", "--columns", "local", "--idle-seconds", "0.2", "--warmup-files", "0", "--stage-timeout", "60",
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert res.returncode == 0, res.stdout + res.stderr
    stages = json.loads(out.read_text())["columns"][0]["stages"]
    assert stages["tar"]["verified"] and stages["rm"]["count"] == 6 + 2 + 1
    assert not {"git", "write", "read"} & set(stages)
    assert "| sequential write, 0 MiB: MB/s | – |" in res.stdout, res.stdout


@pytest.mark.parametrize(("script", "args", "message"), [
    ("latency.py", ["--files", "0"], "argument --files: 0 is less than 1"),
    ("latency.py", ["--mb", "-1"], "argument --mb: -1 is less than 0"),
    ("latency.py", ["--git-files", "many"], "argument --git-files: not a whole number: 'many'"),
    ("writebehind.py", ["--files", "0"], "argument --files: 0 is less than 1"),
    ("writebehind.py", ["--warmup-files", "-3"], "argument --warmup-files: -3 is less than 0"),
    ("writebehind.py", ["--propagation-rounds", "0"], "argument --propagation-rounds: 0 is less than 1"),
])
def test_benchmarks_refuse_bad_counts(script: str, args: list[str], message: str) -> None:
    """Both latency benchmarks check their counts before starting anything (exit 2, the argument
    named): ``--files 0`` once crashed deep inside a run."""
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                         capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert res.returncode == 2 and message in res.stderr, res.stderr
