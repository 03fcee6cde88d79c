"""A referral terminated by a flood is taken back: `referrals list --stuck` names it and
`referrals recover` resets it to its last workflow task before the flood, on the dev
server; and where that point falls, on histories made here."""

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionSignaledEventAttributes
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from starter.recovery import CannotRecover, recover, reset_point, stuck_referrals
from starter.settings import Settings
from tests.factories import ACCEPT, fresh_rfi
from tests.servers import run_referrals, start_referral, worker_environment
from worker import build_worker
from workflows.models import Rfi, Status

FLOOD_SIGNAL_BYTES = 60_000  # under the contract's 64 KB: each one is read, and refused
# A `won` while Evaluating, with a field no action takes: refused twice over.
FLOOD_SIGNAL = {"final_deal_value": "1", "note": "x" * FLOOD_SIGNAL_BYTES}


async def evaluating(
    client: Client, queue: str, rfi: Rfi
) -> tuple[WorkflowHandle[Any, Any], dict[str, Any]]:
    """A referral the partner is interested in, and its view once its emails went out."""
    handle = await start_referral(client, queue, rfi)
    await handle.execute_update("interested", {})
    return handle, await settled(handle)


async def settled(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The referral's view once its emails went out (their activities' results taken)."""
    for _ in range(100):
        view: dict[str, Any] = await handle.query("status")
        if all(email["outcome"] != "pending" for email in view["emails"]):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError("emails still pending")


def event(event_id: int, kind: EventType.ValueType, payload_bytes: int = 0) -> HistoryEvent:
    made = HistoryEvent(event_id=event_id, event_type=kind, event_time=Timestamp(seconds=1))
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        made.workflow_execution_signaled_event_attributes.CopyFrom(
            WorkflowExecutionSignaledEventAttributes(
                signal_name="interested",
                input=Payloads(payloads=[Payload(data=b"x" * payload_bytes)]),
            )
        )
    return made


COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
STARTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
ACTIVITY_DONE = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED


def test_the_point_is_the_last_task_within_one_runs_bounds_that_took_no_action() -> None:
    """The first task (the start), a task after a signal, one after an activity, a flood
    of signals and a task that took them, then one after another activity: within 2 KB,
    the third task; without a bound, the last; with at most 14 events, the third again."""
    history = [
        event(1, STARTED),
        event(2, COMPLETED),
        event(3, SIGNALED, 100),
        event(4, COMPLETED),
        event(5, ACTIVITY_DONE),
        event(6, COMPLETED),
        *(event(7 + i, SIGNALED, 600) for i in range(10)),
        event(17, COMPLETED),
        event(18, SIGNALED, 600),
        event(19, COMPLETED),
        event(20, ACTIVITY_DONE),
        event(21, COMPLETED),
    ]
    point = reset_point(history, max_bytes=2_000)
    assert (point.event_id, point.events, point.dropped_signals) == (6, 21, 11)
    assert 100 < point.kept_bytes <= 2_000
    assert not point.retakes_actions
    everything = reset_point(history, max_bytes=100_000)
    assert (everything.event_id, everything.dropped_signals) == (21, 0)
    assert reset_point(history, max_bytes=100_000, max_events=14).event_id == 6


def test_a_task_that_accepted_an_update_is_taken_again_only_when_nothing_else_is() -> None:
    history = [
        event(1, STARTED),
        event(2, COMPLETED),
        event(3, ACTIVITY_DONE),
        event(4, COMPLETED),
        event(5, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
        event(6, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),
    ]
    point = reset_point(history)
    assert (point.event_id, point.retakes_actions) == (4, True)


def test_a_run_that_never_completed_a_task_cannot_be_taken_back() -> None:
    with pytest.raises(CannotRecover, match="never completed a workflow task"):
        reset_point([event(1, STARTED), event(2, SIGNALED, 10)])


async def test_a_referral_terminated_by_a_flood_is_listed_and_recovered(
    dev_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    """Evaluating, then 80 signals of 60 KB from 8 senders while its worker is away (4.8 MB,
    past what one run holds), then terminated as the server does a history past its limit.
    `list --stuck` names it; `recover` takes it back to the task that took `interested`,
    the flood's signals dropped: Evaluating with its decide deadline, and `accept` works."""
    client = dev_env.client
    queue = f"referrals-test-{uuid.uuid4()}"
    rfi = fresh_rfi()
    async with build_worker(client, settings, executor, task_queue=queue):
        handle, before = await evaluating(client, queue, rfi)

    async def sender() -> None:
        for _ in range(10):
            await handle.signal("won", FLOOD_SIGNAL)

    await asyncio.gather(*(sender() for _ in range(8)))
    await handle.terminate(reason="history size exceeds limit")
    environment = worker_environment(
        dev_env, tmp_path, REFERRALS_TASK_QUEUE=queue, REFERRALS_DATABASE_URL=settings.database_url
    )
    listed = await asyncio.to_thread(
        run_referrals, environment, "list", "--stuck", "--rfi", rfi.id, "--json"
    )
    assert listed.returncode == 0, listed.stderr
    [stuck] = json.loads(listed.stdout)
    assert (stuck["workflow_id"], stuck["reason"]) == (handle.id, "history size exceeds limit")
    async with build_worker(client, settings, executor, task_queue=queue):
        recovered = await asyncio.to_thread(
            run_referrals, environment, "recover", rfi.id, "acme-consulting"
        )
        assert recovered.returncode == 0, recovered.stderr
        assert "80 signal(s) after it dropped" in recovered.stdout
        assert recovered.stdout.strip().endswith("now Evaluating")
        latest = client.get_workflow_handle(handle.id)
        assert (await latest.describe()).status is WorkflowExecutionStatus.RUNNING
        view = await latest.query("status")
        assert view["deadline"] == before["deadline"]  # the same decide deadline goes on
        assert view["rejected_actions"] == []  # no trace of the flood
        accepted = await latest.execute_update("accept", ACCEPT)
        assert accepted["status"] == Status.NEGOTIATING
        again = await asyncio.to_thread(
            run_referrals, environment, "list", "--stuck", "--rfi", rfi.id, "--json"
        )
        assert json.loads(again.stdout) == []  # its latest run goes on
        await latest.terminate("test finished")
    refused = await asyncio.to_thread(run_referrals, environment, "recover", rfi.id, "globex")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1


