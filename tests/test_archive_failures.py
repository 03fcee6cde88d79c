"""A failing archive write, on SQLite and PostgreSQL: counted in `referral_archive_failures`,
logged as an error on every attempt after the third, and never with the customer's contact
in a log line or in the failure the Temporal UI shows."""

import dataclasses
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.archive import ALARM_AFTER_ATTEMPTS, FAILURES_METRIC, ArchiveActivities
from archive.database import create_archive_engine, upgrade
from archive.store import ArchiveStore
from starter.client import connect
from starter.settings import Settings
from tests.factories import (
    ACME_BERLIN,
    DISTINCTIVE_CUSTOMER,
    DISTINCTIVE_TRACES,
    RECEIVED_AT,
    act,
    make_rfi,
    received_now,
)
from tests.servers import failing_archive_write, running_worker, start_referral
from workflows.lifecycle import Referral
from workflows.models import StatusView

TRACES = tuple(trace.lower() for trace in DISTINCTIVE_TRACES)


def leaks(texts: list[str]) -> list[str]:
    return [trace for trace in TRACES for text in texts if trace in text.lower()]


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every log line as a handler writes it, tracebacks included."""
    return [logging.Formatter().format(record) for record in caplog.records]


def shown(error: BaseException) -> list[str]:
    """The failure as the worker logs it and as Temporal stores it for the UI."""
    failure = Failure()
    DefaultFailureConverter().to_failure(error, pydantic_data_converter.payload_converter, failure)
    return ["".join(traceback.format_exception(error)), str(failure)]


def metric_total(buffer: MetricBuffer) -> float:
    return sum(u.value for u in buffer.retrieve_updates() if u.metric.name == FAILURES_METRIC)


def refused_view() -> StatusView:
    """A view the database refuses with the customer's contact bound: the partner said it
    was interested, and `need` is missing (NOT NULL)."""
    referral = Referral(make_rfi(customer=DISTINCTIVE_CUSTOMER), "acme-consulting")
    referral.start(ACME_BERLIN, RECEIVED_AT)
    act(referral, "interested", None, RECEIVED_AT + timedelta(hours=1))
    view = referral.view()
    return view.model_copy(update={"overview": view.overview.model_copy(update={"need": None})})


def test_a_failing_statement_never_lists_its_parameters(store: ArchiveStore) -> None:
    with pytest.raises(IntegrityError) as refused:
        store.record(refused_view())
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(refused.value)
    assert "[parameters:" not in str(refused.value)


def test_failed_writes_are_counted_and_alarm_after_the_third_attempt_without_the_customer(
    store: ArchiveStore, caplog: pytest.LogCaptureFixture
) -> None:
    view = refused_view()
    with pytest.raises(IntegrityError) as refused:
        store.record(view)
    if store.engine.dialect.name == "postgresql":  # why the activity never chains its error
        assert "Failing row contains" in str(refused.value)
        assert leaks([str(refused.value.orig)])
    buffer = MetricBuffer(1000)
    activity_env = ActivityEnvironment()
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    activity_env.metric_meter = runtime.metric_meter
    activities = ArchiveActivities(store)
    failures: list[ApplicationError] = []
    caplog.set_level(logging.DEBUG)
    for attempt in range(1, ALARM_AFTER_ATTEMPTS + 3):
        activity_env.info = dataclasses.replace(activity_env.info, attempt=attempt)
        with pytest.raises(ApplicationError, match="need") as failed:
            activity_env.run(activities.record_referral, view)
        failures.append(failed.value)

    assert metric_total(buffer) == ALARM_AFTER_ATTEMPTS + 2
    alarms = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(alarms) == 2  # attempts 4 and 5, none before
    assert alarms[0].startswith(f"{failures[3].message} (attempt 4;")
    assert alarms[1].startswith(f"{failures[4].message} (attempt 5;")
    assert leaks(logged(caplog) + [text for f in failures for text in shown(f)]) == []


async def test_a_worker_whose_archive_refuses_the_customer_logs_and_shows_none_of_it(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The production worker, its SQLite archive refusing every write that carries the
    customer's contact; the write retries until the archive takes it."""
    env = time_skipping_env
    engine = create_archive_engine(settings.database_url)
    upgrade(engine)
    # On an insert too: the first write may already carry the customer (when `interested`
    # reaches the run before it has started).
    with engine.begin() as connection:
        for statement in ("INSERT", "UPDATE"):
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse_customers_{statement} BEFORE {statement} ON referrals"
                " WHEN NEW.customer_name IS NOT NULL BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    buffer = MetricBuffer(10_000)
    time_skipping = Settings(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=env.client.namespace,
    )
    client = await connect(
        time_skipping, runtime=Runtime(telemetry=TelemetryConfig(metrics=buffer))
    )
    caplog.set_level(logging.DEBUG)
    async with running_worker(client, settings, executor) as worker:
        rfi = await received_now(env, customer=DISTINCTIVE_CUSTOMER)
        handle = await start_referral(env.client, worker.task_queue, rfi)
        await handle.signal("interested")
        # The fourth attempt failed: the first alarm is out.
        write = await failing_archive_write(env, handle.id, ALARM_AFTER_ATTEMPTS + 1)
        with engine.begin() as connection:  # the archive is back
            for statement in ("INSERT", "UPDATE"):
                connection.exec_driver_sql(f"DROP TRIGGER refuse_customers_{statement}")
        await handle.signal("decline")
        await handle.result()
    engine.dispose()

    assert write.last_failure.message.endswith("unavailable: refused")
    alarms = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("(attempt 4;" in alarm for alarm in alarms)
    assert not any("(attempt 3;" in alarm for alarm in alarms)
    assert metric_total(buffer) >= ALARM_AFTER_ATTEMPTS + 1
    assert leaks([*logged(caplog), str(write.last_failure)]) == []
