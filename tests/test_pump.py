"""The delivery activities on their own (no server): what a retried pump sends again, and
an endpoint whose host now resolves to an internal address."""

import dataclasses
from datetime import UTC, datetime, timedelta

from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.webhook_sender import WebhookSender
from activities.webhooks import SENDS_METRIC, WebhookActivities
from archive.deliveries import Attempt, DeliveryStore
from archive.store import ArchiveStore
from archive.webhooks import WebhookStore
from tests.factories import act, make_rfi, started
from tests.receivers import receiving
from workflows.delivery_models import PumpRequest


def counting() -> tuple[ActivityEnvironment, MetricBuffer]:
    """An activity environment whose metrics land in the buffer returned with it."""
    buffer = MetricBuffer(1000)
    environment = ActivityEnvironment()
    environment.metric_meter = Runtime(telemetry=TelemetryConfig(metrics=buffer)).metric_meter
    return environment, buffer


def sends(buffer: MetricBuffer) -> dict[str, float]:
    counted: dict[str, float] = {}
    for update in buffer.retrieve_updates():
        if update.metric.name == SENDS_METRIC:
            outcome = str(update.attributes["outcome"])
            counted[outcome] = counted.get(outcome, 0) + update.value
    return counted


def two_events(store: ArchiveStore) -> list[int]:
    referral, _ = started(make_rfi())
    act(referral, "interested", None, referral.rfi.received_at + timedelta(hours=1))
    store.record(referral.view())
    return [row.position for row in store.events(workflow_id=referral.workflow_id)]


def test_a_retried_pump_skips_what_it_recorded_as_delivered(store: ArchiveStore) -> None:
    """A worker killed after recording a batch: the next attempt, from the heartbeat's
    cursor, sends only what was not recorded."""
    webhooks, deliveries = WebhookStore(store.engine), DeliveryStore(store.engine)
    with receiving() as receiver:
        endpoint, _ = webhooks.add(receiver.url, [], "pump", datetime.now(UTC))
        first, second = two_events(store)
        deliveries.record(endpoint.id, [Attempt(first, "delivered", datetime.now(UTC), 200)])
        environment, buffer = counting()
        environment.info = dataclasses.replace(environment.info, attempt=2)
        activities = WebhookActivities(webhooks, deliveries, WebhookSender(), pump_for=0)
        result = environment.run(
            activities.pump_events, PumpRequest(endpoint_id=endpoint.id, cursor=None)
        )
    assert [r.event["data"]["seq"] for r in receiver.received] == [1]
    assert result.cursor == second
    assert result.state == "open"
    assert sends(buffer) == {"delivered": 1}


def test_a_host_that_now_resolves_inside_the_network_is_not_called(store: ArchiveStore) -> None:
    """Checked when it was added; its address changed since (here: stored as it is). The
    event waits for its next try, saying why, and no request is made."""
    webhooks, deliveries = WebhookStore(store.engine), DeliveryStore(store.engine)
    endpoint, _ = webhooks.add("https://10.1.2.3/hooks", [], "moved", datetime.now(UTC))
    first, _ = two_events(store)
    activities = WebhookActivities(webhooks, deliveries, WebhookSender(timeout_s=30), pump_for=0)
    began = datetime.now(UTC)
    environment, buffer = counting()
    result = environment.run(
        activities.pump_events, PumpRequest(endpoint_id=endpoint.id, cursor=None)
    )
    assert datetime.now(UTC) - began < timedelta(seconds=5)  # no connection was tried
    [lane] = result.lanes
    assert lane.positions == [first, first + 1]
    assert (lane.attempts, lane.retry_in) == (1, timedelta(seconds=5))
    [report, _] = deliveries.report(endpoint, from_position=0)[::-1]
    assert report.status == "pending"
    assert report.last_error is not None
    assert "10.1.2.3" in report.last_error
    assert "internal address" in report.last_error
    assert sends(buffer) == {"retry": 1}  # the second event waits behind, untried
