"""Webhook receivers on loopback: real HTTP servers that keep every request they got and
answer as a test scripts them (a status list, or a function of the request)."""

import contextlib
import json
import select
import socket
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


# How a hostile receiver answers, after reading a request whole.
DRIP = "drip"  # the status line, one byte every DRIP_EVERY_S, for ever
SILENT = "silent"  # nothing, and the connection is never closed by it
HUGE = "huge"  # 200 with a body of 2 GiB, as fast as it is read
DRIP_BODY = "drip-body"  # 200 and its headers at once, then the body a byte at a time
DRIP_EVERY_S = 0.2
HUGE_BYTES = 2 * 1024**3


class Hostile:
    """A receiver on loopback that misbehaves in one way (``DRIP``, ``SILENT``, ``HUGE`` or
    ``DRIP_BODY``), with a thread per connection; counts requests and connections, the
    bytes of answer it wrote, and the most requests it had in hand at once."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # to see `closing` while waiting for a connection
        self.requests = 0
        self.connections = 0
        self.written = 0
        self.in_hand = 0
        self.most_in_hand = 0
        self.lock = threading.Lock()
        self.closing = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks"

    def serve(self) -> None:
        while not self.closing.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            reader = connection.makefile("rb")
            while self._read_request(reader):
                with self.lock:
                    self.requests += 1
                    self.in_hand += 1
                    self.most_in_hand = max(self.most_in_hand, self.in_hand)
                try:
                    self._misbehave(connection)
                finally:
                    with self.lock:
                        self.in_hand -= 1

    @staticmethod
    def _read_request(reader: Any) -> bool:
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return line == b"\r\n" and len(reader.read(length)) == length

    def _misbehave(self, connection: socket.socket) -> None:
        if self.kind == SILENT:
            connection.recv(1)  # until the sender gives up and closes
        elif self.kind == DRIP:
            self._drip(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        elif self.kind == DRIP_BODY:
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            self._drip(connection, b"x" * 1000)
        else:
            connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BYTES}\r\n\r\n".encode())
            chunk = bytes(256 * 1024)
            while self.written < HUGE_BYTES and not self.closing.is_set():
                connection.sendall(chunk)
                with self.lock:
                    self.written += len(chunk)

    def _drip(self, connection: socket.socket, answer: bytes) -> None:
        for byte in answer:
            if self.closing.is_set() or _closed_within(connection, DRIP_EVERY_S):
                return
            connection.sendall(bytes([byte]))
            with self.lock:
                self.written += 1


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the other side closes the connection within ``seconds``."""
    readable, _, _ = select.select([connection], [], [], seconds)
    return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""


@contextmanager
def hostile(kind: str) -> Iterator[Hostile]:
    server = Hostile(kind)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        server.listener.close()
