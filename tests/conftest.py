"""Fixtures only: the servers, settings, archives and executor tests ask for by name.
Test data lives in `tests/factories.py`, the servers themselves in `tests/servers.py`."""

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine, upgrade
from archive.store import ArchiveStore
from starter.settings import Settings
from tests.factories import SAMPLES
from tests.servers import fresh_postgres_database, start_dev_server, start_time_skipping
from worker import build_worker


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """One per test module: a module's leftovers (timeouts of runs its workers no longer
    serve) never move the clock another module's deadlines count on."""
    async with await start_time_skipping() as env:
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_dev_server() as env:
        yield env


@pytest.fixture(scope="session", autouse=True)
def defaults_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Settings a test builds without an archive or outbox of its own, and the processes it
    starts, write to a temporary folder: never to the checkout's `.data/` and `.outbox/`,
    nor to an archive the developer's environment names."""
    folder = tmp_path_factory.mktemp("defaults")
    os.environ["REFERRALS_DATABASE_URL"] = f"sqlite:///{folder}/referrals.db"
    os.environ["REFERRALS_OUTBOX_DIR"] = str(folder / "outbox")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        REFERRALS_OUTBOX_DIR=tmp_path / "outbox",
        REFERRALS_PARTNER_DIRECTORY=SAMPLES / "partners.json",
        REFERRALS_DATABASE_URL=f"sqlite:///{tmp_path}/archive/referrals.db",
    )


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """REFERRALS_TEST_POSTGRES_URL when given, else a PostgreSQL that pgserver starts offline."""
    given = os.environ.get("REFERRALS_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    import pgserver

    # A folder of its own, not under pytest's temporary root: another test run on this
    # machine resets that root's permissions, locking the database's own user out.
    folder = Path(tempfile.mkdtemp(prefix="referrals-postgres-"))
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty archive database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/archive/referrals.db"
    return fresh_postgres_database(request.getfixturevalue("postgres_server_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[ArchiveStore]:
    """A migrated, empty archive of each kind."""
    engine = create_archive_engine(database_url)
    upgrade(engine)
    yield ArchiveStore(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        yield pool


@pytest.fixture
async def queue(
    dev_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> AsyncIterator[str]:
    """A task queue of its own with the production worker polling it, on the dev server."""
    name = f"referrals-test-{uuid.uuid4()}"
    async with build_worker(dev_env.client, settings, executor, task_queue=name):
        yield name
