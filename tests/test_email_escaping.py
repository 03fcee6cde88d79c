"""Every user-supplied field, in every email kind: escaped in HTML, as typed in text, or absent.

One field at a time holds markup, so that a failure names the email kind and the field. What
each kind shows is the SHOWN table; a field outside it must not appear at all (the lead and the
reminder never carry the customer's contact). Region and ids cannot hold markup (their pattern
refuses it) and deals are not in any email, so they are not listed.
"""

from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from activities.mailers import OutboxMailer
from activities.rendering import EmailRenderer, RenderedEmail
from tests.emails import CUSTOMER, DUE_AT, SENDER, body, parse_eml
from tests.factories import ACME_BERLIN, RECEIVED_AT, act, make_rfi
from workflows.lifecycle import Referral
from workflows.models import EmailKind, EmailRequest, Status

HOSTILE = "<i>x</i> & y"
ESCAPED = "&lt;i&gt;x&lt;/i&gt; &amp; y"
# An email address cannot hold markup; an ampersand it can.
HOSTILE_EMAIL = "x&y@example.com"
ESCAPED_EMAIL = "x&amp;y@example.com"

# Each field, and how to put a value into an email request.
Setter = Callable[[dict[str, Any], str], None]


def _rfi(key: str) -> Setter:
    def put(parts: dict[str, Any], value: str) -> None:
        parts["rfi"][key] = value

    return put


def _customer(key: str) -> Setter:
    def put(parts: dict[str, Any], value: str) -> None:
        parts["rfi"]["customer"][key] = value

    return put


def _partner(key: str) -> Setter:
    def put(parts: dict[str, Any], value: str) -> None:
        parts["partner"][key] = value

    return put


def _alternative(parts: dict[str, Any], value: str) -> None:
    parts["alternatives"][0] = value


FIELDS: dict[str, Setter] = {
    "need": _rfi("need"),
    "location": _rfi("location"),
    "company_size": _rfi("company_size"),
    "customer.name": _customer("name"),
    "customer.company": _customer("company"),
    "customer.email": _customer("email"),
    "customer.phone": _customer("phone"),
    "partner.partner_name": _partner("partner_name"),
    "partner.contact_name": _partner("contact_name"),
    "alternatives": _alternative,
}
OVERVIEW_FIELDS = {"need", "location", "company_size"}
CONTACT_FIELDS = {"customer.name", "customer.company", "customer.email", "customer.phone"}
SHOWN: dict[EmailKind, set[str]] = {
    EmailKind.LEAD: OVERVIEW_FIELDS | {"partner.partner_name", "partner.contact_name"},
    EmailKind.REMINDER: OVERVIEW_FIELDS | {"partner.partner_name", "partner.contact_name"},
    # The partner has seen the customer by then; the last call needs only the overview.
    EmailKind.LAST_CALL: OVERVIEW_FIELDS | {"partner.partner_name", "partner.contact_name"},
    EmailKind.DETAILS: OVERVIEW_FIELDS | CONTACT_FIELDS | {"partner.contact_name"},
    EmailKind.REROUTE: OVERVIEW_FIELDS | {"customer.name", "partner.partner_name", "alternatives"},
}
# Never, whatever the templates become: the partner sees the customer only once interested.
NEVER: dict[EmailKind, set[str]] = {
    EmailKind.LEAD: CONTACT_FIELDS,
    EmailKind.REMINDER: CONTACT_FIELDS,
}
STATUS = {
    EmailKind.LEAD: Status.NEW,
    EmailKind.REMINDER: Status.NEW,
    EmailKind.LAST_CALL: Status.EVALUATING,
    EmailKind.DETAILS: Status.EVALUATING,
    EmailKind.REROUTE: Status.DECLINED,
}


def values(field: str) -> tuple[str, str]:
    """The hostile value a field can hold, and its HTML-escaped form."""
    return (HOSTILE_EMAIL, ESCAPED_EMAIL) if field == "customer.email" else (HOSTILE, ESCAPED)


