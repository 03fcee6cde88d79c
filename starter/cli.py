"""The `referrals` command: submit RFIs, act on referrals, read their status, run locally."""

import asyncio
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from temporalio.client import Client

from starter import recovery, referrals
from starter.archive_commands import db_app, history, list_referrals, partner_stats_command
from starter.codec import CodecKeyError, codec_from_keys
from starter.console import (
    checked_id,
    fail,
    open_archive,
    parse_duration,
    print_json,
    read_rfi,
    run,
)
from starter.event_commands import events_app
from starter.partner_commands import partners_app
from starter.settings import Settings
from starter.ui import ListFilter, list_link, ready_made_views
from starter.webhook_commands import webhooks_app
from workflows.models import Action, Status, StatusView, referral_workflow_id
from workflows.payloads import describe

app = typer.Typer(
    help="Drive referral workflows on Temporal (settings come from the environment).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(events_app, name="events")
app.add_typer(partners_app, name="partners")
app.command("list")(list_referrals)
app.command()(history)
app.command("partner-stats")(partner_stats_command)


def dump(view: StatusView) -> Any:
    return view.model_dump(mode="json")


@app.command()
def submit(
    rfi_file: Annotated[
        Path, typer.Argument(help="The RFI as JSON ('-' reads stdin); without received_at: now.")
    ],
    partners: Annotated[str, typer.Option("--partners", help="Comma-separated partner ids.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Send one RFI to several partners: one referral each, never started twice."""
    rfi = read_rfi(rfi_file)
    ids = [checked_id(p.strip(), "partner id") for p in partners.split(",") if p.strip()]
    if not ids:
        fail("--partners names no partner")
    # Temporal forgets closed runs after the namespace's retention; the archive does not.
    archive = open_archive(migrate=True)
    # By (RFI, partner): referrals archived under an earlier id scheme count too.
    known = {referral_workflow_id(rfi.id, p) for p in archive.partners_of_rfi(rfi.id) & set(ids)}

    async def submitted(client: Client) -> tuple[referrals.Submission, dict[str, str]]:
        result = await referrals.submit(client, rfi, ids, archived=known)
        return result, await referrals.failed_starts(client, result.started)

    result, failed = run(submitted)
    started = [workflow_id for workflow_id in result.started if workflow_id not in failed]
    if as_json:
        print_json({"started": started, "existing": result.existing, "failed": failed})
    else:
        for workflow_id in started:
            typer.echo(f"started        {workflow_id}")
        for workflow_id in result.existing:
            typer.echo(f"already exists {workflow_id} (not started again)")
        for workflow_id, why in failed.items():
            typer.echo(f"failed         {workflow_id}: {why}")
        counts = f"{len(started)} started, {len(result.existing)} already existed"
        typer.echo(counts + (f", {len(failed)} failed to start" if failed else ""))
    if failed:
        raise typer.Exit(1)


@app.command()
def act(
    rfi: Annotated[str, typer.Argument(help="RFI id.")],
    partner: Annotated[str, typer.Argument(help="Partner id.")],
    action: Annotated[Action, typer.Argument(help="The partner's action.")],
    deal_value: Annotated[str | None, typer.Option(help="accept: estimated deal value.")] = None,
    currency: Annotated[str | None, typer.Option(help="accept: ISO 4217 currency.")] = None,
    close_date: Annotated[str | None, typer.Option(help="accept: YYYY-MM-DD.")] = None,
    final_value: Annotated[str | None, typer.Option(help="won: final deal value.")] = None,
    reason: Annotated[str | None, typer.Option(help="no_thanks/decline/lost: why.")] = None,
    reason_code: Annotated[
        str | None,
        typer.Option(help="no_thanks/decline/lost: the reason's code (README: Reason codes)."),
    ] = None,
) -> None:
    """Take an action and print the referral's new status view."""
    rfi, partner = checked_id(rfi, "RFI id"), checked_id(partner, "partner id")
    payload: dict[str, Any] = {
        key: value
        for key, value in {
            "estimated_deal_value": deal_value,
            "currency": currency,
            "estimated_close_date": close_date,
            "final_deal_value": final_value,
            "reason": reason,
            "reason_code": reason_code,
        }.items()
        if value is not None
    }
    for key in ("estimated_deal_value", "final_deal_value"):
        if key in payload and not _is_decimal(payload[key]):
            option = "--deal-value" if key == "estimated_deal_value" else "--final-value"
            fail(f"{option} {payload[key]!r} is not a number")
    view = run(lambda client: referrals.act(client, rfi, partner, action.value, payload))
    print_json(dump(view))


@app.command()
def status(
    rfi: Annotated[str, typer.Argument(help="RFI id.")],
    partner: Annotated[
        str | None, typer.Argument(help="Partner id; all partners if left out.")
    ] = None,
) -> None:
    """Print a referral's status view as JSON (an array of every partner's without PARTNER).

    Referrals that failed (an unknown partner, a region it does not serve) are named on
    stderr.
    """
    rfi = checked_id(rfi, "RFI id")
    if partner is None:
        views, failures = run(lambda client: referrals.statuses(client, rfi))
        print_json([dump(v) for v in views])
        for failure in failures:
            typer.echo(f"warning: {failure}", err=True)
        return
    partner = checked_id(partner, "partner id")
    print_json(dump(run(lambda client: referrals.status(client, rfi, partner))))


@app.command()
def recover(
    rfi: Annotated[str, typer.Argument(help="RFI id.")],
    partner: Annotated[str, typer.Argument(help="Partner id.")],
) -> None:
    """Take back a referral whose run was terminated (`list --stuck`): a new run from its
    last workflow task before the flood, the signals after it dropped."""
    rfi, partner = checked_id(rfi, "RFI id"), checked_id(partner, "partner id")

    async def recovered(client: Client) -> tuple[recovery.Recovery, str]:
        done = await recovery.recover(client, rfi, partner)
        try:  # the new run's status, once a worker has replayed it
            view = await asyncio.wait_for(referrals.status(client, rfi, partner), 10)
        except TimeoutError:
            return done, "running (no worker answered within 10 s)"
        return done, str(view.status)

    done, now = run(recovered)
    point = done.point
    if point.retakes_actions:
        typer.echo(
            "warning: no workflow task before the flood was free of actions: those of "
            f"event {point.event_id}'s task take effect again, now",
            err=True,
        )
    typer.echo(
        f"recovered {done.workflow_id}: a new run ({done.run_id}) from event {point.event_id} "
        f"of {point.events} ({point.kept_bytes / 1e6:.1f} MB kept); "
        f"{point.dropped_signals} signal(s) after it dropped, updates reapplied; now {now}"
    )


@app.command("codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve /encode and /decode for the Temporal UI and CLI (REFERRALS_CODEC_KEYS).

    Without REFERRALS_CODEC_TOKEN it only listens on a loopback address.
    """
    from starter.codec_server import ExposedWithoutTokenError, serve

    settings = Settings()
    try:
        codec = codec_from_keys(
            settings.codec_keys.get_secret_value() if settings.codec_keys else None
        )
    except CodecKeyError as error:
        fail(f"REFERRALS_CODEC_KEYS: {error}")
    if codec is None:
        fail("REFERRALS_CODEC_KEYS is not set: there is nothing to decode")
    token = settings.codec_token.get_secret_value() if settings.codec_token else None
    try:
        serve(codec, host=host, port=port, cors_origin=settings.codec_cors_origin, token=token)
    except ExposedWithoutTokenError as error:
        fail(str(error))


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve the partner web service: the emails' one-click links (REFERRALS_LINK_KEYS,
    REFERRALS_PUBLIC_URL) and /healthz."""
    from web.links import LinkKeyError
    from web.server import serve as serve_web

    try:
        settings = Settings()
    except ValidationError as error:
        fail(f"invalid setting: {describe(error).replace('Value error, ', '')}")
    try:
        serve_web(settings, host=host, port=port)
    except LinkKeyError as error:
        fail(str(error))


@app.command()
def ui(
    status: Annotated[
        list[Status] | None, typer.Option(help="A status (the option may repeat).")
    ] = None,
    rfi: Annotated[str | None, typer.Option(help="One RFI's referrals.")] = None,
    partner: Annotated[str | None, typer.Option(help="One partner's referrals.")] = None,
    due_within: Annotated[
        str | None,
        typer.Option(help="Whose running deadline falls within this ISO 8601 duration (PT24H)."),
    ] = None,
) -> None:
    """Print a Temporal UI link listing the referrals that match; with no filter, the
    ready-made views (REFERRALS_UI_URL, default http://localhost:8233)."""
    settings = Settings()
    now = datetime.now(UTC)
    views: list[tuple[str, ListFilter]]
    if status or rfi or partner or due_within:
        chosen = ListFilter(
            statuses=tuple(status or ()),
            rfi_id=None if rfi is None else checked_id(rfi, "RFI id"),
            partner_id=None if partner is None else checked_id(partner, "partner id"),
            due_before=None if due_within is None else now + parse_duration(due_within),
        )
        views = [("", chosen)]
    else:
        views = ready_made_views(now)
    for title, chosen in views:
        link = list_link(settings.ui_url, settings.temporal_namespace, chosen.query())
        typer.echo(f"{title}: {link}" if title else link)


@app.command()
def dev(
    db_file: Annotated[Path, typer.Option(help="The dev server's SQLite file.")] = Path(
        ".temporal/referrals.db"
    ),
    port: Annotated[int, typer.Option(help="Temporal's gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="The Temporal Web UI's port.")] = 8233,
    web_port: Annotated[int, typer.Option(help="The partner web service's port.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Send a demo RFI to three sample partners.")] = True,
) -> None:
    """Run everything locally: the Temporal dev server, the worker, the partner web service
    and a demo RFI."""
    from starter.dev import run_dev

    try:
        run_dev(db_file=db_file, port=port, ui_port=ui_port, web_port=web_port, demo=demo)
    except referrals.ReferralError as error:
        fail(str(error))


def _is_decimal(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except ArithmeticError:
        return False


def main() -> NoReturn:
    """Entry point: the exit code is final even if the SDK's runtime is slow to tear down."""
    try:
        app()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except Exception as error:  # a bug: still one line and a reliable exit code
        typer.echo(f"error: unexpected {type(error).__name__}: {error}", err=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalisation, where the SDK's native runtime can crash (sdk-python #300).
    os._exit(code)
