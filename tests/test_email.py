"""The email side: rendering, the `.eml` outbox, SendGrid's v3 API and the send_email activity.

SendGrid is exercised with its real client against a local HTTP endpoint that answers like
`POST /v3/mail/send`; no Temporal server is started (the activity runs in ActivityEnvironment).
What a failed send means (not sent, refused, outcome unknown) is in test_email_outcomes.py;
the escaping of every field in every email kind in test_email_escaping.py.
"""

import json
import os
import stat
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.mailers import OutboxMailer, SendGridMailer
from activities.rendering import EmailRenderer, RenderedEmail
from tests.factories import ACME_BERLIN, DISTINCTIVE_CUSTOMER, DISTINCTIVE_TRACES, make_rfi
from workflows.models import EmailKind, EmailRequest, Rfi, Status

SENDER = "Referrals <r@example.com>"
API_KEY = "SG.test-key-that-must-never-leak.0123456789abcdef"
SEND_PATH = "/v3/mail/send"
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
) -> EmailRequest:
    """An email as the lifecycle asks for it: partner emails carry a deadline, reroutes don't."""
    rfi = rfi or customer_rfi()
    to_customer = kind is EmailKind.REROUTE
    default_status = {
        EmailKind.LEAD: Status.NEW,
        EmailKind.REMINDER: Status.NEW,
        EmailKind.DETAILS: Status.EVALUATING,
        EmailKind.REROUTE: Status.SKIPPED,
    }[kind]
    return EmailRequest(
        id=email_id or f"referral:{rfi.id}:{PARTNER.partner_id}.1-{kind}",
        kind=kind,
        to=str(rfi.customer.email) if to_customer else str(PARTNER.contact_email),
        status=status or default_status,
        rfi=rfi,
        partner=PARTNER,
        due_at=None if to_customer else DUE_AT,
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


def assert_retryable(error: BaseException) -> None:
    """Temporal retries any failure except a non-retryable ApplicationError."""
    assert not (isinstance(error, ApplicationError) and error.non_retryable), error
    assert getattr(error, "type", None) != "EmailRejected"


def assert_key_not_leaked(error: BaseException) -> None:
    assert API_KEY not in str(error)
    assert API_KEY not in "".join(traceback.format_exception(error))


# --- Rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [EmailKind.LEAD, EmailKind.REMINDER])
def test_lead_and_reminder_show_the_overview_but_never_the_customer(kind: EmailKind) -> None:
    rendered = render(kind)

    for part in (rendered.text, rendered.html):
        assert "Hello Jonas Weber" in part
        assert OVERVIEW["need"] in part
        assert "emea / Berlin" in part
        assert "200-500" in part
        assert DUE_AT_SHOWN in part
        for trace in CUSTOMER_TRACES:
            assert trace not in part
    for trace in CUSTOMER_TRACES:
        assert trace not in rendered.subject
    assert "emea" in rendered.subject


def test_lead_subject_names_the_need_and_region() -> None:
    rendered = render(EmailKind.LEAD)

    assert rendered.subject == f"New referral: {OVERVIEW['need']} (emea)"


def test_overview_without_a_location_shows_the_region_alone() -> None:
    rendered = render(EmailKind.LEAD, rfi=customer_rfi(location=None))

    assert "emea /" not in rendered.text
    assert "emea /" not in rendered.html
    assert "emea" in rendered.text
    assert "emea" in rendered.html


def test_details_carry_the_full_customer_contact() -> None:
    rendered = render(EmailKind.DETAILS)

    for part in (rendered.text, rendered.html):
        assert "Hello Jonas Weber" in part
        assert OVERVIEW["need"] in part
        assert "emea / Berlin" in part
        assert "200-500" in part
        assert CUSTOMER["name"] in part
        assert CUSTOMER["company"] in part
        assert CUSTOMER["email"] in part
        assert CUSTOMER["phone"] in part
        assert DUE_AT_SHOWN in part


def test_details_without_a_phone_have_no_phone_line() -> None:
    rendered = render(EmailKind.DETAILS, rfi=customer_rfi(customer={**CUSTOMER, "phone": None}))

    for part in (rendered.text, rendered.html):
        assert CUSTOMER["email"] in part
        assert "Phone" not in part
        assert "None" not in part


@pytest.mark.parametrize("kind", list(EmailKind))
def test_every_email_names_its_referral(kind: EmailKind) -> None:
    request = make_request(kind)
    rendered = EmailRenderer().render(request)

    referral_id = f"referral:{request.rfi.id}:acme-consulting"
    assert f"Referral {referral_id}" in rendered.text
    assert f"Referral {referral_id}" in rendered.html
    assert f"{referral_id}.1" not in rendered.text


@pytest.mark.parametrize(
    ("status", "explanation"),
    [
        (Status.SKIPPED, "Acme Consulting cannot take on your request."),
        (Status.MISSED, "Acme Consulting did not answer your request in time."),
        (Status.DECLINED, "Acme Consulting decided not to make an offer."),
        (Status.EXPIRED, "Acme Consulting did not decide on your request in time."),
    ],
)
def test_reroute_tells_the_customer_why(status: Status, explanation: str) -> None:
    rendered = render(EmailKind.REROUTE, status=status)

    assert rendered.subject == "Please choose another partner for your request"
    for part in (rendered.text, rendered.html):
        assert f"Hello {CUSTOMER['name']}" in part
        assert explanation in part
        assert OVERVIEW["need"] in part
        assert "choose another partner" in part
        assert "Their note" not in part


def test_reroute_explanations_differ_per_status() -> None:
    statuses = [Status.SKIPPED, Status.MISSED, Status.DECLINED, Status.EXPIRED]
    texts = {render(EmailKind.REROUTE, status=status).text for status in statuses}

    assert len(texts) == len(statuses)


def test_html_escapes_customer_supplied_text() -> None:
    rfi = customer_rfi(
        customer={**CUSTOMER, "name": "<script>alert(1)</script>"}, need="Tom & Jerry <b>"
    )

    for kind in EmailKind:
        rendered = render(kind, rfi=rfi)
        assert "<script" not in rendered.html.lower()
        assert "<b>" not in rendered.html
        assert "Tom &amp; Jerry &lt;b&gt;" in rendered.html
        # Plain text and the subject header are not HTML: they show the text as typed.
        assert "Tom & Jerry <b>" in rendered.text
        assert "&amp;" not in rendered.text
        if kind in (EmailKind.DETAILS, EmailKind.REROUTE):
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
            assert "<script>alert(1)</script>" in rendered.text
    assert render(EmailKind.LEAD, rfi=rfi).subject == "New referral: Tom & Jerry <b> (emea)"


def test_html_escapes_the_partners_name() -> None:
    partner = PARTNER.model_copy(update={"partner_name": "AT&T <Partners>"})
    request = make_request(EmailKind.REROUTE, status=Status.DECLINED).model_copy(
        update={"partner": partner}
    )

    rendered = EmailRenderer().render(request)

    assert "AT&amp;T &lt;Partners&gt; decided not to make an offer." in rendered.html
    assert "AT&T <Partners> decided not to make an offer." in rendered.text


@pytest.mark.parametrize("separator", ["\r\n", "\n", "\r"])
def test_subject_never_contains_a_newline(separator: str) -> None:
    rfi = customer_rfi(need=f"Cloud migration{separator}Bcc: x@y")

    for kind in EmailKind:
        subject = render(kind, rfi=rfi).subject
        assert "\r" not in subject
        assert "\n" not in subject
    assert (
        render(EmailKind.LEAD, rfi=rfi).subject == "New referral: Cloud migration Bcc: x@y (emea)"
    )


# --- OutboxMailer ---------------------------------------------------------------------------


def test_outbox_writes_one_multipart_eml_named_after_the_email_id(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"  # not there yet: the first email creates it
    rendered = render(EmailKind.DETAILS)

    reference = OutboxMailer(outbox, SENDER).send("ref-1.2-details", "p@partner.example", rendered)

    path = outbox / "ref-1.2-details.eml"
    assert reference == str(path)
    assert list(outbox.iterdir()) == [path]
    message = parse_eml(path)
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"] == SENDER
    assert message["To"] == "p@partner.example"
    assert message["Subject"] == rendered.subject
    # The same on every attempt, and as SendGridMailer sends it: receivers can drop copies.
    assert message["Message-ID"] == "<ref-1%2E2-details@example.com>"
    assert message["X-Referral-Email-Id"] == "ref-1.2-details"
    assert body(message, "plain").rstrip("\n") == rendered.text.rstrip("\n")
    assert body(message, "html").rstrip("\n") == rendered.html.rstrip("\n")
    assert message.defects == []


def test_outbox_keeps_non_ascii_text_intact(tmp_path: Path) -> None:
    rfi = customer_rfi(
        customer={**CUSTOMER, "name": "Zoë Ärgerlich"},
        need="Cloud-Migration für 50 000 €, Größe egal",
    )
    rendered = render(EmailKind.DETAILS, rfi=rfi)

    OutboxMailer(tmp_path, SENDER).send("ref-2.2-details", "p@partner.example", rendered)

    message = parse_eml(tmp_path / "ref-2.2-details.eml")
    assert message["Subject"] == rendered.subject
    for subtype in ("plain", "html"):
        content = body(message, subtype)
        assert "Zoë Ärgerlich" in content
        assert "Cloud-Migration für 50 000 €, Größe egal" in content


def test_outbox_long_non_ascii_subject_and_sender_survive_folding(tmp_path: Path) -> None:
    need = "Cloud-Migration für 50 000 €, Größe egal, Übergabe bis März, bitte mit Schulung"
    rendered = render(EmailKind.LEAD, rfi=customer_rfi(need=need))
    sender = "Empfehlungsbörse <referrals@marketplace.example>"

    OutboxMailer(tmp_path, sender).send("ref-6.1-lead", "p@partner.example", rendered)

    raw = (tmp_path / "ref-6.1-lead.eml").read_bytes()
    assert max(len(line) for line in raw.splitlines()) <= 78  # folded, as SMTP wants
    message = parse_eml(tmp_path / "ref-6.1-lead.eml")
    assert message["Subject"] == rendered.subject
    assert message["From"] == sender
    assert message.defects == []
    # Bodies stay readable in the file: quoted-printable, not base64.
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert b"base64" not in raw


def test_outbox_keeps_an_ascii_sender_as_configured(tmp_path: Path) -> None:
    sender = '"Acme, Inc. Referrals" <referrals@acme.example>'
    OutboxMailer(tmp_path, sender).send("ref-7.1-lead", "p@partner.example", render(EmailKind.LEAD))

    raw = (tmp_path / "ref-7.1-lead.eml").read_bytes()
    assert f"From: {sender}\n".encode() in raw
    assert parse_eml(tmp_path / "ref-7.1-lead.eml")["From"].addresses[0].display_name == (
        "Acme, Inc. Referrals"
    )


def test_outbox_files_are_readable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        OutboxMailer(tmp_path, SENDER).send("ref-8.1-lead", "p@x.example", render(EmailKind.LEAD))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "ref-8.1-lead.eml").stat().st_mode) == 0o644


