"""Real workloads on real mounts whose every DynamoDB request goes through the fault proxy at
the issue's rates (throttling 10%, 5xx 5%, lost replies 3%, resets 2%, latency spikes): zero
errors, exact read-back, fsck clean; on one mount, and on two mounts at once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dynlog.faults.proxy import FaultRates
from mounted.conftest import Mounter
from programs.treeutil import compare

from .conftest import PRODUCTION_FAULTS, FaultyFs, assert_every_fault_hit, report_faults
from .workloads import git_workload, random_io, rename_loop, small_tree, sqlite_workload, tar_in

pytestmark = pytest.mark.dynamodb  # DynamoDB Local, behind the fault proxy


def git_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (tmp_path / "git-template").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LC_"))}
    env.update({"HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
                "GIT_AUTHOR_NAME": "Dyn Log", "GIT_AUTHOR_EMAIL": "dynlog@example.invalid",
                "GIT_COMMITTER_NAME": "Dyn Log", "GIT_COMMITTER_EMAIL": "dynlog@example.invalid",
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
                "GIT_TEMPLATE_DIR": str(tmp_path / "git-template")})
    return env


@pytest.mark.timeout(300)
def test_workloads_under_faults(faulty_fs: FaultyFs, mounter: Mounter, tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree")
    m = mounter.mount(faulty_fs.source)
    faulty_fs.proxy.set(rates=PRODUCTION_FAULTS)
    root = Path(m.path)
    tar_in(tree, root / "tar")
    sqlite_workload(root / "db.sqlite", transactions=40)
    git_workload(tree, root / "repo", root / "clone", git_env(tmp_path))
    for i in range(3):
        random_io(root / f"random-{i}.bin", seed=i)
    (root / "loop").mkdir()
    rename_loop(root / "loop", n=60, dirs=4)
    faulty_fs.proxy.set(rates=FaultRates())
    mounter.unmount(m)
    assert "Traceback" not in m.log_text() and "store.unreachable" not in m.log_text()
    report_faults("workloads", faulty_fs.proxy, workloads=["tar", "sqlite3 x40", "git commit+clone",
                                                            "random I/O x3", "rename loop x60"])
    assert_every_fault_hit(faulty_fs.proxy)
    report = faulty_fs.fsck()
    assert report["entries"] > 100
    # and everything reads back the same on a fresh mount, without faults
    m2 = mounter.mount(faulty_fs.direct)
    tar_tree = Path(m2.path) / "tar"

    assert compare(tree, tar_tree) == []


@pytest.mark.timeout(300)
def test_two_mounts_under_faults(faulty_fs: FaultyFs, mounter: Mounter, tmp_path: Path) -> None:
    """Two mounts work at once through the proxy, each in its own directories and on a shared
    one; each sees exactly what the other wrote."""
    tree = small_tree(tmp_path / "tree")
    a = mounter.mount(faulty_fs.source)
    b = mounter.mount(faulty_fs.source)
    faulty_fs.proxy.set(rates=PRODUCTION_FAULTS)
    (Path(a.path) / "shared").mkdir()
    errors: list[BaseException] = []

    def work(m_path: str, tag: str, seed: int) -> None:
        try:
            root = Path(m_path)
            (root / tag).mkdir()
            rename_loop(root / tag, n=30, dirs=3)
            random_io(root / "shared" / f"{tag}.bin", seed=seed, size=500_000, writes=40)
            tar_in(tree, root / tag / "tar")
            sqlite_workload(root / tag / "db.sqlite", transactions=10)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(a.path, "a", 1)), threading.Thread(target=work, args=(b.path, "b", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # each mount reads the other's files exactly (close-to-open)

    for me, other in ((a, "b"), (b, "a")):
        assert compare(tree, Path(me.path) / other / "tar") == []
        assert (Path(me.path) / other / "d1" / "g0").read_text() == "0\n"
    assert (Path(a.path) / "shared" / "b.bin").read_bytes() == (Path(b.path) / "shared" / "b.bin").read_bytes()
    faulty_fs.proxy.set(rates=FaultRates())
    mounter.unmount(a)
    mounter.unmount(b)
    report_faults("two_mounts", faulty_fs.proxy)
    assert_every_fault_hit(faulty_fs.proxy)
    faulty_fs.fsck()
