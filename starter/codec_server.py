"""`referrals codec-server`: the remote codec the Temporal UI and `temporal` CLI call.

POST /encode and /decode take and return `{"payloads": [...]}` (protobuf JSON), as the UI
sends them with its `X-Namespace` header. CORS answers the configured UI origin only, and
with REFERRALS_CODEC_TOKEN set every request must carry `Authorization: Bearer <token>`.
"""

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import hdrs, web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from starter.codec import CodecKeyError, EncryptionCodec

Transform = Callable[[Iterable[Payload]], Awaitable[list[Payload]]]
log = logging.getLogger(__name__)


def build_codec_app(
    codec: EncryptionCodec, *, cors_origin: str, token: str | None = None
) -> web.Application:
    def cors(request: web.Request, response: web.StreamResponse) -> None:
        if request.headers.get(hdrs.ORIGIN) == cors_origin:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = cors_origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST, OPTIONS"
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = (
                "content-type, x-namespace, authorization"
            )
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            response.headers[hdrs.VARY] = "Origin"

    async def preflight(request: web.Request) -> web.Response:
        response = web.Response()
        cors(request, response)
        return response

    def handler(transform: Transform) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            response = await _apply(request, transform, token)
            cors(request, response)
            return response

        return handle

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/encode", handler(codec.encode)),
            web.post("/decode", handler(codec.decode)),
            web.options("/encode", preflight),
            web.options("/decode", preflight),
        ]
    )
    return app


async def _apply(request: web.Request, transform: Transform, token: str | None) -> web.Response:
    if token is not None:
        given = request.headers.get(hdrs.AUTHORIZATION, "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
    try:
        payloads = json_format.Parse(await request.read(), Payloads())
    except (json_format.ParseError, DecodeError, UnicodeDecodeError) as error:
        return web.json_response({"error": f'expected {{"payloads": [...]}}: {error}'}, status=400)
    try:
        result = Payloads(payloads=await transform(payloads.payloads))
    except CodecKeyError as error:
        return web.json_response({"error": str(error)}, status=400)
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(
        build_codec_app(codec, cors_origin=cors_origin, token=token),
        host=host,
        port=port,
        print=lambda text: log.info("%s", text),
    )
