"""The emails' one-click links, answered through the partner web service, on the dev server
with the production worker: what a GET shows (and never does), what a POST does once, and
every refusal."""

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from starter import referrals
from starter.settings import Settings
from tests.factories import DISTINCTIVE_CUSTOMER, DISTINCTIVE_TRACES, fresh_rfi, now_utc
from tests.partner_web import email_links, served, web_settings
from web.app import create_app
from web.links import ActionLink, LinkSigner
from workflows.models import Action, Rfi, Status

PUBLIC_URL = "https://partners.example.com"
LINK_KEY = ("web1", b"w" * 32)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return web_settings(tmp_path, PUBLIC_URL, LINK_KEY)


@pytest.fixture
async def web(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with served(settings, dev_env.client) as client:
        yield client


async def links_of(outbox: Path, rfi: Rfi, name: str) -> dict[str, str]:
    """Action to URL in the referral's email ``name`` (e.g. `1-lead`)."""
    return await email_links(outbox, f"referral:{rfi.id}:acme-consulting.{name}.eml")


def service_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the service logged (the test's own HTTP client logs whole URLs)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))


async def submitted(client: object, queue: str, **changes: object) -> Rfi:
    rfi = fresh_rfi(customer=DISTINCTIVE_CUSTOMER, **changes)
    await referrals.submit(client, rfi, ["acme-consulting"], task_queue=queue)  # type: ignore[arg-type]
    return rfi


async def test_a_partner_answers_from_the_emails_links(
    dev_env: WorkflowEnvironment,
    queue: str,
    settings: Settings,
    web: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rfi = await submitted(dev_env.client, queue)
    lead = await links_of(settings.outbox_dir, rfi, "1-lead")
    assert set(lead) == {"interested", "no_thanks"}

    # Mail scanners fetch every link: a GET shows the overview and a form, and acts on nothing.
    for _ in range(2):
        page = await web.get(lead["interested"])
        assert page.status_code == 200
        assert rfi.need in page.text
        assert '<form method="post"' in page.text
        assert not any(trace in page.text for trace in DISTINCTIVE_TRACES)
        assert page.headers["referrer-policy"] == "same-origin"
    view = await referrals.status(dev_env.client, rfi.id, "acme-consulting")
    assert view.status is Status.NEW
    assert view.transitions == []

    done = await web.post(lead["interested"], headers={"origin": PUBLIC_URL})
    assert done.status_code == 200
    assert "Evaluating" in done.text
    assert DISTINCTIVE_CUSTOMER["email"] in done.text  # the customer's details, now allowed
    again = await web.post(lead["interested"])
    assert again.status_code == 200
    assert "Already done" in again.text
    # The other answer of the lead is no longer possible, and says why.
    refused = await web.get(lead["no_thanks"])
    assert refused.status_code == 409
    assert "Evaluating" in refused.text

    details = await links_of(settings.outbox_dir, rfi, "2-details")
    assert set(details) == {"accept", "decline"}
    form = await web.get(details["accept"])
    assert form.status_code == 200
    assert DISTINCTIVE_CUSTOMER["name"] in form.text
    for field in ("estimated_deal_value", "currency", "estimated_close_date"):
        assert f'name="{field}"' in form.text

    close = str(now_utc().date() + timedelta(days=60))
    missing = await web.post(details["accept"], data={"estimated_deal_value": "48000"})
    assert missing.status_code == 422
    assert 'id="accept-currency-error"' in missing.text
    assert 'value="48000"' in missing.text  # what the partner typed is kept
    past = {
        "estimated_deal_value": "48000",
        "currency": "eur",
        "estimated_close_date": "2020-01-01",
    }
    in_the_past = await web.post(details["accept"], data=past)
    assert in_the_past.status_code == 422
    assert 'id="accept-estimated_close_date-error"' in in_the_past.text
    assert "in the past" in in_the_past.text
    accepted = await web.post(details["accept"], data={**past, "estimated_close_date": close})
    assert accepted.status_code == 200
    assert "Negotiating" in accepted.text

    view = await referrals.status(dev_env.client, rfi.id, "acme-consulting")
    assert [t.cause.name for t in view.transitions] == ["interested", "accept"]
    assert {t.via.door if t.via else None for t in view.transitions} == {"email_link"}
    assert view.deal is not None
    assert (str(view.deal.estimated_deal_value), view.deal.currency) == ("48000", "EUR")
    assert str(view.deal.estimated_close_date) == close
    # Nothing personal and no token in the service's log.
    logged = service_log(caplog)
    for url in (*lead.values(), *details.values()):
        assert url.rsplit("/", 1)[1] not in logged
    assert not any(trace in logged for trace in DISTINCTIVE_TRACES)
    assert "POST /a/{token} 200" in logged


async def test_tampered_expired_unknown_and_cross_site_answers_act_on_nothing(
    dev_env: WorkflowEnvironment,
    queue: str,
    settings: Settings,
    web: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rfi = await submitted(dev_env.client, queue)
    lead = await links_of(settings.outbox_dir, rfi, "1-lead")
    token = lead["interested"].rsplit("/", 1)[1]
    signer = LinkSigner([LINK_KEY])
    header, claims, signature = token.split(".")
    tampered = f"{header}.{claims[:-2]}{'A' if claims[-2] != 'A' else 'B'}{claims[-1]}.{signature}"
    expired = signer.sign_action(
        ActionLink(rfi.id, "acme-consulting", Action.INTERESTED, now_utc() - timedelta(seconds=1))
    )
    foreign_key = LinkSigner([("web1", b"x" * 32)]).sign_action(
        ActionLink(rfi.id, "acme-consulting", Action.INTERESTED, now_utc() + timedelta(days=1))
    )
    for bad in (tampered, expired, foreign_key, "nonsense"):
        for method in ("GET", "POST"):
            answer = await web.request(method, f"/a/{bad}")
            assert answer.status_code == 403
            assert "not valid" in answer.text
    assert "action link refused: expired" in service_log(caplog)
    assert token not in service_log(caplog)

    # Another partner's link for this RFI: signed, but no such referral to act on.
    globex = signer.sign_action(
        ActionLink(rfi.id, "globex", Action.INTERESTED, now_utc() + timedelta(days=1))
    )
    assert (await web.post(f"/a/{globex}")).status_code == 404

    cross_site = await web.post(lead["interested"], headers={"origin": "https://evil.example"})
    assert cross_site.status_code == 403
    too_big = await web.post(lead["no_thanks"], data={"reason": "x" * 20_000})
    assert too_big.status_code == 413

    view = await referrals.status(dev_env.client, rfi.id, "acme-consulting")
    assert view.status is Status.NEW
    assert view.transitions == []


async def test_a_link_after_the_deadline_names_the_status_it_ended_in(
    dev_env: WorkflowEnvironment, queue: str, settings: Settings, web: httpx.AsyncClient
) -> None:
    rfi = await submitted(
        dev_env.client, queue, deadlines={"respond_within": "PT3S", "remind_after": "PT2S"}
    )
    lead = await links_of(settings.outbox_dir, rfi, "1-lead")
    for _ in range(100):
        view = await referrals.status(dev_env.client, rfi.id, "acme-consulting")
        if view.status is Status.MISSED:
            break
        await asyncio.sleep(0.1)
    answer = await web.post(lead["interested"])
    assert answer.status_code == 409
    assert "Missed" in answer.text
    assert (await web.get(lead["no_thanks"])).status_code == 409
    view = await referrals.status(dev_env.client, rfi.id, "acme-consulting")
    assert [t.cause.name for t in view.transitions] == ["respond"]


async def test_healthz_says_what_is_unreachable(
    dev_env: WorkflowEnvironment, settings: Settings, web: httpx.AsyncClient
) -> None:
    healthy = await web.get("/healthz")
    assert (healthy.status_code, healthy.json()) == (200, {"temporal": "ok", "archive": "ok"})

    from starter.dev import free_port

    down = settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{free_port()}",
            "database_url": "postgresql://nobody@127.0.0.1:1/none",
        }
    )
    app = create_app(down)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        answer = await c.get("/healthz")
    assert answer.status_code == 503
    assert answer.json() == {"temporal": "unreachable", "archive": "unreachable"}
