"""The archive written by real workflows (time-skipping server), on SQLite and PostgreSQL."""

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer

import archive.store
from activities.archive import ALARM_AFTER_ATTEMPTS, ArchiveActivities
from archive.database import create_archive_engine, upgrade
from archive.schema import ReferralRow, TransitionRow
from archive.store import ArchiveStore
from starter.settings import Settings
from tests.factories import make_rfi
from tests.servers import running_worker
from worker import SANDBOX
from workflows.lifecycle import Referral
from workflows.models import PartnerContact, ReferralInput, Rfi, Status, StatusView
from workflows.referral import ReferralWorkflow

Handle = WorkflowHandle[ReferralWorkflow, StatusView]
NOW = datetime(2026, 11, 2, 10, tzinfo=UTC)
CONTACT = PartnerContact(
    partner_id="acme-consulting",
    partner_name="Acme Consulting",
    contact_name="A",
    contact_email="a@acme.example",
    region="emea",
)


@pytest.fixture
def archive_settings(settings: Settings, database_url: str) -> Settings:
    return settings.model_copy(update={"database_url": database_url})


@pytest.fixture
def engine(archive_settings: Settings) -> Iterator[Engine]:
    engine = create_archive_engine(archive_settings.database_url)
    yield engine
    engine.dispose()


async def start(
    env: WorkflowEnvironment, queue: str, partner: str = "acme-consulting", **changes: object
) -> tuple[Rfi, Handle]:
    rfi = make_rfi(received_at=(await env.get_current_time()).isoformat(), **changes)
    referral = ReferralInput(rfi=rfi, partner_id=partner)
    handle = await env.client.start_workflow(
        ReferralWorkflow.run, referral, id=referral.workflow_id, task_queue=queue
    )
    return rfi, handle


def rows(engine: Engine, workflow_id: str) -> tuple[ReferralRow | None, list[TransitionRow]]:
    with Session(engine) as session:
        referral = session.get(ReferralRow, workflow_id)
        transitions = list(
            session.scalars(
                select(TransitionRow)
                .where(TransitionRow.workflow_id == workflow_id)
                .order_by(TransitionRow.seq)
            )
        )
        session.expunge_all()
    return referral, transitions


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


async def archive_attempts(env: WorkflowEnvironment, workflow_id: str) -> int:
    """The attempt number of a pending activity."""
    return max((p.attempt for p in await pending_activities(env, workflow_id)), default=0)


def counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (
            session.scalar(select(func.count()).select_from(ReferralRow)) or 0,
            session.scalar(select(func.count()).select_from(TransitionRow)) or 0,
        )


async def drive(handle: Handle, env: WorkflowEnvironment, path: str) -> None:
    close = str((await env.get_current_time()).date() + timedelta(days=30))
    accept = {"estimated_deal_value": "125000.10", "currency": "EUR", "estimated_close_date": close}
    steps: dict[str, list[tuple[str, object]]] = {
        "Won": [("interested", {}), ("accept", accept), ("won", {"final_deal_value": 130000.55})],
        "Lost": [("interested", {}), ("accept", accept), ("lost", {"reason": "Budget cut"})],
        "Skipped": [("no_thanks", {"reason": "Fully booked"})],
        "Missed": [],
        "Declined": [("interested", {}), ("decline", {"reason": "Out of scope"})],
        "Expired": [("interested", {})],
    }
    for action, payload in steps[path]:
        await handle.signal(action, payload)


