"""One coherent story per RFI for its customer, on the dev server (the referrals read their
RFI's other referrals from Temporal's visibility): no "choose another partner" while
another partner has the request, one email when the last engaged partner ends without a
deal, subjects that say what the body says, and no internal id in a customer's email."""

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starter.settings import Settings
from tests.emails import body, parse_eml
from tests.factories import ACCEPT, make_rfi
from tests.servers import running_worker, start_referral
from workflows.models import EmailKind, EmailOutcome, Rfi, StatusView

Handle = WorkflowHandle[Any, Any]


@pytest.fixture
async def worker(
    dev_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    async with running_worker(dev_env.client, settings, executor) as running:
        yield running


async def sent_to(client: Client, worker: Worker, rfi: Rfi, *partners: str) -> dict[str, Handle]:
    return {
        partner: await start_referral(client, worker.task_queue, rfi, partner, with_attributes=True)
        for partner in partners
    }


async def ended(handle: Handle) -> StatusView:
    """The referral's final view, once its emails have their outcome."""
    view: StatusView = await handle.result()
    return view


def reroute(view: StatusView) -> tuple[EmailOutcome, str | None]:
    [email] = [e for e in view.emails if e.kind is EmailKind.REROUTE]
    return email.outcome, email.error


def customer_emails(outbox: Path, handle: Handle) -> list[EmailMessage]:
    return [parse_eml(path) for path in sorted(outbox.glob(f"{handle.id}.*-reroute.eml"))]


def fresh() -> Rfi:
    return make_rfi(received_at=datetime.now(UTC).isoformat())  # emea, Berlin


async def test_no_choose_another_while_another_partner_evaluates_then_one_when_it_declines(
    dev_env: WorkflowEnvironment, worker: Worker, settings: Settings
) -> None:
    referrals = await sent_to(dev_env.client, worker, fresh(), "acme-consulting", "globex")
    await referrals["globex"].execute_update("interested", {})
    await referrals["acme-consulting"].execute_update("no_thanks", {})
    skipped = await ended(referrals["acme-consulting"])
    assert reroute(skipped) == (
        EmailOutcome.WITHHELD,
        "another partner of this RFI has the request: globex",
    )
    assert customer_emails(settings.outbox_dir, referrals["acme-consulting"]) == []

    await referrals["globex"].execute_update("decline", {})
    declined = await ended(referrals["globex"])
    assert reroute(declined)[0] is EmailOutcome.SENT
    [email] = customer_emails(settings.outbox_dir, referrals["globex"])
    text, html = body(email, "plain"), body(email, "html")
    assert "Globex Partners decided not to make an offer." in text
    # The subject says what the body says, and nothing internal reaches the customer.
    if "These partners also serve your region" in text:
        assert email["Subject"] == "Please choose another partner for your request"
    else:
        assert email["Subject"] == "Your request: no other partner to suggest right now"
    for part in (text, html, email["Subject"]):
        assert "referral:" not in part
        assert "Referral " not in part


async def passed_while_globex_negotiates(
    client: Client, worker: Worker
) -> tuple[dict[str, Handle], Handle]:
    """acme-consulting says no thanks while globex negotiates: its reroute is withheld."""
    referrals = await sent_to(client, worker, fresh(), "acme-consulting", "globex")
    engaged = referrals["globex"]
    await engaged.execute_update("interested", {})
    await engaged.execute_update("accept", ACCEPT)
    await referrals["acme-consulting"].execute_update("no_thanks", {})
    assert reroute(await ended(referrals["acme-consulting"]))[0] is EmailOutcome.WITHHELD
    return referrals, engaged


async def test_a_won_deal_leaves_the_customer_no_choose_another(
    dev_env: WorkflowEnvironment, worker: Worker, settings: Settings
) -> None:
    referrals, winner = await passed_while_globex_negotiates(dev_env.client, worker)
    await winner.execute_update("won", {"final_deal_value": "26000"})
    await ended(winner)
    for handle in referrals.values():
        assert customer_emails(settings.outbox_dir, handle) == []


async def test_the_customer_hears_once_when_the_engaged_partner_loses_the_deal(
    dev_env: WorkflowEnvironment, worker: Worker, settings: Settings
) -> None:
    _, loser = await passed_while_globex_negotiates(dev_env.client, worker)
    await loser.execute_update("lost", {"reason_code": "budget_insufficient"})
    assert reroute(await ended(loser))[0] is EmailOutcome.SENT
    [email] = customer_emails(settings.outbox_dir, loser)
    assert "Globex Partners and you did not reach a deal." in body(email, "plain")


async def test_a_lost_deal_alone_sends_the_customer_nothing(
    dev_env: WorkflowEnvironment, worker: Worker, settings: Settings
) -> None:
    [(_, handle)] = (await sent_to(dev_env.client, worker, fresh(), "globex")).items()
    await handle.execute_update("interested", {})
    await handle.execute_update("accept", ACCEPT)
    await handle.execute_update("lost", {})
    assert reroute(await ended(handle)) == (
        EmailOutcome.WITHHELD,
        "no other partner of this RFI passed on it",
    )
    assert customer_emails(settings.outbox_dir, handle) == []


async def test_without_an_engaged_partner_the_customer_is_asked_to_choose_as_before(
    dev_env: WorkflowEnvironment, worker: Worker, settings: Settings
) -> None:
    referrals = await sent_to(dev_env.client, worker, fresh(), "acme-consulting", "globex")
    await referrals["acme-consulting"].execute_update("no_thanks", {})
    assert reroute(await ended(referrals["acme-consulting"]))[0] is EmailOutcome.SENT
    [email] = customer_emails(settings.outbox_dir, referrals["acme-consulting"])
    assert "Acme Consulting cannot take on your request." in body(email, "plain")
    await referrals["globex"].terminate("test finished")


async def test_two_engaged_partners_that_decline_together_tell_the_customer_once(
    dev_env: WorkflowEnvironment, worker: Worker, settings: Settings
) -> None:
    """Both Evaluating, both decline at the same moment: each reroute waits for the other
    to show, and the later one tells the customer; the earlier one is withheld."""
    referrals = await sent_to(dev_env.client, worker, fresh(), "acme-consulting", "globex")
    for handle in referrals.values():
        await handle.execute_update("interested", {})
    await asyncio.gather(*(h.execute_update("decline", {}) for h in referrals.values()))
    views = {p: await ended(h) for p, h in referrals.items()}
    outcomes = sorted(reroute(view)[0] for view in views.values())
    assert outcomes == [EmailOutcome.SENT, EmailOutcome.WITHHELD]
    [(earlier, view)] = [(p, v) for p, v in views.items() if reroute(v)[0] is EmailOutcome.WITHHELD]
    [later] = set(views) - {earlier}
    assert reroute(view)[1] == f"another partner of this RFI passed on it after this one: {later}"
    sent = [customer_emails(settings.outbox_dir, h) for h in referrals.values()]
    assert sorted(len(emails) for emails in sent) == [0, 1]