async def test_a_parallel_flood_gets_a_referral_terminated_and_recover_takes_it_back(
    dev_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> None:
    """8 senders of 60 KB signals, as fast as they can, with the worker running: the server
    terminates the referral (history size past its limit) within seconds, in a run that
    the flood outran from its start. `recover` takes back the run before it: Evaluating,
    its decide deadline as it was, and `accept` works."""
    client = dev_env.client
    queue = f"referrals-test-{uuid.uuid4()}"
    rfi = fresh_rfi()
    async with build_worker(client, settings, executor, task_queue=queue):
        handle, before = await evaluating(client, queue, rfi)
        give_up_at = asyncio.get_running_loop().time() + 90

        async def sender() -> None:
            while asyncio.get_running_loop().time() < give_up_at:
                try:
                    await handle.signal("won", FLOOD_SIGNAL)
                except RPCError:
                    return  # terminated: the server refuses signals to it

        await asyncio.gather(*(sender() for _ in range(8)))
        [stuck] = await stuck_referrals(client, rfi.id)
        assert stuck.reason == "Workflow history size exceeds limit."
        done = await recover(client, rfi.id, "acme-consulting")
        latest = client.get_workflow_handle(handle.id)
        view = await latest.query("status")
        assert view["status"] == Status.EVALUATING
        assert view["deadline"] == before["deadline"]
        assert done.point.dropped_signals > 0
        assert (await latest.execute_update("accept", ACCEPT))["status"] == Status.NEGOTIATING
        assert await stuck_referrals(client, rfi.id) == []
        await latest.terminate("test finished")
