"""The referral worker: `python worker.py` runs it until SIGINT or SIGTERM."""

import asyncio
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.archive import ArchiveActivities
from activities.directory import DirectoryActivities, DirectoryFile
from activities.email import EmailActivities
from activities.mailers import Mailer
from activities.rendering import EmailRenderer
from activities.suggestions import SuggestionActivities
from activities.webhook_sender import WebhookSender
from activities.webhooks import POLL_INTERVAL_S, PUMP_FOR_S, WebhookActivities
from archive.database import create_archive_engine, upgrade
from archive.deliveries import DeliveryStore
from archive.store import ArchiveStore
from starter.client import connect, worker_client
from starter.codec import CodecKeyError
from starter.deliveries import open_webhooks, start_deliveries
from starter.mail import build_mailer
from starter.runner import workflow_runner
from starter.settings import Settings
from web.links import EmailLinks, LinkKeyError, LinkSigner
from workflows.delivery import WebhookDeliveryWorkflow
from workflows.delivery_models import webhook_task_queue
from workflows.referral import ReferralWorkflow

# Validation libraries that pydantic imports lazily: load them once, not in every sandbox.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("email_validator", "idna")
)


def build_renderer(settings: Settings) -> EmailRenderer:
    """Emails with a signed one-click link per action when REFERRALS_LINK_KEYS is set."""
    signer = LinkSigner.from_setting(
        settings.link_keys.get_secret_value() if settings.link_keys else None
    )
    return EmailRenderer(EmailLinks(signer, settings.public_url) if signer else None)


def build_worker(
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    task_queue: str | None = None,
    directory: DirectoryFile | None = None,
    mailer: Mailer | None = None,
    renderer: EmailRenderer | None = None,
) -> Worker:
    directory = directory or DirectoryFile(settings.partner_directory)
    directory.load()  # a missing or malformed directory stops the worker at start
    archive = ArchiveStore(create_archive_engine(settings.database_url))
    tolerant = worker_client(client)
    suggestions = SuggestionActivities(directory, archive, client)
    return Worker(
        tolerant,
        task_queue=task_queue or settings.task_queue,
        workflows=[ReferralWorkflow],
        activities=[
            DirectoryActivities(directory).look_up_contact,
            ArchiveActivities(archive).record_referral,
            suggestions.suggest_partners,
            suggestions.look_at_rfi,
            EmailActivities(
                mailer or build_mailer(settings), renderer or build_renderer(settings)
            ).send_email,
        ],
        activity_executor=executor,
        # Activities are blocking calls: the executor has as many threads as this allows.
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        workflow_runner=workflow_runner(tolerant.data_converter, SANDBOX),
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_s),
    )


def build_delivery_worker(
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    task_queue: str | None = None,
    *,
    poll_interval: float = POLL_INTERVAL_S,
    pump_for: float = PUMP_FOR_S,
    sender: WebhookSender | None = None,
) -> Worker:
    """Webhook delivery on its own task queue and threads (``settings.webhook_senders``):
    an endpoint that does not answer holds one of these at most, never the referrals'
    slots."""
    webhooks = open_webhooks(settings)
    activities = WebhookActivities(
        webhooks,
        DeliveryStore(webhooks.engine),
        sender or WebhookSender(),
        poll_interval=poll_interval,
        pump_for=pump_for,
        allow_private=settings.webhooks_allow_private,
    )
    tolerant = worker_client(client)
    return Worker(
        tolerant,
        task_queue=webhook_task_queue(task_queue or settings.task_queue),
        workflows=[WebhookDeliveryWorkflow],
        activities=[activities.pump_events, activities.send_lane],
        activity_executor=executor,
        max_concurrent_activities=settings.webhook_senders,
        workflow_runner=workflow_runner(tolerant.data_converter, SANDBOX),
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_s),
    )


async def ensure_deliveries(client: Client, settings: Settings) -> None:
    """Every endpoint's delivery run, started if it has none (the archive may be down)."""
    try:
        started = await start_deliveries(client, open_webhooks(settings), settings.task_queue)
    except Exception as error:
        logging.error(
            "Webhook delivery runs not checked (%s): `referrals webhooks enable` starts one",
            str(error).strip().splitlines()[0],
        )
        return
    if started:
        logging.info("Webhook delivery running for %d endpoint(s)", started)


def build_runtime(settings: Settings) -> Runtime | None:
    """A runtime serving the SDK's and the referrals' metrics to Prometheus, if asked."""
    if settings.metrics_port is None:
        return None
    prometheus = PrometheusConfig(bind_address=f"0.0.0.0:{settings.metrics_port}")
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    directory = DirectoryFile(settings.partner_directory)
    try:
        directory.load()  # read once: build_worker finds it loaded
    except (OSError, ValueError) as error:
        raise SystemExit(
            f"error: partner directory {settings.partner_directory}: {error}"
        ) from None
    try:
        mailer = build_mailer(settings)
    except ValueError as error:
        raise SystemExit(f"error: SENDGRID_FROM: {error}") from None
    try:
        renderer = build_renderer(settings)
    except LinkKeyError as error:
        raise SystemExit(f"error: {error}") from None
    try:
        upgrade(create_archive_engine(settings.database_url))
    except Exception as error:  # the archive activity migrates again once the database is up
        logging.error(
            "Archive database unavailable at start (%s): referrals run on, and their archive "
            "writes retry until it is back",
            str(error).strip().splitlines()[0],
        )
    try:
        client = await connect(settings, runtime=build_runtime(settings))
    except CodecKeyError as error:
        raise SystemExit(f"error: REFERRALS_CODEC_KEYS: {error}") from None
    except RuntimeError as error:
        raise SystemExit(
            f"error: cannot reach Temporal at {settings.temporal_address}: {error}"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with (
        ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor,
        ThreadPoolExecutor(max_workers=settings.webhook_senders) as senders,
    ):
        async with (
            build_worker(
                client, settings, executor, directory=directory, mailer=mailer, renderer=renderer
            ),
            build_delivery_worker(client, settings, senders),
        ):
            await ensure_deliveries(client, settings)
            # What is loaded by now lives as long as the worker: keep it out of the garbage
            # collector's full passes (about 3 ms less worker CPU per referral in the bench).
            gc.freeze()
            logging.info(
                "Worker polling task queue %r on %s%s",
                settings.task_queue,
                settings.temporal_address,
                f"; metrics on :{settings.metrics_port}/metrics" if settings.metrics_port else "",
            )
            await stop.wait()
            logging.info("Shutting down: finishing in-flight activities")


if __name__ == "__main__":
    asyncio.run(main())
