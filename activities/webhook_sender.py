"""Sending one event to one endpoint, as the Standard Webhooks specification describes.

Headers `webhook-id` (the event's id: the same on every retry and replay),
`webhook-timestamp` (seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
`id.timestamp.body` under each of the endpoint's `whsec_` secrets, space-separated (two
while a secret is being rotated). Signing is the `standardwebhooks` package's own.

What a send raises, for the delivery to decide what comes next (no Temporal type here):

- ``EndpointGone``: 410, the receiver asks never to be called again;
- ``EventRefused``: any other 4xx but 408 and 429, or a redirect (never followed: the
  endpoint's URL is what was registered), this event is refused for good;
- ``TryAgain``: a timeout, a connection error, 408, 429 or 5xx; ``retry_after`` carries the
  receiver's `Retry-After` in seconds when it gave one.
"""

import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

TIMEOUT_S = 15.0
MAX_RETRY_AFTER_S = 24 * 3600.0  # a receiver's wish, within reason
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer (its body is not used)
# The Standard Webhooks schedule: after the first try fails, seven more, then give up.
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)


class EndpointGone(Exception):
    """The endpoint answered 410 Gone."""


class EventRefused(Exception):
    """The endpoint refused this event for good (a 4xx)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the endpoint refused the event: HTTP {status}")
        self.status = status


class TryAgain(Exception):
    """The event may be accepted later: no answer, or the endpoint asked to wait."""

    def __init__(
        self, reason: str, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status  # the HTTP status, if the endpoint answered


@dataclass(frozen=True)
class Signed:
    """An event ready to send: its body and the three Standard Webhooks headers."""

    event_id: str
    timestamp: datetime
    body: str
    signature: str

    def headers(self) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "webhook-id": self.event_id,
            "webhook-timestamp": str(int(self.timestamp.timestamp())),
            "webhook-signature": self.signature,
        }


def signed(secrets: list[str], event_id: str, body: str, now: datetime) -> Signed:
    """The event signed with every current secret (the newest first)."""
    if not secrets:
        raise ValueError("an endpoint needs at least one whsec_ secret")
    moment = now.astimezone(UTC).replace(microsecond=0)
    signature = " ".join(Webhook(secret).sign(event_id, moment, body) for secret in secrets)
    return Signed(event_id, moment, body, signature)


class WebhookSender:
    """POSTs a signed event; returns the 2xx status or raises one of the errors above.

    One `httpx` client for every endpoint and thread: connections to an endpoint are kept
    alive between events (a new TCP and TLS handshake per event would cost more than the
    rest of delivery), redirects are not followed, and at most ``MAX_ANSWER_BYTES`` of an
    answer are read before the connection is dropped.
    """

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    def send(self, url: str, event: Signed) -> int:
        try:
            with self._client.stream(
                "POST", url, content=event.body.encode(), headers=event.headers()
            ) as answer:
                _drain(answer)
                status, retry_after = answer.status_code, answer.headers.get("Retry-After")
        except httpx.TimeoutException as error:
            raise TryAgain(f"no answer from the endpoint: {type(error).__name__}") from None
        except (httpx.TransportError, httpx.StreamError) as error:
            # Connection refused or reset, DNS, TLS, an unreadable answer.
            raise TryAgain(f"no answer from the endpoint: {type(error).__name__}") from None
        if 200 <= status < 300:
            return status
        raise _refusal(status, retry_after)

    def close(self) -> None:
        self._client.close()


def _drain(answer: httpx.Response) -> None:
    """Read a small answer whole, so that its connection can serve the next event; leave
    a large one unread (the connection is then closed)."""
    read = 0
    for chunk in answer.iter_raw(8192):
        read += len(chunk)
        if read > MAX_ANSWER_BYTES:
            return


def checked_url(url: str, *, allow_private: bool = False) -> str:
    """The endpoint's URL if it may be called: `https://`, or `http://` on loopback; a
    host that resolves to a private, link-local or otherwise internal address is refused
    unless ``allow_private`` (REFERRALS_WEBHOOKS_ALLOW_PRIVATE): server-side request
    forgery. Raises ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("a webhook URL may not hold a user name or password")
    try:
        found = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(f"{parts.hostname!r} does not resolve: {error}") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found}
    loopback = all(address.is_loopback for address in addresses)
    if parts.scheme == "http" and not loopback:
        raise ValueError("plain http:// is for loopback only: use https://")
    internal = [a for a in addresses if not a.is_global and not a.is_loopback]
    if internal and not allow_private:
        raise ValueError(
            f"{parts.hostname!r} resolves to {internal[0]}, an internal address "
            "(set REFERRALS_WEBHOOKS_ALLOW_PRIVATE=1 to allow it)"
        )
    return url


def next_try_in(failures: int, retry_after: float | None = None) -> timedelta | None:
    """How long to wait after the ``failures``-th failed try; None: give up (dead-letter).
    The receiver's `Retry-After`, when it gave one, goes before the schedule."""
    if failures < 1 or failures > len(RETRY_SCHEDULE):
        return None
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    return RETRY_SCHEDULE[failures - 1]


def _refusal(status: int, retry_after: str | None) -> Exception:
    if status == 410:
        return EndpointGone("the endpoint answered 410 Gone")
    if status in (408, 429) or status >= 500:
        return TryAgain(f"the endpoint answered HTTP {status}", _seconds(retry_after), status)
    return EventRefused(status)


def _seconds(retry_after: str | None) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date."""
    if not retry_after:
        return None
    text = retry_after.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(text) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
