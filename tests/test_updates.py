"""Updates, idempotent fan-out and the deadline race, on the local dev server."""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from starter import referrals
from starter.settings import Settings
from tests.factories import fresh_rfi
from worker import build_worker
from workflows.models import Rfi, Status, StatusView
from workflows.referral import ReferralWorkflow


async def submitted(
    client: Client, queue: str, partner: str = "acme-consulting", **changes: Any
) -> Rfi:
    """A fresh RFI, submitted to ``partner`` as `referrals submit` does."""
    rfi = fresh_rfi(**changes)
    await referrals.submit(client, rfi, [partner], task_queue=queue)
    return rfi


async def rejection(client: Client, rfi: Rfi, partner: str, action: str, *args: Any) -> Any:
    handle = client.get_workflow_handle(f"referral:{rfi.id}:{partner}")
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(action, args=list(args), result_type=StatusView)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "ActionRejected"
    return cause


async def test_updates_return_the_new_view_or_a_typed_rejection(
    dev_env: WorkflowEnvironment, queue: str
) -> None:
    client = dev_env.client
    rfi = await submitted(client, queue)

    wrong_state = await rejection(client, rfi, "acme-consulting", "accept", {})
    assert "New" in wrong_state.message
    assert "interested, no_thanks" in wrong_state.message
    assert wrong_state.details == (
        {
            "status": "New",
            "allowed_actions": ["interested", "no_thanks"],
            "reason": "not allowed while New",
        },
    )
    bare = await rejection(client, rfi, "acme-consulting", "interested", "yes please")
    assert "invalid payload" in bare.details[0]["reason"]
    several = await rejection(client, rfi, "acme-consulting", "interested", {}, {})
    assert "one JSON argument" in several.details[0]["reason"]
    unknown = await rejection(client, rfi, "acme-consulting", "escalate", {})
    assert unknown.details[0]["reason"] == "unknown action"

    view = await referrals.act(client, rfi.id, "acme-consulting", "interested", {})
    assert view.status is Status.EVALUATING
    assert view.customer == rfi.customer
    past = await rejection(
        client,
        rfi,
        "acme-consulting",
        "accept",
        {"estimated_deal_value": 10, "currency": "EUR", "estimated_close_date": "2020-01-01"},
    )
    assert "in the past" in past.details[0]["reason"]

    close = str((datetime.now(UTC) + timedelta(days=10)).date())
    negotiating = await referrals.act(
        client,
        rfi.id,
        "acme-consulting",
        "accept",
        {"estimated_deal_value": "12.3400", "currency": "JPY", "estimated_close_date": close},
    )
    assert negotiating.status is Status.NEGOTIATING
    assert negotiating.model_dump(mode="json")["deal"]["estimated_deal_value"] == "12.3400"

    won = await referrals.act(client, rfi.id, "acme-consulting", "won", {})
    assert won.status is Status.WON
    handle = client.get_workflow_handle_for(
        ReferralWorkflow.run, f"referral:{rfi.id}:acme-consulting"
    )
    final = await handle.result()
    assert final.status is Status.WON
    assert final.rejected_actions == []  # refused updates never reach the referral
    events = [e.event_type async for e in handle.fetch_history_events()]
    accepted = events.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert accepted == 3  # interested, accept, won: nothing of the refused ones
    with pytest.raises(referrals.ReferralError, match=r"closed \(Won\)"):
        await referrals.act(client, rfi.id, "acme-consulting", "lost", {})


async def test_fan_out_is_idempotent_also_after_a_referral_closed(
    dev_env: WorkflowEnvironment, queue: str
) -> None:
    client = dev_env.client
    rfi = fresh_rfi()
    # A crash half-way: one partner's referral was started, then the submitter died.
    first = await referrals.submit(client, rfi, ["globex"], task_queue=queue)
    assert first.started == [f"referral:{rfi.id}:globex"]
    await referrals.act(client, rfi.id, "globex", "no_thanks", {})
    await client.get_workflow_handle(f"referral:{rfi.id}:globex").result()

    again = await referrals.submit(
        client, rfi, ["acme-consulting", "globex", "initech", "globex"], task_queue=queue
    )
    assert sorted(again.started) == [
        f"referral:{rfi.id}:acme-consulting",
        f"referral:{rfi.id}:initech",
    ]
    assert again.existing == [f"referral:{rfi.id}:globex"]
    runs = [w async for w in client.list_workflows(f"WorkflowId = 'referral:{rfi.id}:globex'")]
    assert len(runs) == 1
    third = await referrals.submit(
        client, rfi, ["acme-consulting", "globex", "initech"], task_queue=queue
    )
    assert third.started == []


async def test_action_and_deadline_in_the_same_workflow_task_the_action_wins(
    dev_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> None:
    client = dev_env.client
    name = f"referrals-race-{uuid.uuid4()}"
    async with build_worker(client, settings, executor, task_queue=name):
        rfi = await submitted(client, name, deadlines={"respond_within": "PT5S"})
        handle = client.get_workflow_handle_for(
            ReferralWorkflow.run, f"referral:{rfi.id}:acme-consulting"
        )
        while not (await handle.query(ReferralWorkflow.status)).emails:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    # No worker: the deadline's timer fires, then the signals land before the next task.
    due = rfi.received_at + timedelta(seconds=5)
    await asyncio.sleep((due - datetime.now(UTC)).total_seconds() + 1)
    await handle.signal("interested")
    await handle.signal("decline")
    async with build_worker(client, settings, executor, task_queue=name):
        final = await handle.result()
    assert final.status is Status.DECLINED
    assert [t.cause.name for t in final.transitions] == ["interested", "decline"]

    events = [e async for e in handle.fetch_history_events()]
    kinds = [e.event_type for e in events]
    fired = kinds.index(EventType.EVENT_TYPE_TIMER_FIRED)
    signalled = [
        i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    between = kinds[min(fired, *signalled) : max(fired, *signalled)]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED not in between, (
        "the timer and the signals must reach the worker in one workflow task"
    )


async def test_operators_see_status_and_deadline_follow_a_missed_referral(
    dev_env: WorkflowEnvironment, queue: str
) -> None:
    client = dev_env.client
    rfi = await submitted(client, queue, "initech", deadlines={"respond_within": "PT2S"})
    handle = client.get_workflow_handle_for(ReferralWorkflow.run, f"referral:{rfi.id}:initech")
    assert (await handle.result()).status is Status.MISSED
    query = f"RfiId = '{rfi.id}' AND ReferralStatus = 'Missed' AND RespondBy IS NULL"
    for _ in range(100):
        if [w async for w in client.list_workflows(query)]:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"no visible referral for {query}")


async def test_an_oversized_action_is_refused_before_it_reaches_temporal(
    dev_env: WorkflowEnvironment, queue: str
) -> None:
    client = dev_env.client
    rfi = await submitted(client, queue)
    with pytest.raises(referrals.ReferralError, match="at most 65536"):
        await referrals.act(
            client, rfi.id, "acme-consulting", "no_thanks", {"reason": "x" * 3_000_000}
        )
    view = await referrals.act(client, rfi.id, "acme-consulting", "no_thanks", {})
    assert view.status is Status.SKIPPED
