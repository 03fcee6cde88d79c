"""Emails as the email tests build and read them: the requests the lifecycle asks to send,
their rendering, and the `.eml` files the outbox writes. The SendGrid-like endpoint is in
`tests/servers.py`."""

from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from activities.rendering import EmailRenderer, RenderedEmail
from tests.factories import ACME_BERLIN, DISTINCTIVE_CUSTOMER, DISTINCTIVE_TRACES, make_rfi
from workflows.lifecycle import CUSTOMER_SHOWN
from workflows.models import EmailKind, EmailRequest, EmailRfi, Rfi, Status

SENDER = "Referrals <r@example.com>"
DUE_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
DUE_AT_SHOWN = "2026-11-28 09:30 UTC"

PARTNER = ACME_BERLIN

CUSTOMER = DISTINCTIVE_CUSTOMER
CUSTOMER_TRACES = DISTINCTIVE_TRACES
OVERVIEW = {
    "need": "Migrate our on-premise ERP to the cloud within six months",
    "region": "emea",
    "location": "Berlin",
    "company_size": "200-500",
}


def customer_rfi(**changes: Any) -> Rfi:
    return make_rfi(**{**OVERVIEW, "customer": CUSTOMER, **changes})


def make_request(
    kind: EmailKind,
    *,
    rfi: Rfi | None = None,
    status: Status | None = None,
    email_id: str | None = None,
    alternatives: list[str] | None = None,
) -> EmailRequest:
    """An email as the lifecycle asks for it: partner emails carry a deadline, reroutes don't."""
    rfi = rfi or customer_rfi()
    to_customer = kind is EmailKind.REROUTE
    default_status = {
        EmailKind.LEAD: Status.NEW,
        EmailKind.REMINDER: Status.NEW,
        EmailKind.LAST_CALL: Status.EVALUATING,
        EmailKind.DETAILS: Status.EVALUATING,
        EmailKind.REROUTE: Status.SKIPPED,
    }[kind]
    return EmailRequest(
        id=email_id or f"referral:{rfi.id}:{PARTNER.partner_id}.1-{kind}",
        kind=kind,
        to=str(rfi.customer.email) if to_customer else str(PARTNER.contact_email),
        status=status or default_status,
        rfi=EmailRfi.of(rfi, with_customer=kind in CUSTOMER_SHOWN),
        partner=PARTNER,
        due_at=None if to_customer else DUE_AT,
        alternatives=alternatives,
    )


def render(kind: EmailKind, **kwargs: Any) -> RenderedEmail:
    return EmailRenderer().render(make_request(kind, **kwargs))


def parse_eml(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=default_policy)


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    assert part.get_content_type() == f"text/{subtype}"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def raised_by(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as error:
        return error
    pytest.fail("expected the call to raise")
