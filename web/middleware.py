"""What every answer of the web service shares: a cap on request bodies, headers that keep
pages out of frames, caches and referrers, and one log line per request that names the
route, never the path (a path may hold a link's token)."""

import logging
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.problems import is_api, problem_response

log = logging.getLogger("web")

MAX_BODY_BYTES = 16 * 1024
SECURITY_HEADERS = [
    # A page's URL may hold a link's token: never send it on to another site. (Not
    # no-referrer: browsers then send `Origin: null` with the page's own forms.)
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
]


class BodyTooLarge(Exception):
    """A request body past MAX_BODY_BYTES, found while reading one sent without a length."""


class BodyLimit:
    """Refuses a body over ``limit`` bytes with 413: at once when its length is declared,
    as soon as it is passed when it is streamed. Starlette has no such limit of its own."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(scope["path"], self.limit)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge
            return message

        await self.app(scope, counted, send)


def too_large(path: str, limit: int) -> Response:
    detail = f"request body over {limit} bytes"
    if is_api(path):
        return problem_response(413, "Content Too Large", detail)
    return PlainTextResponse(detail, status_code=413)


class SecureHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in SECURITY_HEADERS if n not in names),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


class RequestLog:
    """`GET /a/{token} 200 12 ms`: the route's template, so that no token reaches a log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            route = scope.get("route")
            where = getattr(route, "path", None) or "(no route)"
            log.info(
                "%s %s %d %.0f ms",
                scope["method"],
                where,
                status["code"],
                (time.perf_counter() - started) * 1000,
            )
