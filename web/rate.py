"""Rate limits on the web service, with the `limits` library: per credential (a link's
token, an API key) and per client address, requests of any kind and actions (POSTs) apart.

Counted in memory, per process: N processes behind a load balancer allow up to N times
the rate. A credential is counted by a hash of it, so that no token is kept in memory
longer than its request.
"""

import hashlib
import math
import time

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage as AsyncMemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from web.problems import is_api, problem_response

LINK_PREFIX = "/a/"


class RateLimits:
    """ASGI middleware: 429 with `Retry-After` once a client address or a credential has
    used its requests, or its actions, of the last minute."""

    def __init__(self, app: ASGIApp, *, requests_per_minute: int, actions_per_minute: int) -> None:
        self.app = app
        self.requests = RateLimitItemPerMinute(requests_per_minute)
        self.actions = RateLimitItemPerMinute(actions_per_minute)
        # A sliding window of two counters, in the asyncio storage: a moving window keeps
        # (and expires, in a thread) every request's time; the threaded storage starts a
        # timer thread to expire its entries.
        self.limiter = AsyncSlidingWindow(AsyncMemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        keys = [f"address:{scope['client'][0] if scope.get('client') else '?'}"]
        path: str = scope["path"]
        if path.startswith(LINK_PREFIX):
            keys.append(f"link:{_digest(path)}")
        authorization = Headers(scope=scope).get("authorization")
        if authorization:
            keys.append(f"key:{_digest(authorization)}")
        limits = [self.requests, *([self.actions] if scope["method"] == "POST" else [])]
        for limit in limits:
            for key in keys:
                if not await self.limiter.hit(limit, key):
                    await (await self._refuse(limit, key, path))(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _refuse(self, limit: RateLimitItem, key: str, path: str) -> Response:
        reset_at, _ = await self.limiter.get_window_stats(limit, key)
        wait = max(1, math.ceil(reset_at - time.time()))
        what = "actions" if limit is self.actions else "requests"
        detail = f"too many {what}: at most {limit.amount} a minute; retry in {wait} s"
        headers = {"Retry-After": str(wait)}
        if is_api(path):
            return problem_response(429, "Too Many Requests", detail, headers=headers)
        return PlainTextResponse(detail, status_code=429, headers=headers)


class SignInEmails:
    """At most ``per_hour`` sign-in emails an hour to one address (in each process), so
    that nobody can flood a partner contact's mailbox through the sign-in page."""

    def __init__(self, per_hour: int = 5) -> None:
        self.limit = RateLimitItemPerHour(per_hour)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def allow(self, email: str) -> bool:
        return self.limiter.hit(self.limit, "sign-in", _digest(email.strip().casefold()))


def _digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()[:32]
