"""The `referrals` command: submit RFIs, act on referrals, read their status, run locally."""

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from starter import referrals
from starter.client import connect
from starter.settings import Settings
from workflows.models import Action, Id, Rfi, Status, StatusView

app = typer.Typer(
    help="Drive referral workflows on Temporal (settings come from the environment).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
T = TypeVar("T")
IDS = TypeAdapter(Id)


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def run(operation: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run one operation, and turn every expected failure into one line."""
    settings = Settings()

    async def main() -> T:
        try:
            client = await connect(settings)
        except RuntimeError as error:
            fail(
                f"cannot reach Temporal at {settings.temporal_address} "
                f"(namespace {settings.temporal_namespace}): {error}"
            )
        return await operation(client)

    try:
        return asyncio.run(main())
    except referrals.ReferralError as error:
        fail(str(error))
    except RPCError as error:
        fail(f"Temporal refused the request: {error.message}")


def checked_id(value: str, what: str) -> str:
    try:
        return IDS.validate_python(value)
    except ValidationError:
        fail(f"{what} {value!r} is not a valid id (1-64 characters of A-Za-z0-9._-)")


def read_rfi(path: Path) -> Rfi:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        fail(f"cannot read RFI file {path}: {error.strerror or error}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"RFI file {path} is not valid JSON: {error}")
    try:
        return Rfi.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'rfi'}: {e['msg']}" for e in error.errors()
        )
        fail(f"invalid RFI in {path}: {problems}")


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def dump(view: StatusView) -> Any:
    return view.model_dump(mode="json")


@app.command()
def submit(
    rfi_file: Annotated[Path, typer.Argument(help="The RFI as JSON ('-' reads stdin).")],
    partners: Annotated[str, typer.Option("--partners", help="Comma-separated partner ids.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Send one RFI to several partners: one referral each, never started twice."""
    rfi = read_rfi(rfi_file)
    ids = [checked_id(p.strip(), "partner id") for p in partners.split(",") if p.strip()]
    if not ids:
        fail("--partners names no partner")
    result = run(lambda client: referrals.submit(client, rfi, ids))
    if as_json:
        print_json(asdict(result))
        return
    for workflow_id in result.started:
        typer.echo(f"started        {workflow_id}")
    for workflow_id in result.existing:
        typer.echo(f"already exists {workflow_id} (not started again)")
    typer.echo(f"{len(result.started)} started, {len(result.existing)} already existed")


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
        }.items()
        if value is not None
    }
    for key in ("estimated_deal_value", "final_deal_value"):
        if key in payload and not _is_decimal(payload[key]):
            fail(f"--{key.split('_')[0]}-value {payload[key]!r} is not a number")
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


@app.command("list")
def list_referrals(
    status: Annotated[Status | None, typer.Option(help="Only referrals in this status.")] = None,
    partner: Annotated[str | None, typer.Option(help="Only this partner's.")] = None,
    rfi: Annotated[str | None, typer.Option(help="Only this RFI's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List referrals from Temporal visibility (closed ones for the namespace's retention)."""
    partner = checked_id(partner, "partner id") if partner else None
    rfi = checked_id(rfi, "RFI id") if rfi else None
    found = run(
        lambda client: referrals.summaries(
            client, status=status, partner_id=partner, rfi_id=rfi, limit=limit
        )
    )
    if as_json:
        print_json([asdict(s) for s in found])
        return
    table = Table("RFI", "Partner", "Region", "Status", "Respond by", "Started")
    for s in found:
        table.add_row(
            s.rfi_id,
            s.partner_id,
            s.region,
            s.status,
            _minutes(s.respond_by),
            _minutes(s.started_at),
        )
    Console().print(table)
    typer.echo(f"{len(found)} referral(s)")


@app.command()
def dev(
    db_file: Annotated[Path, typer.Option(help="The dev server's SQLite file.")] = Path(
        ".temporal/referrals.db"
    ),
    port: Annotated[int, typer.Option(help="Temporal's gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="The Temporal Web UI's port.")] = 8233,
    demo: Annotated[bool, typer.Option(help="Send a demo RFI to three sample partners.")] = True,
) -> None:
    """Run everything locally: the Temporal dev server, the worker and a demo RFI."""
    from starter.dev import run_dev

    try:
        run_dev(db_file=db_file, port=port, ui_port=ui_port, demo=demo)
    except referrals.ReferralError as error:
        fail(str(error))


def _is_decimal(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except ArithmeticError:
        return False


def _minutes(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def main() -> NoReturn:
    """Entry point: the exit code is final even if the SDK's runtime is slow to tear down."""
    try:
        app()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalisation, where the SDK's native runtime can crash (sdk-python #300).
    os._exit(code)
