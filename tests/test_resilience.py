"""What no backend can do to a referral, on the time-skipping server with the real deadlines:
freeze it with a payload the worker cannot decrypt, or exhaust it with a directory outage."""

import asyncio
import base64
import itertools
import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from werkzeug import Request, Response

from activities.directory import DirectoryFile
from activities.mailers import SendGridMailer
from starter.client import data_converter
from starter.settings import Settings
from tests.factories import SAMPLES, received_now
from tests.servers import SENDGRID_SEND_PATH, start_referral
from worker import build_worker
from workflows.emailing import UNKNOWN_OUTCOME_PAUSE
from workflows.models import EmailOutcome, Status, StatusView
from workflows.referral import ReferralWorkflow

CURRENT = ("2026-q1", os.urandom(32))
RETIRED = ("2025-q4", os.urandom(32))


def keyed(settings: Settings, *keys: tuple[str, bytes]) -> Settings:
    spec = ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys)
    return settings.model_copy(update={"codec_keys": SecretStr(spec)})


def client_with(env: WorkflowEnvironment, settings: Settings) -> Client:
    """A client of the time-skipping server with the codec these settings name."""
    config = env.client.config()
    config["data_converter"] = data_converter(settings)
    return Client(**config)


@pytest.fixture
async def encrypted(
    time_skipping_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> AsyncIterator[tuple[Client, str]]:
    """A client and a worker that encrypt with the current key only."""
    client = client_with(time_skipping_env, keyed(settings, CURRENT))
    queue = f"referrals-test-{uuid.uuid4()}"
    async with build_worker(client, settings, executor, task_queue=queue):
        yield client, queue


async def test_an_action_the_worker_cannot_decrypt_is_refused_and_the_deadline_still_fires(
    time_skipping_env: WorkflowEnvironment, settings: Settings, encrypted: tuple[Client, str]
) -> None:
    client, queue = encrypted
    handle = await start_referral(client, queue, await received_now(time_skipping_env))
    # A backend that still encrypts with a key the worker retired (and reads its answers).
    retired = client_with(time_skipping_env, keyed(settings, RETIRED, CURRENT)).get_workflow_handle(
        handle.id
    )
    await retired.signal("interested", {})
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await retired.execute_update("interested", {}, result_type=StatusView)
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "ActionRejected"

    view = await handle.query(ReferralWorkflow.status)
    assert view.status is Status.NEW
    [listed] = view.rejected_actions
    assert listed.action == "interested"
    assert "cannot be decrypted" in listed.reason
    assert "2025-q4" in listed.reason  # names the key, so an operator knows which one

    await time_skipping_env.sleep(timedelta(hours=73))
    final = await handle.result()
    assert final.status is Status.MISSED  # the respond deadline fired all the same


async def test_an_input_the_worker_cannot_decrypt_fails_the_start_once_saying_so(
    time_skipping_env: WorkflowEnvironment, settings: Settings, encrypted: tuple[Client, str]
) -> None:
    _, queue = encrypted
    retired = client_with(time_skipping_env, keyed(settings, RETIRED, CURRENT))
    handle = await start_referral(retired, queue, await received_now(time_skipping_env))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidInput"
    assert "cannot be decrypted" in cause.message


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "partners.json"
    shutil.copy(SAMPLES / "partners.json", path)
    return path


async def history_events(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


@pytest.mark.parametrize("back_after", [None, timedelta(hours=30)])
async def test_a_directory_outage_starts_the_referral_late_or_fails_it_at_the_deadline(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    directory: Path,
    back_after: timedelta | None,
) -> None:
    env = time_skipping_env
    queue = f"referrals-test-{uuid.uuid4()}"
    good = await asyncio.to_thread(directory.read_bytes)
    async with build_worker(
        env.client, settings, executor, task_queue=queue, directory=DirectoryFile(directory)
    ):
        # The directory breaks after the worker started.
        await asyncio.to_thread(directory.write_text, "{ half a file")
        handle = await start_referral(env.client, queue, await received_now(env))
        if back_after is None:
            await env.sleep(timedelta(hours=73))  # through every retry of the outage
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            cause = failure.value.cause
            assert isinstance(cause, ApplicationError)
            assert cause.type == "LookupFailed"
        else:
            await env.sleep(back_after)
            await asyncio.to_thread(directory.write_bytes, good)
            await env.sleep(timedelta(minutes=10))  # the next try finds it
            view = await handle.query(ReferralWorkflow.status)
            assert [e.kind for e in view.emails] == ["lead"]
            await handle.signal("no_thanks")
            # The reroute asks for suggestions, which this server cannot list (10 min).
            await env.sleep(timedelta(minutes=15))
            assert (await handle.result()).status is Status.SKIPPED
        events = await history_events(env.client, handle.id)
    assert events < 2_000, events
    print(f"directory outage ({back_after or '72 h, never back'}): {events} history events")


class SlowProvider:
    """Answers like SendGrid v3, slower than the client waits when `slow`; counts copies."""

    def __init__(self, slow: bool) -> None:
        self.slow = slow
        self.copies: Counter[str] = Counter()

    def __call__(self, request: Request) -> Response:
        self.copies[json.loads(request.get_data())["custom_args"]["referral_email_id"]] += 1
        if self.slow:
            time.sleep(0.6)
        return Response(status=202, headers={"X-Message-Id": "msg"})


@pytest.mark.parametrize("slow", [True, False])
async def test_a_provider_that_never_answers_in_time_gets_at_most_three_copies(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    httpserver: HTTPServer,
    slow: bool,
) -> None:
    env = time_skipping_env
    provider = SlowProvider(slow)
    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_handler(provider)
    mailer = SendGridMailer(
        "SG.test-key", "r@example.com", host=httpserver.url_for("").rstrip("/"), timeout_s=0.3
    )
    queue = f"referrals-test-{uuid.uuid4()}"
    async with build_worker(env.client, settings, executor, task_queue=queue, mailer=mailer):
        handle = await start_referral(env.client, queue, await received_now(env))
        await env.sleep(timedelta(hours=4))  # two long pauses after unknown outcomes, and more
        view = await handle.query(ReferralWorkflow.status)
        history = await handle.fetch_history()
        await handle.terminate("test finished")
    [lead] = view.emails
    # Each copy goes out an hour after the one before gave no answer, never at once.
    sends = [
        event.event_time.ToDatetime()
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "send_email"
    ]
    assert len(sends) == (3 if slow else 1)
    assert all(b - a >= UNKNOWN_OUTCOME_PAUSE for a, b in itertools.pairwise(sends))
    for _ in range(50):  # the endpoint answers one request at a time, slowly
        if provider.copies[lead.id] >= (3 if slow else 1):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.7)  # and nothing more arrives
    if slow:
        assert provider.copies[lead.id] == 3
        assert lead.outcome is EmailOutcome.FAILED
        assert lead.error is not None
        assert "may have accepted up to 3 copies" in lead.error
    else:
        assert provider.copies[lead.id] == 1
        assert lead.outcome is EmailOutcome.SENT
    answer = "slower than the client" if slow else "in time"
    print(f"provider {answer}: {provider.copies[lead.id]} copies of the lead")


async def test_actions_sent_while_the_directory_is_down_are_taken_in_order_once_it_is_back(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    directory: Path,
) -> None:
    env = time_skipping_env
    queue = f"referrals-test-{uuid.uuid4()}"
    good = await asyncio.to_thread(directory.read_bytes)
    close = str((await env.get_current_time() + timedelta(days=90)).date())
    accept = {"estimated_deal_value": "9000", "currency": "EUR", "estimated_close_date": close}
    async with build_worker(
        env.client, settings, executor, task_queue=queue, directory=DirectoryFile(directory)
    ):
        await asyncio.to_thread(directory.write_text, "{ half a file")
        handle = await start_referral(env.client, queue, await received_now(env))
        await handle.signal("interested", {})
        await handle.signal("escalate", {})  # no such action: refused at once
        await handle.signal("accept", accept)
        await handle.signal("won", {"final_deal_value": "9500"})
        await env.sleep(timedelta(hours=2))
        await asyncio.to_thread(directory.write_bytes, good)
        await env.sleep(timedelta(minutes=10))
        final = await handle.result()
    assert final.status is Status.WON
    assert [t.to for t in final.transitions] == [
        Status.EVALUATING,
        Status.NEGOTIATING,
        Status.WON,
    ]
    assert [(r.action, r.reason) for r in final.rejected_actions] == [
        ("escalate", "unknown action")
    ]
    assert [e.kind for e in final.emails] == ["lead", "details"]
