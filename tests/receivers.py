"""Webhook receivers on loopback: real HTTP servers that keep every request they got and
answer as a test scripts them (a status list, or a function of the request)."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

Answer = tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: str
    at: float  # time.time() when it came
    port: int = 0  # the sender's port: one per connection

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver(ThreadingHTTPServer):
    """Answers each POST with the next (status, headers) of ``script``, then with
    ``answer(request)`` (200 by default), after ``delay_s``; keeps what came."""

    daemon_threads = True

    def __init__(
        self,
        script: list[Answer] | None = None,
        delay_s: float = 0,
        answer: Callable[[Received], Answer] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.delay_s, self.answer = list(script or []), delay_s, answer
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks"

    def accepted(self, secret: str) -> list[dict[str, Any]]:
        """The events answered 2xx, each once (the first time), their signatures checked."""
        seen: dict[str, dict[str, Any]] = {}
        with self.lock:
            requests = list(self.received)
        for request in requests:
            if request.headers.get("answered", "").startswith("2"):
                seen.setdefault(
                    request.webhook_id, Webhook(secret).verify(request.body, request.headers)
                )
        return list(seen.values())

    def wait_for(self, count: int, secret: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The accepted events once there are ``count`` of them (AssertionError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.accepted(secret)
            if len(events) >= count or time.monotonic() > deadline:
                assert len(events) == count, f"{len(events)} events accepted, not {count}"
                return events
            time.sleep(0.05)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"  # keeps the connection open between requests

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        raw = self.rfile.read(length)
        if len(raw) < length:  # the sender died mid-request: nothing came, as for any server
            self.close_connection = True
            return
        body = raw.decode()
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Received(headers, body, time.time(), self.client_address[1])
        self.server.closing.wait(self.server.delay_s)
        with self.server.lock:
            if self.server.script:
                status, headers = self.server.script.pop(0)
            else:
                status, headers = self.server.answer(request) if self.server.answer else (200, {})
            request.headers["answered"] = str(status)
            self.server.received.append(request)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def receiving(
    script: list[Answer] | None = None,
    delay_s: float = 0,
    answer: Callable[[Received], Answer] | None = None,
) -> Iterator[Receiver]:
    server = Receiver(script, delay_s, answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()
