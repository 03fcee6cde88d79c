"""Where email goes: SendGrid's v3 API, or `.eml` files in a local outbox."""

import logging
import os
import uuid
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr, getaddresses, make_msgid
from pathlib import Path
from typing import Protocol

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail
from temporalio.exceptions import ApplicationError

from activities.rendering import RenderedEmail

# The HTTP client logs request headers (the API key) and bodies at DEBUG: never let it.
logging.getLogger("python_http_client").setLevel(logging.WARNING)

# SendGrid answers these for a message it will never accept; anything else may pass later.
REJECTED_STATUSES = frozenset({400, 401, 403, 404, 413})


class Mailer(Protocol):
    name: str

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        """Deliver one message and return the provider's reference for it."""
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
        mail["Message-ID"] = make_msgid(idstring=email_id, domain="referrals.invalid")
        mail["X-Referral-Email-Id"] = email_id
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
    """The official SendGrid client; refusals are final, throttling and outages retry."""

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
        self.sender = sender

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        mail = Mail(
            from_email=self.sender,
            to_emails=to,
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
        )
        mail.custom_arg = CustomArg("referral_email_id", email_id)
        try:
            response = self._client.send(mail)
        except HTTPError as error:
            detail = _describe(error)
            if error.status_code in REJECTED_STATUSES:
                raise ApplicationError(
                    f"SendGrid refused the message: {detail}",
                    type="EmailRejected",
                    non_retryable=True,
                ) from None
            raise RuntimeError(f"SendGrid is unavailable: {detail}") from None
        return str(response.headers.get("X-Message-Id", ""))


def _describe(error: HTTPError) -> str:
    """Status and SendGrid's error messages; never the request, which carries the key."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else error.body
    return f"HTTP {error.status_code}: {str(body)[:500]}"
