"""`referrals serve`: the partner web service on uvicorn, logging without tokens."""

import logging

import uvicorn

from starter.settings import Settings
from web.app import create_app


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run until interrupted. uvicorn's access log is off: it prints whole paths, and a
    path may hold a link's token; `web.middleware.RequestLog` logs the route instead."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        server_header=False,
    )
