"""`python -m bench sender`: the cost of one webhook send, the project's sender against
`urllib3`'s connection pool, to a receiver on loopback in a process of its own.

Both keep one connection open and send the same signed event; each send is a POST read to
the end of its answer (at most 64 KiB), redirects and retries off. Rounds alternate the two
clients; the figures are this process's CPU and the wall time per send, medians of the
rounds. The receiver answers `200` with an empty body at once (asyncio, no framework), so
the figures are the sender's own.
"""

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import urllib3

from activities.webhook_sender import MAX_ANSWER_BYTES, TIMEOUT_S, Signed, WebhookSender, signed
from bench.results import SenderResult

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = '{"type":"referral.evaluating","timestamp":"2026-12-07T12:00:00Z","data":{"seq":1}}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
WARM_UP = 200


def run_sender(events: int, rounds: int) -> SenderResult:
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_receive, args=(ports,), daemon=True)
    receiver.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=10)}/hooks"
        ours, pooled = WebhookSender(), _Urllib3Sender()
        figures: dict[str, list[tuple[float, float]]] = {"ours": [], "urllib3": []}
        for _ in range(rounds):
            figures["ours"].append(_timed(ours.send, url, events))
            figures["urllib3"].append(_timed(pooled.send, url, events))
    finally:
        receiver.kill()
    cpu = {name: statistics.median(c for c, _ in runs) for name, runs in figures.items()}
    wall = {name: statistics.median(w for _, w in runs) for name, runs in figures.items()}
    return SenderResult(
        events=events,
        rounds=rounds,
        http_client_cpu_us=round(cpu["ours"], 1),
        urllib3_cpu_us=round(cpu["urllib3"], 1),
        http_client_wall_us=round(wall["ours"], 1),
        urllib3_wall_us=round(wall["urllib3"], 1),
    )


class _Urllib3Sender:
    """The same send through `urllib3.PoolManager`: a kept connection, no retries, no
    redirects, at most 64 KiB of the answer read."""

    def __init__(self) -> None:
        self._pool = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=TIMEOUT_S, read=TIMEOUT_S)
        )

    def send(self, url: str, event: Signed) -> int:
        headers = event.headers()
        body = event.body.encode()
        answer = self._pool.request(
            "POST", url, body=body, headers=headers, redirect=False, preload_content=False
        )
        if len(answer.read(MAX_ANSWER_BYTES + 1)) > MAX_ANSWER_BYTES:
            answer.close()
        else:
            answer.release_conn()
        return answer.status


def _timed(send: Callable[[str, Signed], int], url: str, events: int) -> tuple[float, float]:
    """Microseconds of CPU and of wall time per send, after a warm-up."""
    event = signed([SECRET], "referral:rfi-1:acme.1", BODY, datetime.now(UTC))
    for _ in range(WARM_UP):
        send(url, event)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(events):
        send(url, event)
    return (
        (time.process_time() - cpu) / events * 1e6,
        (time.perf_counter() - wall) / events * 1e6,
    )


def _receive(ports: "multiprocessing.Queue[int]") -> None:
    asyncio.run(_serve(ports))


async def _serve(ports: "multiprocessing.Queue[int]") -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(ANSWER)

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    ports.put(server.sockets[0].getsockname()[1])
    await server.serve_forever()
