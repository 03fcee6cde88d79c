"""Every path of ReferralWorkflow on the time-skipping server, with the real deadlines."""

import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from werkzeug import Request, Response

from starter.settings import Settings
from tests.factories import make_rfi, received_now, rfi_data
from tests.servers import (
    SENDGRID_SEND_PATH,
    ReferralHandle,
    running_worker,
    sendgrid_errors,
    start_referral,
    with_sendgrid,
)
from workflows.models import ReferralInput, Status, StatusView, legacy_referral_workflow_id
from workflows.referral import ReferralWorkflow

PARTNER = "acme-consulting"
BERLIN_CONTACT = "berlin@acme-consulting.example"
CUSTOMER_EMAIL = "maria.lopez@lopez-logistics.example"

SECOND = timedelta(seconds=1)  # the time-skipping clock moves on by milliseconds per call


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


@pytest.fixture
async def worker_queue(
    env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> AsyncIterator[str]:
    async with running_worker(env.client, settings, executor) as worker:
        yield worker.task_queue


async def status(handle: ReferralHandle) -> StatusView:
    return await handle.query(ReferralWorkflow.status)


def email_outcomes(view: StatusView) -> list[tuple[str, str, str]]:
    return [(e.kind, e.to, e.outcome) for e in view.emails]


async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    """The error the run failed with (the test fails unless it failed with one)."""
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def sent_messages(settings: Settings) -> list[email.message.EmailMessage]:
    files = sorted(Path(settings.outbox_dir).glob("*.eml"))
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def text_of(message: email.message.EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def test_interested_accept_won_records_the_deal_exactly(
    env: WorkflowEnvironment, worker_queue: str, settings: Settings
) -> None:
    rfi = await received_now(env)
    handle = await start_referral(env.client, worker_queue, rfi)
    await env.sleep(timedelta(hours=2))
    new = await status(handle)
    assert new.status is Status.NEW
    assert new.customer is None
    assert new.deadline is not None
    assert new.deadline.due_at == rfi.received_at + timedelta(hours=72)

    await handle.signal("interested")
    await env.sleep(timedelta(hours=1))
    evaluating = await status(handle)
    assert evaluating.status is Status.EVALUATING
    assert evaluating.customer == rfi.customer
    assert evaluating.first_response_at is not None
    assert abs(evaluating.first_response_at - (rfi.received_at + timedelta(hours=2))) < SECOND
    assert evaluating.deadline is not None
    assert evaluating.deadline.kind == "decide"
    assert evaluating.deadline.due_at == evaluating.first_response_at + timedelta(days=7)

    close = (await env.get_current_time()).date() + timedelta(days=30)
    await handle.signal(
        "accept",
        {"estimated_deal_value": 125000.1, "currency": "EUR", "estimated_close_date": str(close)},
    )
    await handle.signal("won", {"final_deal_value": "130000.55"})
    final = await handle.result()

    assert final.status is Status.WON
    assert final.deal is not None
    assert final.deal.estimated_deal_value == Decimal("125000.1")
    assert final.deal.final_deal_value == Decimal("130000.55")
    assert final.deal.currency == "EUR"
    assert final.deal.estimated_close_date == close
    assert [(t.from_, t.to, t.cause.name) for t in final.transitions] == [
        (Status.NEW, Status.EVALUATING, "interested"),
        (Status.EVALUATING, Status.NEGOTIATING, "accept"),
        (Status.NEGOTIATING, Status.WON, "won"),
    ]
    assert email_outcomes(final) == [
        ("lead", BERLIN_CONTACT, "sent"),
        ("details", BERLIN_CONTACT, "sent"),
    ]
    lead, details = sent_messages(settings)
    assert CUSTOMER_EMAIL not in text_of(lead)
    assert CUSTOMER_EMAIL in text_of(details)
    dumped = final.model_dump(mode="json")
    assert dumped["deal"]["estimated_deal_value"] == "125000.1"
    assert dumped["transitions"][0]["from"] == "New"


async def test_no_thanks_skips_and_asks_the_customer_to_choose_again(
    env: WorkflowEnvironment, worker_queue: str, settings: Settings
) -> None:
    handle = await start_referral(env.client, worker_queue, await received_now(env))
    await handle.signal("no_thanks", {"reason": "Fully booked until spring"})
    final = await handle.result()
    assert final.status is Status.SKIPPED
    assert final.transitions[-1].reason == "Fully booked until spring"
    assert final.customer is None  # never interested: the customer stays hidden
    assert email_outcomes(final) == [
        ("lead", BERLIN_CONTACT, "sent"),
        ("reroute", "customer", "sent"),
    ]
    reroute = sent_messages(settings)[-1]
    assert reroute["To"] == CUSTOMER_EMAIL
    assert "Fully booked until spring" not in text_of(reroute)  # kept for the marketplace


async def test_silence_for_72_hours_misses_after_one_reminder_at_24_hours(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    rfi = await received_now(env)
    handle = await start_referral(env.client, worker_queue, rfi)
    await env.sleep(timedelta(hours=23, minutes=59))
    assert [e.kind for e in (await status(handle)).emails] == ["lead"]
    await env.sleep(timedelta(hours=48))
    before = await status(handle)
    assert before.status is Status.NEW
    assert [e.kind for e in before.emails] == ["lead", "reminder"]

    final = await handle.result()
    assert final.status is Status.MISSED
    missed = final.transitions[-1]
    assert missed.cause.kind == "deadline"
    assert missed.cause.name == "respond"
    assert missed.effective_at == rfi.received_at + timedelta(hours=72)
    assert missed.processed_at >= missed.effective_at
    assert final.first_response_at is None
    assert final.deadline is None
    assert email_outcomes(final) == [
        ("lead", BERLIN_CONTACT, "sent"),
        ("reminder", BERLIN_CONTACT, "sent"),
        ("reroute", "customer", "sent"),
    ]


async def test_custom_deadlines_from_the_rfi(env: WorkflowEnvironment, worker_queue: str) -> None:
    rfi = await received_now(
        env, deadlines={"respond_within": "PT2H", "decide_within": "P1D", "remind_after": "PT3H"}
    )
    final = await (await start_referral(env.client, worker_queue, rfi)).result()
    assert final.status is Status.MISSED
    assert final.transitions[-1].effective_at == rfi.received_at + timedelta(hours=2)
    assert [e.kind for e in final.emails] == ["lead", "reroute"]  # reminder after the deadline


async def test_decline_and_seven_days_of_silence_in_evaluating(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    declined = await start_referral(env.client, worker_queue, await received_now(env))
    expired = await start_referral(env.client, worker_queue, await received_now(env))
    await declined.signal("interested")
    await expired.signal("interested")
    await env.sleep(timedelta(days=1))
    await declined.signal("decline", {"reason": "Outside our expertise"})

    declined_view = await declined.result()
    assert declined_view.status is Status.DECLINED
    assert declined_view.transitions[-1].reason == "Outside our expertise"
    assert [e.kind for e in declined_view.emails] == ["lead", "details", "reroute"]

    expired_view = await expired.result()
    entered = expired_view.transitions[0].effective_at
    assert expired_view.status is Status.EXPIRED
    assert expired_view.transitions[-1].effective_at == entered + timedelta(days=7)
    assert expired_view.transitions[-1].cause.name == "decide"
    assert [e.kind for e in expired_view.emails] == ["lead", "details", "last_call", "reroute"]


async def test_a_last_call_goes_to_the_partner_at_the_six_day_mark(
    env: WorkflowEnvironment, worker_queue: str, settings: Settings
) -> None:
    handle = await start_referral(env.client, worker_queue, await received_now(env))
    await handle.signal("interested")
    entered = (await status(handle)).transitions[0].effective_at
    await env.sleep(timedelta(days=6) - timedelta(minutes=1))
    assert [e.kind for e in (await status(handle)).emails] == ["lead", "details"]
    await env.sleep(timedelta(minutes=2))
    view = await status(handle)
    assert view.status is Status.EVALUATING
    assert [e.kind for e in view.emails] == ["lead", "details", "last_call"]
    final = await handle.result()
    assert final.status is Status.EXPIRED
    assert final.transitions[-1].effective_at == entered + timedelta(days=7)
    assert email_outcomes(final)[2] == ("last_call", BERLIN_CONTACT, "sent")
    [last_call] = [m for m in sent_messages(settings) if m["Subject"].startswith("Last call")]
    assert last_call["To"] == BERLIN_CONTACT
    due = (entered + timedelta(days=7)).strftime("%Y-%m-%d %H:%M UTC")
    assert due in text_of(last_call)
    assert "expires" in text_of(last_call)


async def test_negotiating_has_no_deadline_and_ends_lost(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    handle = await start_referral(env.client, worker_queue, await received_now(env))
    await handle.signal("interested")
    close = (await env.get_current_time()).date() + timedelta(days=90)
    await handle.signal(
        "accept",
        {"estimated_deal_value": "9000", "currency": "USD", "estimated_close_date": str(close)},
    )
    await env.sleep(timedelta(days=60))
    negotiating = await status(handle)
    assert negotiating.status is Status.NEGOTIATING
    assert negotiating.deadline is None
    await handle.signal("lost", {"reason": "Customer chose to build in-house"})
    final = await handle.result()
    assert final.status is Status.LOST
    assert final.deal is not None
    assert final.deal.final_deal_value is None
    # The reroute after a loss goes only when another partner of the RFI passed on it; the
    # time-skipping server cannot tell (it has no visibility lists): not sent.
    emails = [(e.kind, e.outcome) for e in final.emails]
    assert emails == [("lead", "sent"), ("details", "sent"), ("reroute", "withheld")]


async def test_a_referral_started_after_its_deadline_is_missed_at_once(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    now = await env.get_current_time()
    rfi = make_rfi(received_at=(now - timedelta(hours=80)).isoformat())
    final = await (await start_referral(env.client, worker_queue, rfi)).result()
    assert final.status is Status.MISSED
    assert final.transitions[-1].effective_at == rfi.received_at + timedelta(hours=72)
    assert final.transitions[-1].processed_at >= now
    assert [e.kind for e in final.emails] == ["reroute"]


async def test_invalid_signals_are_listed_and_change_nothing(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    handle = await start_referral(env.client, worker_queue, await received_now(env))
    await handle.signal("accept", {"estimated_deal_value": 1, "currency": "EUR"})
    await handle.signal("interested", "a bare string")
    await handle.signal("interested", args=[{}, {}])
    await handle.signal("escalate")
    await handle.signal("interested")
    await handle.signal(
        "accept",
        {"estimated_deal_value": -5, "currency": "EUR", "estimated_close_date": "2099-01-01"},
    )
    await handle.signal(
        "accept",
        {"estimated_deal_value": 5, "currency": "EURO", "estimated_close_date": "2099-01-01"},
    )
    view = await status(handle)
    assert view.status is Status.EVALUATING
    assert [(r.action, r.status) for r in view.rejected_actions] == [
        ("accept", Status.NEW),
        ("interested", Status.NEW),
        ("interested", Status.NEW),
        ("escalate", Status.NEW),
        ("accept", Status.EVALUATING),
        ("accept", Status.EVALUATING),
    ]
    reasons = [r.reason for r in view.rejected_actions]
    assert "not allowed while New" in reasons[0]
    assert "invalid payload" in reasons[1]
    assert "one JSON argument" in reasons[2]
    assert "unknown action" in reasons[3]
    assert "estimated_deal_value" in reasons[4]
    assert "currency" in reasons[5]
    await handle.signal("decline")
    assert (await handle.result()).status is Status.DECLINED


async def test_an_action_before_the_deadline_wins_and_after_it_is_refused(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    just_in_time = await start_referral(env.client, worker_queue, await received_now(env))
    too_late = await start_referral(env.client, worker_queue, await received_now(env))
    await env.sleep(timedelta(hours=71, minutes=59))
    await just_in_time.signal("interested")
    assert (await status(just_in_time)).status is Status.EVALUATING

    assert (await too_late.result()).status is Status.MISSED
    with pytest.raises(RPCError, match=r"(?i)completed"):
        await too_late.signal("interested")
    assert (await status(too_late)).status is Status.MISSED
    won_the_race = await just_in_time.result()  # and expires 7 days later, untouched
    assert [t.to for t in won_the_race.transitions] == [Status.EVALUATING, Status.EXPIRED]


async def test_unknown_partner_or_region_fails_at_once_naming_the_reason(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    unknown = await start_referral(
        env.client, worker_queue, await received_now(env), partner="nobody"
    )
    cause = await failure_of(unknown)
    assert cause.type == "PartnerNotFound"
    assert "nobody" in cause.message

    rfi = await received_now(env, region="apac", location=None)
    elsewhere = await start_referral(env.client, worker_queue, rfi, partner="umbrella")
    cause = await failure_of(elsewhere)
    assert cause.type == "RegionNotServed"
    assert "umbrella" in cause.message
    assert "apac" in cause.message


async def test_a_refused_email_is_recorded_and_the_lifecycle_goes_on(
    env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    httpserver: HTTPServer,
) -> None:
    refusal = "The from address does not match a verified Sender Identity."
    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_json(
        sendgrid_errors(refusal, "from"), status=400
    )
    async with running_worker(env.client, with_sendgrid(settings, httpserver), executor) as worker:
        handle = await start_referral(env.client, worker.task_queue, await received_now(env))
        await handle.signal("no_thanks")
        final = await handle.result()
    assert final.status is Status.SKIPPED
    assert [(e.kind, e.outcome) for e in final.emails] == [
        ("lead", "failed"),
        ("reroute", "failed"),
    ]
    assert "verified Sender Identity" in (final.emails[0].error or "")
    assert "SG.test-key" not in (final.emails[0].error or "")


async def test_a_backend_starting_with_invalid_json_gets_a_failed_run_naming_the_field(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    data = rfi_data(received_at="2026-11-25T09:00:00")  # no offset
    data["customer"]["email"] = "not-an-address"
    handle = await env.client.start_workflow(
        "ReferralWorkflow",
        {"rfi": data, "partner_id": PARTNER},
        id=f"referral:{data['id']}:{PARTNER}",
        task_queue=worker_queue,
    )
    cause = await failure_of(handle)
    assert cause.type == "InvalidInput"
    assert "received_at" in cause.message
    assert "customer.email" in cause.message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "expected one JSON argument"),
        (["two", "arguments"], "expected one JSON argument"),
        ([{"rfi": {"id": "x"}}], "partner_id"),
    ],
    ids=["none", "two", "incomplete"],
)
async def test_a_start_with_the_wrong_arguments_fails_once_with_invalid_input(
    env: WorkflowEnvironment, worker_queue: str, args: list[Any], expected: str
) -> None:
    handle = await env.client.start_workflow(
        "ReferralWorkflow", args=args, id=f"referral-bad-{uuid.uuid4()}", task_queue=worker_queue
    )
    cause = await failure_of(handle)
    assert cause.type == "InvalidInput"
    assert expected in cause.message


@pytest.mark.parametrize("scheme", ["own", "earlier"])
async def test_a_workflow_id_that_does_not_match_the_input_is_refused(
    env: WorkflowEnvironment, worker_queue: str, scheme: str
) -> None:
    referral = ReferralInput(rfi=await received_now(env), partner_id=PARTNER)
    # The earlier `referral-{rfi}-{partner}` is ambiguous: only runs started under it keep it.
    workflow_id = (
        f"my-own-id-{uuid.uuid4()}"
        if scheme == "own"
        else legacy_referral_workflow_id(referral.rfi.id, PARTNER)
    )
    handle = await env.client.start_workflow(
        ReferralWorkflow.run, referral, id=workflow_id, task_queue=worker_queue
    )
    cause = await failure_of(handle)
    assert cause.type == "WorkflowIdMismatch"
    assert referral.workflow_id in cause.message


async def test_a_received_at_in_the_future_is_refused(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    later = (await env.get_current_time()) + timedelta(days=30)
    rfi = make_rfi(received_at=later.isoformat())
    cause = await failure_of(await start_referral(env.client, worker_queue, rfi))
    assert cause.type == "InvalidInput"
    assert "in the future" in cause.message


async def test_a_deeply_nested_payload_is_refused_and_the_referral_goes_on(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    handle = await start_referral(env.client, worker_queue, await received_now(env))
    nested = Payload(metadata={"encoding": b"json/plain"}, data=b"[" * 5000 + b"]" * 5000)
    await handle.signal("interested", RawValue(nested))
    binary = Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\x01")
    await handle.signal("interested", RawValue(binary))
    await handle.signal("no_thanks")
    final = await handle.result()
    assert final.status is Status.SKIPPED
    assert [r.reason for r in final.rejected_actions] == [
        "invalid payload: not JSON: RecursionError",
        "invalid payload: expected a JSON argument, got encoding 'binary/plain'",
    ]


async def test_a_flood_of_refused_signals_keeps_the_view_bounded(
    env: WorkflowEnvironment, worker_queue: str
) -> None:
    handle = await start_referral(env.client, worker_queue, await received_now(env))
    for index in range(120):
        await handle.signal("x" * 500, {"n": index})
    await handle.signal("no_thanks")
    final = await handle.result()
    assert len(final.rejected_actions) == 100
    assert final.rejected_actions[-1].action == "x" * 64
    assert final.status is Status.SKIPPED


async def test_the_status_lists_a_signal_refused_after_the_referral_closed(
    env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    """Won, the run waits for its archive (down here) before it ends: a `decline` that
    arrives then is refused, and the status lists it with the closed status and why."""
    folder = tmp_path / "down"
    folder.write_text("not a folder: the archive cannot be opened")
    down = settings.model_copy(update={"database_url": f"sqlite:///{folder}/referrals.db"})
    async with running_worker(env.client, down, executor) as worker:
        handle = await start_referral(env.client, worker.task_queue, await received_now(env))
        close = (await env.get_current_time()).date() + timedelta(days=30)
        await handle.signal("interested")
        await handle.signal(
            "accept",
            {"estimated_deal_value": "900", "currency": "EUR", "estimated_close_date": str(close)},
        )
        await handle.signal("won", {"final_deal_value": "950"})
        await env.sleep(timedelta(minutes=1))
        won = await status(handle)
        assert won.status is Status.WON
        assert won.rejected_actions == []
        await handle.signal("decline", {"reason": "Changed our mind"})
        await env.sleep(timedelta(minutes=1))
        view = await status(handle)
        folder.unlink()  # the archive is back: the run can end
        folder.mkdir()
        final = await handle.result()
    assert [(r.action, r.status) for r in view.rejected_actions] == [("decline", Status.WON)]
    refused = view.rejected_actions[0]
    assert "the referral is closed (Won)" in refused.reason
    assert refused.at >= view.transitions[-1].processed_at  # after the last transition
    assert view.transitions == won.transitions  # and it changed nothing
    assert final.rejected_actions == view.rejected_actions


async def test_the_status_shows_each_email_sent_or_failed_for_good_with_its_error(
    env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    httpserver: HTTPServer,
) -> None:
    """While the referral is open: the lead, which the provider accepted, as sent; the
    details, which it refused (a 400: not worth another try), as failed with its error."""
    refusal = "Does not contain a valid address."

    def provider(request: Request) -> Response:
        email_id = json.loads(request.get_data())["custom_args"]["referral_email_id"]
        if email_id.endswith("-details"):
            body = json.dumps(sendgrid_errors(refusal, "personalizations.0.to"))
            return Response(body, status=400, content_type="application/json")
        return Response(status=202, headers={"X-Message-Id": f"msg-{email_id}"})

    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_handler(provider)
    async with running_worker(env.client, with_sendgrid(settings, httpserver), executor) as worker:
        handle = await start_referral(env.client, worker.task_queue, await received_now(env))
        await env.sleep(timedelta(minutes=1))
        new = await status(handle)
        await handle.signal("interested")
        await env.sleep(timedelta(minutes=1))
        evaluating = await status(handle)
        await handle.signal("decline")
        await handle.result()
    assert [(e.kind, e.outcome, e.error) for e in new.emails] == [("lead", "sent", None)]
    assert evaluating.status is Status.EVALUATING  # open: what the status shows, not the result
    lead, details = evaluating.emails
    assert (lead.kind, lead.outcome, lead.error) == ("lead", "sent", None)
    assert (details.kind, details.outcome) == ("details", "failed")
    assert refusal in (details.error or "")
