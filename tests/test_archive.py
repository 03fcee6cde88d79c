"""The archive written by real workflows (time-skipping server), on SQLite and PostgreSQL."""

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.orm import Session
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.archive import ALARM_AFTER_ATTEMPTS, ArchiveActivities
from archive.database import create_archive_engine, upgrade
from archive.schema import ReferralRow, TransitionRow
from archive.store import ArchiveStore
from starter.settings import Settings
from tests.factories import ACME_BERLIN, act, make_rfi, received_now
from tests.servers import (
    ReferralHandle,
    failing_archive_write,
    replayer,
    running_worker,
    start_referral,
)
from workflows import archiving
from workflows.lifecycle import Referral
from workflows.metadata import COALESCING_LABEL
from workflows.models import Status
from workflows.referral import ReferralWorkflow

NOW = datetime(2026, 11, 2, 10, tzinfo=UTC)


@pytest.fixture
def archive_settings(settings: Settings, database_url: str) -> Settings:
    return settings.model_copy(update={"database_url": database_url})


@pytest.fixture
def engine(archive_settings: Settings) -> Iterator[Engine]:
    engine = create_archive_engine(archive_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def an_hour_old_referral(
    time_skipping_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> AsyncIterator[tuple[ReferralHandle, Engine]]:
    """A referral an hour after it started, and the SQLite archive its worker writes (the
    worker runs until the test ends)."""
    env = time_skipping_env
    engine = create_archive_engine(settings.database_url)
    async with running_worker(env.client, settings, executor) as worker:
        handle = await start_referral(env.client, worker.task_queue, await received_now(env))
        await env.sleep(timedelta(hours=1))
        yield handle, engine
    engine.dispose()


def rows(engine: Engine, workflow_id: str) -> tuple[ReferralRow | None, list[TransitionRow]]:
    with Session(engine) as session:
        row = session.get(ReferralRow, workflow_id)
        transitions = list(
            session.scalars(
                select(TransitionRow)
                .where(TransitionRow.workflow_id == workflow_id)
                .order_by(TransitionRow.seq)
            )
        )
        session.expunge_all()
    return row, transitions


def archived_status(engine: Engine, workflow_id: str) -> str | None:
    with Session(engine) as session:
        return session.scalar(
            select(ReferralRow.status).where(ReferralRow.workflow_id == workflow_id)
        )


def counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (
            session.scalar(select(func.count()).select_from(ReferralRow)) or 0,
            session.scalar(select(func.count()).select_from(TransitionRow)) or 0,
        )


async def drive(handle: ReferralHandle, env: WorkflowEnvironment, path: str) -> None:
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


async def archived_as(engine: Engine, workflow_id: str, status: Status) -> None:
    """Wait (real time, up to 10 s) until the archive shows the referral in ``status``."""
    for _ in range(500):
        if archived_status(engine, workflow_id) == status:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{workflow_id} not archived as {status} in 10 s")


async def summary(client: Client, event: HistoryEvent) -> str:
    [text] = await client.data_converter.decode([event.user_metadata.summary], [str])
    return str(text)


async def archive_writes(client: Client, handle: ReferralHandle) -> list[str]:
    """The labels of the run's archive writes, in order."""
    history = await handle.fetch_history()
    return [
        await summary(client, e)
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "record_referral"
    ]


async def coalescing_timers(client: Client, handle: ReferralHandle) -> tuple[int, int]:
    """How many of the run's timers held an archive write for a burst, and how many of
    those were cancelled (the referral closed first)."""
    events = (await handle.fetch_history()).events
    started = {
        e.event_id
        for e in events
        if e.HasField("timer_started_event_attributes")
        and await summary(client, e) == COALESCING_LABEL
    }
    cancelled = [
        e
        for e in events
        if e.HasField("timer_canceled_event_attributes")
        and e.timer_canceled_event_attributes.started_event_id in started
    ]
    return len(started), len(cancelled)


@pytest.fixture
def burst_window(monkeypatch: pytest.MonkeyPatch) -> timedelta:
    """A wider window for a burst (the worker runs in this process), so that the tests'
    own pace never decides: outside `result()` and `sleep()` the time-skipping server's
    clock runs in real time, and a loaded machine may take a second between two calls."""
    window = timedelta(seconds=30)
    monkeypatch.setattr(archiving, "COALESCE_WITHIN", window)
    return window


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
        rfi = await received_now(env)
        handle = await start_referral(env.client, worker.task_queue, rfi)
        await drive(handle, env, path)
        final = await handle.result()
    assert final.status == path
    row, transitions = rows(engine, handle.id)
    assert row is not None
    assert row.status == path
    assert row.rfi_id == rfi.id
    assert row.partner_id == "acme-consulting"
    assert row.region == "emea"
    assert row.received_at == rfi.received_at
    assert row.first_response_at == final.first_response_at
    assert row.closed_at == final.transitions[-1].effective_at
    assert row.updated_at == final.transitions[-1].effective_at
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
    assert (row.customer_email is not None) is interested
    assert (row.customer_phone == "+49 30 1234567") is interested
    if path in ("Won", "Lost"):
        assert row.estimated_deal_value == Decimal("125000.10")
        assert row.currency == "EUR"
        assert row.estimated_close_date is not None
    assert row.final_deal_value == (Decimal("130000.55") if path == "Won" else None)


async def test_started_referral_is_archived_as_new_before_any_answer(
    an_hour_old_referral: tuple[ReferralHandle, Engine],
) -> None:
    handle, engine = an_hour_old_referral
    row, transitions = rows(engine, handle.id)
    assert row is not None
    assert row.status == Status.NEW
    assert row.customer_name is None
    assert transitions == []
    await handle.signal("no_thanks")
    await handle.result()
    assert archived_status(engine, handle.id) == Status.SKIPPED


async def test_retries_and_replays_write_nothing_twice(
    time_skipping_env: WorkflowEnvironment, an_hour_old_referral: tuple[ReferralHandle, Engine]
) -> None:
    handle, engine = an_hour_old_referral
    await handle.signal("interested")
    await time_skipping_env.sleep(timedelta(hours=1))
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

    await replayer().replay_workflow(await handle.fetch_history())  # raises if it differs
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
    assert archived_status(engine, handle.id) == Status.DECLINED


async def accepted_right_after_a_write(
    handle: ReferralHandle, engine: Engine, env: WorkflowEnvironment
) -> None:
    """`interested`, and once the archive shows it, `accept` (900 EUR): within the burst
    window of that write."""
    close = str((await env.get_current_time()).date() + timedelta(days=30))
    await handle.execute_update("interested", {})
    await archived_as(engine, handle.id, Status.EVALUATING)
    await handle.execute_update(
        "accept", {"estimated_deal_value": "900", "currency": "EUR", "estimated_close_date": close}
    )


async def test_a_burst_of_transitions_shares_one_write(
    burst_window: timedelta,
    an_hour_old_referral: tuple[ReferralHandle, Engine],
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """A backend reporting acceptance and the win at once: the accept, a moment after the
    last write, waits for the won, which closes the referral and is written at once."""
    handle, engine = an_hour_old_referral
    await accepted_right_after_a_write(handle, engine, time_skipping_env)
    await handle.execute_update("won", {"final_deal_value": "950"})
    assert (await handle.result()).status is Status.WON
    # New, Evaluating, then Negotiating and Won together: no transition lost.
    assert await archive_writes(time_skipping_env.client, handle) == [
        "archive: the new referral",
        "archive: transition 1",
        "archive: transition 3",
    ]
    row, transitions = rows(engine, handle.id)
    assert row is not None
    assert row.status == Status.WON
    assert [t.to_status for t in transitions] == ["Evaluating", "Negotiating", "Won"]
    assert row.estimated_deal_value == Decimal("900")
    assert row.final_deal_value == Decimal("950")
    # The won closed the referral: written at once, the wait for the burst cancelled.
    assert await coalescing_timers(time_skipping_env.client, handle) == (1, 1)
    await replayer().replay_workflow(await handle.fetch_history())


async def test_a_transition_in_a_burst_is_archived_when_the_window_ends_if_no_other_comes(
    burst_window: timedelta,
    an_hour_old_referral: tuple[ReferralHandle, Engine],
    time_skipping_env: WorkflowEnvironment,
) -> None:
    handle, engine = an_hour_old_referral
    await accepted_right_after_a_write(handle, engine, time_skipping_env)
    assert archived_status(engine, handle.id) == Status.EVALUATING  # waiting for more
    await time_skipping_env.sleep(burst_window + timedelta(seconds=1))
    await archived_as(engine, handle.id, Status.NEGOTIATING)  # still open: not held to the end
    assert await coalescing_timers(time_skipping_env.client, handle) == (1, 0)
    await handle.signal("lost", {"reason": "Budget cut"})
    assert (await handle.result()).status is Status.LOST
    assert await archive_writes(time_skipping_env.client, handle) == [
        "archive: the new referral",
        "archive: transition 1",
        "archive: transition 2",
        "archive: transition 3",
    ]


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
        handle = await start_referral(env.client, worker.task_queue, await received_now(env))
        await handle.signal("interested")
        await handle.signal("decline")
        # Until the fourth attempt failed, the first to raise the alarm: the operator sees
        # why in the UI, and the worker's log raises the alarm.
        write = await failing_archive_write(env, handle.id, ALARM_AFTER_ATTEMPTS + 1)
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
    row, transitions = rows(engine, handle.id)
    assert row is not None
    assert row.status == final.status == Status.DECLINED
    assert [t.to_status for t in transitions] == ["Evaluating", "Declined"]


def test_a_slow_older_write_never_overwrites_a_newer_one(store: ArchiveStore) -> None:
    """The older write is held back while the newer one commits, then commits itself: the
    row keeps the newer view. It is held before its transaction begins, on both databases:
    SQLite serialises writers (a write transaction begins IMMEDIATE, taking the write lock),
    so no write can commit while another's transaction is open; on PostgreSQL no server-side
    transaction is open before its first statement either. Without the upsert's guard on
    the transition count, the row would go back to Evaluating here."""
    engine = store.engine
    referral = Referral(make_rfi(received_at="2026-11-02T09:00:00Z"), "acme-consulting")
    referral.start(ACME_BERLIN, NOW)
    store.record(referral.view())
    act(referral, "interested", None, NOW + timedelta(hours=1))
    older = referral.view()
    act(referral, "decline", None, NOW + timedelta(hours=2))
    newer = referral.view()

    held, release = threading.Event(), threading.Event()

    def hold_the_older_write(connection: Connection) -> None:
        if threading.current_thread().name == "older write":
            held.set()
            release.wait(10)

    event.listen(engine, "engine_connect", hold_the_older_write)
    slow = threading.Thread(target=store.record, args=(older,), name="older write")
    slow.start()
    assert held.wait(10)
    fast = threading.Thread(target=store.record, args=(newer,), name="newer write")
    fast.start()
    fast.join(10)
    assert not fast.is_alive()  # the newer write committed while the older one was held
    assert archived_status(engine, referral.workflow_id) == Status.DECLINED
    release.set()
    slow.join(10)
    assert not slow.is_alive()
    row, transitions = rows(engine, referral.workflow_id)
    assert row is not None
    assert row.status == Status.DECLINED
    assert [t.to_status for t in transitions] == ["Evaluating", "Declined"]


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
            handle = await start_referral(env.client, worker.task_queue, await received_now(env))
            for _ in range(200):
                if rows(engine, handle.id)[0] is not None:
                    break
                await asyncio.sleep(0.05)
            server.cleanup()  # down
            await handle.signal("interested")
            await handle.signal("decline")
            await failing_archive_write(env, handle.id, 2)  # retried while PostgreSQL is down
            assert (await handle.query(ReferralWorkflow.status)).status is Status.DECLINED
            server = pgserver.get_server(folder, cleanup_mode="stop")  # back
            final = await handle.result()
        row, transitions = rows(engine, handle.id)
        assert row is not None
        assert row.status == final.status == Status.DECLINED
        assert [t.to_status for t in transitions] == ["Evaluating", "Declined"]
    finally:
        engine.dispose()
        server.cleanup()


def test_a_write_reports_the_transitions_it_added_and_a_repeat_adds_none(
    store: ArchiveStore,
) -> None:
    engine = store.engine
    referral = Referral(make_rfi(received_at="2026-11-03T09:00:00Z"), "acme-consulting")
    referral.start(ACME_BERLIN, NOW)
    assert store.record(referral.view()) == 0  # New: the row, no transition yet
    act(referral, "interested", None, NOW + timedelta(hours=1))
    evaluating = referral.view()
    assert store.record(evaluating) == 1
    assert store.record(evaluating) == 0  # a retried activity writes nothing twice
    act(
        referral,
        "accept",
        {
            "estimated_deal_value": "5000.50",
            "currency": "EUR",
            "estimated_close_date": "2027-01-15",
        },
        NOW + timedelta(hours=2),
    )
    act(referral, "won", {"final_deal_value": "5100"}, NOW + timedelta(hours=3))
    assert store.record(referral.view()) == 2
    assert store.record(evaluating) == 0  # late and older: changes nothing
    row, transitions = rows(engine, referral.workflow_id)
    assert row is not None
    assert row.status == Status.WON
    assert row.final_deal_value == Decimal("5100")
    assert [t.seq for t in transitions] == [1, 2, 3]


def test_pages_neither_skip_nor_repeat_while_referrals_arrive(store: ArchiveStore) -> None:

    def archived(hours: int) -> str:
        received = NOW + timedelta(hours=hours)
        referral = Referral(make_rfi(received_at=received.isoformat()), "acme-consulting")
        referral.start(ACME_BERLIN, received)
        store.record(referral.view())
        return referral.workflow_id

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
    store: ArchiveStore,
) -> None:
    engine = store.engine
    # A run started under the earlier scheme, archived as its workflow id says ...
    legacy = Referral(make_rfi(id="c1"), "acme-consulting", "referral-c1-acme-consulting")
    legacy.start(ACME_BERLIN, NOW)
    store.record(legacy.view(), legacy.workflow_id)
    # ... and the pair whose old id was the same, started under the new one.
    other = Referral(make_rfi(id="c1-acme"), "consulting")
    other.start(ACME_BERLIN, NOW)
    store.record(other.view(), other.workflow_id)

    found = store.find("c1", "acme-consulting")
    assert found is not None
    assert found.workflow_id == "referral-c1-acme-consulting"
    assert (found.rfi_id, found.partner_id) == ("c1", "acme-consulting")
    mine = store.find("c1-acme", "consulting")
    assert mine is not None
    assert mine.workflow_id == "referral:c1-acme:consulting"
    assert counts(engine) == (2, 0)
    act(legacy, "no_thanks", None, NOW + timedelta(hours=1))
    store.record(legacy.view(), legacy.workflow_id)
    assert counts(engine) == (2, 1)  # the same row, not a second one under the new id
