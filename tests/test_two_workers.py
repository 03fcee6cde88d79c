"""Two worker processes on one task queue, as the sizing guide scales out (issue 19): both
run referrals, and one stopped mid-run (SIGTERM) loses none and sends no email twice."""

import asyncio
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine
from archive.schema import TransitionRow
from starter import referrals
from starter.processes import running
from tests.factories import ROOT, fresh_rfi
from tests.servers import WORKER_COMMAND, worker_environment
from tests.test_crash_drills import GROUPS, PAYLOADS, archive_state, eml_names

SIZE = 80  # referrals, GROUPS[i % 5] of actions each
# The history events naming the worker that took a task: a workflow task (with the local
# activities it ran) or a regular activity.
STARTED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: "workflow_task_started_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: "activity_task_started_event_attributes",
}
Start = tuple[HistoryEvent, str]  # a task start in a history, and the identity that took it


@pytest.fixture
def pair(dev_env: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    """One environment for both workers: their task queue, outbox and SQLite archive."""
    return worker_environment(dev_env, tmp_path, REFERRALS_TASK_QUEUE=f"pair-{uuid.uuid4()}")


async def test_two_workers_share_a_queue_and_one_stopped_mid_run_loses_nothing(
    dev_env: WorkflowEnvironment, pair: dict[str, str]
) -> None:
    client = dev_env.client
    queue = pair["REFERRALS_TASK_QUEUE"]
    outbox = Path(pair["REFERRALS_OUTBOX_DIR"])
    rfis = [fresh_rfi(id=f"pair-{uuid.uuid4().hex[:10]}") for _ in range(SIZE)]
    ids = [f"referral:{rfi.id}:globex" for rfi in rfis]
    handles = [client.get_workflow_handle(workflow_id) for workflow_id in ids]
    expected_emails = Counter(
        (ids[i], kind) for i in range(SIZE) for kind in GROUPS[i % len(GROUPS)][2]
    )

    async def act(index: int, steps: slice) -> None:
        for action in GROUPS[index % len(GROUPS)][0][steps]:
            await handles[index].signal(action, PAYLOADS.get(action, {}))

    with (
        running(WORKER_COMMAND, env=pair, cwd=ROOT, quiet=True) as stopped,
        running(WORKER_COMMAND, env=pair, cwd=ROOT, quiet=True) as survivor,
    ):
        host = socket.gethostname()  # the SDK's default identity is pid@host, one per process
        gone, staying = f"{stopped.pid}@{host}", f"{survivor.pid}@{host}"
        await both_polling(client, queue, {gone, staying})
        await asyncio.gather(
            *(referrals.submit(client, rfi, ["globex"], task_queue=queue) for rfi in rfis)
        )
        await asyncio.gather(*(act(i, slice(0, 1)) for i in range(SIZE)))
        # Stopped once the first actions' emails are going out, not all of them yet.
        sent_at_stop = await emails_sent(outbox, at_least=SIZE + SIZE // 4)
        stopped.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        assert stopped.wait(timeout=30) == 0  # it finished its in-flight work and exited
        stopped_in = time.monotonic() - stopping
        await asyncio.gather(*(act(i, slice(1, None)) for i in range(SIZE)))

        engine = create_archive_engine(pair["REFERRALS_DATABASE_URL"])
        expected_rows = {(ids[i], GROUPS[i % len(GROUPS)][1].value) for i in range(SIZE)}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if archive_state(engine)[0] == expected_rows and (
                len(eml_names(outbox)) >= expected_emails.total()
            ):
                break
            await asyncio.sleep(0.5)
        assert survivor.poll() is None
        views = await asyncio.gather(*(referrals.status(client, rfi.id, "globex") for rfi in rfis))
        histories = await asyncio.gather(*(handle.fetch_history() for handle in handles))
        for handle in handles:  # leave the shared dev server tidy
            if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("two-worker drill finished")

    assert sent_at_stop < expected_emails.total()
    # Lose nothing: every referral at its status, with all its transitions, in both places.
    assert archive_state(engine)[0] == expected_rows
    archived = archived_transitions(engine)
    for i, view in enumerate(views):
        actions, status, kinds = GROUPS[i % len(GROUPS)]
        assert view.status is status, ids[i]
        assert len(view.transitions) == len(actions), ids[i]
        assert archived.get(ids[i], []) == [t.seq for t in view.transitions], ids[i]
        assert sorted(e.kind.value for e in view.emails) == sorted(kinds), ids[i]
        assert {e.outcome.value for e in view.emails} == {"sent"}, ids[i]
    # No email twice: one .eml per (referral, kind), each sent by a single attempt.
    assert Counter(email_key(name) for name in eml_names(outbox)) == expected_emails
    assert email_attempts(histories) == {1}

    # Both ran referrals: workflow tasks and activities of each are in the histories.
    shares = {kind: Counter[str]() for kind in STARTED}
    for history in histories:
        for event, identity in started(history.events):
            shares[event.event_type][identity] += 1
    assert {kind: set(share) for kind, share in shares.items()} == {
        kind: {gone, staying} for kind in STARTED
    }
    # The survivor took every action sent after the stop, in the referrals the stopped worker
    # had been running too (their next workflow task replays the history on the survivor).
    handed_over = 0
    for i, history in enumerate(histories):
        if len(GROUPS[i % len(GROUPS)][0]) < 2:
            continue
        before, after = split_at_second_signal(history.events)
        assert after, ids[i]
        assert {identity for _, identity in after} == {staying}, ids[i]
        handed_over += gone in {identity for _, identity in before}
    assert handed_over > 0
    workflow_tasks, activities = (shares[kind] for kind in STARTED)
    print(
        f"stopped worker: {workflow_tasks[gone]} workflow tasks, {activities[gone]} activities; "
        f"survivor: {workflow_tasks[staying]} workflow tasks, {activities[staying]} activities; "
        f"stopped with {sent_at_stop} of {expected_emails.total()} emails sent, in "
        f"{stopped_in:.1f} s; {handed_over} of its referrals finished by the survivor"
    )


async def both_polling(client: Client, queue: str, identities: set[str]) -> None:
    """Wait until each identity has been seen polling ``queue``, for either kind of task.
    The server describes one partition of a task queue (of the dev server's four): a poller
    waiting on another shows only when its poll moves, so every sighting counts."""
    kinds = [TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]
    seen: set[str] = set()
    for _ in range(600):
        for kind in kinds:
            seen |= await pollers(client, queue, kind)
        if identities <= seen:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{identities - seen} not seen polling {queue} in 60 s (seen: {seen})")


async def pollers(client: Client, queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    """The identities polling ``queue`` for tasks of ``kind`` (the UI's Workers tab)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
    )
    response = await client.workflow_service.describe_task_queue(request)
    return {poller.identity for poller in response.pollers}


async def emails_sent(outbox: Path, at_least: int) -> int:
    """How many emails the outbox has, once it has ``at_least`` (the test fails after 30 s)."""
    for _ in range(600):
        count = len(eml_names(outbox))
        if count >= at_least:
            return count
        await asyncio.sleep(0.05)
    pytest.fail(f"only {len(eml_names(outbox))} emails in 30 s, not {at_least}")


def email_key(name: str) -> tuple[str, str]:
    """(workflow id, kind) of an outbox file named `{workflow id}.{n}-{kind}.eml`."""
    workflow_id, _, email = name.removesuffix(".eml").rpartition(".")
    return workflow_id, email.partition("-")[2]


def archived_transitions(engine: Engine) -> dict[str, list[int]]:
    """Each referral's transition numbers in the archive, in order."""
    seqs: dict[str, list[int]] = {}
    with Session(engine) as session:
        query = select(TransitionRow.workflow_id, TransitionRow.seq).order_by(TransitionRow.seq)
        for workflow_id, seq in session.execute(query):
            seqs.setdefault(workflow_id, []).append(seq)
    return seqs


def started(events: Sequence[HistoryEvent]) -> list[Start]:
    """The workflow task and activity starts among ``events``, each with its worker."""
    return [
        (event, getattr(event, STARTED[event.event_type]).identity)
        for event in events
        if event.event_type in STARTED
    ]


def split_at_second_signal(events: Sequence[HistoryEvent]) -> tuple[list[Start], list[Start]]:
    """The task starts before the referral's second action (the first sent after the stop)
    and after it."""
    signaled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    signals = [n for n, event in enumerate(events) if event.event_type == signaled]
    cut = signals[1]
    return started(events[:cut]), started(events[cut:])


def email_attempts(histories: list[WorkflowHistory]) -> set[int]:
    """The attempts that sent the referrals' emails: a second one is a second copy through
    SendGrid, which the outbox hides (the retry rewrites the same file)."""
    attempts = set()
    for history in histories:
        events = history.events
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        }
        for event, _ in started(events):
            attributes = event.activity_task_started_event_attributes
            if scheduled.get(attributes.scheduled_event_id) == "send_email":
                attempts.add(attributes.attempt)
    return attempts
