"""Partners' API keys, for their CRMs: one partner each, shown once, stored as a hash.

A key reads `rpk_<id>_<secret>`: the id finds the row, the secret (32 random bytes) is
checked against its SHA-256 in constant time. A fast hash is enough for a random secret of
that length (nothing to guess); a password would need a slow one.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from archive.schema import PartnerKeyRow

PREFIX = "rpk_"
# `last_used_at` is written at most this often per key, not on every request.
LAST_USED_EVERY = timedelta(minutes=1)


class UnknownKey(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r}")


@dataclass(frozen=True)
class PartnerKey:
    """A key as `partners keys list` shows it: never the key itself."""

    id: str
    partner_id: str
    description: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key(row: PartnerKeyRow) -> PartnerKey:
    return PartnerKey(
        id=row.id,
        partner_id=row.partner_id,
        description=row.description,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class PartnerKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self, partner_id: str, description: str | None, now: datetime
    ) -> tuple[PartnerKey, str]:
        """A new key for ``partner_id`` and the key itself, which is shown only now."""
        key_id = f"pk{secrets.token_hex(8)}"  # no "_": the key's first "_" ends the id
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        row = PartnerKeyRow(
            id=key_id,
            partner_id=partner_id,
            key_hash=_hash(key),
            description=description,
            created_at=now,
        )
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.add(row)
        return _key(row), key

    def list(self, partner_id: str | None = None) -> list[PartnerKey]:
        query = select(PartnerKeyRow).order_by(PartnerKeyRow.created_at, PartnerKeyRow.id)
        if partner_id is not None:
            query = query.where(PartnerKeyRow.partner_id == partner_id)
        with Session(self.engine) as session:
            return [_key(row) for row in session.scalars(query)]

    def revoke(self, key_id: str, now: datetime) -> PartnerKey:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get(PartnerKeyRow, key_id)
            if row is None:
                raise UnknownKey(key_id)
            row.revoked_at = row.revoked_at or now
        return _key(row)

    def authenticate(self, key: str, now: datetime) -> PartnerKey | None:
        """The key's record if ``key`` is a live key, else None (whatever is wrong with it)."""
        body = key.removeprefix(PREFIX)
        key_id, separator, _ = body.partition("_")
        if body == key or not separator:
            return None
        with Session(self.engine) as session:
            row = session.get(PartnerKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.key_hash, _hash(key)):
                return None
            found = _key(row)
        if found.last_used_at is None or now - found.last_used_at >= LAST_USED_EVERY:
            with Session(self.engine) as session, session.begin():
                session.execute(
                    update(PartnerKeyRow).where(PartnerKeyRow.id == key_id).values(last_used_at=now)
                )
        return found
