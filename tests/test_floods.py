"""A hostile or buggy backend on the dev server: floods of signals by size and by number, an
update while the referral starts, and ids that the old scheme made collide."""

import asyncio
import json
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.directory import DirectoryFile
from activities.mailers import OutboxMailer
from activities.rendering import RenderedEmail
from starter import referrals
from starter.settings import Settings
from tests.factories import SAMPLES, fresh_rfi
from tests.servers import start_referral
from worker import build_worker
from workflows import RESPOND_BY_KEY
from workflows.lifecycle import Referral
from workflows.models import (
    EmailOutcome,
    Status,
    StatusView,
    legacy_referral_workflow_id,
)
from workflows.referral import MAX_MESSAGES_PER_RUN, ReferralWorkflow
from workflows.visibility import start_attributes

PARTNER = "acme-consulting"
MB = 1024 * 1024


class BrokenThenFixedMailer(OutboxMailer):
    """The outbox, failing (retryably) until `fix()`; counts what it delivered."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "referrals@marketplace.example")
        self.broken = threading.Event()
        self.broken.set()
        self.delivered: list[str] = []

    def fix(self) -> None:
        self.broken.clear()

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        if self.broken.is_set():
            raise RuntimeError("mail relay down")
        self.delivered.append(email_id)
        return super().send(email_id, to, message)


async def runs_of(client: Client, workflow_id: str) -> list[History]:
    """Every run's history, first to last, following continue-as-new."""
    description = await client.get_workflow_handle(workflow_id).describe()
    histories: list[History] = []
    run_id: str | None = description.run_id
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        histories.insert(0, History(events=history.events))
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
    return histories


def signals_in(history: History) -> int:
    signaled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return sum(1 for e in history.events if e.event_type == signaled)


async def respond_by(handle: WorkflowHandle[Any, Any]) -> datetime | None:
    return (await handle.describe()).typed_search_attributes.get(RESPOND_BY_KEY)


@pytest.fixture
def mailer(tmp_path: Path) -> BrokenThenFixedMailer:
    return BrokenThenFixedMailer(tmp_path / "outbox")


@pytest.fixture
async def queue(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    mailer: BrokenThenFixedMailer,
) -> AsyncIterator[str]:
    name = f"referrals-test-{uuid.uuid4()}"
    async with build_worker(dev_env.client, settings, executor, task_queue=name, mailer=mailer):
        yield name


async def test_huge_refused_signals_never_take_a_run_near_the_size_limit(
    dev_env: WorkflowEnvironment, queue: str, mailer: BrokenThenFixedMailer
) -> None:
    mailer.fix()
    client = dev_env.client
    rfi = fresh_rfi()
    handle = await start_referral(client, queue, rfi)
    # The server refuses a payload over 256 KiB at the door (limit.blobSize.error, as in
    # deploy/temporal/dynamicconfig.yaml): 32 signals of 1.9 MB as fast as one client can
    # send them used to get the referral terminated in its first run.
    for _ in range(32):
        with pytest.raises(RPCError, match="size exceeds limit"):
            await handle.signal("decline", {"reason": "x" * int(1.9 * MB)})
    huge = {"reason": "x" * (250 * 1024)}  # passes the door; refused by the referral
    for _ in range(28):  # 7 MB, each refused unread: a run never nears Temporal's limits
        await handle.signal("decline", huge)
        await asyncio.sleep(0.2)
    await referrals.act(client, rfi.id, PARTNER, "interested", {})
    await referrals.act(client, rfi.id, PARTNER, "decline", {})
    final = await client.get_workflow_handle_for(ReferralWorkflow.run, handle.id).result()

    assert final.status is Status.DECLINED
    assert len(final.rejected_actions) == 28
    assert {r.reason for r in final.rejected_actions} == {
        f"invalid payload: {len(json.dumps(huge, separators=(',', ':')))} bytes; at most 65536"
    }
    histories = await runs_of(client, handle.id)
    sizes = [sum(e.ByteSize() for e in h.events) for h in histories]
    print(f"size flood: {len(histories)} runs, bytes per run {sizes}")
    assert len(histories) >= 2
    assert max(sizes) < 10 * MB  # Temporal ends a run at 50 MB
    assert [e.kind for e in final.emails] == ["lead", "details", "reroute"]
    assert mailer.delivered.count(final.emails[0].id) == 1


