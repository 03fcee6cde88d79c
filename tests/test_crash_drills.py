"""Crash drills on real dev servers: the worker killed mid-flight, the server restarted."""

import asyncio
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine, upgrade
from archive.schema import ReferralRow, TransitionRow
from archive.webhooks import WebhookStore
from starter import referrals
from starter.client import connect
from starter.dev import dev_server_command, free_port
from starter.processes import running
from starter.settings import Settings
from tests.factories import ROOT, fresh_rfi
from tests.receivers import receiving
from tests.servers import WORKER_COMMAND, worker_environment
from worker import build_worker
from workflows.models import Status
from workflows.referral import ReferralWorkflow

DRILL_SIZE = 200  # referrals
CLOSE_DATE = str((datetime.now(UTC) + timedelta(days=90)).date())
# Group i % 5 of the referrals: the actions it gets, the status and emails it ends with.
GROUPS = [
    ([], Status.NEW, ["lead"]),
    (["interested"], Status.EVALUATING, ["lead", "details"]),
    (["interested", "accept"], Status.NEGOTIATING, ["lead", "details"]),
    (["interested", "accept", "won"], Status.WON, ["lead", "details"]),
    (["no_thanks"], Status.SKIPPED, ["lead", "reroute"]),
]
PAYLOADS = {
    "accept": {
        "estimated_deal_value": "1000",
        "currency": "EUR",
        "estimated_close_date": CLOSE_DATE,
    }
}


