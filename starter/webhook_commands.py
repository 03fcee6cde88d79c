"""`referrals webhooks ...`: the endpoints that hear referral events."""

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from activities.webhook_sender import checked_url
from archive.webhooks import UnknownEndpoint, WebhookStore
from starter.client import connect
from starter.codec import CodecKeyError
from starter.console import fail, open_archive, print_json
from starter.deliveries import open_webhooks, wake_delivery
from starter.settings import Settings

webhooks_app = typer.Typer(help="Endpoints that hear every referral event.", no_args_is_help=True)


def webhook_store(settings: Settings | None = None) -> WebhookStore:
    """The endpoints, in the archive migrated to this version; one line if it cannot be."""
    settings = settings or Settings()
    engine = open_archive(settings, migrate=True).engine
    try:
        return open_webhooks(settings, engine)
    except CodecKeyError as error:
        fail(f"REFERRALS_CODEC_KEYS: {error}")


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="https://, or http:// on loopback.")],
    events: Annotated[
        str | None, typer.Option(help="Comma-separated event types (default: all).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the endpoint is for.")] = None,
) -> None:
    """Register an endpoint; prints its id and its secret, which is shown only this once."""
    settings = Settings()
    try:
        checked = checked_url(url, allow_private=settings.webhooks_allow_private)
        types = [e.strip() for e in (events or "").split(",") if e.strip()]
        endpoint, secret = webhook_store(settings).add(
            checked, types, description, datetime.now(UTC)
        )
    except ValueError as error:
        fail(str(error))
    typer.echo(f"id      {endpoint.id}")
    typer.echo(f"secret  {secret}   (shown only now: keep it where the receiver reads it)")
    _wake(endpoint.id, settings)


@webhooks_app.command("list")
def list_endpoints(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every endpoint, without its secrets."""
    endpoints = webhook_store().endpoints()
    if as_json:
        print_json([asdict(e) for e in endpoints])
        return
    for e in endpoints:
        state = "enabled" if e.enabled else f"disabled ({e.disabled_reason or 'by hand'})"
        typer.echo(f"{e.id}  {state}  {','.join(e.events) or 'all events'}  {e.url}")


@webhooks_app.command("disable")
def disable(endpoint_id: str) -> None:
    """Stop sending to an endpoint (its events wait until it is enabled again)."""
    _set_enabled(endpoint_id, False)


@webhooks_app.command("enable")
def enable(endpoint_id: str) -> None:
    _set_enabled(endpoint_id, True)


@webhooks_app.command("rotate-secret")
def rotate_secret(endpoint_id: str) -> None:
    """A new secret, shown only now; the old one keeps signing beside it for 24 hours."""
    try:
        secret = webhook_store().rotate_secret(endpoint_id, datetime.now(UTC))
    except UnknownEndpoint as error:
        fail(str(error))
    typer.echo(f"secret  {secret}   (the previous one signs too for 24 hours)")


@webhooks_app.command("remove")
def remove(endpoint_id: str) -> None:
    try:
        webhook_store().remove(endpoint_id)
    except UnknownEndpoint as error:
        fail(str(error))
    typer.echo(f"removed {endpoint_id}")
    _wake(endpoint_id)  # its delivery run ends now, not within the hour


def _set_enabled(endpoint_id: str, enabled: bool) -> None:
    try:
        endpoint = webhook_store().set_enabled(endpoint_id, enabled, None if enabled else "by hand")
    except UnknownEndpoint as error:
        fail(str(error))
    typer.echo(f"{endpoint.id} {'enabled' if endpoint.enabled else 'disabled'}")
    if enabled:
        _wake(endpoint_id)


def _wake(endpoint_id: str, settings: Settings | None = None) -> None:
    """Start or wake the endpoint's delivery run. The endpoint is stored already: if
    Temporal cannot be reached, say so; the worker starts the run when it next starts."""
    settings = settings or Settings()

    async def wake() -> str:
        client = await connect(settings)
        return await asyncio.wait_for(wake_delivery(client, endpoint_id, settings.task_queue), 30)

    try:
        workflow_id = asyncio.run(wake())
    except Exception as error:
        typer.echo(
            f"warning: delivery not started ({str(error).strip() or type(error).__name__}): "
            "the worker starts it when it next starts",
            err=True,
        )
        return
    typer.echo(f"delivery {workflow_id}")