async def test_a_flood_of_signals_continues_as_new_carrying_the_unsent_lead(
    dev_env: WorkflowEnvironment, queue: str, mailer: BrokenThenFixedMailer
) -> None:
    client = dev_env.client
    rfi = fresh_rfi()
    handle = await start_referral(client, queue, rfi)
    flood = MAX_MESSAGES_PER_RUN + 200
    for first in range(0, flood, 50):  # the lead keeps failing all the while
        await asyncio.gather(
            *(handle.signal("escalate", {"n": n}) for n in range(first, first + 50))
        )
    mailer.fix()
    view = await referrals.act(client, rfi.id, PARTNER, "interested", {})
    for _ in range(100):
        if all(e.outcome is EmailOutcome.SENT for e in view.emails):
            break
        await asyncio.sleep(0.1)
        view = await referrals.status(client, rfi.id, PARTNER)

    histories = await runs_of(client, handle.id)
    print(
        f"signal flood: {flood} signals, {len(histories)} runs, signals per run "
        f"{[signals_in(h) for h in histories]}, events per run {[len(h.events) for h in histories]}"
    )
    assert len(histories) >= 2
    # Signals that arrive while a run hands over still land in it.
    assert max(signals_in(h) for h in histories) < 2 * MAX_MESSAGES_PER_RUN
    assert sum(signals_in(h) for h in histories) == flood
    assert view.status is Status.EVALUATING
    assert [r.action for r in view.rejected_actions] == ["escalate"] * 100  # the latest 100
    assert [(e.kind, e.outcome) for e in view.emails] == [
        ("lead", EmailOutcome.SENT),
        ("details", EmailOutcome.SENT),
    ]
    lead = view.emails[0].id
    assert mailer.delivered.count(lead) == 1  # carried over, sent once
    assert view.deadline is not None
    assert await respond_by(handle) == view.deadline.due_at  # now the decide deadline
    assert view.transitions[0].processed_at < view.deadline.due_at - timedelta(days=6)


async def test_an_update_while_the_directory_is_down_is_refused_after_ten_seconds(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    directory = tmp_path / "partners.json"
    shutil.copy(SAMPLES / "partners.json", directory)
    name = f"referrals-test-{uuid.uuid4()}"
    async with build_worker(
        dev_env.client, settings, executor, task_queue=name, directory=DirectoryFile(directory)
    ):
        await asyncio.to_thread(directory.write_text, "{ half a file")
        rfi = fresh_rfi()
        handle = await start_referral(dev_env.client, name, rfi)
        started = time.monotonic()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("interested", {}, result_type=StatusView)
        waited = time.monotonic() - started
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "ActionRejected"
        assert "still starting" in cause.message
        print(f"update while starting: refused after {waited:.1f} s")
        assert waited < 20  # promised 10 s; 38 s before
        await handle.terminate("test finished")


async def test_ids_that_the_old_scheme_made_collide_are_two_referrals(
    dev_env: WorkflowEnvironment, queue: str, mailer: BrokenThenFixedMailer
) -> None:
    mailer.fix()
    client = dev_env.client
    suffix = uuid.uuid4().hex[:8]
    # (c1-acme, consulting) and (c1, acme-consulting) were both referral-c1-acme-consulting.
    first = fresh_rfi(id=f"c{suffix}-acme")
    second = fresh_rfi(id=f"c{suffix}")
    one = await referrals.submit(client, first, ["consulting"], task_queue=queue)
    two = await referrals.submit(client, second, [PARTNER], task_queue=queue)
    assert one.started
    assert two.started
    assert one.started != two.started

    view = await referrals.act(client, second.id, PARTNER, "interested", {})
    assert (view.rfi_id, view.partner_id) == (second.id, PARTNER)
    # No partner "consulting" exists: its referral failed, and says so, never showing the
    # other RFI's customer.
    with pytest.raises(referrals.ReferralError, match="unknown partner 'consulting'"):
        await referrals.status(client, first.id, "consulting")


@workflow.defn(name="ReferralWorkflow", sandboxed=False)
class EarlierReferral:
    """A run started before ids were injective, as the commands meet it: its old id, its
    search attributes, its `status` query and an update."""

    @workflow.init
    def __init__(self, view: StatusView) -> None:
        self._view = view

    @workflow.run
    async def run(self, view: StatusView) -> StatusView:
        await workflow.wait_condition(lambda: self._view.status is not Status.NEW)
        return self._view

    @workflow.query(name="status")
    def status(self) -> StatusView:
        return self._view

    @workflow.update(name="interested")
    def interested(self, payload: dict[str, Any]) -> StatusView:
        self._view = self._view.model_copy(update={"status": Status.EVALUATING})
        return self._view


async def test_runs_under_the_earlier_id_are_found_for_their_own_pair_only(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    suffix = uuid.uuid4().hex[:8]
    rfi = fresh_rfi(id=f"c{suffix}")
    referral = Referral(rfi, PARTNER, legacy_referral_workflow_id(rfi.id, PARTNER))
    queue = f"earlier-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[EarlierReferral]):
        await client.start_workflow(
            EarlierReferral.run,
            referral.view(),
            id=referral.workflow_id,
            task_queue=queue,
            search_attributes=start_attributes(referral),
        )
        view = await referrals.status(client, rfi.id, PARTNER)
        assert (view.rfi_id, view.partner_id, view.status) == (rfi.id, PARTNER, Status.NEW)
        acted = await referrals.act(client, rfi.id, PARTNER, "interested", {})
        assert acted.status is Status.EVALUATING
        # The other pair the old id stood for: never this referral's view.
        with pytest.raises(referrals.ReferralError, match=f"no referral referral:c{suffix}-acme"):
            await referrals.status(client, f"c{suffix}-acme", "consulting")
        with pytest.raises(referrals.ReferralError, match="no referral"):
            await referrals.act(client, f"c{suffix}-acme", "consulting", "interested", {})
