"""Webhook delivery on the time-skipping server's clock: the retry schedule for real (5 s,
5 min, 30 min, 2 h, 5 h, 10 h and 10 h, then the event is given up on and the referral's
next event goes), and the deadline paths' events."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.webhook_sender import RETRY_SCHEDULE, WebhookSender
from activities.webhooks import WebhookActivities
from archive.database import create_archive_engine, upgrade
from archive.deliveries import DeliveryStore
from archive.store import ArchiveStore
from archive.webhooks import WebhookStore
from starter.deliveries import start_replay
from starter.settings import Settings
from tests.factories import act, make_rfi, received_now, started
from tests.receivers import Received, receiving
from tests.servers import running_worker, start_referral
from worker import SANDBOX, build_delivery_worker
from workflows.delivery import WebhookDeliveryWorkflow
from workflows.delivery_models import DeliveryInput, Replay
from workflows.models import referral_workflow_id


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


async def test_missed_and_expired_reach_the_endpoint_with_their_deadlines_times(
    time_skipping_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> None:
    """The two paths that take 72 hours and 8 days, on the time-skipping server, then sent
    to a receiver by a replay (live delivery long-polls, which would hold the clock)."""
    env = time_skipping_env
    engine = create_archive_engine(settings.database_url)
    upgrade(engine)
    webhooks, deliveries = WebhookStore(engine), DeliveryStore(engine)
    with receiving() as receiver:
        endpoint, secret = webhooks.add(receiver.url, [], "deadlines", datetime.now(UTC))
        async with running_worker(env.client, settings, executor) as worker:
            missed = await start_referral(env.client, worker.task_queue, await received_now(env))
            expired = await start_referral(env.client, worker.task_queue, await received_now(env))
            await expired.signal("interested", {})
            views = {"Missed": await missed.result(), "Expired": await expired.result()}
            async with build_delivery_worker(
                env.client, settings, executor, task_queue=worker.task_queue
            ):
                replay = await start_replay(env.client, deliveries, endpoint.id, worker.task_queue)
                await replay.result()
    events = receiver.accepted(secret)
    last_times = {}
    for status, view in views.items():
        workflow_id = referral_workflow_id(view.rfi_id, view.partner_id)
        mine = [e for e in events if e["data"]["workflow_id"] == workflow_id]
        last = view.transitions[-1]
        assert mine[-1]["type"] == f"referral.{status.lower()}"
        assert mine[-1]["data"]["cause"] == {"kind": "deadline", "name": last.cause.name}
        assert datetime.fromisoformat(mine[-1]["timestamp"]) == last.effective_at
        assert [e["data"]["seq"] for e in mine] == list(range(len(view.transitions) + 1))
        last_times[status] = datetime.fromisoformat(mine[-1]["timestamp"])
    assert last_times["Missed"] - views["Missed"].received_at == timedelta(hours=72)
    evaluating = views["Expired"].transitions[0].effective_at
    assert last_times["Expired"] - evaluating == timedelta(days=7)
    engine.dispose()
