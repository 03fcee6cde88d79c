"""The webhook endpoints other systems register, and their signing secrets.

A secret is `whsec_` and 24 random bytes in base64, shown once when it is made. It is
stored sealed with the codec keys when REFERRALS_CODEC_KEYS is set (readable with any
listed key, so the keys can rotate), as it is otherwise. Rotating keeps the previous secret
signing beside the new one for 24 hours.
"""

import base64
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from archive.events import CREATED, EVENT_TYPES
from archive.schema import EventRow, WebhookEndpointRow

ROTATION_OVERLAP = timedelta(hours=24)
EVENT_NAMES = (CREATED, *EVENT_TYPES.values())


class UnknownEndpoint(LookupError):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"no webhook endpoint {endpoint_id!r}")


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as `webhooks list` shows it: never its secrets."""

    id: str
    url: str
    events: list[str]  # empty: every event
    enabled: bool
    description: str | None
    disabled_reason: str | None = None

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


class Sealer(Protocol):
    """Encrypts a value to store, and reads it back (the codec, with its keys)."""

    def seal(self, text: str) -> str: ...

    def unseal(self, stored: str) -> str: ...


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


class WebhookStore:
    def __init__(self, engine: Engine, codec: Sealer | None = None) -> None:
        self.engine = engine
        self._codec = codec

    def add(
        self, url: str, events: Sequence[str], description: str | None, now: datetime
    ) -> tuple[Endpoint, str]:
        """A new, enabled endpoint and its secret, which is shown only now. It hears the
        events recorded from now on."""
        unknown = sorted(set(events) - set(EVENT_NAMES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}: choose from {', '.join(EVENT_NAMES)}")
        secret = new_secret()
        with Session(self.engine) as session, session.begin():
            last = session.scalar(select(func.max(EventRow.position))) or 0
            row = WebhookEndpointRow(
                id=f"ep_{uuid.uuid4().hex[:24]}",
                url=url,
                events=",".join(dict.fromkeys(events)),
                description=description,
                enabled=True,
                secret=self._seal(secret),
                created_at=now,
                from_position=last,
            )
            session.add(row)
            endpoint = _endpoint(row)
        return endpoint, secret

    def endpoints(self) -> list[Endpoint]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(WebhookEndpointRow).order_by(WebhookEndpointRow.created_at)
            )
            return [_endpoint(row) for row in rows]

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        with Session(self.engine) as session:
            row = session.get(WebhookEndpointRow, endpoint_id)
            return None if row is None else _endpoint(row)

    def set_enabled(self, endpoint_id: str, enabled: bool, reason: str | None = None) -> Endpoint:
        with Session(self.engine) as session, session.begin():
            row = self._row(session, endpoint_id)
            row.enabled = enabled
            row.disabled_reason = None if enabled else reason
            return _endpoint(row)

    def rotate_secret(self, endpoint_id: str, now: datetime) -> str:
        """A new secret, shown only now; the previous one signs too for 24 hours."""
        secret = new_secret()
        with Session(self.engine) as session, session.begin():
            row = self._row(session, endpoint_id)
            row.previous_secret, row.previous_until = row.secret, now + ROTATION_OVERLAP
            row.secret = self._seal(secret)
        return secret

    def remove(self, endpoint_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.delete(self._row(session, endpoint_id))

    def secrets(self, endpoint_id: str, now: datetime) -> list[str]:
        """The secrets that sign now: the current one, then the previous within 24 hours."""
        with Session(self.engine) as session:
            row = self._row(session, endpoint_id)
            sealed = [row.secret]
            if row.previous_secret and row.previous_until and now < row.previous_until:
                sealed.append(row.previous_secret)
        return [self._unseal(value) for value in sealed]

    def _row(self, session: Session, endpoint_id: str) -> WebhookEndpointRow:
        row = session.get(WebhookEndpointRow, endpoint_id)
        if row is None:
            raise UnknownEndpoint(endpoint_id)
        return row

    def _seal(self, secret: str) -> str:
        return self._codec.seal(secret) if self._codec else secret

    def _unseal(self, stored: str) -> str:
        if self._codec is None:
            if not stored.startswith("whsec_"):
                raise ValueError("the secret is sealed: set REFERRALS_CODEC_KEYS to read it")
            return stored
        return self._codec.unseal(stored)


def _endpoint(row: WebhookEndpointRow) -> Endpoint:
    return Endpoint(
        id=row.id,
        url=row.url,
        events=[e for e in row.events.split(",") if e],
        enabled=row.enabled,
        description=row.description,
        disabled_reason=row.disabled_reason,
    )
