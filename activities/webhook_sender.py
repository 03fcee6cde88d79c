"""Sending one event to one endpoint, as the Standard Webhooks specification describes.

Headers `webhook-id` (the event's id: the same on every retry and replay),
`webhook-timestamp` (seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
`id.timestamp.body` under each of the endpoint's `whsec_` secrets, space-separated (two
while a secret is being rotated). Signing is the `standardwebhooks` package's own.

What a send raises, for the delivery to decide what comes next (no Temporal type here):

- ``EndpointGone``: 410, the receiver asks never to be called again;
- ``EventRefused``: any other 4xx but 408 and 429, or a redirect (never followed: the
  endpoint's URL is what was registered), this event is refused for good;
- ``TryAgain``: no answer within the deadline, a connection error, 408, 429 or 5xx;
  ``retry_after`` carries the receiver's `Retry-After` in seconds when it gave one, and
  ``answered`` says whether the endpoint answered at all.

Every send has one deadline, ``TIMEOUT_S`` from its start, for everything it waits on:
the connection (and its TLS handshake), writing the request, reading the status line and
headers, and reading the answer's body. A receiver that drips its answer a byte at a time
is cut off at the deadline like one that never answers. Of the body, at most
``MAX_ANSWER_BYTES`` are read: a larger one, or one that does not end in time, drops the
connection, and the status already read stands (the body is never used).
"""

import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import cast
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

    @property
    def answered(self) -> bool:
        return self.status is not None


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
    """POSTs a signed event within ``timeout_s``; returns the 2xx status or raises one of
    the errors above.

    With the standard library's `http.client`, keeping one connection per endpoint and
    thread alive between events: a new TCP (and TLS) handshake per event would cost more
    than the rest of delivery; `httpx` spent 87 % of the pump's CPU on a request to a
    receiver on loopback, and neither it nor `urllib3` bounds a send as a whole (their
    read timeout is per read: docs/performance.md has the measures). Redirects are not
    followed. A kept connection that the endpoint closed meanwhile is opened again once,
    within the same deadline. Proxy variables (`HTTPS_PROXY`) are not used.
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
        deadline = time.monotonic() + self._timeout_s
        try:
            connection, reused = self._connection(parts)
            try:
                status, retry_after = _post(connection, target, body, headers, deadline)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                if not reused:
                    raise
                # The endpoint closed the kept connection while it was idle: a fresh one.
                status, retry_after = _post(connection, target, body, headers, deadline)
        except (OSError, http.client.HTTPException) as error:
            # A timeout, connection refused or reset, DNS, TLS, an answer that is not HTTP.
            self._forget(parts)
            raise TryAgain(_no_answer(error, self._timeout_s)) from None
        except BaseException:
            # Cancelled, or worse, mid-request: the connection is in no state to reuse.
            self._forget(parts)
            raise
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
    connection: http.client.HTTPConnection,
    target: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
) -> tuple[int, str | None]:
    """The answer's status and `Retry-After`, all of it before ``deadline`` (monotonic).
    A small answer is read whole, so that the connection can serve the next event; one
    that is larger or does not end in time closes it."""
    connection.timeout = _left(deadline)  # connecting, and the TLS handshake
    if connection.sock is not None:
        connection.sock.settimeout(_left(deadline))  # writing to a kept connection
    # Each read of the answer waits only for what is left of the deadline.
    connection.response_class = cast(
        type[http.client.HTTPResponse], partial(_AnswerBefore, deadline=deadline)
    )
    connection.request("POST", target, body=body, headers=headers)
    with connection.getresponse() as answer:
        status, retry_after = answer.status, answer.getheader("Retry-After")
        try:
            whole = len(answer.read(MAX_ANSWER_BYTES + 1)) <= MAX_ANSWER_BYTES
        except (OSError, http.client.HTTPException):
            whole = False  # the status stands; the rest of the answer is not waited for
        if not whole:
            connection.close()
        return status, retry_after


class _AnswerBefore(http.client.HTTPResponse):
    """An answer read from the socket with a deadline for the whole of it."""

    def __init__(self, sock: socket.socket, *args: object, deadline: float, **kwargs: object):
        super().__init__(sock, *args, **kwargs)  # type: ignore[arg-type]
        self.fp.close()  # the file http.client opened on the socket: this one instead
        self.fp = io.BufferedReader(_ReadsBefore(sock, deadline))


class _ReadsBefore(io.RawIOBase):
    """A socket's reads, each waiting at most until the deadline: a byte every few seconds
    can no longer stretch an answer past it."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline
        self._raw = sock.makefile("rb", buffering=0)  # keeps the socket open while read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int | None:  # type: ignore[override]
        self._sock.settimeout(_left(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _left(deadline: float) -> float:
    """Seconds until the deadline; TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline has passed")
    return left


def _no_answer(error: BaseException, timeout_s: float) -> str:
    """What a failed send records as its last error: what happened, never the body."""
    if isinstance(error, TimeoutError):
        return f"no complete answer within {timeout_s:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "the endpoint refused the connection"
    if isinstance(error, socket.gaierror):
        return "the endpoint's host does not resolve"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or type(error).__name__}"
    if isinstance(error, http.client.HTTPException):
        return f"the answer is not HTTP/1.1: {type(error).__name__}"
    return f"no answer from the endpoint: {type(error).__name__}"


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