def test_a_failed_outbox_write_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        OutboxMailer(tmp_path, SENDER).send("ref-9.1-lead", "p@x.example", render(EmailKind.LEAD))
    assert list(tmp_path.iterdir()) == []  # no message, no hidden temporary file


def test_outbox_lead_subject_cannot_inject_headers(tmp_path: Path) -> None:
    rendered = render(EmailKind.LEAD, rfi=customer_rfi(need="Cloud migration\r\nBcc: x@y"))

    OutboxMailer(tmp_path, SENDER).send("ref-3.1-lead", "p@partner.example", rendered)

    message = parse_eml(tmp_path / "ref-3.1-lead.eml")
    assert message["Bcc"] is None
    assert message["To"] == "p@partner.example"
    assert message["Subject"] == "New referral: Cloud migration Bcc: x@y (emea)"


def test_outbox_retry_leaves_one_file_with_the_latest_content(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path, SENDER)
    first = RenderedEmail(subject="First attempt", text="first text\n", html="<p>first</p>\n")
    second = RenderedEmail(subject="Second attempt", text="second text\n", html="<p>second</p>\n")

    mailer.send("ref-4.1-lead", "p@partner.example", first)
    reference = mailer.send("ref-4.1-lead", "p@partner.example", second)

    path = tmp_path / "ref-4.1-lead.eml"
    assert reference == str(path)
    assert list(tmp_path.iterdir()) == [path]  # no second copy, no temporary file
    message = parse_eml(path)
    assert message["Subject"] == "Second attempt"
    assert body(message, "plain") == "second text\n"
    assert body(message, "html") == "<p>second</p>\n"


