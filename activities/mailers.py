"""Where email goes: SendGrid's v3 API, or `.eml` files in a local outbox.

What a failed send raises here, plain Python errors (no Temporal type: a fake mailer needs none):

- ``EmailRejected``: the provider refused the message; sending it again is refused again.
- ``EmailOutcomeUnknown``: the request may have reached the provider and no answer came;
  sending it again may deliver a second copy.
- any other error: nothing was accepted (no connection, or the provider said it cannot take the
  message now), so it may be sent again at once.

`EmailActivities.send_email` (activities/email.py) turns the first two into non-retryable
``ApplicationError``s of type ``REJECTED`` and ``OUTCOME_UNKNOWN``, for the workflow to decide
whether to send again; Temporal retries any other error. No message carries the request (the
API key, the recipient, the email): the customer's contact must never reach a failure.

Every copy of one email carries its id (`X-Referral-Email-Id`, the same `Message-ID`, and
SendGrid's `custom_args`), so that a receiver can drop copies.
"""

import http.client
import logging
import os
import re
import uuid
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr, getaddresses, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.error import URLError
from urllib.parse import quote

import sendgrid.helpers.mail as sendgrid_mail
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from activities.rendering import RenderedEmail

# The HTTP client logs request headers (the API key) and bodies at DEBUG: never let it.
logging.getLogger("python_http_client").setLevel(logging.WARNING)

# The ApplicationError types `EmailActivities.send_email` fails with for EmailRejected and
# EmailOutcomeUnknown, both non-retryable; the workflow imports them from here and catches them.
REJECTED = "EmailRejected"
OUTCOME_UNKNOWN = "EmailOutcomeUnknown"

# SendGrid answers these for a message it will never accept; anything else may pass later.
REJECTED_STATUSES = frozenset({400, 401, 403, 404, 413})

EMAIL_ID_HEADER = "X-Referral-Email-Id"


class EmailRejected(Exception):
    """The provider refused the message for good: sending it again is refused again."""


class EmailOutcomeUnknown(Exception):
    """The request may have reached the provider, and no answer came: the message may have
    been accepted, and sending it again may deliver a second copy."""


