"""What the partner web service's tests share: settings whose emails carry signed links to
the service, the service's app in process, and the links read back from the outbox."""

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from starter.settings import Settings
from tests.emails import body, parse_eml
from tests.factories import SAMPLES
from web.app import create_app


def web_settings(folder: Path, public_url: str, link_key: tuple[str, bytes]) -> Settings:
    """The worker's and the service's settings alike: emails carry links to ``public_url``
    signed with ``link_key``; outbox and archive in ``folder``."""
    key_id, key = link_key
    return Settings(
        REFERRALS_OUTBOX_DIR=folder / "outbox",
        REFERRALS_PARTNER_DIRECTORY=SAMPLES / "partners.json",
        REFERRALS_DATABASE_URL=f"sqlite:///{folder}/referrals.db",
        REFERRALS_PUBLIC_URL=public_url,
        REFERRALS_LINK_KEYS=SecretStr(f"{key_id}:{base64.b64encode(key).decode()}"),
    )


@asynccontextmanager
async def served(
    settings: Settings, client: Client | None = None, address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the service's app, in process, as seen from ``address``."""
    transport = httpx.ASGITransport(app=create_app(settings, client=client), client=(address, 1))
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
        yield http


async def email_links(outbox: Path, glob: str) -> dict[str, str]:
    """Action to URL in the first email matching ``glob``, from its HTML part and checked
    against its text part (each URL on a line of its own); waits up to 30 s for it."""
    for _ in range(300):
        paths = await asyncio.to_thread(lambda: sorted(outbox.glob(glob)))
        if paths:
            message = parse_eml(paths[0])
            anchors = re.findall(r'<a href="([^"]+)" data-action="([^"]+)"', body(message, "html"))
            text = body(message, "plain").splitlines()
            assert all(url in text for url, _ in anchors)
            return {action: url for url, action in anchors}
        await asyncio.sleep(0.1)
    raise AssertionError(f"no email {glob} in {outbox} within 30 s")