def test_outbox_keeps_each_email_in_its_own_file(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path, SENDER)

    mailer.send("ref-5.1-lead", "p@partner.example", render(EmailKind.LEAD))
    mailer.send("ref-5.2-reminder", "p@partner.example", render(EmailKind.REMINDER))

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ref-5.1-lead.eml",
        "ref-5.2-reminder.eml",
    ]
    assert parse_eml(tmp_path / "ref-5.2-reminder.eml")["Subject"].startswith("Reminder:")


# --- SendGridMailer against a local v3 endpoint ---------------------------------------------


def sendgrid(httpserver: HTTPServer, timeout_s: float = 10.0) -> SendGridMailer:
    return SendGridMailer(
        API_KEY, SENDER, host=httpserver.url_for("").rstrip("/"), timeout_s=timeout_s
    )


def sendgrid_errors(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}


def test_sendgrid_accepts_and_returns_the_message_id(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(SEND_PATH, method="POST").respond_with_data(
        "", status=202, headers={"X-Message-Id": "W5xZ2tq0RkCqvV0xqJQ4gA"}
    )
    rendered = render(EmailKind.LEAD)

    reference = sendgrid(httpserver).send("ref-6.1-lead", "p@partner.example", rendered)

    assert reference == "W5xZ2tq0RkCqvV0xqJQ4gA"
    httpserver.check_assertions()
    assert len(httpserver.log) == 1
    request, _ = httpserver.log[0]
    assert request.headers.get("Authorization") == f"Bearer {API_KEY}"
    payload = json.loads(request.get_data())
    personalization = payload["personalizations"][0]
    assert personalization["to"][0]["email"] == "p@partner.example"
    assert payload["from"] == {"email": "r@example.com", "name": "Referrals"}
    assert payload.get("subject", personalization.get("subject")) == rendered.subject
    assert {part["type"]: part["value"] for part in payload["content"]} == {
        "text/plain": rendered.text,
        "text/html": rendered.html,
    }
    custom_args = {**payload.get("custom_args", {}), **personalization.get("custom_args", {})}
    assert custom_args["referral_email_id"] == "ref-6.1-lead"


def test_sendgrid_unverified_sender_is_rejected_for_good(httpserver: HTTPServer) -> None:
    message = "The from address does not match a verified Sender Identity."
    httpserver.expect_oneshot_request(SEND_PATH, method="POST").respond_with_json(
        sendgrid_errors(message, "from"), status=400
    )

    with pytest.raises(ApplicationError) as info:
        sendgrid(httpserver).send("ref-7.1-lead", "p@partner.example", render(EmailKind.LEAD))

    assert info.value.type == "EmailRejected"
    assert info.value.non_retryable is True
    assert message in str(info.value)
    assert_key_not_leaked(info.value)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "The provided authorization grant is invalid, expired, or revoked"),
        (403, "access forbidden"),
        (404, "not found"),
        (413, "Maximum message size exceeded"),
    ],
)
def test_sendgrid_refusals_are_not_retried(
    httpserver: HTTPServer, status: int, message: str
) -> None:
    httpserver.expect_oneshot_request(SEND_PATH, method="POST").respond_with_json(
        sendgrid_errors(message), status=status
    )

    with pytest.raises(ApplicationError) as info:
        sendgrid(httpserver).send("ref-8.1-lead", "p@partner.example", render(EmailKind.LEAD))

    assert info.value.type == "EmailRejected"
    assert info.value.non_retryable is True
    assert str(status) in str(info.value)
    assert_key_not_leaked(info.value)


