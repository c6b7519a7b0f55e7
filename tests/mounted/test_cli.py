"""The dynlog command around mounting: every error case gives one line and a non-zero exit
(no traceback); background mounts return once the mount answers; SIGTERM unmounts cleanly;
mkfs, status, umount; mount(8), fstab and mount.fuse3 entry points."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from dynamodb_local import FAKE_ENV, REGION, unique_table
from dynlog.fuse import mounttab

from .conftest import REPO, Mounter, Source, run_cli

CLI = Callable[..., subprocess.CompletedProcess[str]]


def assert_one_line_error(res: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert res.returncode != 0, f"expected failure, got 0: {res.stdout}{res.stderr}"
    err = res.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, f"expected one line, got:\n{err}"
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"
    return err


@pytest.fixture
def mp(tmp_path: Path) -> Path:
    d = tmp_path / "mp"
    d.mkdir()
    return d


def ensure_unmounted(path: Path | str) -> None:
    mounttab.force_unmount(str(path))


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["bogus:thing", "local:", "aws:us-east-1", "aws:us-east-1/ab", "/plain/path"])
def test_bad_source(cli: CLI, mp: Path, source: str) -> None:
    assert_one_line_error(cli("mount", source, str(mp)), "bad source")
    assert mounttab.find_mount(str(mp)) is None


def test_bad_source_for_mkfs_and_status(cli: CLI) -> None:
    assert_one_line_error(cli("mkfs", "bogus:thing"), "bad source")
    assert_one_line_error(cli("status", "aws:nowhere"), "bad source")


def test_local_source_that_is_not_a_dynlog_store(cli: CLI, mp: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    assert_one_line_error(cli("mount", f"local:{junk}", str(mp)), "not a dynlog store")
    assert_one_line_error(cli("mount", f"local:{tmp_path}/no/such/dir/fs.db", str(mp)), "does not exist")


def test_missing_table_on_dynamodb(cli: CLI, mp: Path, ddb_local) -> None:
    src = f"aws:{REGION}/{unique_table()}"
    err = assert_one_line_error(cli("--endpoint-url", ddb_local.endpoint, "mount", src, str(mp)), "does not exist")
    assert "dynlog mkfs" in err
    assert_one_line_error(cli("--endpoint-url", ddb_local.endpoint, "status", src), "does not exist")


def test_mismatched_table_on_dynamodb(cli: CLI, mp: Path, ddb_local) -> None:
    table = unique_table()
    client = ddb_local.client()
    client.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    try:
        res = cli("--endpoint-url", ddb_local.endpoint, "mount", f"aws:{REGION}/{table}", str(mp))
        assert_one_line_error(res, "wrong key schema")
    finally:
        client.delete_table(TableName=table)


def test_missing_credentials(cli: CLI, mp: Path, ddb_local) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
               AWS_DEFAULT_REGION=REGION)
    res = cli("--endpoint-url", ddb_local.endpoint, "mount", f"aws:{REGION}/{unique_table()}", str(mp), env=env)
    assert_one_line_error(res, "credentials")


def test_mount_point_errors(cli: CLI, fs_source: Source, tmp_path: Path) -> None:
    g = fs_source.global_args()
    assert_one_line_error(cli(*g, "mount", fs_source.source, str(tmp_path / "missing")), "does not exist")
    f = tmp_path / "file"
    f.write_text("")
    assert_one_line_error(cli(*g, "mount", fs_source.source, str(f)), "not a directory")


def test_busy_mount_point(cli: CLI, mounter: Mounter, fs_source: Source) -> None:
    m = mounter.mount(fs_source)
    res = cli(*fs_source.global_args(), "mount", fs_source.source, m.path)
    assert_one_line_error(res, "busy")
    res = cli(*fs_source.global_args(), "mount", "-f", fs_source.source, m.path)
    assert_one_line_error(res, "busy")
    assert m.proc.poll() is None  # the first mount is untouched


def test_unknown_mount_option(cli: CLI, fs_source: Source, mp: Path) -> None:
    res = cli(*fs_source.global_args(), "mount", fs_source.source, str(mp), "-o", "allow_other,frobnicate")
    assert_one_line_error(res, "unknown mount option", "frobnicate")
    res = cli(*fs_source.global_args(), "mount", fs_source.source, str(mp), "-o", "ttl=soon")
    assert_one_line_error(res, "not a number")


def test_umount_errors(cli: CLI, tmp_path: Path) -> None:
    assert_one_line_error(cli("umount", str(tmp_path)), "not a mount point")
    assert_one_line_error(cli("umount", str(tmp_path / "nowhere")), "does not exist")
    assert_one_line_error(cli("umount", "/proc"), "not a FUSE mount")


def test_mkfs_errors_and_idempotence(cli: CLI, tmp_path: Path) -> None:
    src = f"local:{tmp_path}/sub/fs.db"
    assert_one_line_error(cli("mkfs", src, "--block-size", "1000"), "block size")
    res = cli("mkfs", src, "--block-size", "64k")
    assert res.returncode == 0 and "created" in res.stdout and "65536" in res.stdout
    res = cli("mkfs", src)
    assert res.returncode == 0 and "already holds" in res.stdout
    assert_one_line_error(cli("mkfs", src, "--block-size", "128k"), "block size 65536")
    res = cli("status", src)
    assert res.returncode == 0, res.stderr
    assert "block size:" in res.stdout and "65536 bytes" in res.stdout and "directory journals" in res.stdout
    assert_one_line_error(cli("status", f"local:{tmp_path}/none.db"), "dynlog mkfs")


# -- background mounts ----------------------------------------------------------------------------------
def daemon_pids(mountpoint: str) -> list[int]:
    """Processes serving ``mountpoint`` (dynlog mount -f ... MOUNTPOINT)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dynlog.cli.main" in argv and b"-f" in argv and os.fsencode(mountpoint) in argv:
            out.append(int(pid))
    return out


