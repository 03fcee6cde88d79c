"""`referrals partners keys ...`: the API keys a partner's CRM uses with the partner API."""

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from activities.directory import DirectoryFile
from archive.partner_keys import PartnerKey, PartnerKeyStore, UnknownKey
from starter.console import checked_id, fail, open_archive, print_json
from starter.settings import Settings

partners_app = typer.Typer(
    help="Partners' access to the partner web service.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys for the partner API (/v1).", no_args_is_help=True)
partners_app.add_typer(keys_app, name="keys")


def key_store(settings: Settings | None = None) -> PartnerKeyStore:
    return PartnerKeyStore(open_archive(settings, migrate=True).engine)


@keys_app.command("add")
def add(
    partner: Annotated[str, typer.Argument(help="The partner id, as in the directory.")],
    description: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
) -> None:
    """Make a key for one partner; prints it, only this once (the archive keeps its hash)."""
    settings = Settings()
    partner = checked_id(partner, "partner id")
    try:
        directory = DirectoryFile(settings.partner_directory).load()
    except (OSError, ValueError) as error:
        fail(f"partner directory {settings.partner_directory}: {error}")
    if not any(p.id == partner for p in directory.partners):
        fail(f"no partner {partner!r} in the directory {settings.partner_directory}")
    key, secret = key_store(settings).add(partner, description, datetime.now(UTC))
    typer.echo(f"id   {key.id}")
    typer.echo(f"key  {secret}   (shown only now: the partner sends it as Authorization: Bearer)")


@keys_app.command("list")
def list_keys(
    partner: Annotated[str | None, typer.Option(help="One partner's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every key, without the key itself: id, partner, description, created, last used."""
    keys = key_store().list(None if partner is None else checked_id(partner, "partner id"))
    if as_json:
        print_json([_json(k) for k in keys])
        return
    if not keys:
        typer.echo("no API keys" + (f" for partner {partner}" if partner else ""))
    for k in keys:
        used = _when(k.last_used_at) if k.last_used_at else "never used"
        state = f"revoked {_when(k.revoked_at)}" if k.revoked_at else f"last used {used}"
        typer.echo(f"{k.id}  {k.partner_id}  {state}  {k.description or ''}".rstrip())


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Refuse the key from now on (it stays listed, revoked)."""
    try:
        key = key_store().revoke(key_id, datetime.now(UTC))
    except UnknownKey as error:
        fail(str(error))
    typer.echo(f"revoked {key.id} ({key.partner_id})")


def _when(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else ""


def _json(key: PartnerKey) -> dict[str, object]:
    data = asdict(key)
    for name in ("created_at", "last_used_at", "revoked_at"):
        data[name] = _when(data[name]) or None
    return data
