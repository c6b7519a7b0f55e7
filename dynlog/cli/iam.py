"""``dynlog iam-policy SOURCE``: the least-privilege IAM policy for one file system.

A dynlog client needs its two tables and the meta table's stream, nothing else: no other
table, no ListTables, no index. The policy names exactly the DynamoDB actions the store makes
(dynlog/store/dynamo.py and streams.py). TransactWriteItems has no IAM action of its own:
each of its items is authorised as the PutItem or DeleteItem it contains. Table creation is a
separate statement, printed only with ``--mkfs``, so that mounts can run without it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import QuietError
from ..store.source import AWS_SOURCE

# Every request a mount, fsck, compact, replay or restore makes on the tables.
TABLE_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",  # also the deletes inside TransactWriteItems
    "dynamodb:DescribeTable",  # the check at mount time and the stream's ARN
    "dynamodb:GetItem",
    "dynamodb:PutItem",  # also the puts inside TransactWriteItems
    "dynamodb:Query",
    "dynamodb:Scan",  # fsck, compact, replay: listing the partitions
    "dynamodb:UpdateItem",  # the inode allocator (ADD)
]
STREAM_ACTIONS = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]
MKFS_ACTIONS = ["dynamodb:CreateTable", "dynamodb:DescribeTable"]


def policy(region: str, table: str, account: str = "*", mkfs: bool = False) -> dict[str, Any]:
    """The policy document for file system ``aws:REGION/TABLE``."""
    base = f"arn:aws:dynamodb:{region}:{account}:table"
    tables = [f"{base}/{table}", f"{base}/{table}Blocks"]
    statements: list[dict[str, Any]] = [
        {"Sid": "DynlogTables", "Effect": "Allow", "Action": TABLE_ACTIONS, "Resource": tables},
        {"Sid": "DynlogStream", "Effect": "Allow", "Action": STREAM_ACTIONS, "Resource": f"{base}/{table}/stream/*"},
    ]
    if mkfs:
        statements.append({"Sid": "DynlogMkfs", "Effect": "Allow", "Action": MKFS_ACTIONS, "Resource": tables})
    return {"Version": "2012-10-17", "Statement": statements}


def cmd_iam_policy(args: argparse.Namespace) -> int:
    m = AWS_SOURCE.match(args.source)
    if not m:
        if args.source.startswith("local:"):
            raise QuietError(f"{args.source}: a local: store has no IAM policy (its file is mode 0600: "
                             "only its owner can read it)", 2)
        raise QuietError(f"bad source {args.source!r}: expected aws:REGION/TABLE", 2)
    account = args.account
    if account != "*" and not (account.isdigit() and len(account) == 12):
        raise QuietError(f"--account {account!r}: an AWS account id is 12 digits", 2)
    print(json.dumps(policy(m.group("region"), m.group("table"), account, args.mkfs), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("iam-policy", help="print the least-privilege IAM policy for a file system",
                       description="Print the IAM policy (JSON) that lets a client mount and maintain "
                                   "aws:REGION/TABLE: its two tables and the meta table's stream, nothing else.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--account", default="*", help="AWS account id for the ARNs (default: *)")
    p.add_argument("--mkfs", action="store_true", help="also allow creating the tables (dynlog mkfs)")
    p.set_defaults(func=cmd_iam_policy)