@pytest.fixture
def drill(dev_env: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    return worker_environment(dev_env, tmp_path, REFERRALS_TASK_QUEUE=f"drill-{uuid.uuid4()}")


async def test_a_worker_killed_mid_flight_loses_nothing(
    dev_env: WorkflowEnvironment, drill: dict[str, str]
) -> None:
    client = dev_env.client
    queue = drill["REFERRALS_TASK_QUEUE"]
    rfis = [fresh_rfi(id=f"drill-{uuid.uuid4().hex[:10]}") for _ in range(DRILL_SIZE)]
    outbox = Path(drill["REFERRALS_OUTBOX_DIR"])
    # grace=0: should the drill fail before its kill, the worker is killed at once all the same.
    with running(WORKER_COMMAND, env=drill, cwd=ROOT, quiet=True, grace=0) as first:
        await asyncio.gather(
            *(referrals.submit(client, rfi, ["globex"], task_queue=queue) for rfi in rfis)
        )
        handles = [client.get_workflow_handle(f"referral:{rfi.id}:globex") for rfi in rfis]

        async def act(index: int, steps: slice) -> None:
            for action in GROUPS[index % len(GROUPS)][0][steps]:
                await handles[index].signal(action, PAYLOADS.get(action, {}))

        await asyncio.gather(*(act(i, slice(0, 1)) for i in range(DRILL_SIZE)))
        for _ in range(300):  # kill it once it is well into the work, not done with it
            if len(eml_names(outbox)) >= 50:
                break
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        sent_before_the_kill = len(eml_names(outbox))
        await asyncio.gather(*(act(i, slice(1, None)) for i in range(DRILL_SIZE)))
    with running(WORKER_COMMAND, env=drill, cwd=ROOT, quiet=True):
        expected_rows = {
            (f"referral:{rfi.id}:globex", GROUPS[i % len(GROUPS)][1].value)
            for i, rfi in enumerate(rfis)
        }
        expected_transitions = sum(len(GROUPS[i % len(GROUPS)][0]) for i in range(DRILL_SIZE))
        engine = create_archive_engine(drill["REFERRALS_DATABASE_URL"])
        expected_emails = sum(len(GROUPS[i % len(GROUPS)][2]) for i in range(DRILL_SIZE))
        assert 50 <= sent_before_the_kill < expected_emails
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            archived = archive_state(engine)
            if archived[0] == expected_rows and len(eml_names(outbox)) == expected_emails:
                break
            await asyncio.sleep(1)
        rows, transitions = archive_state(engine)
        assert rows == expected_rows
        assert transitions == expected_transitions  # none missing, none twice
        emails = eml_names(outbox)
        assert len(emails) == expected_emails
        for i, rfi in enumerate(rfis):
            kinds = GROUPS[i % len(GROUPS)][2]
            for n, kind in enumerate(kinds, start=1):
                assert f"referral:{rfi.id}:globex.{n}-{kind}.eml" in emails
        view = await handles[3].query(ReferralWorkflow.status)  # a Won one, closed
        assert [e.outcome for e in view.emails] == ["sent", "sent"]
        for handle in handles:  # leave the shared dev server tidy
            if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("drill finished")


def eml_names(outbox: Path) -> list[str]:
    return sorted(p.name for p in outbox.glob("*.eml"))


def archive_state(engine: Engine) -> tuple[set[tuple[str, str]], int]:
    with Session(engine) as session:
        rows = {(r.workflow_id, r.status) for r in session.scalars(select(ReferralRow))}
        transitions = session.scalar(select(func.count()).select_from(TransitionRow)) or 0
    return rows, transitions


async def test_deadlines_fire_late_after_the_server_restarts_with_their_own_effective_time(
    tmp_path: Path, settings: Settings, executor: ThreadPoolExecutor
) -> None:
    port = free_port()
    database = tmp_path / "temporal.db"
    command = [*dev_server_command(database, port, free_port()), "--headless"]
    local = settings.model_copy(update={"temporal_address": f"127.0.0.1:{port}"})
    deadlines = {"respond_within": "PT8S", "decide_within": "PT8S"}
    with running(command, quiet=True) as server:
        client = await connect(local, retry_for=30, server=server)
        async with build_worker(client, local, executor, task_queue="drill"):
            silent = fresh_rfi(deadlines=deadlines)
            deciding = fresh_rfi(deadlines=deadlines)
            await referrals.submit(client, silent, ["globex"], task_queue="drill")
            await referrals.submit(client, deciding, ["globex"], task_queue="drill")
            entered = (
                (await referrals.act(client, deciding.id, "globex", "interested", {}))
                .transitions[0]
                .effective_at
            )
    # The server went down (SIGTERM) before either deadline; both pass while it is down.
    await asyncio.sleep(10)
    with running(command, quiet=True) as server:
        client = await connect(local, retry_for=30, server=server)
        async with build_worker(client, local, executor, task_queue="drill"):
            missed = await client.get_workflow_handle_for(
                ReferralWorkflow.run, f"referral:{silent.id}:globex"
            ).result()
            expired = await client.get_workflow_handle_for(
                ReferralWorkflow.run, f"referral:{deciding.id}:globex"
            ).result()
    assert missed.status is Status.MISSED
    assert missed.transitions[-1].effective_at == silent.received_at + timedelta(seconds=8)
    assert missed.transitions[-1].processed_at > missed.transitions[-1].effective_at + (
        timedelta(seconds=1)
    )
    assert expired.status is Status.EXPIRED
    assert expired.transitions[-1].effective_at == entered + timedelta(seconds=8)
    assert expired.transitions[-1].processed_at > expired.transitions[-1].effective_at


async def test_a_worker_killed_while_sending_events_delivers_all_of_them_in_order_after_restart(
    dev_env: WorkflowEnvironment, drill: dict[str, str]
) -> None:
    """100 referrals produce events for two endpoints; the worker is SIGKILLed once
    they have heard some, then restarted: both hear every event, each referral's in order."""
    client = dev_env.client
    queue = drill["REFERRALS_TASK_QUEUE"]
    engine = create_archive_engine(drill["REFERRALS_DATABASE_URL"])
    upgrade(engine)
    size = 100
    expected = size + sum(len(GROUPS[i % len(GROUPS)][0]) for i in range(size))
    with receiving(delay_s=0.01) as first_receiver, receiving() as second_receiver:
        receivers = [first_receiver, second_receiver]
        secrets = [
            WebhookStore(engine).add(r.url, [], "drill", datetime.now(UTC))[1] for r in receivers
        ]
        rfis = [fresh_rfi(id=f"hooks-{uuid.uuid4().hex[:10]}") for _ in range(size)]
        with running(WORKER_COMMAND, env=drill, cwd=ROOT, quiet=True, grace=0) as worker:
            await asyncio.gather(
                *(referrals.submit(client, rfi, ["globex"], task_queue=queue) for rfi in rfis)
            )
            handles = [client.get_workflow_handle(f"referral:{rfi.id}:globex") for rfi in rfis]
            for step in range(3):
                await asyncio.gather(
                    *(
                        handles[i].signal(action, PAYLOADS.get(action, {}))
                        for i in range(size)
                        for action in GROUPS[i % len(GROUPS)][0][step : step + 1]
                    )
                )
            for _ in range(300):  # killed once both endpoints heard some, not all
                if min(len(r.accepted(s)) for r, s in zip(receivers, secrets, strict=True)) >= 30:
                    break
                await asyncio.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        heard_before = [len(r.accepted(s)) for r, s in zip(receivers, secrets, strict=True)]
        with running(WORKER_COMMAND, env=drill, cwd=ROOT, quiet=True):
            heard = [
                await asyncio.to_thread(r.wait_for, expected, s, 180)
                for r, s in zip(receivers, secrets, strict=True)
            ]
            for handle in handles:  # leave the shared dev server tidy
                if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("drill finished")
    assert min(heard_before) >= 30
    assert max(heard_before) < expected
    for receiver, events in zip(receivers, heard, strict=True):
        per_referral: dict[str, list[int]] = {}
        for event in events:  # each event as first accepted, in the order it arrived
            per_referral.setdefault(event["data"]["workflow_id"], []).append(event["data"]["seq"])
        assert len(per_referral) == size
        for i, rfi in enumerate(rfis):
            actions = GROUPS[i % len(GROUPS)][0]
            assert per_referral[f"referral:{rfi.id}:globex"] == list(range(len(actions) + 1))
        duplicates = len(receiver.received) - len(events)
        print(f"{receiver.url}: {len(events)} events, {duplicates} sent again after the kill")
