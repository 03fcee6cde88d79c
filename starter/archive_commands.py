"""The archive for people and scripts: `list`, `history`, `partner-stats`, `db upgrade`."""

from dataclasses import asdict
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from archive.schema import ReferralRow
from archive.stats import PartnerStats, partner_stats
from archive.store import ReferralFilter, archived_reason_code
from starter.console import checked_id, fail, open_archive, parse_when, print_json, run
from starter.recovery import stuck_referrals
from workflows.models import REASON_CODES, Status, referral_workflow_id

db_app = typer.Typer(help="The archive database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the archive's migrations (the worker also does it at start)."""
    store = open_archive(migrate=True)
    typer.echo(f"archive at {store.engine.url.render_as_string(hide_password=True)} is up to date")


def list_referrals(
    status: Annotated[Status | None, typer.Option(help="Only referrals in this status.")] = None,
    partner: Annotated[str | None, typer.Option(help="Only this partner's.")] = None,
    rfi: Annotated[str | None, typer.Option(help="Only this RFI's.")] = None,
    region: Annotated[str | None, typer.Option(help="Only this region's.")] = None,
    since: Annotated[str | None, typer.Option(help="Received at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Received before (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Page size.")] = 50,
    after: Annotated[
        str | None,
        typer.Option(help="The page after this workflow id (the last one of the page before)."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Closed with this reason code ('unspecified': refused without one)."),
    ] = None,
    flagged: Annotated[
        bool, typer.Option("--flagged", help="Only RFIs a partner flagged as spam or abuse.")
    ] = False,
    stuck: Annotated[
        bool,
        typer.Option(
            "--stuck",
            help="Instead, from Temporal: referrals whose run was terminated (recover them).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List archived referrals, newest received first, long after Temporal forgot them."""
    if stuck:
        others = (status, region, since, until, after, reason)
        if any(option is not None for option in others) or flagged:
            fail("--stuck takes only --rfi, --partner and --json")
        list_stuck(rfi, partner, as_json)
        return
    if reason is not None and reason not in REASON_CODES:
        fail(f"--reason {reason!r} is not a reason code: choose from {', '.join(REASON_CODES)}")
    where = ReferralFilter(
        status=status,
        partner_id=checked_id(partner, "partner id") if partner else None,
        rfi_id=checked_id(rfi, "RFI id") if rfi else None,
        region=checked_id(region, "region") if region else None,
        since=parse_when(since, "--since"),
        until=parse_when(until, "--until"),
        reason_code=reason,
        flagged=True if flagged else None,
    )
    store = open_archive()
    try:
        rows = store.referrals(where, limit=limit, after=after)
    except LookupError as error:
        fail(str(error))
    if as_json:
        print_json([summary(r) for r in rows])
        return
    table = Table("RFI", "Partner", "Region", "Status", "Received", "Updated", "Deal")
    for r in rows:
        amount = r.final_deal_value or r.estimated_deal_value
        deal = f"{_money_text(amount)} {r.currency}" if amount is not None else ""
        table.add_row(
            r.rfi_id,
            r.partner_id,
            r.region,
            r.status,
            _minutes(r.received_at),
            _minutes(r.updated_at),
            deal.strip(),
        )
    Console().print(table)
    more = f"; next page: --after {rows[-1].workflow_id}" if len(rows) == limit else ""
    typer.echo(f"{len(rows)} referral(s){more}")


def list_stuck(rfi: str | None, partner: str | None, as_json: bool) -> None:
    rfi_id = checked_id(rfi, "RFI id") if rfi else None
    partner_id = checked_id(partner, "partner id") if partner else None
    found = run(lambda client: stuck_referrals(client, rfi_id, partner_id))
    if as_json:
        print_json([{**asdict(s), "terminated_at": _iso(s.terminated_at)} for s in found])
        return
    if not found:
        typer.echo("no terminated referrals")
        return
    table = Table("RFI", "Partner", "Terminated", "Reason")
    for s in found:
        table.add_row(s.rfi_id, s.partner_id, _minutes(s.terminated_at), s.reason)
    Console().print(table)
    typer.echo(f"{len(found)} terminated: `referrals recover RFI PARTNER` takes each back")


def history(
    rfi: Annotated[str, typer.Argument(help="RFI id.")],
    partner: Annotated[str, typer.Argument(help="Partner id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One referral's timeline from the archive: every transition, its cause and times."""
    rfi, partner = checked_id(rfi, "RFI id"), checked_id(partner, "partner id")
    row = open_archive().find(rfi, partner)
    if row is None:
        fail(f"no archived referral {referral_workflow_id(rfi, partner)}")
    workflow_id = row.workflow_id
    timeline = [
        {
            "seq": t.seq,
            "from": t.from_status,
            "to": t.to_status,
            "effective_at": _iso(t.effective_at),
            "processed_at": _iso(t.processed_at),
            "cause": {"kind": t.cause_kind, "name": t.cause_name},
            "reason": t.reason,
            "reason_code": archived_reason_code(t),
            "via": {"door": t.door, "api_key_id": t.api_key_id} if t.door else None,
        }
        for t in row.transitions
    ]
    if as_json:
        print_json({**summary(row), "transitions": timeline})
        return
    typer.echo(
        f"{workflow_id}: {row.status}, region {row.region}, received {_minutes(row.received_at)}"
    )
    table = Table("#", "From", "To", "Cause", "Via", "Effective", "Processed", "Reason")
    for t in row.transitions:
        table.add_row(
            str(t.seq),
            t.from_status,
            t.to_status,
            f"{t.cause_kind}: {t.cause_name}",
            " ".join(part for part in (t.door, t.api_key_id) if part),
            _minutes(t.effective_at),
            _minutes(t.processed_at),
            ": ".join(part for part in (archived_reason_code(t), t.reason) if part),
        )
    Console().print(table)


def partner_stats_command(
    partner: Annotated[str | None, typer.Option(help="Only this partner.")] = None,
    since: Annotated[str | None, typer.Option(help="Referrals received since (ISO 8601).")] = None,
    total: Annotated[
        bool, typer.Option("--total", help="Add the figures over all of them (partner '*').")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Responsiveness and outcomes per partner (definitions in docs/operations.md)."""
    engine = open_archive().engine
    partner_ids = [checked_id(partner, "partner id")] if partner else None
    when = parse_when(since, "--since")
    stats = partner_stats(engine, partner_ids=partner_ids, since=when)
    if total and stats:
        stats += partner_stats(engine, partner_ids=partner_ids, since=when, per_partner=False)
    if as_json:
        print_json([stats_json(s) for s in stats])
        return
    table = Table(
        "Partner",
        "Referrals",
        "Median 1st resp.",
        "P90",
        "<24 h",
        "Accept",
        "Skip",
        "Miss",
        "Decline",
        "Expire",
        "Win",
        "Pipeline",
        "Won",
    )
    for s in stats:
        table.add_row(
            s.partner_id,
            str(s.referrals),
            _duration(s.median_first_response_s),
            _duration(s.p90_first_response_s),
            _share(s.answered_within_24h),
            _share(s.accept_rate),
            _share(s.skip_rate),
            _share(s.miss_rate),
            _share(s.decline_rate),
            _share(s.expire_rate),
            _share(s.win_rate),
            _amounts(s.pipeline_value),
            _amounts(s.won_value),
        )
    Console().print(table)
    for s in stats:
        for line in _learned(s):
            typer.echo(f"{s.partner_id}: {line}")


def _learned(stats: PartnerStats) -> list[str]:
    """What the marketplace learns beyond the table: reasons, and how estimates held."""
    lines = []
    for what, counts in (("declined", stats.declines_by_reason), ("lost", stats.losses_by_reason)):
        if counts:
            listed = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
            lines.append(f"{what}: {listed}")
    forecast = stats.forecast
    for currency, value in sorted(forecast.value_by_currency.items()):
        lines.append(
            f"final/estimated {currency}: median x{value.median_ratio:.2f}, "
            f"p90 x{value.p90_ratio:.2f} ({value.referrals} won)"
        )
    if forecast.close_slip_referrals:
        lines.append(
            f"closed vs estimated date: median {forecast.median_close_slip_days:+g} days, "
            f"p90 {forecast.p90_close_slip_days:+d} days ({forecast.close_slip_referrals} won)"
        )
    return lines


def summary(row: ReferralRow) -> dict[str, Any]:
    return {
        "workflow_id": row.workflow_id,
        "rfi_id": row.rfi_id,
        "partner_id": row.partner_id,
        "region": row.region,
        "location": row.location,
        "status": row.status,
        "received_at": _iso(row.received_at),
        "first_response_at": _iso(row.first_response_at),
        "updated_at": _iso(row.updated_at),
        "closed_at": _iso(row.closed_at),
        "estimated_deal_value": _money_text(row.estimated_deal_value),
        "currency": row.currency,
        "estimated_close_date": row.estimated_close_date.isoformat()
        if row.estimated_close_date
        else None,
        "final_deal_value": _money_text(row.final_deal_value),
        "flagged": row.flagged,
    }


def stats_json(stats: PartnerStats) -> dict[str, Any]:
    data = asdict(stats)
    for key in ("pipeline_value", "won_value"):
        data[key] = {currency: _money_text(v) for currency, v in sorted(data[key].items())}
    return data


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _money_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _minutes(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def _amounts(values: dict[str, Decimal]) -> str:
    return ", ".join(f"{_money_text(v)} {c}" for c, v in sorted(values.items()))
