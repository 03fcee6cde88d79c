"""The partner web service's application: `create_app` builds it, `referrals serve` runs it.

Stateless: everything it knows is in Temporal, the archive and the signed links, so any
number of processes can serve behind a load balancer.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from archive.database import create_archive_engine, upgrade
from starter.mail import build_mailer
from starter.settings import Settings
from web import api, inbox, pages
from web.common import PageError
from web.links import LinkSigner
from web.middleware import (
    MAX_BODY_BYTES,
    BodyLimit,
    BodyTooLarge,
    RequestLog,
    SecureHeaders,
    too_large,
)
from web.problems import Problem, is_api, problem_response
from web.rate import RateLimits
from web.services import Services

log = logging.getLogger("web")


def create_app(settings: Settings | None = None, *, client: Client | None = None) -> FastAPI:
    """The service for ``settings`` (the environment's by default); ``client`` is used
    instead of connecting to Temporal (tests hand in theirs)."""
    settings = settings or Settings()
    signer = LinkSigner.from_setting(
        settings.link_keys.get_secret_value() if settings.link_keys else None
    )
    archive = create_archive_engine(settings.database_url)
    try:
        upgrade(archive)  # as the worker does; whoever starts first migrates
    except Exception as error:  # down now: /healthz says so, and pages answer 503
        log.error("archive unavailable at start: %s", str(error).strip().splitlines()[0])
    services = Services(
        settings=settings,
        signer=signer,
        archive=archive,
        mailer=build_mailer(settings),
        client=client,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        services.archive.dispose()

    app = FastAPI(
        title="Referrals partner service",
        summary="Partners answer their referrals: one-click email links, the inbox, the API.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.include_router(pages.router)
    app.include_router(inbox.router)
    app.include_router(api.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        """200 when Temporal and the archive both answer, else 503 naming what does not."""
        checks = {
            "temporal": await services.temporal_healthy(),
            "archive": await services.archive_healthy(),
        }
        body = {name: "ok" if ok else "unreachable" for name, ok in checks.items()}
        return JSONResponse(body, status_code=200 if all(checks.values()) else 503)

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> HTMLResponse:
        templates = services.templates
        context = {"title": error.title, "message": error.message}
        return templates.TemplateResponse(
            request, "error.html", context, status_code=error.status_code
        )

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, error: BodyTooLarge) -> Response:
        return too_large(request.url.path, MAX_BODY_BYTES)

    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> Response:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        if not is_api(request.url.path):
            return await request_validation_exception_handler(request, error)
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        return problem_response(422, "Invalid request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if not is_api(request.url.path):
            return await http_exception_handler(request, error)
        return problem_response(
            error.status_code,
            HTTPStatus(error.status_code).phrase,
            str(error.detail),
            headers=dict(error.headers or {}),
        )

    app.add_middleware(BodyLimit)
    app.add_middleware(
        RateLimits,
        requests_per_minute=settings.web_requests_per_minute,
        actions_per_minute=settings.web_actions_per_minute,
    )
    app.add_middleware(SecureHeaders)
    app.add_middleware(RequestLog)
    return app
