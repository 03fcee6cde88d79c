"""What a SendGrid send tells the workflow: sent, refused, not sent, or sent perhaps.

The real `sendgrid` client talks to local endpoints (tests/servers.py): pytest-httpserver where
SendGrid answers (in time or late), and a raw TCP endpoint where it reads the whole request and
then hangs up, resets or answers garbage. Every case also counts the requests the endpoint
received: one send is one request, whatever happens. The mailer raises plain errors (a
retryable one when nothing was sent, EmailOutcomeUnknown when the message may have been
accepted); the activity turns EmailOutcomeUnknown into a non-retryable OUTCOME_UNKNOWN.
"""

import json
import socket
import threading
import time
import traceback
from collections.abc import Callable
from email.headerregistry import HeaderRegistry
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from werkzeug import Request, Response

from activities.email import EmailActivities
from activities.mailers import (
    OUTCOME_UNKNOWN,
    EmailOutcomeUnknown,
    EmailRejected,
    OutboxMailer,
    SendGridMailer,
    message_id,
)
from activities.rendering import EmailRenderer
from tests.emails import (
    CUSTOMER,
    CUSTOMER_TRACES,
    PARTNER,
    SENDER,
    make_request,
    parse_eml,
    raised_by,
)
from tests.servers import (
    SENDGRID_API_KEY,
    SENDGRID_SEND_PATH,
    RawEndpoint,
    answer,
    hang_up,
    reset,
    sendgrid_mailer,
)
from workflows.models import EmailKind, EmailRequest

# The details email carries the customer's whole contact: none of it may reach a failure.
DETAILS = make_request(EmailKind.DETAILS)
PERSONAL = (*CUSTOMER_TRACES, CUSTOMER["email"], PARTNER.contact_email, PARTNER.contact_name)
# SendGrid refuses these in `headers` (the sendgrid package's Header docstring).
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


def send(mailer: SendGridMailer, request: EmailRequest = DETAILS) -> str:
    return mailer.send(request.id, request.to, EmailRenderer().render(request))


def assert_clean(error: BaseException) -> None:
    """Neither the API key nor the customer's or partner's contact in the failure."""
    text = "".join(traceback.format_exception(error))
    for secret in (SENDGRID_API_KEY, *PERSONAL):
        assert secret not in text, f"{secret!r} leaked into the failure"


def assert_not_sent(error: BaseException) -> None:
    """Nothing reached SendGrid: neither of the errors that sending again cannot help."""
    assert not isinstance(error, (EmailRejected, EmailOutcomeUnknown)), error
    assert isinstance(error, RuntimeError)
    assert str(error).startswith("SendGrid is unavailable: ")
    assert_clean(error)


def assert_outcome_unknown(error: BaseException, says: str) -> None:
    assert isinstance(error, EmailOutcomeUnknown), error
    assert says in str(error)
    assert str(error).endswith("the message may have been accepted")
    assert_clean(error)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it any more


# --- Sent: one request, carrying the email's id ---------------------------------------------