@pytest.mark.parametrize(
    ("status", "response"),
    [
        (429, json.dumps(sendgrid_errors("too many requests"))),
        (500, json.dumps(sendgrid_errors("internal error"))),
        (503, "Service Unavailable"),
    ],
)
def test_sendgrid_throttling_and_outages_are_retried(
    httpserver: HTTPServer, status: int, response: str
) -> None:
    httpserver.expect_oneshot_request(SEND_PATH, method="POST").respond_with_data(
        response, status=status
    )
    mailer = sendgrid(httpserver)

    error = raised_by(
        lambda: mailer.send("ref-9.1-lead", "p@partner.example", render(EmailKind.LEAD))
    )

    assert_retryable(error)
    assert str(status) in str(error)
    assert_key_not_leaked(error)


# --- The send_email activity ----------------------------------------------------------------


def test_send_email_activity_writes_to_the_outbox(tmp_path: Path) -> None:
    request = make_request(EmailKind.LEAD)
    activities = EmailActivities(OutboxMailer(tmp_path, SENDER))

    receipt = ActivityEnvironment().run(activities.send_email, request)

    path = tmp_path / f"{request.id}.eml"
    assert receipt.id == request.id
    assert receipt.delivered_by == "outbox"
    assert receipt.reference == str(path)
    assert list(tmp_path.iterdir()) == [path]
    message = parse_eml(path)
    assert message["From"] == SENDER
    assert message["To"] == PARTNER.contact_email
    assert message["Subject"] == f"New referral: {OVERVIEW['need']} (emea)"
    assert "Hello Jonas Weber" in body(message, "plain")
    assert OVERVIEW["need"] in body(message, "html")
    for trace in CUSTOMER_TRACES:
        assert trace not in path.read_text()