def wait_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, f"daemon {pid} still running"
            time.sleep(0.05)


def test_background_mount_and_umount(cli: CLI, fs_source: Source, mp: Path, tmp_path: Path) -> None:
    try:
        res = cli(*fs_source.global_args(), "mount", fs_source.source, str(mp), "-o", f"log={tmp_path}/m.log")
        assert res.returncode == 0, res.stderr
        entry = mounttab.find_mount(str(mp))  # mounted by the time the command returned
        assert entry is not None and entry.fstype == "fuse.dynlog" and entry.source == fs_source.source
        (mp / "hello").write_text("world")
        assert os.listdir(mp) == ["hello"]
        pids = daemon_pids(str(mp))
        assert len(pids) == 1
        busy = os.open(mp / "hello", os.O_RDONLY)
        try:
            assert_one_line_error(cli("umount", str(mp)), "busy")
        finally:
            os.close(busy)
        res = cli("umount", str(mp))
        assert res.returncode == 0, res.stderr
        assert mounttab.find_mount(str(mp)) is None
        wait_gone(pids)  # the daemon exits by itself once unmounted
        res = cli(*fs_source.global_args(), "mount", fs_source.source, str(mp))
        assert res.returncode == 0, res.stderr
        assert (mp / "hello").read_text() == "world"
    finally:
        ensure_unmounted(mp)


def test_background_mount_reports_a_failing_daemon(cli: CLI, fs_source: Source, mp: Path, tmp_path: Path) -> None:
    """Errors only the daemon can find (here: libfuse rejects an option value) come back as one line."""
    try:
        res = cli(*fs_source.global_args(), "mount", fs_source.source, str(mp), "-o",
                  f"max_read=lots,log={tmp_path}/m.log")
        err = assert_one_line_error(res, "log:")
        assert mounttab.find_mount(str(mp)) is None, err
    finally:
        ensure_unmounted(mp)


