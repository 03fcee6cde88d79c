"""`referrals events ...`: where each event stands with each endpoint, and replays."""

from dataclasses import asdict
from typing import Annotated, Literal

import typer
from temporalio.client import Client

from archive.deliveries import BEFORE_ALL, DeliveryReport, DeliveryStore, EventFilter
from archive.webhooks import Endpoint, UnknownEndpoint, WebhookStore
from starter.console import fail, parse_when, print_json, run
from starter.deliveries import start_replay
from starter.settings import Settings
from starter.webhook_commands import webhook_store

events_app = typer.Typer(
    help="Events sent to webhook endpoints: their delivery, and replays.", no_args_is_help=True
)


@events_app.command("list")
def list_events(
    endpoint: Annotated[str | None, typer.Option(help="One endpoint's (default: all).")] = None,
    rfi: Annotated[str | None, typer.Option(help="The events of one RFI's referrals.")] = None,
    status: Annotated[
        Literal["pending", "delivered", "dead"] | None,
        typer.Option(help="pending (not accepted yet), delivered, or dead (given up)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Per endpoint.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each event, newest first, with its delivery attempts, last response and next try."""
    webhooks = webhook_store()
    deliveries = DeliveryStore(webhooks.engine)
    endpoints = [_endpoint(webhooks, endpoint)] if endpoint else webhooks.endpoints()
    reports: list[DeliveryReport] = []
    for e in endpoints:
        start = deliveries.starting_position(e.id) or 0
        reports += deliveries.report(e, from_position=start, rfi_id=rfi, status=status, limit=limit)
    if as_json:
        print_json([asdict(r) for r in reports])
        return
    for r in reports:
        answer = f"HTTP {r.last_code}" if r.last_code else (r.last_error or "-")
        next_try = f"  next try {r.next_try_at:%Y-%m-%d %H:%M:%S}Z" if r.next_try_at else ""
        typer.echo(
            f"{r.event_id}  {r.type}  {r.endpoint_id}  {r.status}  "
            f"{r.attempts} tries  {answer}{next_try}"
        )


@events_app.command("replay")
def replay(
    endpoint: Annotated[str, typer.Argument(help="The endpoint to send them to.")],
    since: Annotated[
        str | None, typer.Option(help="Events that took effect at or after (ISO 8601).")
    ] = None,
    rfi: Annotated[str | None, typer.Option(help="Only the events of one RFI's referrals.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until every event was sent.")] = False,
) -> None:
    """Send the archived events again, in order, with their original ids (`webhook-id`),
    in a delivery run of their own beside the endpoint's live one."""
    settings = Settings()
    webhooks = webhook_store(settings)
    target = _endpoint(webhooks, endpoint)
    if not target.enabled:
        fail(f"endpoint {endpoint} is disabled: enable it first")
    deliveries = DeliveryStore(webhooks.engine)
    when = parse_when(since, "--since")
    count = deliveries.count(target, EventFilter(BEFORE_ALL, deliveries.last_position(), when, rfi))

    async def start(client: Client) -> str:
        handle = await start_replay(
            client, deliveries, target.id, settings.task_queue, since=when, rfi_id=rfi
        )
        typer.echo(f"replaying {count} event(s) to {target.id}: workflow {handle.id}")
        if wait:
            await handle.result()
            typer.echo("replayed")
        return handle.id

    run(start)


def _endpoint(webhooks: WebhookStore, endpoint_id: str) -> Endpoint:
    endpoint = webhooks.endpoint(endpoint_id)
    if endpoint is None:
        fail(str(UnknownEndpoint(endpoint_id)))
    return endpoint
