"""An outage: DynamoDB Local (its data on disk, ``-dbPath``) is stopped for 30 s and started again
on the same port while a mount works. File operations wait and carry on: no EIO, nothing that
was acknowledged is lost, fsck clean. (Past the limit they fail with one warning line:
test_idempotent_store.py shows that with a short limit.)

With ``-o writebehind`` the mount holds a lease on the directory it fills: the outage outlasts
the lease (5 s), so the holder stops acknowledging and waits like a synchronous mount, and what it
had acknowledged and queued is committed once the store is back. A fresh mount reads every
acknowledged file after the unmount."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from dynamodb_local import REGION, DynamoDBLocal, free_port, unique_table
from mounted.conftest import Mounter, Source, run_cli

pytestmark = pytest.mark.dynamodb  # DynamoDB Local, behind the fault proxy

OUTAGE_S = 30.0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("options", ["", "writebehind"])
def test_mount_waits_out_a_30s_outage(tmp_path: Path, mounter: Mounter, aws_env: dict[str, str], options: str) -> None:
    server = DynamoDBLocal(db_path=tmp_path, port=free_port())
    server.start()
    try:
        src = Source(f"aws:{REGION}/{unique_table()}", server.endpoint, "dynamodb")
        res = run_cli(*src.global_args(), "mkfs", src.source)
        assert res.returncode == 0, res.stderr
        m = mounter.mount(src, options=options)
        root = Path(m.path)
        (root / "a").mkdir()
        (root / "b").mkdir()
        acked: list[tuple[str, str]] = []  # (path, sha256) of files whose close returned
        errors: list[BaseException] = []
        longest = [0.0]
        stop = threading.Event()

        def work() -> None:
            i = 0
            try:
                while not stop.is_set():
                    t0 = time.monotonic()
                    data = f"file {i}\n".encode() * (1 + i % 500)
                    if options:  # creates in one directory: the write-behind path, under a lease
                        (root / "b" / f"g{i}").write_bytes(data)
                    else:
                        with open(root / "a" / f"f{i}", "wb") as f:
                            f.write(data)
                        (root / "a" / f"f{i}").rename(root / "b" / f"g{i}")
                    acked.append((f"b/g{i}", hashlib.sha256(data).hexdigest()))
                    longest[0] = max(longest[0], time.monotonic() - t0)
                    i += 1
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)

        t = threading.Thread(target=work)
        t.start()
        while len(acked) < 20 and not errors:
            time.sleep(0.1)
        server.stop()  # the outage: connections refused, requests in flight cut
        down_at = len(acked)
        time.sleep(OUTAGE_S)
        server.start()
        while len(acked) < down_at + 30 and not errors and t.is_alive():
            time.sleep(0.1)
        stop.set()
        t.join(timeout=120)
        assert not errors, errors
        assert len(acked) >= down_at + 30
        for rel, sha in acked:
            assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == sha, rel
        assert not list((root / "a").iterdir())
        mounter.unmount(m)
        for bad in ("store.unreachable", "writebehind.lease_lost", "Traceback"):
            assert bad not in m.log_text(), m.log_text()[-3000:]
        fsck = run_cli(*src.global_args(), "fsck", src.source, timeout=120)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        fresh = Path(mounter.mount(src).path)  # what was committed, not what the mount remembered
        for rel, sha in acked:
            assert hashlib.sha256((fresh / rel).read_bytes()).hexdigest() == sha, rel
        print(f"OUTAGE {OUTAGE_S:.0f} s survived ({options or 'sync'}): {len(acked)} files acknowledged, longest operation "
              f"{longest[0]:.1f} s", flush=True)
    finally:
        server.close()
