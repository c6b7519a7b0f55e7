"""Who may get in: ``dynlog iam-policy`` and the mode of local: store files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import dynlog.store.dynamo
import dynlog.store.streams

REPO = Path(__file__).resolve().parents[2]

# IAM action of each boto3 operation the store makes (TransactWriteItems is authorised per item).
IAM_OF = {"transact_write_items": ["PutItem", "DeleteItem"], "create_table": []}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dynlog.cli.main", *args], capture_output=True, text=True,
                          cwd=str(REPO), timeout=60)


def test_iam_policy_covers_every_request_the_store_makes() -> None:
    res = _cli("iam-policy", "aws:eu-west-1/myfs", "--account", "123456789012")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    tables = by_sid["DynlogTables"]
    assert tables["Resource"] == ["arn:aws:dynamodb:eu-west-1:123456789012:table/myfs",
                                  "arn:aws:dynamodb:eu-west-1:123456789012:table/myfsBlocks"]
    assert by_sid["DynlogStream"]["Resource"] == "arn:aws:dynamodb:eu-west-1:123456789012:table/myfs/stream/*"
    assert "DynlogMkfs" not in by_sid and all(s["Effect"] == "Allow" for s in doc["Statement"])
    granted = {a.split(":")[1] for s in doc["Statement"] for a in s["Action"]}
    used: set[str] = set()
    for mod in (dynlog.store.dynamo, dynlog.store.streams):
        src = Path(mod.__file__).read_text()
        for op in set(re.findall(r'_(?:call|streams)\("([a-z_]+)"', src)):
            used.update(IAM_OF.get(op, ["".join(p.capitalize() for p in op.split("_"))]))
    assert used and used <= granted, used - granted
    assert not any("*" in a for a in granted)  # no wildcard actions
    mk = json.loads(_cli("iam-policy", "aws:eu-west-1/myfs", "--mkfs").stdout)
    mkfs = [s for s in mk["Statement"] if s["Sid"] == "DynlogMkfs"][0]
    assert "dynamodb:CreateTable" in mkfs["Action"] and mkfs["Resource"][0] == "arn:aws:dynamodb:eu-west-1:*:table/myfs"


def test_iam_policy_refuses_what_has_none() -> None:
    for bad in (["local:/tmp/x.db"], ["nonsense"], ["aws:eu-west-1/myfs", "--account", "12"]):
        res = _cli("iam-policy", *bad)
        assert res.returncode == 2 and res.stderr.startswith("dynlog: ") and "Traceback" not in res.stderr
