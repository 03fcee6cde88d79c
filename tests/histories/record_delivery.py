"""Record the webhook delivery histories that tests/test_replay.py replays:
`python -m tests.histories.record_delivery`.

Runs on the dev server, written to tests/histories/delivery/<name>.json; only those not
there yet are recorded, so that the histories of earlier code stay to be replayed:
- `paused_retried_removed`: the endpoint answers 410 (paused), is enabled again (the
  `resume` signal), answers 503 with `Retry-After: 1` once (a lane and its timer), then 200
  for everything; once all is delivered it is removed and the run ends;
- `replay`: a replay of those events, to its end;
- `unanswered`: an endpoint that never answers (a 1 s deadline): the first try fails, the
  run reads without sending, one lane's try goes out at a time and the others fail theirs
  unsent; then the endpoint is removed and the run ends.
"""

import asyncio
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from activities.webhook_sender import WebhookSender
from activities.webhooks import NOT_SENT
from archive.database import create_archive_engine, upgrade
from archive.deliveries import DeliveryStore
from archive.webhooks import WebhookStore
from starter.deliveries import start_replay, wake_delivery
from starter.settings import Settings
from tests.factories import SAMPLES, fresh_rfi
from tests.receivers import SILENT, Received, hostile, receiving
from tests.servers import start_dev_server, start_referral
from worker import build_delivery_worker, build_worker
from workflows.delivery_models import delivery_workflow_id

HERE = Path(__file__).resolve().parent / "delivery"


async def main() -> None:
    env = await start_dev_server()
    settings = fresh_settings()
    if not (HERE / "paused_retried_removed.json").exists():
        await record_paused_retried_removed(env.client, settings)
    if not (HERE / "unanswered.json").exists():
        await record_unanswered(env.client, settings)
    await env.shutdown()


def fresh_settings() -> Settings:
    folder = Path(tempfile.mkdtemp())
    settings = Settings(
        REFERRALS_OUTBOX_DIR=folder / "outbox",
        REFERRALS_PARTNER_DIRECTORY=SAMPLES / "partners.json",
        REFERRALS_DATABASE_URL=f"sqlite:///{folder}/referrals.db",
    )
    upgrade(create_archive_engine(settings.database_url))
    return settings


async def record_paused_retried_removed(client: Client, settings: Settings) -> None:
    engine = create_archive_engine(settings.database_url)
    webhooks, deliveries = WebhookStore(engine), DeliveryStore(engine)
    answers = [(410, {}), (503, {"Retry-After": "1"})]

    def answer(request: Received) -> tuple[int, dict[str, str]]:
        return answers.pop(0) if answers else (200, {})

    queue = f"record-{uuid.uuid4()}"
    with (
        receiving(answer=answer) as receiver,
        ThreadPoolExecutor(20) as executor,
        ThreadPoolExecutor(20) as senders,
    ):
        async with (
            build_worker(client, settings, executor, task_queue=queue),
            build_delivery_worker(client, settings, senders, task_queue=queue, pump_for=2),
        ):
            endpoint, _ = webhooks.add(receiver.url, [], "record", datetime.now(UTC))
            await wake_delivery(client, endpoint.id, queue)
            for path in ([], [("interested", None)]):
                handle = await start_referral(client, queue, fresh_rfi())
                for name, payload in path:
                    await handle.execute_update(name, payload)
            await until(lambda: not webhooks.endpoint(endpoint.id).enabled)  # type: ignore[union-attr]
            webhooks.set_enabled(endpoint.id, True)
            await wake_delivery(client, endpoint.id, queue)
            await until(lambda: len({r.webhook_id for r in receiver.received}) == 3)
            await until(lambda: not deliveries.report(endpoint, from_position=0, status="pending"))
            replay = await start_replay(client, deliveries, endpoint.id, queue)
            await replay.result()
            await save(replay, "replay")
            webhooks.remove(endpoint.id)
            await wake_delivery(client, endpoint.id, queue)
            live = client.get_workflow_handle(delivery_workflow_id(endpoint.id))
            await live.result()
            await save(live, "paused_retried_removed")


async def record_unanswered(client: Client, settings: Settings) -> None:
    engine = create_archive_engine(settings.database_url)
    webhooks, deliveries = WebhookStore(engine), DeliveryStore(engine)
    queue = f"record-{uuid.uuid4()}"
    with (
        hostile(SILENT) as receiver,
        ThreadPoolExecutor(20) as executor,
        ThreadPoolExecutor(20) as senders,
    ):
        async with (
            build_worker(client, settings, executor, task_queue=queue),
            build_delivery_worker(
                client, settings, senders, task_queue=queue, pump_for=2, sender=WebhookSender(1)
            ),
        ):
            endpoint, _ = webhooks.add(receiver.url, [], "record", datetime.now(UTC))
            await wake_delivery(client, endpoint.id, queue)
            for _ in range(3):
                await start_referral(client, queue, fresh_rfi())

            def unsent() -> bool:
                report = deliveries.report(endpoint, from_position=0)
                return any(r.last_error == NOT_SENT for r in report)

            await until(unsent)
            await until(lambda: receiver.requests >= 3)
            webhooks.remove(endpoint.id)
            await wake_delivery(client, endpoint.id, queue)
            live = client.get_workflow_handle(delivery_workflow_id(endpoint.id))
            await live.result()
            await save(live, "unanswered")


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(60):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def save(handle: WorkflowHandle[Any, Any], name: str) -> None:
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    print(f"{name}: {len(history.events)} events")


if __name__ == "__main__":
    asyncio.run(main())
