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

import http.client
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import SplitResult, urlsplit

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

    With the standard library's `http.client`, keeping one connection per endpoint and
    thread alive between events: a new TCP (and TLS) handshake per event would cost more
    than the rest of delivery, and `httpx`, tried first, spent 87 % of the pump's CPU on a
    request to a receiver on loopback (docs/performance.md). Redirects are not followed;
    at most ``MAX_ANSWER_BYTES`` of an answer are read, and a larger one drops the
    connection. A kept connection that the endpoint closed meanwhile is opened again once.
    Proxy variables (`HTTPS_PROXY`) are not used.
    """

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._tls = ssl.create_default_context()

    def send(self, url: str, event: Signed) -> int:
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = event.headers()
        body = event.body.encode()
        try:
            connection, reused = self._connection(parts)
            try:
                status, retry_after = _post(connection, target, body, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                if not reused:
                    raise
                # The endpoint closed the kept connection while it was idle: a fresh one.
                status, retry_after = _post(connection, target, body, headers)
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            # Connection refused or reset, DNS, TLS, a timeout, an unreadable answer.
            self._forget(parts)
            raise TryAgain(f"no answer from the endpoint: {type(error).__name__}") from None
        if 200 <= status < 300:
            return status
        raise _refusal(status, retry_after)

    def close(self) -> None:
        for connection in getattr(self._local, "connections", {}).values():
            connection.close()
        self._local.connections = {}

    def _connection(self, parts: SplitResult) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to the endpoint's host, and whether it was open."""
        connections: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "connections", {}
        )
        key = f"{parts.scheme}://{parts.netloc}"
        connection = connections.get(key)
        if connection is None:
            host, port = parts.hostname or "", parts.port
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    host, port, timeout=self._timeout_s, context=self._tls
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self._timeout_s)
            connections[key] = connection
        return connection, connection.sock is not None

    def _forget(self, parts: SplitResult) -> None:
        connections = self._local.__dict__.get("connections", {})
        connection = connections.pop(f"{parts.scheme}://{parts.netloc}", None)
        if connection is not None:
            connection.close()


def _post(
    connection: http.client.HTTPConnection, target: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    """The answer's status and `Retry-After`; a small answer is read whole, so that the
    connection can serve the next event, a large one closes it."""
    connection.request("POST", target, body=body, headers=headers)
    with connection.getresponse() as answer:
        if len(answer.read(MAX_ANSWER_BYTES + 1)) > MAX_ANSWER_BYTES:
            connection.close()
        return answer.status, answer.getheader("Retry-After")


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
    resolved = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found}
    compatible = [a for a in resolved if _ipv4_compatible(a)]
    if compatible:
        raise ValueError(
            f"{parts.hostname!r} resolves to {compatible[0]}, a deprecated IPv4-compatible "
            "IPv6 address: refused"
        )
    # An IPv6 address that carries an IPv4 one reaches that IPv4 host: judge that one.
    addresses = {embedded_ipv4(a) or a for a in resolved}
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


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix


def embedded_ipv4(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to: IPv4-mapped, NAT64, 6to4 or Teredo."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _ipv4_compatible(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """`::a.b.c.d` (RFC 4291's deprecated form), not `::` nor `::1`."""
    return isinstance(address, ipaddress.IPv6Address) and 1 < int(address) <= 0xFFFF_FFFF


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
