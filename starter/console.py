"""Helpers for the `referrals` command: one-line errors, connecting, reading input."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from archive.database import create_archive_engine, upgrade
from archive.store import ArchiveStore
from starter import referrals
from starter.client import connect
from starter.codec import CodecKeyError
from starter.settings import Settings
from workflows.models import Id, Rfi
from workflows.payloads import describe

T = TypeVar("T")
IDS = TypeAdapter(Id)


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


COMMAND_TIMEOUT = timedelta(seconds=30)  # how long a command waits for Temporal


def run(operation: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run one operation, and turn every expected failure into one line."""
    settings = Settings()

    async def main() -> T:
        try:
            client = await connect(settings)
        except CodecKeyError as error:
            fail(f"REFERRALS_CODEC_KEYS: {error}")
        except RuntimeError as error:
            fail(
                f"cannot reach Temporal at {settings.temporal_address} "
                f"(namespace {settings.temporal_namespace}): {error}"
            )
        try:
            return await asyncio.wait_for(operation(client), COMMAND_TIMEOUT.total_seconds())
        except TimeoutError:
            fail(
                f"no answer within {COMMAND_TIMEOUT.seconds} s: is a worker polling the "
                f"'{settings.task_queue}' task queue of namespace {settings.temporal_namespace}?"
            )

    try:
        return asyncio.run(main())
    except referrals.ReferralError as error:
        fail(str(error))
    except RPCError as error:
        fail(f"Temporal refused the request: {error.message}")
    except TemporalError as error:
        fail(f"Temporal could not answer: {error}")


def checked_id(value: str, what: str) -> str:
    try:
        return IDS.validate_python(value)
    except ValidationError:
        fail(f"{what} {value!r} is not a valid id (1-64 characters of A-Za-z0-9._-)")


def read_rfi(path: Path) -> Rfi:
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as error:
        fail(f"cannot read RFI file {path}: {error.strerror or error}")
    try:
        text = raw.decode("utf-8-sig")  # JSON is UTF-8; a byte order mark is tolerated
    except UnicodeDecodeError as error:
        fail(f"RFI file {path} is not UTF-8: byte 0x{raw[error.start]:02x} at offset {error.start}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"RFI file {path} is not valid JSON: {error}")
    except RecursionError:
        fail(f"RFI file {path} is nested too deeply")
    if isinstance(data, dict) and "received_at" not in data:
        # An RFI handed over now: the marketplace received it at the moment of submission.
        data["received_at"] = datetime.now(UTC).isoformat()
        # Said, not silent: each submission of such a file stamps its own moment, and the
        # deadlines of the referrals it starts count from it.
        source = "stdin" if str(path) == "-" else str(path)
        typer.echo(f"no received_at in {source}: received now, {data['received_at']}", err=True)
    try:
        return Rfi.model_validate(data)
    except ValidationError as error:
        fail(f"invalid RFI in {path}: {describe(error, whole='rfi', limit=None)}")


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


DURATION = TypeAdapter(timedelta)


def parse_duration(value: str) -> timedelta:
    """An ISO 8601 duration (PT24H, P2D) longer than zero."""
    try:
        duration = DURATION.validate_python(value, strict=False)
    except ValidationError:
        fail(f"{value!r} is not an ISO 8601 duration (PT24H, P2D)")
    if duration <= timedelta(0):
        fail(f"{value!r} is not longer than zero")
    return duration


WHEN = TypeAdapter(datetime | date)


def parse_when(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date (midnight UTC) or date-time with an offset."""
    if value is None:
        return None
    try:
        when = WHEN.validate_python(value)
    except ValidationError:
        fail(f"{option} {value!r} is not an ISO 8601 date or date-time")
    if isinstance(when, datetime):
        if when.tzinfo is None:
            fail(f"{option} {value!r} needs an offset (Z or +02:00)")
        return when.astimezone(UTC)
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


def open_archive(settings: Settings | None = None, *, migrate: bool = False) -> ArchiveStore:
    """The archive database (migrated first if asked), or one clear line if it is unusable."""
    settings = settings or Settings()
    engine: Engine = create_archive_engine(settings.database_url)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        if migrate:
            upgrade(engine)
        migrated = inspect(engine).has_table("referrals")
    except SQLAlchemyError as error:
        fail(f"cannot open the archive at {shown}: {error.__cause__ or error}")
    if not migrated:
        fail(f"the archive at {shown} has no tables yet: run `referrals db upgrade`")
    return ArchiveStore(engine)