@pytest.mark.parametrize("path", ["Won", "Lost", "Skipped", "Missed", "Declined", "Expired"])
async def test_every_terminal_path_is_archived_with_its_timeline(
    time_skipping_env: WorkflowEnvironment,
    archive_settings: Settings,
    executor: ThreadPoolExecutor,
    engine: Engine,
    path: str,
) -> None:
    env = time_skipping_env
    async with running_worker(env.client, archive_settings, executor) as worker:
        rfi, handle = await start(env, worker.task_queue)
        await drive(handle, env, path)
        final = await handle.result()
    assert final.status == path
    referral, transitions = rows(engine, handle.id)
    assert referral is not None
    assert referral.status == path
    assert referral.rfi_id == rfi.id
    assert referral.partner_id == "acme-consulting"
    assert referral.region == "emea"
    assert referral.received_at == rfi.received_at
    assert referral.first_response_at == final.first_response_at
    assert referral.closed_at == final.transitions[-1].effective_at
    assert referral.updated_at == final.transitions[-1].effective_at
    assert [
        (
            t.seq,
            t.from_status,
            t.to_status,
            t.cause_kind,
            t.cause_name,
            t.reason,
            t.effective_at,
            t.processed_at,
        )
        for t in transitions
    ] == [
        (t.seq, t.from_, t.to, t.cause.kind, t.cause.name, t.reason, t.effective_at, t.processed_at)
        for t in final.transitions
    ]
    interested = path not in ("Skipped", "Missed")
    assert (referral.customer_email is not None) is interested
    assert (referral.customer_phone == "+49 30 1234567") is interested
    if path in ("Won", "Lost"):
        assert referral.estimated_deal_value == Decimal("125000.10")
        assert referral.currency == "EUR"
        assert referral.estimated_close_date is not None
    assert referral.final_deal_value == (Decimal("130000.55") if path == "Won" else None)


