"""Starting webhook delivery runs: one live run per endpoint, and replays.

The worker makes sure at start that every endpoint has its run; `webhooks add` and
`webhooks enable` start or wake it at once (signal-with-start of `resume`), and
`events replay` starts a replay run beside it.
"""

from datetime import UTC, datetime

from sqlalchemy import Engine
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from archive.database import create_archive_engine
from archive.deliveries import DeliveryStore
from archive.webhooks import WebhookStore
from starter.codec import codec_from_keys
from starter.settings import Settings
from workflows.delivery import WebhookDeliveryWorkflow
from workflows.delivery_models import (
    DeliveryInput,
    Replay,
    delivery_workflow_id,
    replay_workflow_id,
    webhook_task_queue,
)


def open_webhooks(settings: Settings, engine: Engine | None = None) -> WebhookStore:
    """The endpoints in the archive (on ``engine`` if one is open already), their secrets
    sealed with the codec keys if set (CodecKeyError if the keys are malformed)."""
    keys = settings.codec_keys.get_secret_value() if settings.codec_keys else None
    engine = engine or create_archive_engine(settings.database_url)
    return WebhookStore(engine, codec_from_keys(keys))


async def wake_delivery(client: Client, endpoint_id: str, task_queue: str) -> str:
    """Start the endpoint's delivery run if it has none, and have it look at its endpoint
    now (after `enable`: at once rather than within the hour). Returns its workflow id."""
    handle = await client.start_workflow(
        WebhookDeliveryWorkflow.run,
        DeliveryInput(endpoint_id=endpoint_id),
        id=delivery_workflow_id(endpoint_id),
        task_queue=webhook_task_queue(task_queue),
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="resume",
        static_summary=f"webhook delivery to endpoint {endpoint_id}",
    )
    return handle.id


async def start_deliveries(client: Client, webhooks: WebhookStore, task_queue: str) -> int:
    """A live delivery run for every endpoint that has none (the worker, at start)."""
    started = 0
    for endpoint in webhooks.endpoints():
        await client.start_workflow(
            WebhookDeliveryWorkflow.run,
            DeliveryInput(endpoint_id=endpoint.id),
            id=delivery_workflow_id(endpoint.id),
            task_queue=webhook_task_queue(task_queue),
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"webhook delivery to endpoint {endpoint.id}",
        )
        started += 1
    return started


async def start_replay(
    client: Client,
    deliveries: DeliveryStore,
    endpoint_id: str,
    task_queue: str,
    *,
    since: datetime | None = None,
    rfi_id: str | None = None,
) -> WorkflowHandle[WebhookDeliveryWorkflow, None]:
    """Send the archived events recorded until now again, in order, with their ids."""
    asked_at = datetime.now(UTC)
    replay = Replay(until=deliveries.last_position(), since=since, rfi_id=rfi_id)
    return await client.start_workflow(
        WebhookDeliveryWorkflow.run,
        DeliveryInput(endpoint_id=endpoint_id, replay=replay),
        id=replay_workflow_id(endpoint_id, asked_at),
        task_queue=webhook_task_queue(task_queue),
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        static_summary=f"webhook replay to endpoint {endpoint_id}",
    )