def test_sigterm_unmounts_and_flushes_open_files(mounter: Mounter, fs_source: Source) -> None:
    m = mounter.mount(fs_source)
    p = Path(m.path)
    (p / "closed").write_bytes(b"committed at close")
    fd = os.open(p / "open", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"still buffered in the daemon")  # no close, no fsync
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=30) == 0, m.log_text()
    assert mounttab.find_mount(m.path) is None
    try:
        os.close(fd)
    except OSError:
        pass  # the connection is gone; the daemon flushed on its way out
    m2 = mounter.mount(fs_source)
    assert (Path(m2.path) / "closed").read_bytes() == b"committed at close"
    assert (Path(m2.path) / "open").read_bytes() == b"still buffered in the daemon"
    assert "Traceback" not in m.log_text()


def test_sigint_foreground(mounter: Mounter, fs_source: Source) -> None:
    m = mounter.mount(fs_source)
    os.killpg(m.proc.pid, signal.SIGINT)  # as Ctrl-C in the terminal would
    assert m.proc.wait(timeout=30) == 0, m.log_text()
    assert mounttab.find_mount(m.path) is None


# -- mount(8), fstab and mount.fuse3 ------------------------------------------------------------------
def helper_env(source: Source) -> dict[str, str]:
    return {**os.environ, **FAKE_ENV} if source.backend == "dynamodb" else dict(os.environ)


def helper_opts(source: Source, extra: str = "") -> str:
    opts = "allow_other,_netdev,noauto,x-systemd.automount"
    if source.endpoint:
        opts += f",endpoint_url={source.endpoint}"
    return opts + extra


