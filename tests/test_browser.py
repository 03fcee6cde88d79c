"""A partner in a real browser: Playwright drives Debian's Chromium through the emails'
links against `referrals serve`'s app on uvicorn, the production worker and the dev server.
Skipped, saying so, where Chromium is not installed (`.ci/run` installs it)."""

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine
from archive.store import ArchiveStore
from starter import referrals
from starter.dev import free_port
from starter.settings import Settings
from tests.factories import DISTINCTIVE_CUSTOMER, fresh_rfi, now_utc
from tests.partner_web import email_links, web_settings
from web.app import create_app
from workflows.models import Status

CHROMIUM = os.environ.get("REFERRALS_TEST_CHROMIUM") or shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: `apt-get install chromium`"
)
PORT = free_port()
PUBLIC_URL = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Worker and service alike: emails carry links to the service this test serves."""
    return web_settings(tmp_path, PUBLIC_URL, ("b1", os.urandom(32)))


@pytest.fixture
async def served(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[str]:
    app = create_app(settings, client=dev_env.client)
    server = uvicorn.Server(uvicorn.Config(app, port=PORT, log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # up to 10 s: uvicorn has no event to await
        if server.started:
            break
        await asyncio.sleep(0.05)
    yield PUBLIC_URL
    server.should_exit = True
    await task


async def test_a_partner_answers_in_the_browser_from_the_emails(
    dev_env: WorkflowEnvironment, queue: str, settings: Settings, served: str
) -> None:
    from playwright.async_api import async_playwright

    rfi = fresh_rfi(customer=DISTINCTIVE_CUSTOMER)
    await referrals.submit(dev_env.client, rfi, ["acme-consulting"], task_queue=queue)
    interested = (await email_links(settings.outbox_dir, "*.1-lead.eml"))["interested"]
    assert interested.startswith(served)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = await browser.new_page()
        await page.goto(interested)
        assert await page.locator("h1").inner_text() == "I'm interested"
        assert DISTINCTIVE_CUSTOMER["name"] not in await page.content()
        await page.get_by_role("button", name="I'm interested").click()
        await page.wait_for_selector("text=Done: Evaluating")
        assert DISTINCTIVE_CUSTOMER["email"] in await page.content()

        accept = (await email_links(settings.outbox_dir, "*.2-details.eml"))["accept"]
        await page.goto(accept)
        await page.get_by_label("Estimated deal value").fill("48000")
        await page.get_by_label("Currency").fill("EUR")
        close = str(now_utc().date() + timedelta(days=45))
        await page.get_by_label("Estimated closing date").fill(close)
        await page.get_by_role("button", name="Accept").click()
        await page.wait_for_selector("text=Done: Negotiating")

        # Later, from the inbox: sign in by email, report the deal won.
        await page.goto(f"{served}/inbox")
        await page.get_by_label("Email address").fill("berlin@acme-consulting.example")
        await page.get_by_role("button", name="Email me a sign-in link").click()
        await page.wait_for_selector("text=a sign-in link is on its way")
        await page.goto((await email_links(settings.outbox_dir, "sign-in.*.eml"))["sign_in"])
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_selector("text=Acme Consulting: referrals")
        await page.get_by_role("link", name=rfi.id).first.click()
        await page.get_by_label("Final deal value (optional)").fill("51250.00")
        await page.get_by_role("button", name="Report the deal won").click()
        await page.wait_for_selector("text=The referral is now Won")
        await browser.close()

    view = await referrals.status(dev_env.client, rfi.id, "acme-consulting")
    assert view.status is Status.WON
    assert view.deal is not None
    assert (str(view.deal.estimated_deal_value), str(view.deal.estimated_close_date)) == (
        "48000",
        close,
    )
    assert str(view.deal.final_deal_value) == "51250.00"
    # The archive and the events tell the same story, door included.
    store = ArchiveStore(create_archive_engine(settings.database_url))
    for _ in range(100):
        row = store.find(rfi.id, "acme-consulting")
        if row is not None and row.status == "Won":
            break
        await asyncio.sleep(0.1)
    assert row is not None
    assert [(t.cause_name, t.door) for t in row.transitions] == [
        ("interested", "email_link"),
        ("accept", "email_link"),
        ("won", "inbox"),
    ]
    assert str(row.final_deal_value) == "51250.00"
    events = [json.loads(e.body) for e in store.events(workflow_id=row.workflow_id)]
    assert [e["type"] for e in events] == [
        "referral.created",
        "referral.evaluating",
        "referral.negotiating",
        "referral.won",
    ]
    assert events[-1]["data"]["deal"]["final_deal_value"] == "51250.00"
    assert [e["data"]["via"] for e in events[1:]] == [
        {"door": "email_link", "api_key_id": None},
        {"door": "email_link", "api_key_id": None},
        {"door": "inbox", "api_key_id": None},
    ]
