"""Where email goes: SendGrid's v3 API, or `.eml` files in a local outbox."""

import logging
import os
import tempfile
from email.message import EmailMessage
from email.utils import make_msgid
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
    """Writes each message as a multipart `.eml` file named after its email id."""

    name = "outbox"

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    def send(self, email_id: str, to: str, message: RenderedEmail) -> str:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = to
        mail["Subject"] = message.subject
        mail["Message-ID"] = make_msgid(idstring=email_id, domain="referrals.invalid")
        mail["X-Referral-Email-Id"] = email_id
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{email_id}.eml"
        # Write then rename, so that a retried attempt replaces its own file whole.
        with tempfile.NamedTemporaryFile(
            "wb", dir=self.directory, delete=False, suffix=".tmp"
        ) as handle:
            handle.write(mail.as_bytes())
        os.chmod(handle.name, 0o644)  # readable by a mail pickup process, like any new file
        os.replace(handle.name, path)
        return str(path)


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
