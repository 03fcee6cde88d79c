"""The partner API run from its own OpenAPI document by schemathesis (property-based):
whatever a CRM sends, no answer is a server error, and every answer keeps to the document's
status codes and content types. The service runs on uvicorn in a thread of its own, with a
Temporal client of its own, against the dev server."""

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine, upgrade
from archive.partner_keys import PartnerKeyStore
from starter.dev import free_port
from starter.settings import Settings
from tests.factories import SAMPLES
from web.app import create_app

Target = tuple[str, str]


@pytest.fixture(scope="module")
def fuzz_target(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """(base URL, API key) of a service whose referrals nobody started: every generated
    request reaches Temporal and the archive for real and finds nothing it may act on."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    service = Settings(
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=dev_env.client.namespace,
        REFERRALS_DATABASE_URL=f"sqlite:///{folder}/referrals.db",
        REFERRALS_PARTNER_DIRECTORY=SAMPLES / "partners.json",
        REFERRALS_OUTBOX_DIR=folder / "outbox",
        # A property-based run sends far more than a CRM would: the limits are not its subject.
        REFERRALS_WEB_REQUESTS_PER_MINUTE=1_000_000,
        REFERRALS_WEB_ACTIONS_PER_MINUTE=1_000_000,
    )
    engine = create_archive_engine(service.database_url)
    upgrade(engine)
    _, key = PartnerKeyStore(engine).add("acme-consulting", "fuzz", datetime.now(UTC))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}", key
    server.should_exit = True
    thread.join(10)


def test_no_request_gets_a_server_error(fuzz_target: Target) -> None:
    base, key = fuzz_target
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "every operation of the document parses"
    assert {f"{o.method.upper()} {o.path}" for o in operations} == {
        "GET /v1/referrals",
        "GET /v1/referrals/{rfi_id}",
        "POST /v1/referrals/{rfi_id}/actions/{action}",
    }
    checks = [not_a_server_error, status_code_conformance, content_type_conformance]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def each(case: Any) -> None:
            case.call_and_validate(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, checks=checks
            )

        each()
