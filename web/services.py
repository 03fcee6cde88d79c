"""What the web service holds for its lifetime: settings, the link signer, the archive, and
one Temporal client, connected on first use (so that the service starts, and says it is
unhealthy, while Temporal is down)."""

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from cachetools import TTLCache
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine, text
from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from activities.directory import DirectoryFile
from activities.mailers import Mailer
from archive.idempotency import IdempotencyStore
from archive.partner_keys import PartnerKey, PartnerKeyStore
from archive.sign_ins import SignInStore
from archive.store import ArchiveStore
from starter.client import connect
from starter.settings import Settings
from web.links import LinkSigner
from web.rate import SignInEmails

TEMPLATES = Path(__file__).parent / "templates"
# How long a page waits for Temporal before it says to try again.
TEMPORAL_TIMEOUT = timedelta(seconds=10)
log = logging.getLogger("web")
# How long a process trusts an API key it found live: every request asking the archive
# would cost more than the update it carries.
KEYS_CACHED_FOR = timedelta(seconds=10)


class Unavailable(Exception):
    """Temporal or the archive cannot answer now; the message says which, never a secret."""


T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    signer: LinkSigner | None
    archive: Engine
    mailer: Mailer
    client: Client | None = None
    _connecting: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.archive_store = ArchiveStore(self.archive)
        self.partner_keys = PartnerKeyStore(self.archive)
        self.idempotency = IdempotencyStore(self.archive)
        self.sign_ins = SignInStore(self.archive)
        self.directory = DirectoryFile(self.settings.partner_directory)
        self.templates = Jinja2Templates(directory=TEMPLATES)
        self.sign_in_emails = SignInEmails()
        self._keys: TTLCache[str, PartnerKey] = TTLCache(10_000, KEYS_CACHED_FOR.total_seconds())

    async def partner_key(self, key: str) -> PartnerKey | None:
        """The live API key ``key`` is, or None. A key found is trusted for
        ``KEYS_CACHED_FOR`` in this process (a revoked key is refused within that much);
        one not found is looked up again each time."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        found: PartnerKey | None = self._keys.get(digest)
        if found is None:
            found = await asyncio.to_thread(self.partner_keys.authenticate, key, datetime.now(UTC))
            if found is not None:
                self._keys[digest] = found
        return found

    def partner_name(self, partner_id: str) -> str:
        """The partner's name from the directory (its id when the directory cannot say)."""
        try:
            partners = self.directory.load().partners
        except (OSError, ValueError):
            return partner_id
        return next((p.name for p in partners if p.id == partner_id), partner_id)

    def contact_by_email(self, email: str) -> tuple[str, str, str] | None:
        """(partner id, partner name, contact name) of the directory's contact with this
        address, compared without case; None for an address that is no contact's."""
        try:
            found = self.directory.load().contact_by_email(email)
        except (OSError, ValueError):
            log.warning("the partner directory cannot be read: no sign-in link sent")
            return None
        return None if found is None else (found[0].id, found[0].name, found[1].contact_name)

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.settings.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    async def temporal(self) -> Client:
        if self.client is not None:
            return self.client
        async with self._connecting:
            if self.client is None:
                try:
                    self.client = await asyncio.wait_for(
                        connect(self.settings), TEMPORAL_TIMEOUT.total_seconds()
                    )
                except (RuntimeError, TimeoutError):
                    raise Unavailable("Temporal is unreachable") from None
            return self.client

    async def ask_temporal(self, call: Callable[[Client], Awaitable[T]]) -> T:
        """``call`` on the client, bounded in time. A refusal of the referral's
        (`ReferralError`) passes through; a server that cannot answer is `Unavailable`."""
        try:
            client = await self.temporal()
            return await asyncio.wait_for(call(client), TEMPORAL_TIMEOUT.total_seconds())
        except (TimeoutError, RPCError, TemporalError) as error:
            log.warning("Temporal did not answer: %s", type(error).__name__)
            raise Unavailable("Temporal did not answer") from None

    async def temporal_healthy(self) -> bool:
        try:
            client = await self.temporal()
            return await asyncio.wait_for(client.service_client.check_health(), 5)
        except Exception:  # unreachable, refused or slow: all mean unhealthy
            return False

    async def archive_healthy(self) -> bool:
        def probe() -> None:
            with self.archive.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), 5)
        except Exception:
            return False
        return True
