"""Shared fixtures.

Stores
  ``ddb_local``      session-wide DynamoDB Local server (see tests/dynamodb_local.py); also puts
                     fake AWS credentials and region into os.environ for the whole session.
  ``store``          a fresh, empty store with its tables created, once per backend:
                     parametrized ``sqlite`` (SqliteStore in tmp_path) and ``dynamodb``
                     (DynamoStore on DynamoDB Local, unique table names). Closed afterwards.
  ``store_factory``  a callable opening ANOTHER store object on the same backing tables as
                     ``store`` (a second client: its own connections, its own metrics).
  ``backend``        the name of the backend the current ``store`` runs on.

Tests on the ``dynamodb`` backend carry the ``dynamodb`` marker (``-m "not dynamodb"`` leaves
them out). DynamoDB Local missing is a failure, never a skip.

More fixtures may be appended here or live in conftest.py files of subdirectories.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dynamodb_local import FAKE_ENV, REGION, DynamoDBLocal, unique_table  # noqa: E402

from dynlog.store.base import Store  # noqa: E402
from dynlog.store.dynamo import DynamoStore  # noqa: E402
from dynlog.store.sqlite import SqliteStore  # noqa: E402

if False:  # typing only
    from dynlog.core.filesystem import FileSystem

BACKENDS = ["sqlite", pytest.param("dynamodb", marks=pytest.mark.dynamodb)]


# The slowest test files, slowest first (wall time of each file on two workers, from
# `--durations`). They run first, so that with pytest-xdist (`--dist loadfile` hands out files in
# collection order) a long file never starts last and leaves one worker idle while the other
# finishes it. Order only: every test still runs.
SLOW_FIRST = (  # seconds in the last quiet run, all parameters together
    "faults/test_crash.py",  # 160
    "faults/test_workloads.py",  # 120
    "writebehind/test_crash_mounted.py",  # 100
    "multimount/test_stress.py",  # 80
    "faults/test_outage.py",  # 50
    "multimount/test_propagation.py",  # 50
    "bench/test_latency_bench.py",  # 45
    "programs/test_git.py",  # 45
    "mounted/test_cli.py",
    "engine/test_concurrency.py",
    "mounted/test_data_integrity.py",
    "programs/test_sqlite3.py",
    "programs/test_tar.py",
    "writebehind/test_bench.py",
    "writebehind/test_crash.py",
    "multimount/test_sqlite.py",
    "mounted/test_two_mounts.py",
    "mounted/test_stats.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    rank = {str(here / name): i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(str(item.path), len(SLOW_FIRST)))  # stable: file order kept within


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadfile`` in collection order. xdist's own scheduler hands out the files with the
    most tests first, which started the 20-crash test (one test, 5 minutes) last of all."""
    from xdist.scheduler import LoadFileScheduling

    class CollectionOrder(LoadFileScheduling):
        def _assign_work_unit(self, node: object) -> None:
            if not hasattr(self, "_rank"):
                self._rank = {}
                for nodeid in self.collection or ():
                    self._rank.setdefault(self._split_scope(nodeid), len(self._rank))
            first = min(self.workqueue, key=lambda scope: self._rank.get(scope, len(self._rank)))
            self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    if config.getoption("dist", None) != "loadfile":
        return None
    return CollectionOrder(config, log)


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Fake AWS credentials and region in os.environ for the session, so boto3 never looks for
    real ones (profiles, instance metadata) and never talks to AWS by accident."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
                    "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS"):
            mp.delenv(var, raising=False)
        for k, v in FAKE_ENV.items():
            mp.setenv(k, v)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        yield dict(FAKE_ENV)


@pytest.fixture(scope="session")
def ddb_local(aws_env: dict[str, str]) -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local server for the whole session (in memory, shared database).

    ``ddb_local.endpoint`` is its URL; ``ddb_local.env()`` the variables a subprocess needs;
    ``ddb_local.client()`` a raw boto3 client for setting up odd tables by hand.
    """
    server = DynamoDBLocal()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``dynamodb``: which store the test runs on."""
    return request.param


@pytest.fixture
def _store_opener(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens store objects on one set of backing tables (created on first use), closing them at the end."""
    opened: list[Store] = []
    if backend == "sqlite":
        path = tmp_path / "fs.db"

        def open_one() -> Store:
            s = SqliteStore(str(path))
            opened.append(s)
            return s

    else:
        ddb: DynamoDBLocal = request.getfixturevalue("ddb_local")
        table = unique_table()

        def open_one() -> Store:
            s = DynamoStore(REGION, table, endpoint_url=ddb.endpoint)
            opened.append(s)
            return s

    yield open_one
    for s in opened:
        s.close()
    if backend == "dynamodb" and opened:
        client = ddb.client()
        for name in (table, table + "Blocks"):
            try:
                client.delete_table(TableName=name)
            except client.exceptions.ResourceNotFoundException:
                pass


@pytest.fixture
def store(_store_opener: Callable[[], Store]) -> Store:
    """A fresh store with both tables created, on each backend in turn."""
    s = _store_opener()
    s.create_tables()
    return s


@pytest.fixture
def store_factory(store: Store, _store_opener: Callable[[], Store]) -> Callable[[], Store]:
    """``store_factory()`` opens another store object on the same tables as ``store``."""
    return _store_opener


# -- file systems on the store (engine, history and cluster tests share these) -------------------
@pytest.fixture
def fs(store: Store) -> Iterator["FileSystem"]:
    """A formatted file system on ``store`` and a client of it (session id ``tester1``), with its
    inode range taken up front so request counts see only the operation under test."""
    from dynlog.core.filesystem import FileSystem
    from dynlog.core.superblock import mkfs

    mkfs(store, uid=0, gid=0)
    f = FileSystem(store, session="tester1")
    f.allocator.prefetch()
    yield f
    f.close()


@pytest.fixture
def new_client(fs: "FileSystem", store_factory: Callable[[], Store]) -> Iterator[Callable[..., "FileSystem"]]:
    """Makes more clients of the same file system, each on its own store object."""
    from dynlog.core.filesystem import FileSystem

    made: list[FileSystem] = []

    def make(**kw: object) -> FileSystem:
        c = FileSystem(store_factory(), **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