def request_with(kind: EmailKind, field: str, value: str) -> EmailRequest:
    """The email the lifecycle would ask for, with `value` in `field` and plain text elsewhere."""
    rfi = make_rfi(
        need="Migrate our ERP to the cloud",
        location="Berlin",
        company_size="200-500",
        customer=dict(CUSTOMER),
    )
    parts: dict[str, Any] = {
        "rfi": rfi.model_dump(mode="json"),
        "partner": ACME_BERLIN.model_dump(mode="json"),
        "alternatives": ["Globex", "Initech"],
    }
    FIELDS[field](parts, value)
    to_customer = kind is EmailKind.REROUTE
    return EmailRequest.model_validate(
        {
            "id": f"referral-{rfi.id}-acme-consulting.1-{kind}",
            "kind": kind,
            "to": parts["rfi"]["customer"]["email"] if to_customer else ACME_BERLIN.contact_email,
            "status": STATUS[kind],
            "rfi": parts["rfi"],
            "partner": parts["partner"],
            "due_at": None if to_customer else DUE_AT,
            "alternatives": parts["alternatives"] if to_customer else None,
        }
    )


def assert_shown(html: str, text: str, raw: str, escaped: str) -> None:
    assert escaped in html, "the HTML part lost the value"
    assert raw not in html, "the HTML part shows the value unescaped"
    assert "<i>" not in html, "markup reached the HTML part"
    assert "&amp;lt;" not in html, "escaped twice"
    assert raw in text, "the text part lost the value"
    assert escaped not in text, "the text part is escaped: it is not HTML"


def assert_absent(parts: list[str], raw: str, escaped: str) -> None:
    for part in parts:
        assert raw not in part
        assert escaped not in part


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("kind", list(EmailKind))
def test_every_field_is_escaped_in_html_kept_in_text_or_absent(kind: EmailKind, field: str) -> None:
    raw, escaped = values(field)

    rendered = EmailRenderer().render(request_with(kind, field, raw))

    assert rendered.subject.splitlines() == [rendered.subject]  # one line: nothing to inject
    assert escaped not in rendered.subject  # a header, not HTML
    if field in SHOWN[kind]:
        assert field not in NEVER.get(kind, set())
        assert_shown(rendered.html, rendered.text, raw, escaped)
    else:
        assert_absent([rendered.subject, rendered.text, rendered.html], raw, escaped)


def test_the_lead_subject_shows_the_need_as_typed() -> None:
    rendered = EmailRenderer().render(request_with(EmailKind.LEAD, "need", HOSTILE))

    assert rendered.subject == f"New referral: {HOSTILE} (emea)"


@pytest.mark.parametrize("field", sorted(SHOWN[EmailKind.DETAILS]))
def test_the_outbox_eml_keeps_the_escaping_of_every_details_field(
    tmp_path: Path, field: str
) -> None:
    raw, escaped = values(field)
    request = request_with(EmailKind.DETAILS, field, raw)
    rendered: RenderedEmail = EmailRenderer().render(request)

    OutboxMailer(tmp_path, SENDER).send(request.id, request.to, rendered)

    message: EmailMessage = parse_eml(tmp_path / f"{request.id}.eml")
    assert message.defects == []
    # Decoded from quoted-printable: what a mail client shows.
    assert_shown(body(message, "html"), body(message, "plain"), raw, escaped)


# --- The partner's reason stays with the marketplace ----------------------------------------

REASON = "<i>x</i> & y: our team is fully booked until spring"


@pytest.mark.parametrize(
    "actions",
    [[("no_thanks", {"reason": REASON})], [("interested", None), ("decline", {"reason": REASON})]],
    ids=["skipped", "declined"],
)
def test_the_reroute_email_never_carries_the_partners_reason(
    actions: list[tuple[str, Any]],
) -> None:
    referral = Referral(make_rfi(customer=dict(CUSTOMER)), ACME_BERLIN.partner_id)
    now = RECEIVED_AT + timedelta(hours=1)
    emails = referral.start(ACME_BERLIN, now)
    for action, argument in actions:
        emails = act(referral, action, argument, now)
    [reroute] = [email for email in emails if email.kind is EmailKind.REROUTE]
    assert referral.transitions[-1].reason == REASON  # the marketplace keeps it

    rendered = EmailRenderer().render(reroute)

    assert "fully booked" not in reroute.model_dump_json()  # not even in the activity's input
    for part in (rendered.subject, rendered.text, rendered.html):
        assert "fully booked" not in part