def test_mount_helper_directly(fs_source: Source, mp: Path) -> None:
    try:
        res = subprocess.run([sys.executable, "-m", "dynlog.cli.fstab", fs_source.source, str(mp), "-o",
                              helper_opts(fs_source)], capture_output=True, text=True, timeout=60, cwd=REPO,
                             env=helper_env(fs_source))
        assert res.returncode == 0, res.stderr
        assert mounttab.find_mount(str(mp)).fstype == "fuse.dynlog"
    finally:
        ensure_unmounted(mp)
    res = subprocess.run([sys.executable, "-m", "dynlog.cli.fstab", fs_source.source, str(mp) + "-missing"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 32 and "does not exist" in res.stderr  # mount(8)'s "mount failure"


def test_mount_fuse3_form(fs_source: Source, mp: Path) -> None:
    """mount.fuse3 runs `dynlog SOURCE MOUNTPOINT -o OPTIONS` when there is no mount.fuse.dynlog."""
    try:
        res = run_cli(fs_source.source, str(mp), "-o", helper_opts(fs_source, ",rw,dev,suid"),
                      env=helper_env(fs_source))
        assert res.returncode == 0, res.stderr
        assert mounttab.find_mount(str(mp)).fstype == "fuse.dynlog"
    finally:
        ensure_unmounted(mp)


@pytest.fixture
def system_helper(cli: CLI) -> str:
    """/sbin/mount.fuse.dynlog, installed if missing (what scripts/demo and install do).
    mount(8) tests need root and mount(8): where they are missing the tests fail, never skip."""
    assert os.geteuid() == 0 and shutil.which("mount"), "mount(8) tests need root and mount(8)"
    res = cli("install-mount-helper")
    assert res.returncode == 0, res.stderr
    return "/sbin/mount.fuse.dynlog"


def test_mount_t_fuse_dynlog(system_helper: str, fs_source: Source, mp: Path) -> None:
    try:
        res = subprocess.run(["mount", "-t", "fuse.dynlog", "-o", helper_opts(fs_source), fs_source.source, str(mp)],
                             capture_output=True, text=True, timeout=60, env=helper_env(fs_source))
        assert res.returncode == 0, res.stderr
        assert mounttab.find_mount(str(mp)).fstype == "fuse.dynlog"
        (mp / "via-mount8").write_text("ok")
        res = subprocess.run(["umount", str(mp)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
    finally:
        ensure_unmounted(mp)


def test_fstab_line(system_helper: str, fs_source: Source, mp: Path, tmp_path: Path) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# dynlog\n{fs_source.source}  {mp}  fuse.dynlog  {helper_opts(fs_source)}  0 0\n")
    try:
        res = subprocess.run(["mount", "-T", str(fstab), str(mp)], capture_output=True, text=True, timeout=60,
                             env=helper_env(fs_source))
        assert res.returncode == 0, res.stderr
        assert mounttab.find_mount(str(mp)).source == fs_source.source
    finally:
        ensure_unmounted(mp)


def test_read_only_mount(mounter: Mounter, fs_source: Source) -> None:
    rw = mounter.mount(fs_source)
    (Path(rw.path) / "f").write_text("data")
    ro = mounter.mount(fs_source, options="ro")
    assert (Path(ro.path) / "f").read_text() == "data"
    for attempt in (lambda: (Path(ro.path) / "g").write_text("x"), lambda: os.mkdir(Path(ro.path) / "d"),
                    lambda: os.unlink(Path(ro.path) / "f"), lambda: os.chmod(Path(ro.path) / "f", 0o600)):
        with pytest.raises(OSError) as ei:
            attempt()
        assert ei.value.errno == errno.EROFS


def test_every_documented_mount_flag_mounts(mounter: Mounter, fs_source: Source) -> None:
    """The kernel and libfuse options dynlog accepts all reach a working mount: libfuse itself
    refuses nodiratime, and a max_read that init does not repeat."""
    m = mounter.mount(fs_source, options="nodiratime,noatime,nosuid,nodev,dirsync,max_read=4096,"
                                           "max_threads=8,max_idle_threads=8")
    data = os.urandom(100_000)
    (Path(m.path) / "f").write_bytes(data)
    assert (Path(m.path) / "f").read_bytes() == data  # read in 4 KiB requests


def wait_stopped(pid: int, timeout: float = 10.0) -> None:
    """Until every thread of ``pid`` is in the stopped state (``T`` in /proc/PID/task/*/stat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                states.append(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"daemon {pid} did not stop within {timeout} s")


def test_teardown_survives_a_hung_daemon(mounter: Mounter, fs_source: Source) -> None:
    """A stopped daemon blocks every caller of its mount; force_unmount (what every fixture's
    teardown runs) must still get rid of the mount, without touching it."""
    m = mounter.mount(fs_source)
    os.kill(m.proc.pid, signal.SIGSTOP)
    try:
        wait_stopped(m.proc.pid)  # SIGSTOP reaches each thread when it next runs: not at once
        stuck = subprocess.Popen(["stat", m.path + "/anything"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.2)
        if stuck.poll() is not None:  # not hung: say why (this failed once, under load, unexplained)
            raise AssertionError(f"stat returned {stuck.returncode} from a stopped daemon's mount: "
                                 f"{stuck.stderr.read().decode(errors='replace')!r}; mount: {mounttab.find_mount(m.path)}")
        start = time.monotonic()
        mounttab.force_unmount(m.path, timeout=3)
        assert mounttab.find_mount(m.path) is None and time.monotonic() - start < 15
        assert stuck.wait(timeout=10) != 0  # released by the abort, with an error
    finally:
        os.kill(m.proc.pid, signal.SIGCONT)
    m.proc.wait(timeout=15)


def test_output_cut_short_by_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    """``dynlog status SOURCE | head -1``: the reader goes away before dynlog has written all
    (here, before it writes anything: ``true`` reads nothing); dynlog stops quietly."""
    src = f"local:{tmp_path}/fs.db"
    assert run_cli("mkfs", src).returncode == 0
    res = subprocess.run(f"{sys.executable} -m dynlog.cli.main status {src} | true", shell=True,
                         capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
