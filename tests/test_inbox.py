"""The partner's inbox on the dev server with the production worker: signing in by email,
one partner's referrals only, answering them through to the deal won, signing out."""

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from starter import referrals
from starter.settings import Settings
from tests.emails import body, parse_eml
from tests.factories import DISTINCTIVE_CUSTOMER, fresh_rfi, now_utc
from tests.partner_web import served, web_settings
from web.inbox import SESSION_COOKIE
from workflows.models import Status

PUBLIC_URL = "https://partners.example.com"
ACME_CONTACT = "berlin@acme-consulting.example"  # samples/partners.json


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return web_settings(tmp_path, PUBLIC_URL, ("in1", b"i" * 32))


@pytest.fixture
async def web(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with served(settings, dev_env.client) as client:
        yield client


def sign_in_links(outbox: Path) -> list[tuple[str, str]]:
    """(recipient, link) of every sign-in email in the outbox."""
    found = []
    for path in sorted(outbox.glob("sign-in.*.eml")):
        message = parse_eml(path)
        [link] = re.findall(r'href="([^"]+)" data-action="sign_in"', body(message, "html"))
        assert link in body(message, "plain").splitlines()
        found.append((str(message["To"]), link))
    return found


async def signed_in(web: httpx.AsyncClient, settings: Settings, email: str) -> None:
    await web.post("/inbox/sign-in", data={"email": email})
    [(_, link)] = [entry for entry in sign_in_links(settings.outbox_dir) if entry[0] == email]
    signed = await web.post(link)
    assert signed.status_code == 303


async def test_sign_in_says_the_same_for_any_address_and_works_once(
    web: httpx.AsyncClient, settings: Settings
) -> None:
    form = await web.get("/inbox")
    assert form.status_code == 200
    assert 'name="email"' in form.text

    unknown = await web.post("/inbox/sign-in", data={"email": "nobody@example.com"})
    known = await web.post("/inbox/sign-in", data={"email": ACME_CONTACT})
    assert unknown.status_code == known.status_code == 200
    assert unknown.text.replace("nobody@example.com", "X") == known.text.replace(ACME_CONTACT, "X")
    [(to, link)] = sign_in_links(settings.outbox_dir)  # only the contact got one
    assert to == ACME_CONTACT
    assert link.startswith(f"{PUBLIC_URL}/inbox/sign-in/")

    # The link's GET (a mail scanner) signs nobody in; its POST does, once.
    for _ in range(2):
        shown = await web.get(link)
        assert shown.status_code == 200
        assert "Acme Consulting" in shown.text
        assert SESSION_COOKIE not in shown.headers.get("set-cookie", "")
    signed = await web.post(link)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert attribute.lower() in cookie.lower()
    again = await web.post(link)
    assert again.status_code == 403
    assert "used already" in again.text

    foreign = await web.post(link, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403
    tampered = await web.post(link[:-3] + "AAA")
    assert tampered.status_code == 403


async def test_a_partner_works_its_referrals_from_the_inbox(
    dev_env: WorkflowEnvironment, queue: str, web: httpx.AsyncClient, settings: Settings
) -> None:
    mine = fresh_rfi(customer=DISTINCTIVE_CUSTOMER)
    theirs = fresh_rfi()
    await referrals.submit(dev_env.client, mine, ["acme-consulting"], task_queue=queue)
    await referrals.submit(dev_env.client, theirs, ["globex"], task_queue=queue)
    await signed_in(web, settings, ACME_CONTACT)

    for _ in range(300):  # the archive holds the new referral within a second or so
        page = await web.get("/inbox")
        if mine.id in page.text:
            break
        await asyncio.sleep(0.1)
    assert page.status_code == 200
    assert "Acme Consulting" in page.text
    assert mine.id in page.text
    assert theirs.id not in page.text  # another partner's referral is never listed
    assert "h left" in page.text

    assert (await web.get(f"/inbox/referrals/{theirs.id}")).status_code == 404
    forbidden = await web.post(f"/inbox/referrals/{theirs.id}/actions/no_thanks")
    assert forbidden.status_code == 404

    referral = await web.get(f"/inbox/referrals/{mine.id}")
    assert referral.status_code == 200
    assert re.findall(r'data-action="(\w+)"', referral.text) == ["interested", "no_thanks"]
    assert DISTINCTIVE_CUSTOMER["name"] not in referral.text

    interested = await web.post(f"/inbox/referrals/{mine.id}/actions/interested")
    assert "now Evaluating" in interested.text
    assert DISTINCTIVE_CUSTOMER["name"] in interested.text
    assert re.findall(r'data-action="(\w+)"', interested.text) == ["accept", "decline"]
    close = str(now_utc().date().replace(year=now_utc().year + 1))
    accepted = await web.post(
        f"/inbox/referrals/{mine.id}/actions/accept",
        data={"estimated_deal_value": "12000", "currency": "EUR", "estimated_close_date": close},
    )
    assert "now Negotiating" in accepted.text
    assert re.findall(r'data-action="(\w+)"', accepted.text) == ["won", "lost"]
    invalid = await web.post(
        f"/inbox/referrals/{mine.id}/actions/lost", data={"reason_code": "other"}
    )
    assert invalid.status_code == 422
    assert 'id="lost-reason-error"' in invalid.text
    won = await web.post(
        f"/inbox/referrals/{mine.id}/actions/won", data={"final_deal_value": "12500.50"}
    )
    assert "now Won" in won.text
    twice = await web.post(f"/inbox/referrals/{mine.id}/actions/won", data={})
    assert "already taken" in twice.text

    view = await referrals.status(dev_env.client, mine.id, "acme-consulting")
    assert view.status is Status.WON
    assert view.deal is not None
    assert str(view.deal.final_deal_value) == "12500.50"
    assert {t.via.door if t.via else None for t in view.transitions} == {"inbox"}

    for _ in range(300):  # closed referrals are listed from the archive
        page = await web.get("/inbox")
        if "Closed" in page.text and mine.id in page.text.split('id="closed"', 1)[1]:
            break
        await asyncio.sleep(0.1)
    assert mine.id in page.text.split('id="closed"', 1)[1]

    out = await web.post("/inbox/sign-out")
    assert out.status_code == 303
    assert 'name="email"' in (await web.get("/inbox")).text
    assert (await web.get(f"/inbox/referrals/{mine.id}")).status_code == 303


async def test_nobody_floods_a_contacts_mailbox_through_the_sign_in_page(
    web: httpx.AsyncClient, settings: Settings
) -> None:
    answers = [
        (await web.post("/inbox/sign-in", data={"email": ACME_CONTACT.upper()})).status_code
        for _ in range(8)
    ]
    assert answers == [200] * 8  # the page says the same every time
    assert len(sign_in_links(settings.outbox_dir)) == 5  # five emails an hour, no more
