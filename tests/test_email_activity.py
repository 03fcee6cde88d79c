"""The send_email activity, run in ActivityEnvironment (no Temporal server): it renders the
email, hands it to the mailer, and turns the mailer's plain errors into what the workflow
catches. EmailRejected and EmailOutcomeUnknown become non-retryable ApplicationErrors of types
REJECTED and OUTCOME_UNKNOWN with the mailer's message; any other error passes unchanged, for
Temporal to retry. A fake mailer raises the plain errors; the real mailers run too.
"""

from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.mailers import (
    OUTCOME_UNKNOWN,
    REJECTED,
    EmailOutcomeUnknown,
    EmailRejected,
    OutboxMailer,
)
from activities.rendering import RenderedEmail
from tests.emails import (
    CUSTOMER,
    CUSTOMER_TRACES,
    OVERVIEW,
    PARTNER,
    SENDER,
    body,
    make_request,
    parse_eml,
)
from tests.servers import SENDGRID_SEND_PATH, sendgrid_errors, sendgrid_mailer
from workflows.models import EmailKind, Status


class FailingMailer:
    """Fails every send with the error it was given, as a fake mailer would: plain Python
    errors, no Temporal type."""

    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.attempts = 0

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        self.attempts += 1
        raise self.error


# --- What the workflow is told --------------------------------------------------------------


def test_the_failure_types_are_the_names_the_workflow_catches() -> None:
    assert (REJECTED, OUTCOME_UNKNOWN) == ("EmailRejected", "EmailOutcomeUnknown")


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        (EmailRejected("SendGrid refused the message: HTTP 400: bad sender"), REJECTED),
        (
            EmailOutcomeUnknown(
                "SendGrid's answer did not come within 10 s: the message may have been accepted"
            ),
            OUTCOME_UNKNOWN,
        ),
    ],
    ids=["rejected", "outcome-unknown"],
)
def test_a_mailer_error_that_sending_again_cannot_help_fails_the_activity_for_good(
    error: Exception, error_type: str
) -> None:
    mailer = FailingMailer(error)
    request = make_request(EmailKind.DETAILS)  # the customer's whole contact

    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(EmailActivities(mailer).send_email, request)

    assert info.value.type == error_type
    assert info.value.non_retryable is True
    assert info.value.message == str(error)  # the mailer's words, nothing of the request
    assert info.value.__cause__ is None  # one failure in the history, not two
    assert mailer.attempts == 1


@pytest.mark.parametrize(
    "error",
    [RuntimeError("SendGrid is unavailable: HTTP 503: "), OSError(28, "No space left on device")],
    ids=["sendgrid-unavailable", "outbox-disk-full"],
)
def test_any_other_mailer_error_passes_unchanged_for_temporal_to_retry(error: Exception) -> None:
    mailer = FailingMailer(error)

    with pytest.raises(type(error)) as info:
        ActivityEnvironment().run(EmailActivities(mailer).send_email, make_request(EmailKind.LEAD))

    assert info.value is error
    assert mailer.attempts == 1


# --- With the real mailers ------------------------------------------------------------------


def test_send_email_activity_writes_to_the_outbox(tmp_path: Path) -> None:
    request = make_request(EmailKind.LEAD)
    email_activities = EmailActivities(OutboxMailer(tmp_path, SENDER))

    receipt = ActivityEnvironment().run(email_activities.send_email, request)

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
    email_activities = EmailActivities(OutboxMailer(tmp_path, SENDER))

    receipt = ActivityEnvironment().run(email_activities.send_email, request)

    message = parse_eml(Path(receipt.reference))
    assert message["To"] == CUSTOMER["email"]
    assert "did not answer your request in time" in body(message, "plain")


def test_send_email_activity_fails_for_good_on_a_sendgrid_refusal(
    httpserver: HTTPServer,
) -> None:
    refusal = "The from address does not match a verified Sender Identity."
    httpserver.expect_oneshot_request(SENDGRID_SEND_PATH, method="POST").respond_with_json(
        sendgrid_errors(refusal, "from"), status=400
    )
    email_activities = EmailActivities(sendgrid_mailer(httpserver))

    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(email_activities.send_email, make_request(EmailKind.LEAD))

    assert info.value.type == REJECTED
    assert info.value.non_retryable is True
    assert info.value.message.startswith("SendGrid refused the message: HTTP 400: ")
    assert refusal in info.value.message


def test_send_email_activity_returns_the_sendgrid_message_id(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(SENDGRID_SEND_PATH, method="POST").respond_with_data(
        "", status=202, headers={"X-Message-Id": "abc123"}
    )
    request = make_request(EmailKind.DETAILS)

    receipt = ActivityEnvironment().run(
        EmailActivities(sendgrid_mailer(httpserver)).send_email, request
    )

    assert (receipt.id, receipt.delivered_by, receipt.reference) == (
        request.id,
        "sendgrid",
        "abc123",
    )
