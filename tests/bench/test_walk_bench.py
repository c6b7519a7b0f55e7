"""benchmarks/walk.py in a tiny configuration: it runs to the end, every walk prints the same
with prefetch off and on (the benchmark checks that itself), and prefetch costs no request a
walk would not have made, but for the one level it looks ahead into a subtree the walk skips.
No timed asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynamodb_local import DynamoDBLocal

REPO = Path(__file__).resolve().parents[2]
TOP, SUB = 3, 3  # and 2 files in each subdirectory

pytestmark = [pytest.mark.mounted, pytest.mark.dynamodb, pytest.mark.timeout(240)]


def test_walk_bench_tiny(ddb_local: DynamoDBLocal, tmp_path: Path) -> None:
    out = tmp_path / "walk.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "walk.py"), "--top", str(TOP), "--sub", str(SUB), "--files", "2",
         "--columns", "local,ddb2", "--settings", "prefetch=0;prefetch=4;prefetch=4,nocto", "--stage-timeout", "90", "--ddb-endpoint", ddb_local.endpoint,
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=220, cwd=str(REPO))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "| ls -lR of 12 directories: seconds" in res.stdout, res.stdout
    cols = json.loads(out.read_text())["columns"]
    assert [c["latency_ms"] for c in cols] == [None, 2.0]
    for c in cols:
        assert c["error"] == "", c["error"]
        assert c["walks"]["tree"]["dirs"] == TOP + TOP * SUB
        skipped = c["walks"]["tree"]["git_dirs"]
        files = c["walks"]["tree"]["files"]
        for walk in ("ls -lR", "find", "du -s", "git status", "grep -r"):
            off, on = c["walks"][f"{walk}|prefetch=0"], c["walks"][f"{walk}|prefetch=4"]
            # a cold walk loads every directory's view: at least its tail query
            assert off["own"] >= TOP + TOP * SUB, (walk, off)
            if walk == "git status":
                continue  # it reads .git too, in an order of its own: prefetch may guess wrong there
            # prefetch loads what the walk loads, and the .git it skips with the first level in it
            # (two requests a view), no more. (A change-feed notice that comes while a view is
            # loading marks it stale, costing one more Query when it is used; with prefetch more
            # views are loading at once.)
            assert on["own"] <= off["own"] + 2 * (1 + skipped) + 2, (walk, off, on)
        # grep opens every file: close-to-open's Query each; with nocto the feed vouches instead
        cto, nocto = c["walks"]["grep -r|prefetch=4"], c["walks"]["grep -r|prefetch=4,nocto"]
        assert cto["own"] >= files, cto
        assert nocto["own"] < cto["own"] - files // 2, (cto, nocto)