async def test_started_referral_is_archived_as_new_before_any_answer(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    env = time_skipping_env
    engine = create_archive_engine(settings.database_url)
    async with running_worker(env.client, settings, executor) as worker:
        _, handle = await start(env, worker.task_queue)
        await env.sleep(timedelta(hours=1))
        referral, transitions = rows(engine, handle.id)
        assert referral is not None
        assert referral.status == Status.NEW
        assert referral.customer_name is None
        assert transitions == []
        await handle.signal("no_thanks")
        await handle.result()
    assert rows(engine, handle.id)[0].status == Status.SKIPPED  # type: ignore[union-attr]


async def test_retries_and_replays_write_nothing_twice(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    env = time_skipping_env
    engine = create_archive_engine(settings.database_url)
    async with running_worker(env.client, settings, executor) as worker:
        _, handle = await start(env, worker.task_queue)
        await env.sleep(timedelta(hours=1))
        await handle.signal("interested")
        await env.sleep(timedelta(hours=1))
        await handle.signal("decline")
        final = await handle.result()
    before = counts(engine)
    assert before == (1, 2)
    history = await handle.fetch_history()
    writes = [
        e
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "record_referral"
    ]
    assert len(writes) == 3  # New, then one per transition: each written exactly once

    await Replayer(
        workflows=[ReferralWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX,
    ).replay_workflow(await handle.fetch_history())
    # A retried activity sends the same or an older view again.
    activities = ArchiveActivities(ArchiveStore(engine))
    retried = ActivityEnvironment()
    retried.info = dataclasses.replace(retried.info, workflow_id=handle.id, attempt=2)
    assert retried.run(activities.record_referral, final) == 0
    older = final.model_copy(
        update={"status": Status.EVALUATING, "transitions": final.transitions[:1]}
    )
    assert retried.run(activities.record_referral, older) == 0
    assert counts(engine) == before
    assert rows(engine, handle.id)[0].status == Status.DECLINED  # type: ignore[union-attr]


async def test_a_database_outage_loses_nothing(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = time_skipping_env
    folder = tmp_path / "down"
    folder.write_text("not a folder: the database cannot be opened")
    down = settings.model_copy(update={"database_url": f"sqlite:///{folder}/referrals.db"})
    async with running_worker(env.client, down, executor) as worker:
        _, handle = await start(env, worker.task_queue)
        await handle.signal("interested")
        await handle.signal("decline")
        for _ in range(200):  # until the fourth attempt failed: the first to raise the alarm
            if await archive_attempts(env, handle.id) > ALARM_AFTER_ATTEMPTS + 1:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the archive activity was not retried while the database was down")
        # The operator sees why in the UI, and the worker's log raises the alarm.
        [write] = [
            p
            for p in await pending_activities(env, handle.id)
            if p.activity_type.name == "record_referral"
        ]
        unavailable = f"archive database sqlite:///{folder}/referrals.db unavailable: "
        assert write.last_failure.message.startswith(unavailable)
        alarms = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(
            alarm.startswith(unavailable) and "cannot close until the archive is back" in alarm
            for alarm in alarms
        )
        view = await handle.query(ReferralWorkflow.status)
        assert view.status is Status.DECLINED  # the lifecycle went on without the archive
        # Lead and details went out; the customer's email waits for suggestions from the archive.
        assert [(e.kind, e.outcome) for e in view.emails] == [
            ("lead", "sent"),
            ("details", "sent"),
            ("reroute", "pending"),
        ]

        folder.unlink()  # the database is back
        folder.mkdir()
        final = await handle.result()
    engine = create_archive_engine(down.database_url)
    referral, transitions = rows(engine, handle.id)
    assert referral is not None
    assert referral.status == final.status == Status.DECLINED
    assert [t.to_status for t in transitions] == ["Evaluating", "Declined"]


def test_a_slow_older_write_never_overwrites_a_newer_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_archive_engine(database_url)
    upgrade(engine)
    store = ArchiveStore(engine)
    referral = Referral(make_rfi(received_at="2026-11-02T09:00:00Z"), "acme-consulting")
    referral.start(CONTACT, NOW)
    store.record(referral.view())
    referral.act("interested", None, NOW + timedelta(hours=1))
    older = referral.view()
    referral.act("decline", None, NOW + timedelta(hours=2))
    newer = referral.view()

    inside, release = threading.Event(), threading.Event()
    values = archive.store._referral_values

    def slow_values(workflow_id: str, view: StatusView) -> dict[str, Any]:
        if view.status is Status.EVALUATING:  # the older write pauses inside its transaction
            inside.set()
            release.wait(10)
        return values(workflow_id, view)

    monkeypatch.setattr(archive.store, "_referral_values", slow_values)
    slow = threading.Thread(target=store.record, args=(older,))
    slow.start()
    assert inside.wait(10)
    fast = threading.Thread(target=store.record, args=(newer,))
    fast.start()
    fast.join(0.5)  # SQLite: waits for the older transaction; PostgreSQL: commits first
    release.set()
    slow.join(10)
    fast.join(10)
    row, transitions = rows(engine, referral.referral_id)
    assert row is not None
    assert row.status == Status.DECLINED
    assert [t.to_status for t in transitions] == ["Evaluating", "Declined"]
    engine.dispose()


async def test_postgresql_going_down_and_back_loses_nothing(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """The archive is up, then stops mid-referral, then comes back."""
    import pgserver

    env = time_skipping_env
    folder = tmp_path / "pg"
    server = pgserver.get_server(folder, cleanup_mode="stop")
    url = server.get_uri()
    engine = create_archive_engine(url)
    upgrade(engine)  # as the worker does at start
    try:
        async with running_worker(
            env.client, settings.model_copy(update={"database_url": url}), executor
        ) as worker:
            _, handle = await start(env, worker.task_queue)
            for _ in range(200):
                if rows(engine, handle.id)[0] is not None:
                    break
                await asyncio.sleep(0.05)
            server.cleanup()  # down
            await handle.signal("interested")
            await handle.signal("decline")
            for _ in range(300):
                if await archive_attempts(env, handle.id) >= 3:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the archive activity was not retried while PostgreSQL was down")
            assert (await handle.query(ReferralWorkflow.status)).status is Status.DECLINED
            server = pgserver.get_server(folder, cleanup_mode="stop")  # back
            final = await handle.result()
        referral, transitions = rows(engine, handle.id)
        assert referral is not None
        assert referral.status == final.status == Status.DECLINED
        assert [t.to_status for t in transitions] == ["Evaluating", "Declined"]
    finally:
        engine.dispose()
        server.cleanup()


def test_a_write_reports_the_transitions_it_added_and_a_repeat_adds_none(
    database_url: str,
) -> None:
    engine = create_archive_engine(database_url)
    upgrade(engine)
    store = ArchiveStore(engine)
    referral = Referral(make_rfi(received_at="2026-11-03T09:00:00Z"), "acme-consulting")
    referral.start(CONTACT, NOW)
    assert store.record(referral.view()) == 0  # New: the row, no transition yet
    referral.act("interested", None, NOW + timedelta(hours=1))
    evaluating = referral.view()
    assert store.record(evaluating) == 1
    assert store.record(evaluating) == 0  # a retried activity writes nothing twice
    referral.act(
        "accept",
        {
            "estimated_deal_value": "5000.50",
            "currency": "EUR",
            "estimated_close_date": "2027-01-15",
        },
        NOW + timedelta(hours=2),
    )
    referral.act("won", {"final_deal_value": "5100"}, NOW + timedelta(hours=3))
    assert store.record(referral.view()) == 2
    assert store.record(evaluating) == 0  # late and older: changes nothing
    row, transitions = rows(engine, referral.referral_id)
    assert row is not None
    assert row.status == Status.WON
    assert row.final_deal_value == Decimal("5100")
    assert [t.seq for t in transitions] == [1, 2, 3]


def test_pages_neither_skip_nor_repeat_while_referrals_arrive(database_url: str) -> None:
    engine = create_archive_engine(database_url)
    upgrade(engine)
    store = ArchiveStore(engine)

    def archived(hours: int) -> str:
        received = NOW + timedelta(hours=hours)
        referral = Referral(make_rfi(received_at=received.isoformat()), "acme-consulting")
        referral.start(CONTACT, received)
        store.record(referral.view())
        return referral.referral_id

    latest, *same_hour, oldest = archived(2), archived(1), archived(1), archived(0)
    expected = [latest, *sorted(same_hour), oldest]  # newest first, ties by workflow id
    first = store.referrals(limit=2)
    archived(3)  # a newer referral arrives between two reads: it belongs on page one
    second = store.referrals(limit=2, after=first[-1].workflow_id)
    last = store.referrals(limit=2, after=second[-1].workflow_id)
    assert [r.workflow_id for r in first + second] == expected
    assert last == []
    with pytest.raises(LookupError, match="no archived referral referral-x-y to page after"):
        store.referrals(after="referral-x-y")


def test_pairs_the_old_ids_confused_are_two_rows_and_each_is_found_by_its_pair(
    database_url: str,
) -> None:
    engine = create_archive_engine(database_url)
    upgrade(engine)
    store = ArchiveStore(engine)
    # A run started under the earlier scheme, archived as its workflow id says ...
    legacy = Referral(make_rfi(id="c1"), "acme-consulting", "referral-c1-acme-consulting")
    legacy.start(CONTACT, NOW)
    store.record(legacy.view(), legacy.referral_id)
    # ... and the pair whose old id was the same, started under the new one.
    other = Referral(make_rfi(id="c1-acme"), "consulting")
    other.start(CONTACT, NOW)
    store.record(other.view(), other.referral_id)

    found = store.find("c1", "acme-consulting")
    assert found is not None
    assert found.workflow_id == "referral-c1-acme-consulting"
    assert (found.rfi_id, found.partner_id) == ("c1", "acme-consulting")
    mine = store.find("c1-acme", "consulting")
    assert mine is not None
    assert mine.workflow_id == "referral:c1-acme:consulting"
    assert counts(engine) == (2, 0)
    legacy.act("no_thanks", None, NOW + timedelta(hours=1))
    store.record(legacy.view(), legacy.referral_id)
    assert counts(engine) == (2, 1)  # the same row, not a second one under the new id
