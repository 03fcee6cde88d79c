"""The web service's rate limits, per link and per client address, and its body cap: no
Temporal needed, since both answer before anything is looked up."""

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from starter.settings import Settings
from tests.factories import now_utc
from web.app import create_app
from web.links import ActionLink, LinkSigner
from workflows.models import Action

PUBLIC_URL = "https://partners.example.com"


@pytest.fixture
def limited(tmp_path: Path) -> Settings:
    return Settings(
        REFERRALS_DATABASE_URL=f"sqlite:///{tmp_path}/referrals.db",
        REFERRALS_PUBLIC_URL=PUBLIC_URL,
        REFERRALS_WEB_REQUESTS_PER_MINUTE=5,
        REFERRALS_WEB_ACTIONS_PER_MINUTE=2,
    )


def client(settings: Settings, address: str) -> httpx.AsyncClient:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)


async def test_actions_and_requests_are_limited_per_address_and_per_link(
    limited: Settings,
) -> None:
    app = create_app(limited)

    def at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)

    async with at("192.0.2.1") as first, at("192.0.2.2") as second, at("192.0.2.3") as third:
        # Two actions a minute on one link: the third is refused, saying when to retry.
        assert [(await first.post("/a/link-1")).status_code for _ in range(2)] == [403, 403]
        refused = await first.post("/a/link-1")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "at most 2 a minute" in refused.text
        # The same link from another address is still limited: the link is counted too.
        assert (await second.post("/a/link-1")).status_code == 429
        # Another link from a fresh address is not.
        assert (await third.post("/a/link-2")).status_code == 403
        # Five requests a minute from one address, whatever they ask for.
        answers = [(await second.get(f"/a/other-{n}")).status_code for n in range(5)]
        assert answers == [403, 403, 403, 403, 429]


async def test_a_body_past_16_kib_is_refused_declared_or_streamed(limited: Settings) -> None:
    key = ("k", b"k" * 32)
    settings = limited.model_copy(
        update={"link_keys": SecretStr(f"k:{base64.b64encode(key[1]).decode()}")}
    )
    token = LinkSigner([key]).sign_action(
        ActionLink("rfi-1", "acme-consulting", Action.NO_THANKS, now_utc() + timedelta(days=1))
    )
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with client(settings, "192.0.2.9") as web:
        declared = await web.post(f"/a/{token}", content=b"reason=" + b"x" * 17_000, headers=form)
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            yield b"reason="
            for _ in range(20):
                yield b"x" * 1024

        # Sent without a length: refused once the 16 KiB are passed, before Temporal is asked.
        streamed = await web.post(f"/a/{token}", content=chunks(), headers=form)
        assert streamed.status_code == 413
        assert "over 16384 bytes" in streamed.text


async def test_an_api_key_is_limited_wherever_it_calls_from(limited: Settings) -> None:
    app = create_app(limited)
    key = {"Authorization": "Bearer rpk_pk00_anything"}  # counted before it is checked
    answers = []
    for n in range(3):
        transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{n}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as api:
            answers.append(await api.post("/v1/referrals/rfi-1/actions/interested", headers=key))
    assert [a.status_code for a in answers] == [401, 401, 429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert int(refused.headers["retry-after"]) >= 1