def test_an_answer_in_time_is_one_request(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_data(
        "", status=202, headers={"X-Message-Id": "W5xZ2tq0RkCqvV0xqJQ4gA"}
    )

    reference = send(sendgrid_mailer(httpserver))

    assert reference == "W5xZ2tq0RkCqvV0xqJQ4gA"
    assert len(httpserver.log) == 1


def test_every_request_carries_the_email_id_for_receivers_to_drop_copies(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_data("", status=202)
    mailer = sendgrid_mailer(httpserver)

    send(mailer)
    send(mailer)  # a second attempt of the same email: the same ids, nothing random

    payloads = [json.loads(request.get_data()) for request, _ in httpserver.log]
    assert len(payloads) == 2
    for payload in payloads:
        assert payload["custom_args"] == {"referral_email_id": DETAILS.id}
        assert payload["headers"] == {
            "X-Referral-Email-Id": DETAILS.id,
            "Message-ID": message_id(DETAILS.id, SENDER),
        }
        assert not {name.lower() for name in payload["headers"]} & RESERVED_HEADERS
    # The outbox writes the same two headers for the same email.
    OutboxMailer(tmp_path, SENDER).send(DETAILS.id, DETAILS.to, EmailRenderer().render(DETAILS))
    eml = parse_eml(tmp_path / f"{DETAILS.id}.eml")
    # Folded onto a line of its own when long, as RFC 5322 allows: compare it unfolded.
    assert eml["Message-ID"].strip() == message_id(DETAILS.id, SENDER)
    assert eml["Message-ID"].defects == ()
    assert eml["X-Referral-Email-Id"] == DETAILS.id


def test_the_message_id_is_valid_for_any_email_id_and_one_per_email() -> None:
    ids = [
        "referral:rfi-1001:acme-consulting.1-lead",  # ':' is no atom character
        "referral-rfi-1001-acme-consulting.1-lead",  # the ids of older runs
        "referral:a..b:.p.1-lead",  # dots where an atom may not have them
        "referral:a%2E%2Eb:%2Ep.1-lead",  # what the dots become, typed in
    ]
    parsed = [HeaderRegistry()("Message-ID", message_id(email_id, SENDER)) for email_id in ids]

    assert message_id(ids[0], SENDER) == (
        "<referral%3Arfi-1001%3Aacme-consulting%2E1-lead@example.com>"  # the sender's domain
    )
    for header in parsed:
        assert header.defects == ()
        assert str(header).endswith("@example.com>")
    assert len({str(header) for header in parsed}) == len(ids)
    assert message_id(ids[0], "Empfehlungsbörse <r@bücher.example>").endswith("@referrals.invalid>")


# --- Not sent: retried at once --------------------------------------------------------------


def test_a_refused_connection_is_retried() -> None:
    mailer = SendGridMailer(SENDGRID_API_KEY, SENDER, host=f"http://127.0.0.1:{closed_port()}")

    error = raised_by(lambda: send(mailer))

    assert_not_sent(error)
    assert "Connection refused" in str(error)


def test_a_name_that_does_not_resolve_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    mailer = SendGridMailer(SENDGRID_API_KEY, SENDER, host="https://api.sendgrid.com")

    assert_not_sent(raised_by(lambda: send(mailer)))


def test_a_connection_that_never_opens_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A timeout while connecting, unlike one while waiting for the answer, sent nothing."""

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    mailer = SendGridMailer(
        SENDGRID_API_KEY, SENDER, host="https://api.sendgrid.com", timeout_s=0.5
    )

    assert_not_sent(raised_by(lambda: send(mailer)))


def test_a_failed_tls_handshake_is_retried(httpserver: HTTPServer) -> None:
    # TLS to a plain HTTP endpoint: the handshake fails before any request is written.
    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_data("", status=202)
    mailer = SendGridMailer(SENDGRID_API_KEY, SENDER, host=f"https://127.0.0.1:{httpserver.port}")

    error = raised_by(lambda: send(mailer))

    assert_not_sent(error)
    assert "SSL" in str(error)
    assert httpserver.log == []


# --- Sent perhaps: final here, the workflow decides -----------------------------------------


def test_an_answer_later_than_the_timeout_is_an_unknown_outcome(httpserver: HTTPServer) -> None:
    received: list[Request] = []
    answered = threading.Event()

    def slow(request: Request) -> Response:
        received.append(request)
        time.sleep(1.5)
        answered.set()
        return Response("", status=202)

    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_handler(slow)
    mailer = sendgrid_mailer(httpserver, timeout_s=0.5)

    started = time.monotonic()
    error = raised_by(lambda: send(mailer))

    assert time.monotonic() - started < 1.4  # gave up at the timeout, did not wait it out
    assert_outcome_unknown(error, "SendGrid's answer did not come within 0.5 s")
    assert answered.wait(5)  # the endpoint finished: no request can still be on its way
    assert len(received) == 1
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("then", "says"),
    [
        (hang_up, "closed the connection without an answer (RemoteDisconnected)"),
        (reset, "closed the connection without an answer (ConnectionResetError)"),
        (answer(b"garbage\r\n\r\n"), "answer could not be read (BadStatusLine)"),
        (
            answer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nabc"),
            "answer could not be read (IncompleteRead)",
        ),
    ],
    ids=["closed", "reset", "garbage", "cut-short-202"],
)
def test_a_request_sent_without_a_readable_answer_is_an_unknown_outcome(
    then: Callable[[socket.socket], None], says: str
) -> None:
    with RawEndpoint(then) as endpoint:
        mailer = sendgrid_mailer(endpoint, timeout_s=2)

        error = raised_by(lambda: send(mailer))

    assert_outcome_unknown(error, says)
    assert len(endpoint.request_bodies) == 1
    assert json.loads(endpoint.request_bodies[0])["custom_args"] == {
        "referral_email_id": DETAILS.id
    }


def test_the_activity_fails_for_good_on_an_unknown_outcome(httpserver: HTTPServer) -> None:
    answered = threading.Event()

    def slow(request: Request) -> Response:
        time.sleep(1)
        answered.set()
        return Response("", status=202)

    httpserver.expect_request(SENDGRID_SEND_PATH, method="POST").respond_with_handler(slow)
    mailer = sendgrid_mailer(httpserver, timeout_s=0.3)

    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(EmailActivities(mailer).send_email, DETAILS)

    assert info.value.type == OUTCOME_UNKNOWN
    assert info.value.non_retryable is True
    assert info.value.message == (
        "SendGrid's answer did not come within 0.3 s: the message may have been accepted"
    )
    assert_clean(info.value)
    assert answered.wait(5)
    assert len(httpserver.log) == 1