def test_send_email_activity_sends_reroutes_to_the_customer(tmp_path: Path) -> None:
    request = make_request(EmailKind.REROUTE, status=Status.MISSED)
    activities = EmailActivities(OutboxMailer(tmp_path, SENDER))

    receipt = ActivityEnvironment().run(activities.send_email, request)

    message = parse_eml(Path(receipt.reference))
    assert message["To"] == CUSTOMER["email"]
    assert "did not answer your request in time" in body(message, "plain")


def test_send_email_activity_passes_a_sendgrid_refusal_on_unchanged(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_oneshot_request(SEND_PATH, method="POST").respond_with_json(
        sendgrid_errors("The from address does not match a verified Sender Identity.", "from"),
        status=400,
    )
    activities = EmailActivities(sendgrid(httpserver))

    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(activities.send_email, make_request(EmailKind.LEAD))

    assert info.value.type == "EmailRejected"
    assert info.value.non_retryable is True


def test_send_email_activity_returns_the_sendgrid_message_id(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(SEND_PATH, method="POST").respond_with_data(
        "", status=202, headers={"X-Message-Id": "abc123"}
    )
    request = make_request(EmailKind.DETAILS)

    receipt = ActivityEnvironment().run(EmailActivities(sendgrid(httpserver)).send_email, request)

    assert (receipt.id, receipt.delivered_by, receipt.reference) == (
        request.id,
        "sendgrid",
        "abc123",
    )
