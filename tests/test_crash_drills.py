"""Crash drills on real dev servers: the worker killed mid-flight, the server restarted."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine
from archive.schema import ReferralRow, TransitionRow
from starter import referrals
from starter.dev import dev_server_command, free_port
from starter.settings import Settings
from tests.factories import ROOT, SAMPLES, make_rfi
from worker import build_worker
from workflows.models import Status
from workflows.referral import ReferralWorkflow

REFERRALS = 200
CLOSE = str((datetime.now(UTC) + timedelta(days=90)).date())
# Group i % 5 of the referrals: the actions it gets, the status and emails it ends with.
GROUPS = [
    ([], Status.NEW, ["lead"]),
    (["interested"], Status.EVALUATING, ["lead", "details"]),
    (["interested", "accept"], Status.NEGOTIATING, ["lead", "details"]),
    (["interested", "accept", "won"], Status.WON, ["lead", "details"]),
    (["no_thanks"], Status.SKIPPED, ["lead", "reroute"]),
]
PAYLOADS = {
    "accept": {"estimated_deal_value": "1000", "currency": "EUR", "estimated_close_date": CLOSE}
}


@pytest.fixture
def drill(dev_env: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "REFERRALS_TASK_QUEUE": f"drill-{uuid.uuid4()}",
        "REFERRALS_OUTBOX_DIR": str(tmp_path / "outbox"),
        "REFERRALS_PARTNER_DIRECTORY": str(SAMPLES / "partners.json"),
        "REFERRALS_DATABASE_URL": f"sqlite:///{tmp_path}/archive.db",
    }


def start_worker(environment: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        env=environment,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_a_worker_killed_mid_flight_loses_nothing(
    dev_env: WorkflowEnvironment, drill: dict[str, str]
) -> None:
    client = dev_env.client
    queue = drill["REFERRALS_TASK_QUEUE"]
    rfis = [
        make_rfi(id=f"drill-{uuid.uuid4().hex[:10]}", received_at=datetime.now(UTC).isoformat())
        for _ in range(REFERRALS)
    ]
    first = start_worker(drill)
    try:
        await asyncio.gather(
            *(referrals.submit(client, rfi, ["globex"], task_queue=queue) for rfi in rfis)
        )
        handles = [client.get_workflow_handle(f"referral:{rfi.id}:globex") for rfi in rfis]

        async def act(index: int, steps: slice) -> None:
            for action in GROUPS[index % len(GROUPS)][0][steps]:
                await handles[index].signal(action, PAYLOADS.get(action, {}))

        await asyncio.gather(*(act(i, slice(0, 1)) for i in range(REFERRALS)))
        outbox = Path(drill["REFERRALS_OUTBOX_DIR"])
        for _ in range(300):  # kill it once it is well into the work, not done with it
            if len(eml_names(outbox)) >= 50:
                break
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        sent_before_the_kill = len(eml_names(outbox))
        await asyncio.gather(*(act(i, slice(1, None)) for i in range(REFERRALS)))
    finally:
        if first.poll() is None:
            first.kill()
    second = start_worker(drill)
    try:
        expected_rows = {
            (f"referral:{rfi.id}:globex", GROUPS[i % len(GROUPS)][1].value)
            for i, rfi in enumerate(rfis)
        }
        expected_transitions = sum(len(GROUPS[i % len(GROUPS)][0]) for i in range(REFERRALS))
        engine = create_archive_engine(drill["REFERRALS_DATABASE_URL"])
        expected_emails = sum(len(GROUPS[i % len(GROUPS)][2]) for i in range(REFERRALS))
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
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)


def eml_names(outbox: Path) -> list[str]:
    return sorted(p.name for p in outbox.glob("*.eml"))


def launch(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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

    async def connect_when_up() -> Client:
        for _ in range(120):
            try:
                return await Client.connect(
                    f"127.0.0.1:{port}", data_converter=pydantic_data_converter
                )
            except RuntimeError:
                await asyncio.sleep(0.25)
        raise AssertionError("the dev server did not start")

    server = launch(command)
    deadlines = {"respond_within": "PT8S", "decide_within": "PT8S"}
    try:
        client = await connect_when_up()
        async with build_worker(client, local, executor, task_queue="drill"):
            silent = make_rfi(received_at=datetime.now(UTC).isoformat(), deadlines=deadlines)
            deciding = make_rfi(received_at=datetime.now(UTC).isoformat(), deadlines=deadlines)
            await referrals.submit(client, silent, ["globex"], task_queue="drill")
            await referrals.submit(client, deciding, ["globex"], task_queue="drill")
            entered = (
                (await referrals.act(client, deciding.id, "globex", "interested", {}))
                .transitions[0]
                .effective_at
            )
        server.send_signal(signal.SIGTERM)  # the server goes down before either deadline
        server.wait(30)
        await asyncio.sleep(10)  # both deadlines pass while it is down
        server = launch(command)
        client = await connect_when_up()
        async with build_worker(client, local, executor, task_queue="drill"):
            missed = await client.get_workflow_handle_for(
                ReferralWorkflow.run, f"referral:{silent.id}:globex"
            ).result()
            expired = await client.get_workflow_handle_for(
                ReferralWorkflow.run, f"referral:{deciding.id}:globex"
            ).result()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert missed.status is Status.MISSED
    assert missed.transitions[-1].effective_at == silent.received_at + timedelta(seconds=8)
    assert missed.transitions[-1].processed_at > missed.transitions[-1].effective_at + (
        timedelta(seconds=1)
    )
    assert expired.status is Status.EXPIRED
    assert expired.transitions[-1].effective_at == entered + timedelta(seconds=8)
    assert expired.transitions[-1].processed_at > expired.transitions[-1].effective_at
