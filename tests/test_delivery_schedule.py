"""The retry schedule of webhook delivery, for real: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
10 h of the time-skipping server's clock, then the event is given up on (dead-lettered) and
the referral's next event goes; and a run that continues as new keeps what waits."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.webhook_sender import RETRY_SCHEDULE, WebhookSender
from activities.webhooks import WebhookActivities
from archive.deliveries import DeliveryStore
from archive.store import ArchiveStore
from archive.webhooks import WebhookStore
from tests.factories import act, make_rfi, started
from tests.receivers import Received, receiving
from worker import SANDBOX
from workflows.delivery import WebhookDeliveryWorkflow
from workflows.delivery_models import DeliveryInput, Replay


async def test_a_failing_event_is_tried_on_the_standard_schedule_then_given_up(
    time_skipping_env: WorkflowEnvironment, store: ArchiveStore, executor: ThreadPoolExecutor
) -> None:
    env = time_skipping_env
    referral, _ = started(make_rfi(id=f"rfi-{uuid.uuid4().hex[:8]}"))
    act(referral, "interested", None, referral.rfi.received_at + timedelta(hours=1))
    store.record(referral.view())  # referral.created and referral.evaluating
    created = f"{referral.workflow_id}.0"

    def answer(request: Received) -> tuple[int, dict[str, str]]:
        return (503, {}) if request.webhook_id == created else (200, {})

    webhooks = WebhookStore(store.engine)
    deliveries = DeliveryStore(store.engine)
    with receiving(answer=answer) as receiver:
        endpoint, _ = webhooks.add(receiver.url, [], "schedule", datetime.now(UTC))
        activities = WebhookActivities(webhooks, deliveries, WebhookSender())
        queue = f"webhooks-{uuid.uuid4()}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[WebhookDeliveryWorkflow],
            activities=[activities.pump_events, activities.send_lane],
            activity_executor=executor,
            workflow_runner=SANDBOX,
        ):
            handle = await env.client.start_workflow(
                WebhookDeliveryWorkflow.run,
                DeliveryInput(
                    endpoint_id=endpoint.id,
                    replay=Replay(until=deliveries.last_position()),
                ),
                id=f"webhooks:{endpoint.id}:schedule",
                task_queue=queue,
            )
            await handle.result()
            history = await handle.fetch_history()
    tries = [r.webhook_id for r in receiver.received]
    assert tries == [created] * 8 + [f"{referral.workflow_id}.1"]
    waits = [
        event.timer_started_event_attributes.start_to_fire_timeout
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    # Each wait is counted from the failed try, so a timer may be a few ms shorter.
    assert [_seconds(w) for w in waits] == [round(step.total_seconds()) for step in RETRY_SCHEDULE]
    report = {r.event_id: r for r in deliveries.report(endpoint, from_position=0)}
    assert (report[created].status, report[created].attempts) == ("dead", 8)
    assert report[created].last_code == 503
    assert report[f"{referral.workflow_id}.1"].status == "delivered"


def _seconds(duration: Duration) -> int:
    return round(duration.seconds + duration.nanos / 1e9)