def message_id(email_id: str, sender: str) -> str:
    """The Message-ID of every copy of one email, whichever attempt or mailer sent it.

    The id is percent-encoded, dots too, so that any id (`referral:rfi-1:acme.1-lead`) makes
    one valid atom, and two ids never meet; the sender's domain makes it globally unique."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    if not at or not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", domain):
        domain = "referrals.invalid"  # an internationalized domain, say: ASCII only here
    return f"<{quote(email_id, safe='').replace('.', '%2E')}@{domain}>"


class Mailer(Protocol):
    name: str

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        """Deliver one message and return the provider's reference for it.

        Raises EmailRejected or EmailOutcomeUnknown when sending again cannot help, any
        other error when nothing was accepted."""
        ...


class OutboxMailer:
    """Writes each message as a multipart `.eml` file named after its email id.

    The message is built with `email.mime` (the stdlib's compat32 policy): a quarter of the
    CPU of `EmailMessage`'s header registry, which reparses every header it sets and folds.
    """

    name = "outbox"

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender
        self._from = _from_header(sender)

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        mail = MIMEMultipart("alternative")
        mail["From"] = self._from
        mail["To"] = to
        if message.subject.isascii():  # readable in the file as it is
            mail["Subject"] = message.subject
        else:
            # compat32 takes a Header, which folds its encoded words (typeshed says only str).
            mail["Subject"] = Header(message.subject, "utf-8", header_name="Subject")  # type: ignore[assignment]
        mail["Message-ID"] = message_id(email_id, self.sender)
        mail[EMAIL_ID_HEADER] = email_id
        mail.attach(_text_part("plain", message.text))
        mail.attach(_text_part("html", message.html))
        content = mail.as_bytes()  # before any file exists: it may refuse a header
        path = self.directory / f"{email_id}.eml"
        # Write then rename, so that a retried attempt replaces its own file whole.
        temporary = self.directory / f".{email_id}.{uuid.uuid4().hex}.tmp"
        try:
            handle = temporary.open("xb")
        except FileNotFoundError:  # the first message, or the folder was removed
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = temporary.open("xb")
        try:
            with handle:
                # Readable by a mail pickup process running as another user, whatever the umask.
                os.fchmod(handle.fileno(), 0o644)
                handle.write(content)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return str(path)


def _from_header(sender: str) -> str:
    """The From header: the sender as configured, but for a display name outside ASCII,
    which becomes an encoded word. Refuses what would break the header."""
    if "\r" in sender or "\n" in sender:
        raise ValueError(f"the sender {sender!r} must be one line")
    if sender.isascii():
        return sender
    addresses = getaddresses([sender])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        raise ValueError(f"the sender {sender!r} must be one address, with a name if you like")
    return formataddr(addresses[0], charset="utf-8")


# Bodies in UTF-8, quoted-printable: ASCII text stays readable, any other character survives.
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def _text_part(subtype: str, text: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(text, _UTF8_QP)
    return part


class SendGridMailer:
    """The official SendGrid client. Refusals are final; throttling, outages and failures to
    connect retry; a request that may have reached SendGrid unanswered is never sent again
    here (EmailOutcomeUnknown): that takes the workflow's decision."""

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        sender: str,
        host: str = "https://api.sendgrid.com",
        timeout_s: float = 10.0,
    ) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=host)
        self._client.client.timeout = timeout_s
        self._timeout_s = timeout_s
        self.sender = sender

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        mail = sendgrid_mail.Mail(
            from_email=self.sender,
            to_emails=to,
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
        )
        mail.custom_arg = sendgrid_mail.CustomArg("referral_email_id", email_id)
        # Neither is one of SendGrid's reserved headers (x-sg-id, x-sg-eid, received,
        # dkim-signature, Content-Type, Content-Transfer-Encoding, To, From, Subject,
        # Reply-To, CC, BCC).
        mail.header = [
            sendgrid_mail.Header(EMAIL_ID_HEADER, email_id),
            sendgrid_mail.Header("Message-ID", message_id(email_id, self.sender)),
        ]
        request = mail.get()  # before the request: a message that cannot be built never left
        try:
            response = self._client.send(request)
        except HTTPError as error:  # SendGrid answered: it accepted nothing
            detail = _describe(error)
            if error.status_code in REJECTED_STATUSES:
                raise EmailRejected(f"SendGrid refused the message: {detail}") from None
            raise RuntimeError(f"SendGrid is unavailable: {detail}") from None
        except URLError as error:
            # urllib raises it only while it connects (DNS, refused, TLS handshake, connect
            # timeout) or writes the request: SendGrid never had the whole request.
            raise RuntimeError(f"SendGrid is unavailable: {error.reason}") from None
        except Exception as error:  # the request was written: SendGrid may have accepted it
            raise EmailOutcomeUnknown(_unknown_outcome(error, self._timeout_s)) from None
        return str(response.headers.get("X-Message-Id", ""))


def _describe(error: HTTPError) -> str:
    """Status and SendGrid's error messages; never the request, which carries the key."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else error.body
    return f"HTTP {error.status_code}: {str(body)[:500]}"


def _unknown_outcome(error: Exception, timeout_s: float) -> str:
    """What happened after the request went out; names the error's type, never its text
    (which may quote what the server sent)."""
    kind = type(error).__name__
    if isinstance(error, TimeoutError):
        what = f"SendGrid's answer did not come within {timeout_s:g} s"
    elif isinstance(error, ConnectionError):
        what = f"SendGrid closed the connection without an answer ({kind})"
    elif isinstance(error, http.client.HTTPException):
        what = f"SendGrid's answer could not be read ({kind})"
    else:
        what = f"the request to SendGrid failed once sent ({kind})"
    return f"{what}: the message may have been accepted"
