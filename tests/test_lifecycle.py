"""The pure referral state machine, driven by plain calls with explicit times (no Temporal)."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

from tests.factories import ACCEPT, ACME_BERLIN, RECEIVED_AT, act, make_rfi, reach, started
from workflows.lifecycle import (
    DEADLINES,
    TRANSITIONS,
    ActionRejected,
    Referral,
    allowed_actions,
)
from workflows.models import (
    AcceptPayload,
    Action,
    DeadlineKind,
    EmailKind,
    EmailOutcome,
    EmailRecord,
    EmailRequest,
    ReasonPayload,
    Status,
)

PARTNER_EMAIL = ACME_BERLIN.contact_email
CUSTOMER_EMAIL = "maria.lopez@lopez-logistics.example"
T0 = RECEIVED_AT  # make_rfi's received_at
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
RESPOND_DUE = T0 + 72 * HOUR
REMIND_AT = T0 + 24 * HOUR

ACTION_NAMES = [str(action) for action in Action]
CLOSED = [Status.WON, Status.LOST, Status.SKIPPED, Status.MISSED, Status.DECLINED, Status.EXPIRED]
REROUTE = {Status.SKIPPED, Status.MISSED, Status.DECLINED, Status.EXPIRED}


# The contract, written out: the tests hold the lifecycle to these tables, never to its own.
EXPECTED_TRANSITIONS = {
    (Status.NEW, Action.INTERESTED): Status.EVALUATING,
    (Status.NEW, Action.NO_THANKS): Status.SKIPPED,
    (Status.EVALUATING, Action.ACCEPT): Status.NEGOTIATING,
    (Status.EVALUATING, Action.DECLINE): Status.DECLINED,
    (Status.NEGOTIATING, Action.WON): Status.WON,
    (Status.NEGOTIATING, Action.LOST): Status.LOST,
}
EXPECTED_DEADLINES = {
    Status.NEW: (DeadlineKind.RESPOND, Status.MISSED),
    Status.EVALUATING: (DeadlineKind.DECIDE, Status.EXPIRED),
}
EXPECTED_ALLOWED = {
    Status.NEW: ["interested", "no_thanks"],
    Status.EVALUATING: ["accept", "decline"],
    Status.NEGOTIATING: ["won", "lost"],
    **{status: [] for status in CLOSED},
}


def kinds(emails: Sequence[EmailRequest | EmailRecord]) -> list[EmailKind]:
    return [email.kind for email in emails]


def json_payload(data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


# --- The contract tables -------------------------------------------------------------------


def test_transition_and_deadline_tables_are_the_contract() -> None:
    assert dict(TRANSITIONS) == EXPECTED_TRANSITIONS
    assert dict(DEADLINES) == EXPECTED_DEADLINES


@pytest.mark.parametrize(
    ("status", "expected"),
    EXPECTED_ALLOWED.items(),
)
def test_allowed_actions(status: Status, expected: list[str]) -> None:
    assert [str(action) for action in allowed_actions(status)] == expected


# --- Start ---------------------------------------------------------------------------------


def test_start_sends_the_lead_to_the_partner() -> None:
    rfi = make_rfi()
    referral, emails = started(rfi, at=T0 + HOUR)

    assert referral.status is Status.NEW
    assert referral.transitions == []
    assert len(emails) == 1
    lead = emails[0]
    assert lead.kind is EmailKind.LEAD
    assert lead.to == PARTNER_EMAIL
    assert lead.id == f"referral:{rfi.id}:acme-consulting.1-lead"
    assert lead.status is Status.NEW
    assert lead.due_at == RESPOND_DUE
    assert lead.partner == ACME_BERLIN
    # The lead shows the overview alone: the partner has not said interested.
    assert lead.rfi.model_dump() == {
        "region": rfi.region,
        "location": rfi.location,
        "need": rfi.need,
        "company_size": rfi.company_size,
        "customer": None,
    }
    assert [(e.id, e.kind, e.to, e.outcome) for e in referral.view().emails] == [
        (lead.id, EmailKind.LEAD, PARTNER_EMAIL, EmailOutcome.PENDING)
    ]


# --- Every row of the transition table ----------------------------------------------------

ROWS = [
    (Status.NEW, "interested", None, Status.EVALUATING, EmailKind.DETAILS, None),
    (
        Status.NEW,
        "no_thanks",
        {"reason": "We are fully booked"},
        Status.SKIPPED,
        EmailKind.REROUTE,
        "We are fully booked",
    ),
    (Status.EVALUATING, "accept", ACCEPT, Status.NEGOTIATING, None, None),
    (
        Status.EVALUATING,
        "decline",
        {"reason": "Too small for us"},
        Status.DECLINED,
        EmailKind.REROUTE,
        "Too small for us",
    ),
    (Status.NEGOTIATING, "won", {"final_deal_value": "31000.50"}, Status.WON, None, None),
    # The reroute after a loss goes only if another partner of the RFI passed meanwhile.
    (
        Status.NEGOTIATING,
        "lost",
        {"reason": "Budget cut"},
        Status.LOST,
        EmailKind.REROUTE,
        "Budget cut",
    ),
]


@pytest.mark.parametrize(
    ("source", "action", "payload", "target", "email_kind", "reason"),
    ROWS,
    ids=[f"{row[0]}-{row[1]}" for row in ROWS],
)
def test_transition_row(
    source: Status,
    action: str,
    payload: Any,
    target: Status,
    email_kind: EmailKind | None,
    reason: str | None,
) -> None:
    referral = reach(source)
    seq = len(referral.transitions) + 1
    now = T0 + 10 * HOUR

    emails = act(referral, action, payload, now)

    assert referral.status is target
    assert len(referral.transitions) == seq
    record = referral.transitions[-1]
    assert record.seq == seq
    assert record.from_ is source
    assert record.to is target
    assert record.effective_at == now
    assert record.processed_at == now
    assert record.cause.kind == "action"
    assert record.cause.name == action
    assert record.reason == reason

    if email_kind is None:
        assert emails == []
        return
    assert kinds(emails) == [email_kind]
    email = emails[0]
    assert email.status is target
    assert email.id.endswith(f"-{email_kind}")
    assert referral.view().emails[-1].id == email.id
    if email_kind is EmailKind.DETAILS:
        assert email.to == PARTNER_EMAIL
        assert email.due_at == now + 7 * DAY
    else:
        assert email.to == CUSTOMER_EMAIL
        # the partner's reason is recorded, never forwarded to the customer
        assert reason is None or reason not in email.model_dump_json()


def test_rows_cover_the_whole_table() -> None:
    assert {(source, Action(action)) for source, action, *_ in ROWS} == set(EXPECTED_TRANSITIONS)


@pytest.mark.parametrize("action", ["interested", "no_thanks", "decline", "lost", "won"])
def test_none_payload_is_accepted(action: str) -> None:
    source = next(state for (state, name) in EXPECTED_TRANSITIONS if name == action)
    referral = reach(source)
    act(referral, action, None, T0 + 10 * HOUR)
    assert referral.status is EXPECTED_TRANSITIONS[(source, Action(action))]
    assert referral.transitions[-1].reason is None


def test_reason_is_stripped_of_surrounding_whitespace() -> None:
    referral, _ = started()
    emails = act(referral, "no_thanks", {"reason": "  Fully booked \n"}, T0 + HOUR)
    assert referral.transitions[-1].reason == "Fully booked"
    assert "Fully booked" not in emails[0].model_dump_json()


# --- Deadlines -----------------------------------------------------------------------------


def test_nothing_due_just_before_the_respond_deadline() -> None:
    referral, _ = started()
    referral.fire_due(REMIND_AT)  # the reminder
    assert referral.fire_due(RESPOND_DUE - timedelta(microseconds=1)) == []
    assert referral.status is Status.NEW
    assert referral.transitions == []


@pytest.mark.parametrize("late", [timedelta(0), 8 * HOUR], ids=["on-time", "late"])
def test_respond_deadline_misses(late: timedelta) -> None:
    referral, _ = started()
    assert kinds(referral.fire_due(REMIND_AT)) == [EmailKind.REMINDER]
    processed = RESPOND_DUE + late

    emails = referral.fire_due(processed)

    assert referral.status is Status.MISSED
    [record] = referral.transitions
    assert (record.seq, record.from_, record.to) == (1, Status.NEW, Status.MISSED)
    assert record.effective_at == RESPOND_DUE
    assert record.processed_at == processed
    assert (record.cause.kind, record.cause.name) == ("deadline", "respond")
    assert record.reason is None
    assert kinds(emails) == [EmailKind.REROUTE]
    assert emails[0].to == CUSTOMER_EMAIL
    assert emails[0].status is Status.MISSED
    assert referral.first_response_at is None
    assert referral.deadline is None
    assert referral.fire_due(processed + 30 * DAY) == []


def test_no_reminder_when_first_processed_after_the_respond_deadline() -> None:
    referral, _ = started()
    # The run was not woken at the reminder time (e.g. workers down): at +80h the
    # referral is past its respond deadline, so a reminder asking to answer by +72h is moot.
    emails = referral.fire_due(T0 + 80 * HOUR)
    assert referral.status is Status.MISSED
    assert kinds(emails) == [EmailKind.REROUTE]


@pytest.mark.parametrize("late", [timedelta(0), 2 * DAY], ids=["on-time", "late"])
def test_decide_deadline_expires(late: timedelta) -> None:
    referral, _ = started()
    entered = T0 + 5 * HOUR
    act(referral, "interested", None, entered)
    due = entered + 7 * DAY
    assert referral.deadline is not None
    assert referral.deadline.kind is DeadlineKind.DECIDE
    assert referral.deadline.due_at == due
    # The last call went out a day before (its own test is below); nothing else is due.
    assert kinds(referral.fire_due(due - timedelta(seconds=1))) == [EmailKind.LAST_CALL]
    assert referral.fire_due(due - timedelta(seconds=1)) == []
    assert referral.view().status is Status.EVALUATING

    emails = referral.fire_due(due + late)

    assert referral.status is Status.EXPIRED
    record = referral.transitions[-1]
    assert (record.seq, record.from_, record.to) == (2, Status.EVALUATING, Status.EXPIRED)
    assert record.effective_at == due
    assert record.processed_at == due + late
    assert (record.cause.kind, record.cause.name) == ("deadline", "decide")
    assert kinds(emails) == [EmailKind.REROUTE]
    assert emails[0].to == CUSTOMER_EMAIL
    assert referral.deadline is None


def test_action_processed_before_the_deadline_wins() -> None:
    referral, _ = started()
    act(referral, "interested", None, RESPOND_DUE - timedelta(seconds=1))
    assert referral.fire_due(RESPOND_DUE) == []
    assert referral.status is Status.EVALUATING


CUSTOM = {"respond_within": "PT2H", "decide_within": "P1D", "remind_after": "PT1H"}


def test_custom_respond_and_remind_deadlines() -> None:
    referral, emails = started(make_rfi(deadlines=CUSTOM))
    assert emails[0].due_at == T0 + 2 * HOUR
    assert referral.next_wakeup() == T0 + HOUR
    assert referral.fire_due(T0 + HOUR - timedelta(seconds=1)) == []

    reminder = referral.fire_due(T0 + HOUR)
    assert kinds(reminder) == [EmailKind.REMINDER]
    assert reminder[0].due_at == T0 + 2 * HOUR
    assert referral.next_wakeup() == T0 + 2 * HOUR

    assert kinds(referral.fire_due(T0 + 2 * HOUR)) == [EmailKind.REROUTE]
    assert referral.status is Status.MISSED
    assert referral.transitions[0].effective_at == T0 + 2 * HOUR


def test_custom_decide_deadline() -> None:
    referral, _ = started(make_rfi(deadlines=CUSTOM))
    entered = T0 + timedelta(minutes=30)
    emails = act(referral, "interested", None, entered)
    assert emails[0].due_at == entered + DAY
    assert referral.next_wakeup() == entered + DAY
    assert referral.fire_due(entered + DAY - timedelta(seconds=1)) == []
    referral.fire_due(entered + DAY)
    assert referral.status is Status.EXPIRED
    assert referral.transitions[-1].effective_at == entered + DAY


def test_reminder_sent_exactly_once_at_the_reminder_time() -> None:
    referral, _ = started()
    assert referral.fire_due(REMIND_AT - timedelta(seconds=1)) == []

    emails = referral.fire_due(REMIND_AT)

    assert kinds(emails) == [EmailKind.REMINDER]
    reminder = emails[0]
    assert reminder.to == PARTNER_EMAIL
    assert reminder.status is Status.NEW
    assert reminder.due_at == RESPOND_DUE
    assert referral.status is Status.NEW
    assert referral.transitions == []
    assert referral.fire_due(REMIND_AT) == []
    assert referral.fire_due(REMIND_AT + HOUR) == []
    assert kinds(referral.view().emails) == [EmailKind.LEAD, EmailKind.REMINDER]


@pytest.mark.parametrize("remind_after", ["PT72H", "PT100H"])
def test_no_reminder_when_it_would_fall_at_or_after_the_deadline(remind_after: str) -> None:
    referral, _ = started(make_rfi(deadlines={"remind_after": remind_after}))
    assert referral.next_wakeup() == RESPOND_DUE
    assert referral.fire_due(RESPOND_DUE - timedelta(seconds=1)) == []
    assert kinds(referral.fire_due(RESPOND_DUE + 40 * HOUR)) == [EmailKind.REROUTE]
    assert EmailKind.REMINDER not in kinds(referral.view().emails)


@pytest.mark.parametrize("start_after", [REMIND_AT - T0, 30 * HOUR])
def test_no_reminder_when_started_at_or_after_the_reminder_time(start_after: timedelta) -> None:
    referral, emails = started(at=T0 + start_after)
    assert kinds(emails) == [EmailKind.LEAD]
    assert referral.next_wakeup() == RESPOND_DUE
    assert referral.fire_due(T0 + start_after) == []
    assert referral.fire_due(RESPOND_DUE - timedelta(seconds=1)) == []
    assert EmailKind.REMINDER not in kinds(referral.view().emails)


@pytest.mark.parametrize("answer", ["interested", "no_thanks"])
def test_no_reminder_after_the_partner_answered(answer: str) -> None:
    referral, _ = started()
    act(referral, answer, None, T0 + HOUR)
    assert EmailKind.REMINDER not in kinds(referral.fire_due(REMIND_AT))
    assert EmailKind.REMINDER not in kinds(referral.fire_due(REMIND_AT + 30 * DAY))
    assert EmailKind.REMINDER not in kinds(referral.view().emails)


@pytest.mark.parametrize("late", [timedelta(0), 5 * DAY], ids=["at-deadline", "days-later"])
def test_start_after_the_respond_deadline_misses_at_once(late: timedelta) -> None:
    referral, emails = started(at=RESPOND_DUE + late)

    assert referral.status is Status.MISSED
    assert kinds(emails) == [EmailKind.REROUTE]
    assert emails[0].to == CUSTOMER_EMAIL
    [record] = referral.transitions
    assert record.effective_at == RESPOND_DUE
    assert record.processed_at == RESPOND_DUE + late
    assert (record.cause.kind, record.cause.name) == ("deadline", "respond")
    assert [e.kind for e in referral.view().emails] == [EmailKind.REROUTE]
    assert referral.next_wakeup() is None


def test_start_just_before_the_deadline_sends_the_lead() -> None:
    referral, emails = started(at=RESPOND_DUE - timedelta(seconds=1))
    assert referral.status is Status.NEW
    assert kinds(emails) == [EmailKind.LEAD]


# --- next_wakeup ---------------------------------------------------------------------------


def test_next_wakeup_reminder_then_deadline() -> None:
    referral, _ = started()
    assert referral.next_wakeup() == REMIND_AT
    referral.fire_due(REMIND_AT)
    assert referral.next_wakeup() == RESPOND_DUE


def test_next_wakeup_while_evaluating_is_the_last_call_then_the_decide_deadline() -> None:
    referral, _ = started()
    act(referral, "interested", None, T0 + 3 * HOUR)
    assert referral.next_wakeup() == T0 + 3 * HOUR + 6 * DAY
    referral.fire_due(T0 + 3 * HOUR + 6 * DAY)
    assert referral.next_wakeup() == T0 + 3 * HOUR + 7 * DAY


@pytest.mark.parametrize("status", [Status.NEGOTIATING, *CLOSED])
def test_no_wakeup_without_a_deadline(status: Status) -> None:
    referral = reach(status)
    assert referral.next_wakeup() is None
    assert referral.deadline is None
    assert referral.view().deadline is None


# --- Rejections ----------------------------------------------------------------------------


def test_unknown_action_is_rejected() -> None:
    referral, _ = started()
    with pytest.raises(ActionRejected) as caught:
        act(referral, "maybe", None, T0 + HOUR)
    assert caught.value.action == "maybe"
    assert caught.value.status is Status.NEW
    assert caught.value.reason == "unknown action"
    assert "'maybe'" in str(caught.value)
    assert referral.status is Status.NEW


@pytest.mark.parametrize(
    ("status", "action", "allowed"),
    [
        (Status.NEW, "accept", ["interested", "no_thanks"]),
        (Status.NEW, "won", ["interested", "no_thanks"]),
        (Status.EVALUATING, "interested", ["accept", "decline"]),
        (Status.EVALUATING, "won", ["accept", "decline"]),
        (Status.NEGOTIATING, "decline", ["won", "lost"]),
        (Status.NEGOTIATING, "no_thanks", ["won", "lost"]),
    ],
)
def test_action_not_allowed_in_state(status: Status, action: str, allowed: list[str]) -> None:
    referral = reach(status)
    transitions = list(referral.transitions)
    with pytest.raises(ActionRejected) as caught:
        act(referral, action, ACCEPT if action == "accept" else None, T0 + 10 * HOUR)
    message = str(caught.value)
    assert str(status) in message
    assert ", ".join(allowed) in message
    assert caught.value.details() == {
        "status": str(status),
        "allowed_actions": allowed,
        "reason": f"not allowed while {status}",
    }
    assert referral.status is status
    assert referral.transitions == transitions


@pytest.mark.parametrize("status", CLOSED)
@pytest.mark.parametrize("action", ACTION_NAMES)
def test_any_action_on_a_closed_referral_is_rejected(status: Status, action: str) -> None:
    referral = reach(status)
    before = referral.view()
    payload = ACCEPT if action == "accept" else None
    with pytest.raises(ActionRejected) as caught:
        act(referral, action, payload, T0 + 20 * DAY)
    assert "closed" in caught.value.reason
    assert caught.value.details()["allowed_actions"] == []
    assert "none, the referral is closed" in str(caught.value)
    assert referral.view() == before


def test_validate_does_not_change_the_referral() -> None:
    referral, _ = started()
    before = referral.view()
    referral.validate(Action.NO_THANKS, ReasonPayload(reason="Busy"), T0 + HOUR)
    assert referral.view() == before
    past = AcceptPayload.model_validate({**ACCEPT, "estimated_close_date": "2020-01-01"})
    act(referral, "interested", None, T0 + HOUR)
    evaluating = referral.view()
    with pytest.raises(ActionRejected, match="estimated_close_date is in the past"):
        referral.validate(Action.ACCEPT, past, T0 + 2 * HOUR)
    assert referral.view() == evaluating


BAD_ACCEPT = [
    pytest.param({k: v for k, v in ACCEPT.items() if k != "currency"}, id="missing-currency"),
    pytest.param(
        {k: v for k, v in ACCEPT.items() if k != "estimated_deal_value"}, id="missing-value"
    ),
    pytest.param({**ACCEPT, "estimated_deal_value": 0}, id="zero-value"),
    pytest.param({**ACCEPT, "estimated_deal_value": "-100"}, id="negative-value"),
    pytest.param({**ACCEPT, "estimated_deal_value": "NaN"}, id="nan-value"),
    pytest.param({**ACCEPT, "currency": "XXQ"}, id="bad-currency"),
    pytest.param({**ACCEPT, "estimated_close_date": "2026-11-24"}, id="date-in-past"),
    pytest.param({**ACCEPT, "estimated_close_date": "01/02/2027"}, id="date-not-iso"),
    # 4102444800 is 2100-01-01T00:00:00Z, a timestamp lax pydantic would take as a date.
    pytest.param({**ACCEPT, "estimated_close_date": 4102444800}, id="date-timestamp"),
    pytest.param({**ACCEPT, "estimated_close_date": "2027-03-31T00:00:00Z"}, id="date-datetime"),
    pytest.param({**ACCEPT, "surprise": True}, id="unknown-field"),
    pytest.param("accept", id="bare-string"),
    pytest.param([ACCEPT], id="list"),
]


@pytest.mark.parametrize("payload", BAD_ACCEPT)
def test_bad_accept_payload_is_rejected(payload: Any) -> None:
    referral = reach(Status.EVALUATING)
    first_response = referral.first_response_at
    with pytest.raises(ActionRejected) as caught:
        act(referral, "accept", payload, T0 + 2 * DAY)
    assert caught.value.reason.startswith("invalid payload")
    assert caught.value.details()["allowed_actions"] == ["accept", "decline"]
    assert referral.status is Status.EVALUATING
    assert referral.deal is None
    assert len(referral.transitions) == 1
    assert referral.first_response_at == first_response


def test_close_date_is_judged_against_now() -> None:
    now = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    referral = reach(Status.EVALUATING)
    with pytest.raises(ActionRejected, match="estimated_close_date is in the past"):
        act(referral, "accept", {**ACCEPT, "estimated_close_date": "2027-05-31"}, now)
    act(referral, "accept", {**ACCEPT, "estimated_close_date": "2027-06-01"}, now)
    assert referral.status is Status.NEGOTIATING


@pytest.mark.parametrize(
    ("today", "latest"),
    [("2026-11-25", "2036-11-25"), ("2028-02-29", "2038-02-28")],
)
def test_a_close_date_more_than_ten_years_ahead_is_a_typo(today: str, latest: str) -> None:
    now = datetime.fromisoformat(today).replace(hour=12, tzinfo=UTC)
    referral = reach(Status.EVALUATING)
    too_late = (datetime.fromisoformat(latest) + DAY).date().isoformat()
    with pytest.raises(ActionRejected, match="more than 10 years ahead"):
        act(referral, "accept", {**ACCEPT, "estimated_close_date": too_late}, now)
    act(referral, "accept", {**ACCEPT, "estimated_close_date": latest}, now)
    assert referral.status is Status.NEGOTIATING


@pytest.mark.parametrize("status", sorted(REROUTE))
def test_a_partner_never_interested_never_sees_the_customer_contact(status: Status) -> None:
    referral = reach(status)
    dumped = json.dumps(referral.view().model_dump(mode="json"))
    customer = referral.rfi.customer
    was_interested = status in (Status.DECLINED, Status.EXPIRED)
    for secret in (customer.email, customer.name, customer.company, customer.phone):
        assert secret is not None
        assert (secret in dumped) is was_interested, secret
    [reroute] = [e for e in referral.view().emails if e.kind is EmailKind.REROUTE]
    assert reroute.to == "customer"  # a role, never the address


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("interested", {"reason": "extra"}),
        ("no_thanks", {"reason": ""}),
        ("no_thanks", {"reason": 42}),
        ("no_thanks", "busy"),
        ("interested", ["x"]),
    ],
)
def test_bad_payload_for_new_actions_is_rejected(action: str, payload: Any) -> None:
    referral, _ = started()
    with pytest.raises(ActionRejected, match="invalid payload"):
        act(referral, action, payload, T0 + HOUR)
    assert referral.status is Status.NEW
    assert referral.first_response_at is None


def test_reject_records_the_refused_action() -> None:
    referral, _ = started()
    at = T0 + HOUR
    referral.reject("accept", at, "not allowed while New")
    [rejected] = referral.view().rejected_actions
    assert rejected.action == "accept"
    assert rejected.at == at
    assert rejected.status is Status.NEW
    assert rejected.reason == "not allowed while New"


# --- What the view shows -------------------------------------------------------------------


def test_first_response_at_is_set_by_the_first_accepted_action_only() -> None:
    referral, _ = started()
    with pytest.raises(ActionRejected):
        act(referral, "accept", ACCEPT, T0 + HOUR)
    with pytest.raises(ActionRejected):
        act(referral, "maybe", None, T0 + HOUR)
    referral.fire_due(REMIND_AT)
    assert referral.view().first_response_at is None

    act(referral, "interested", None, T0 + 30 * HOUR)
    act(referral, "accept", ACCEPT, T0 + 40 * HOUR)
    assert referral.view().first_response_at == T0 + 30 * HOUR


def test_first_response_at_stays_none_when_missed() -> None:
    referral = reach(Status.MISSED)
    assert referral.view().first_response_at is None


def test_customer_hidden_while_new() -> None:
    referral, _ = started()
    assert referral.view().customer is None
    assert referral.view().model_dump(mode="json")["customer"] is None


@pytest.mark.parametrize(
    "status",
    [
        Status.EVALUATING,
        Status.NEGOTIATING,
        Status.WON,
        Status.LOST,
        Status.DECLINED,
        Status.EXPIRED,
    ],
)
def test_customer_shown_once_the_partner_is_interested(status: Status) -> None:
    referral = reach(status)
    customer = referral.view().customer
    assert customer is not None
    assert customer.email == CUSTOMER_EMAIL
    assert customer.name == "Maria Lopez"


@pytest.mark.parametrize("status", [Status.SKIPPED, Status.MISSED])
def test_customer_never_shown_to_a_partner_that_was_not_interested(status: Status) -> None:
    referral = reach(status)
    assert referral.view().customer is None


def test_deal_absent_before_accept_then_final_value_set_by_won() -> None:
    referral = reach(Status.EVALUATING)
    assert referral.view().deal is None
    act(referral, "accept", ACCEPT, T0 + DAY)
    deal = referral.view().deal
    assert deal is not None
    assert deal.estimated_deal_value == Decimal("25000.00")
    assert deal.currency == "EUR"
    assert deal.estimated_close_date.isoformat() == "2027-03-31"
    assert deal.final_deal_value is None

    act(referral, "won", {"final_deal_value": "31000.50"}, T0 + 2 * DAY)
    deal = referral.view().deal
    assert deal is not None
    assert deal.final_deal_value == Decimal("31000.50")
    assert deal.estimated_deal_value == Decimal("25000.00")


@pytest.mark.parametrize("action", ["won", "lost"])
def test_closing_without_final_value_keeps_the_estimate(action: str) -> None:
    referral = reach(Status.NEGOTIATING)
    act(referral, action, None, T0 + DAY)
    deal = referral.view().deal
    assert deal is not None
    assert deal.estimated_deal_value == Decimal("25000.00")
    assert deal.final_deal_value is None


def test_record_email_updates_only_the_named_email() -> None:
    referral = reach(Status.EVALUATING)
    lead, details = referral.view().emails
    assert (lead.kind, details.kind) == (EmailKind.LEAD, EmailKind.DETAILS)

    referral.record_email(details.id, EmailOutcome.SENT)
    lead_now, details_now = referral.view().emails
    assert lead_now == lead
    assert details_now.outcome is EmailOutcome.SENT
    assert details_now.error is None

    referral.record_email(lead.id, EmailOutcome.FAILED, "mailbox full")
    lead_now, details_now = referral.view().emails
    assert (lead_now.outcome, lead_now.error) == (EmailOutcome.FAILED, "mailbox full")
    assert details_now.outcome is EmailOutcome.SENT

    referral.record_email("no-such-email", EmailOutcome.FAILED, "x")
    assert referral.view().emails == [lead_now, details_now]


# --- Properties: random interleavings of actions, deadlines and time ------------------------

DEADLINE_CONFIGS: list[dict[str, str] | None] = [
    None,
    CUSTOM,
    {"respond_within": "PT2H", "decide_within": "PT3H", "remind_after": "PT2H"},
]
START_OFFSETS = st.one_of(
    st.just(timedelta(0)),
    st.sampled_from([timedelta(minutes=1), HOUR, 30 * HOUR, 72 * HOUR, 80 * HOUR]),
)
VALID_PAYLOADS: dict[str, Any] = {
    "interested": None,
    "no_thanks": {"reason": "Busy"},
    "accept": {**ACCEPT, "estimated_close_date": "2030-12-31"},  # within 10 years of any now
    "decline": None,
    "won": {"final_deal_value": "31000.50"},
    "lost": {"reason": "Budget cut"},
}
PAYLOADS: list[Any] = [
    None,
    {},
    {"reason": "Busy"},
    {"reason": ""},
    ACCEPT,
    {**ACCEPT, "estimated_deal_value": 0},
    {**ACCEPT, "currency": "XXQ"},
    {**ACCEPT, "estimated_close_date": "2026-01-01"},
    {"final_deal_value": "31000.50"},
    {"final_deal_value": -1},
    "interested",
    [1, 2],
    {"unexpected": True},
]
STEPS = st.one_of(
    st.sampled_from([timedelta(0), timedelta(seconds=1), HOUR, 24 * HOUR, 72 * HOUR, 7 * DAY]),
    st.integers(min_value=0, max_value=36 * 60).map(lambda minutes: timedelta(minutes=minutes)),
)
EDGES = {(source, target) for (source, _), target in EXPECTED_TRANSITIONS.items()} | {
    (source, target) for source, (_, target) in EXPECTED_DEADLINES.items()
}


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.referral, _ = started()
        self.now = T0
        self.sent: list[EmailRequest] = []
        self.missed_at_start = False
        self.frozen: dict[str, Any] | None = None

    @initialize(config=st.sampled_from(DEADLINE_CONFIGS), offset=START_OFFSETS)
    def start(self, config: dict[str, str] | None, offset: timedelta) -> None:
        rfi = make_rfi() if config is None else make_rfi(deadlines=config)
        self.referral = Referral(rfi, ACME_BERLIN.partner_id)
        self.now = rfi.received_at + offset
        self.sent = self.referral.start(ACME_BERLIN, self.now)
        self.missed_at_start = self.referral.status is Status.MISSED

    @rule(step=STEPS)
    def advance(self, step: timedelta) -> None:
        self.now += step

    @rule()
    def fire_due(self) -> None:
        self.sent += self.referral.fire_due(self.now)
        wakeup = self.referral.next_wakeup()
        assert wakeup is None or wakeup > self.now, "fire_due left something due"

    @rule(name=st.sampled_from([*ACTION_NAMES, "maybe"]), payload=st.sampled_from(PAYLOADS))
    def act(self, name: str, payload: Any) -> None:
        referral = self.referral
        status, before = referral.status, self.changeable()
        refusal: ActionRejected | None = None
        try:
            emails = act(referral, name, payload, self.now)
        except ActionRejected as rejected:
            refusal = rejected
        if refusal is not None:
            assert refusal.status is status
            assert self.changeable() == before, "a rejected action changed the referral"
            referral.reject(name, self.now, refusal.reason)
            return
        assert (status, Action(name)) in EXPECTED_TRANSITIONS
        assert referral.status is EXPECTED_TRANSITIONS[(status, Action(name))]
        self.sent += emails

    @rule(pick=st.integers(min_value=0, max_value=1))
    def act_allowed(self, pick: int) -> None:
        """Mostly a move the machine takes, so that every state is reached."""
        allowed = EXPECTED_ALLOWED[self.referral.status]
        name = allowed[pick] if allowed else ACTION_NAMES[pick]
        self.act(name, VALID_PAYLOADS[name])

    def changeable(self) -> dict[str, Any]:
        view = self.referral.view().model_dump(mode="json")
        del view["rejected_actions"]
        return view

    @invariant()
    def the_status_says_what_may_happen_next(self) -> None:
        referral, status = self.referral, self.referral.status
        assert [str(a) for a in allowed_actions(status)] == EXPECTED_ALLOWED[status]
        assert referral.closed is (status in CLOSED)
        deadline = referral.deadline
        if status in EXPECTED_DEADLINES:
            assert deadline is not None
            assert deadline.kind is EXPECTED_DEADLINES[status][0]
        else:
            assert deadline is None

    @invariant()
    def transitions_form_a_consistent_chain(self) -> None:
        transitions = self.referral.transitions
        assert [t.seq for t in transitions] == list(range(1, len(transitions) + 1))
        current = Status.NEW
        for t in transitions:
            assert t.from_ is current
            assert (t.from_, t.to) in EDGES
            if t.cause.kind == "action":
                assert EXPECTED_TRANSITIONS[(t.from_, Action(t.cause.name))] is t.to
                assert t.effective_at == t.processed_at
            else:
                assert EXPECTED_DEADLINES[t.from_] == (DeadlineKind(t.cause.name), t.to)
                assert t.effective_at <= t.processed_at
            current = t.to
        assert current is self.referral.status
        effective = [t.effective_at for t in transitions]
        assert effective == sorted(effective)

    @invariant()
    def each_terminal_state_reached_at_most_once(self) -> None:
        into_closed = [t for t in self.referral.transitions if t.to in CLOSED]
        assert len(into_closed) <= 1
        if self.referral.closed:
            assert len(into_closed) == 1

    @invariant()
    def closed_referral_never_changes_except_rejections(self) -> None:
        if not self.referral.closed:
            return
        if self.frozen is None:
            self.frozen = self.changeable()
        assert self.changeable() == self.frozen
        assert self.referral.next_wakeup() is None

    @invariant()
    def emails_are_as_promised(self) -> None:
        records = self.referral.view().emails
        assert [r.id for r in records] == [e.id for e in self.sent]
        assert len({r.id for r in records}) == len(records)
        sent = kinds(self.sent)
        reroutes = [e for e in self.sent if e.kind is EmailKind.REROUTE]
        if self.referral.status in REROUTE | {Status.LOST}:
            assert len(reroutes) == 1
            assert reroutes[0].to == CUSTOMER_EMAIL
            assert reroutes[0].status is self.referral.status
        else:
            assert reroutes == []
        assert sent.count(EmailKind.LEAD) == (0 if self.missed_at_start else 1)
        assert sent.count(EmailKind.REMINDER) <= 1
        assert sent.count(EmailKind.DETAILS) == (
            1 if any(t.to is Status.EVALUATING for t in self.referral.transitions) else 0
        )
        for email in self.sent:
            if email.kind is not EmailKind.REROUTE:
                assert email.to == PARTNER_EMAIL

    @invariant()
    def view_matches_the_history(self) -> None:
        referral = self.referral
        view = referral.view()
        actions = [t for t in referral.transitions if t.cause.kind == "action"]
        expected_first = actions[0].processed_at if actions else None
        assert view.first_response_at == expected_first
        if view.status is Status.NEW:
            assert view.customer is None
        elif any(t.to is Status.EVALUATING for t in referral.transitions):
            assert view.customer == referral.rfi.customer
        else:
            assert view.customer is None
        accepted = any(t.cause.name == "accept" for t in actions)
        assert (view.deal is not None) == accepted
        if view.status is Status.NEW:
            assert view.deadline is not None
            assert view.deadline.due_at == referral.rfi.received_at + (
                referral.rfi.deadlines.respond_within
            )
        elif view.status is Status.EVALUATING:
            assert view.deadline is not None
            assert view.deadline.due_at == referral.transitions[-1].effective_at + (
                referral.rfi.deadlines.decide_within
            )
        else:
            assert view.deadline is None

    def assert_all_invariants(self) -> None:
        self.the_status_says_what_may_happen_next()
        self.transitions_form_a_consistent_chain()
        self.each_terminal_state_reached_at_most_once()
        self.closed_referral_never_changes_except_rejections()
        self.emails_are_as_promised()
        self.view_matches_the_history()


def test_random_interleavings_keep_the_invariants() -> None:
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=200,
            deadline=None,
            database=None,
            stateful_step_count=30,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


Op = tuple[str, Any]
OPS: st.SearchStrategy[Op] = st.one_of(
    STEPS.map(lambda step: ("advance", step)),
    st.just(("fire_due", None)),
    st.tuples(st.sampled_from([*ACTION_NAMES, "maybe"]), st.sampled_from(PAYLOADS)).map(
        lambda action: ("act", action)
    ),
    st.integers(min_value=0, max_value=1).map(lambda pick: ("act_allowed", pick)),
)


@settings(max_examples=200, deadline=None, database=None)
@given(
    config=st.sampled_from(DEADLINE_CONFIGS),
    offset=START_OFFSETS,
    ops=st.lists(OPS, min_size=5, max_size=40),
)
def test_random_sequences_keep_the_invariants(
    config: dict[str, str] | None, offset: timedelta, ops: list[Op]
) -> None:
    """The same invariants over longer sequences than the stateful runs tend to draw."""
    machine = LifecycleMachine()
    machine.start(config, offset)
    machine.assert_all_invariants()
    for op, argument in ops:
        if op == "advance":
            machine.advance(argument)
        elif op == "fire_due":
            machine.fire_due()
        elif op == "act":
            machine.act(*argument)
        else:
            machine.act_allowed(argument)
        machine.assert_all_invariants()


def test_one_last_call_goes_to_the_partner_a_day_before_the_decide_deadline() -> None:
    referral, _ = started()
    entered = T0 + 5 * HOUR
    act(referral, "interested", None, entered)
    due = entered + 7 * DAY
    last_call = due - DAY
    assert referral.next_wakeup() == last_call
    assert referral.fire_due(last_call - timedelta(seconds=1)) == []
    [email] = referral.fire_due(last_call)
    assert (email.kind, email.to, email.due_at) == (
        EmailKind.LAST_CALL,
        ACME_BERLIN.contact_email,
        due,
    )
    assert referral.fire_due(last_call + HOUR) == []  # once
    assert referral.next_wakeup() == due
    assert kinds(referral.fire_due(due)) == [EmailKind.REROUTE]


@pytest.mark.parametrize(
    ("before", "decide", "expected"),
    [
        (timedelta(hours=24), timedelta(days=7), True),
        (timedelta(days=7), timedelta(days=7), False),  # would fall on entering Evaluating
        (timedelta(days=8), timedelta(days=7), False),  # before it
        (timedelta(hours=1), timedelta(hours=2), True),
    ],
)
def test_the_last_call_is_skipped_when_it_would_fall_before_evaluating(
    before: timedelta, decide: timedelta, expected: bool
) -> None:
    rfi = make_rfi(deadlines={"decide_within": decide, "last_call_before": before})
    referral, _ = started(rfi)
    act(referral, "interested", None, T0 + HOUR)
    assert referral.last_call_pending is expected
    emails = referral.fire_due(T0 + HOUR + decide)
    assert (EmailKind.LAST_CALL in kinds(emails)) is False  # the deadline itself: no last call
    assert referral.status is Status.EXPIRED


def test_accepting_before_the_last_call_cancels_it() -> None:
    referral, _ = started()
    act(referral, "interested", None, T0 + HOUR)
    act(referral, "accept", ACCEPT, T0 + 2 * HOUR)
    assert referral.last_call_pending is False
    assert referral.next_wakeup() is None


def test_a_run_replayed_from_before_last_calls_schedules_none() -> None:
    referral, _ = started()
    referral.last_calls = False  # what workflow.patched says while replaying such a run
    act(referral, "interested", None, T0 + HOUR)
    assert referral.next_wakeup() == T0 + HOUR + 7 * DAY


def test_each_action_records_the_door_it_came_through() -> None:
    referral, _ = started()
    now = referral.rfi.received_at + timedelta(hours=1)
    act(referral, "interested", {"via": {"door": "email_link"}}, now)
    key = {"door": "api", "api_key_id": "pk0123456789abcdef"}
    act(referral, "accept", {**ACCEPT, "via": key}, now)
    act(referral, "lost", {"reason_code": "no_decision"}, now)  # a backend, through Temporal
    vias = [t.via.model_dump(mode="json") if t.via else None for t in referral.transitions]
    assert vias == [
        {"door": "email_link", "api_key_id": None},
        key,
        {"door": "temporal", "api_key_id": None},
    ]
    missed = reach(Status.MISSED)
    assert [t.via for t in missed.transitions] == [None]  # a deadline came through no door
    for bad in ({"door": "fax"}, {"door": "api", "api_key_id": "has space"}, "api"):
        with pytest.raises(ActionRejected, match="invalid payload"):
            act(started()[0], "interested", {"via": bad}, now)
