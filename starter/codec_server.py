"""`referrals codec-server`: the remote codec the Temporal UI and `temporal` CLI call.

POST /encode and /decode take and return `{"payloads": [...]}` (protobuf JSON), as the UI
sends them with its `X-Namespace` header. CORS answers the configured UI origin only, on
errors too, so that the UI can show them. With REFERRALS_CODEC_TOKEN set every request must
carry `Authorization: Bearer <token>`, or the session cookie that /login sets for a browser:
the Temporal UI cannot send a static token, only cookies (TEMPORAL_CODEC_INCLUDE_CREDENTIALS).
Without a token the server only listens on a loopback address, and answers only requests
whose `Host` is a loopback name or address (DNS rebinding); bodies must be JSON.
"""

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from html import escape

from aiohttp import hdrs, web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from starter.codec import CodecKeyError, EncryptionCodec

Transform = Callable[[Iterable[Payload]], Awaitable[list[Payload]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)

SESSION_COOKIE = "referrals-codec-session"
SESSION_SECONDS = 8 * 3600
BAD_BODY = 'expected a JSON object {"payloads": [...]} (protobuf JSON)'
BAD_PAYLOAD = "a payload is malformed or corrupted: it does not decrypt"


class ExposedWithoutTokenError(ValueError):
    """Serving decrypted payloads beyond this machine with nobody asked who is calling."""


def normalized_token(token: str | None) -> str | None:
    """The token to require; None (no authentication) for unset, empty or blank."""
    return (token.strip() or None) if token else None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`: an address only this machine reaches."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name, or "" (every interface)
        return False


def check_exposure(host: str, token: str | None) -> None:
    if normalized_token(token) is None and not is_loopback(host):
        raise ExposedWithoutTokenError(
            f"REFERRALS_CODEC_TOKEN is not set: without a token the codec server decrypts "
            f"for anyone who reaches it, so it only listens on loopback "
            f"(--host 127.0.0.1), not on {host!r}"
        )


def build_codec_app(
    codec: EncryptionCodec, *, cors_origin: str, token: str | None = None
) -> web.Application:
    token = normalized_token(token)

    def cors(request: web.Request, response: web.StreamResponse) -> None:
        if request.headers.get(hdrs.ORIGIN) == cors_origin:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = cors_origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST, OPTIONS"
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = (
                "content-type, x-namespace, authorization"
            )
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            response.headers[hdrs.VARY] = "Origin"

    @web.middleware
    async def errors_with_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:  # 404, 405, 413: aiohttp's short answer
            cors(request, error)
            raise
        except Exception:  # a bug: the traceback stays in the log, the caller gets one line
            log.exception("%s failed", request.path)
            response = web.json_response({"error": "internal error"}, status=500)
        cors(request, response)
        return response

    async def preflight(request: web.Request) -> web.Response:
        return web.Response()

    def handler(transform: Transform) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            if token is None and not is_loopback(_host_name(request.host)):
                # Without a token, loopback is the only guard: a page that rebinds its own
                # name to 127.0.0.1 would reach this server under that name.
                log.info("%s: refused a request for host %r", request.path, request.host[:100])
                return web.json_response(
                    {"error": "this server answers for loopback only"}, status=421
                )
            if request.content_type != "application/json":
                # The UI and the CLI send JSON; a form or text/plain needs no CORS preflight.
                return web.json_response({"error": "send application/json"}, status=415)
            if token is not None and not _authorized(request, token):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401)
            return await _apply(request, transform)

        return handle

    async def login_form(request: web.Request) -> web.Response:
        return _page(cors_origin)

    async def login(request: web.Request) -> web.Response:
        given = (await request.post()).get("token")
        if token is not None and not (isinstance(given, str) and _same(given.strip(), token)):
            return _page(cors_origin, status=401)
        response = web.Response(status=303, headers={hdrs.LOCATION: cors_origin})
        if token is not None:
            response.set_cookie(
                SESSION_COOKIE,
                _session(token),
                max_age=SESSION_SECONDS,
                path="/",
                httponly=True,
                samesite="Strict",
                secure=cors_origin.startswith("https://"),
            )
        return response

    app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[errors_with_cors])
    app.add_routes(
        [
            web.post("/encode", handler(codec.encode)),
            web.post("/decode", handler(codec.decode)),
            web.options("/encode", preflight),
            web.options("/decode", preflight),
            web.get("/login", login_form),
            web.post("/login", login),
        ]
    )
    return app


def _host_name(host: str) -> str:
    """The name or address of a `Host` header, without its port: `[::1]:8081` -> `::1`."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same(given: str, expected: str) -> bool:
    encode = "utf-8", "surrogateescape"
    return hmac.compare_digest(given.encode(*encode), expected.encode(*encode))


def _session(token: str) -> str:
    # The cookie holds a value derived from the token, never the token itself.
    return hmac.new(token.encode(), b"referrals codec UI session", hashlib.sha256).hexdigest()


def _authorized(request: web.Request, token: str) -> bool:
    bearer = _same(request.headers.get(hdrs.AUTHORIZATION, ""), f"Bearer {token}")
    return bearer or _same(request.cookies.get(SESSION_COOKIE, ""), _session(token))


def _page(cors_origin: str, *, status: int = 200) -> web.Response:
    wrong = "<p><strong>Wrong token.</strong></p>" if status == 401 else ""
    ui = escape(cors_origin)
    return web.Response(
        status=status,
        content_type="text/html",
        text=(
            "<!doctype html><meta charset=utf-8><title>Referrals codec server</title>"
            f"<h1>Referrals codec server</h1>{wrong}"
            "<form method=post action=/login><label>REFERRALS_CODEC_TOKEN "
            "<input type=password name=token autofocus required></label> "
            "<button>Sign in</button></form>"
            f"<p>Lets the Temporal UI at <a href='{ui}'>{ui}</a> decode payloads in this "
            "browser for 8 hours.</p>"
        ),
    )


async def _apply(request: web.Request, transform: Transform) -> web.Response:
    # Error messages never quote the body: for /encode it is the plaintext.
    try:
        document = json.loads(await request.read())
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        payloads = json_format.ParseDict(document, Payloads())
    except (ValueError, RecursionError, json_format.ParseError) as error:
        log.info("%s: unreadable body (%s)", request.path, type(error).__name__)
        return web.json_response({"error": BAD_BODY}, status=400)
    try:
        result = Payloads(payloads=await transform(payloads.payloads))
    except CodecKeyError as error:  # names the key id, never the key
        return web.json_response({"error": str(error)}, status=400)
    except (ValueError, DecodeError) as error:  # data too short to hold a nonce, ...
        log.info("%s: corrupted payload (%s)", request.path, type(error).__name__)
        return web.json_response({"error": BAD_PAYLOAD}, status=400)
    log.info(
        "%s %d payload(s) for namespace %s",
        request.path.strip("/"),
        len(result.payloads),
        request.headers.get("X-Namespace", "?"),
    )
    return web.Response(text=json_format.MessageToJson(result), content_type="application/json")


def serve(
    codec: EncryptionCodec, *, host: str, port: int, cors_origin: str, token: str | None
) -> None:
    """Run until interrupted; refuses (ExposedWithoutTokenError) a token-less public bind."""
    check_exposure(host, token)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(
        build_codec_app(codec, cors_origin=cors_origin, token=token),
        host=host,
        port=port,
        print=lambda text: log.info("%s", text),
    )
