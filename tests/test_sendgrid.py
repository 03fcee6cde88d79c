"""The SendGrid mailer: the real `sendgrid` client against a local endpoint that answers like
`POST /v3/mail/send` (tests/servers.py). What it sends, and the plain error each answer
becomes: a refusal EmailRejected, throttling and outages a retryable error. Requests that may
have reached SendGrid unanswered are in test_email_outcomes.py; what the activity makes of
each error in test_email_activity.py.
"""

import json
import traceback

import pytest
from pytest_httpserver import HTTPServer

from activities.mailers import EmailOutcomeUnknown, EmailRejected
from tests.emails import raised_by, render
from tests.servers import SENDGRID_API_KEY, SENDGRID_SEND_PATH, sendgrid_errors, sendgrid_mailer
from workflows.models import EmailKind


def assert_retryable(error: BaseException) -> None:
    """Nothing was accepted: neither of the errors that sending again cannot help."""
    assert not isinstance(error, (EmailRejected, EmailOutcomeUnknown)), error
    assert isinstance(error, RuntimeError)


def assert_key_not_leaked(error: BaseException) -> None:
    assert SENDGRID_API_KEY not in str(error)
    assert SENDGRID_API_KEY not in "".join(traceback.format_exception(error))


def test_sendgrid_accepts_and_returns_the_message_id(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(SENDGRID_SEND_PATH, method="POST").respond_with_data(
        "", status=202, headers={"X-Message-Id": "W5xZ2tq0RkCqvV0xqJQ4gA"}
    )
    rendered = render(EmailKind.LEAD)

    reference = sendgrid_mailer(httpserver).send("ref-6.1-lead", "p@partner.example", rendered)

    assert reference == "W5xZ2tq0RkCqvV0xqJQ4gA"
    httpserver.check_assertions()
    assert len(httpserver.log) == 1
    request, _ = httpserver.log[0]
    assert request.headers.get("Authorization") == f"Bearer {SENDGRID_API_KEY}"
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
    refusal = "The from address does not match a verified Sender Identity."
    httpserver.expect_oneshot_request(SENDGRID_SEND_PATH, method="POST").respond_with_json(
        sendgrid_errors(refusal, "from"), status=400
    )
    mailer = sendgrid_mailer(httpserver)

    with pytest.raises(EmailRejected) as info:
        mailer.send("ref-7.1-lead", "p@partner.example", render(EmailKind.LEAD))

    assert str(info.value).startswith("SendGrid refused the message: HTTP 400: ")
    assert refusal in str(info.value)
    assert len(httpserver.log) == 1  # refused, not tried again here
    assert_key_not_leaked(info.value)


@pytest.mark.parametrize(
    ("status", "refusal"),
    [
        (401, "The provided authorization grant is invalid, expired, or revoked"),
        (403, "access forbidden"),
        (404, "not found"),
        (413, "Maximum message size exceeded"),
    ],
)
def test_sendgrid_refusals_are_not_retried(
    httpserver: HTTPServer, status: int, refusal: str
) -> None:
    httpserver.expect_oneshot_request(SENDGRID_SEND_PATH, method="POST").respond_with_json(
        sendgrid_errors(refusal), status=status
    )
    mailer = sendgrid_mailer(httpserver)

    with pytest.raises(EmailRejected) as info:
        mailer.send("ref-8.1-lead", "p@partner.example", render(EmailKind.LEAD))

    assert str(info.value).startswith(f"SendGrid refused the message: HTTP {status}: ")
    assert refusal in str(info.value)
    assert len(httpserver.log) == 1
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
    httpserver.expect_oneshot_request(SENDGRID_SEND_PATH, method="POST").respond_with_data(
        response, status=status
    )
    mailer = sendgrid_mailer(httpserver)

    error = raised_by(
        lambda: mailer.send("ref-9.1-lead", "p@partner.example", render(EmailKind.LEAD))
    )

    assert_retryable(error)
    assert str(error).startswith(f"SendGrid is unavailable: HTTP {status}: ")
    assert_key_not_leaked(error)
