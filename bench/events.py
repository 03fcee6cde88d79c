"""`python -m bench events`: webhook delivery beside the lifecycle, on one local dev server.

`python worker.py` runs the referrals and, on its second task queue, one `WebhookDelivery`
run per endpoint. The endpoints are paths of one HTTP receiver on loopback in the bench's
own process, which answers 200 at once and keeps when each event came.

Phase 1, closed loops at saturation (submit, interested, accept, won, result; N with a
fixed number in flight), in rounds alternating no endpoint and one: the lifecycle's
throughput with and without delivery. An endpoint round adds a fresh endpoint (it hears
the events recorded from then on) and waits for its delivery run's pump before the loop,
then for every event of the loop at the receiver, then removes it and waits for its run
to end; a round without endpoint has none at all. The archive records every event either
way (its outbox): only the sending differs. CPU per lifecycle by process counts the loop
and, with an endpoint, the wait for its last events; the receiver's counts as the bench's,
on the same two cores as the rest (a real receiver would be elsewhere).

Phase 2, open loops at 50 % of the saturation rate without endpoint, once with one
endpoint and once with three: each event's lag, from its transition's effective time
(`data.effective_at`; for `referral.created` the referral's start, a moment after it
is submitted) to the receiver having its body, at every endpoint. A lifecycle makes four
events (created, evaluating, negotiating, won); every one is expected once at each
endpoint; one that has not come once none came for `DRAIN_S` is counted missing.
"""

import asyncio
import contextlib
import json
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from temporalio.client import Client

from archive.events import event_id
from archive.webhooks import EVENT_NAMES, WebhookStore
from bench.harness import (
    cpu_per_lifecycle,
    cpu_s,
    dev_server,
    in_rounds,
    migrated_archive,
    new_run_id,
    polled,
    progress_bars,
    referral_worker,
)
from bench.loops import Driver, Load, closed_loop, merged, open_loop, referral_driver
from bench.results import ByEndpoints, DeliveryLoad, EventsResult, Lag
from starter.deliveries import open_webhooks, wake_delivery
from starter.settings import Settings
from workflows.delivery_models import delivery_workflow_id, webhook_task_queue

EVENTS_QUEUE = "bench-events"
WITHOUT, ONE = "no-endpoint", "one-endpoint"  # the systems of phase 1's rounds
LIFECYCLE_EVENTS = 4  # referral.created, then evaluating, negotiating and won: seq 0 to 3
LAG_ENDPOINTS = (1, 3)
LAG_SHARE = 0.5
DRAIN_S = 30.0  # how long after a loop, or after the last arrival, events may take
SETTLE_S = 60.0  # how long a delivery run may take to start its pump, or to end


# The receiver: every endpoint a path of it.


@dataclass(frozen=True)
class Arrival:
    at: float  # time.time() once the request's body was read
    webhook_id: str
    body: bytes

    def lag_s(self) -> tuple[str, float]:
        """The event's type, and the time from its transition's effective time to here."""
        event = json.loads(self.body)
        effective_at = datetime.fromisoformat(event["data"]["effective_at"])
        return event["type"], self.at - effective_at.timestamp()


class Receiver(ThreadingHTTPServer):
    """Answers every POST 200 at once and keeps, per path, what came when."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._lock = threading.Lock()
        self._arrivals: dict[str, list[Arrival]] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{path}"

    def keep(self, path: str, arrival: Arrival) -> None:
        with self._lock:
            self._arrivals.setdefault(path, []).append(arrival)

    def arrivals(self, path: str) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals.get(path, ()))


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        arrival = Arrival(time.time(), self.headers.get("webhook-id", ""), body)
        self.server.keep(self.path.lstrip("/"), arrival)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()


# What the endpoints got.


@dataclass
class Delivered:
    """What some endpoints got of some lifecycles' events."""

    expected: int  # each event once at each endpoint
    received: int
    duplicates: int
    lags_s: dict[str, list[float]] = field(repr=False)  # by event type

    @property
    def missing(self) -> int:
        return self.expected - self.received

    @property
    def all_lags_s(self) -> list[float]:
        return [lag for lags in self.lags_s.values() for lag in lags]

    @classmethod
    def sum(cls, parts: list["Delivered"]) -> "Delivered":
        return cls(
            sum(part.expected for part in parts),
            sum(part.received for part in parts),
            sum(part.duplicates for part in parts),
            {
                type_: [lag for part in parts for lag in part.lags_s.get(type_, ())]
                for type_ in dict.fromkeys(t for part in parts for t in part.lags_s)
            },
        )


def expected_events(workflow_ids: list[str]) -> set[str]:
    """The `webhook-id` of every event of these lifecycles."""
    return {event_id(wid, seq) for wid in workflow_ids for seq in range(LIFECYCLE_EVENTS)}


def delivered(receiver: Receiver, paths: list[str], workflow_ids: list[str]) -> Delivered:
    """Each expected event's first arrival at each path, and its lag."""
    expected = expected_events(workflow_ids)
    received = duplicates = 0
    lags: dict[str, list[float]] = {}
    for path in paths:
        seen: set[str] = set()
        for arrival in receiver.arrivals(path):
            if arrival.webhook_id not in expected:
                continue
            if arrival.webhook_id in seen:
                duplicates += 1
                continue
            seen.add(arrival.webhook_id)
            type_, lag = arrival.lag_s()
            lags.setdefault(type_, []).append(lag)
        received += len(seen)
    return Delivered(len(expected) * len(paths), received, duplicates, lags)


async def drained(receiver: Receiver, paths: list[str], workflow_ids: list[str]) -> Delivered:
    """What arrived once every expected event has, or once none came for `DRAIN_S` (a
    backlog that still moves is waited for)."""
    expected = expected_events(workflow_ids)
    deadline, had = time.monotonic() + DRAIN_S, 0
    while time.monotonic() < deadline:
        got = sum(
            len(expected.intersection(a.webhook_id for a in receiver.arrivals(path)))
            for path in paths
        )
        if got == len(expected) * len(paths):
            break
        if got > had:
            deadline, had = time.monotonic() + DRAIN_S, got
        await asyncio.sleep(0.05)
    return delivered(receiver, paths, workflow_ids)


def percentile_ms(lags_s: list[float], q: float) -> float:
    if not lags_s:
        return float("nan")
    ordered = sorted(lags_s)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000, 1)


def delivery_load(name: str, endpoints: int, load: Load, got: Delivered) -> DeliveryLoad:
    """The figures of a load; without endpoints, no lag (None)."""
    lags = got.all_lags_s
    return DeliveryLoad(
        load=name,
        endpoints=endpoints,
        offered_per_s=load.offered_per_s,
        achieved_per_s=round(load.achieved_per_s, 2),
        events_expected=got.expected,
        events_received=got.received,
        missing=got.missing,
        duplicates=got.duplicates,
        lag_p50_ms=percentile_ms(lags, 50) if endpoints else None,
        lag_p99_ms=percentile_ms(lags, 99) if endpoints else None,
        lag_max_ms=round(max(lags) * 1000, 1) if lags else None,
        lag_by_type={
            type_: Lag(percentile_ms(got.lags_s[type_], 50), percentile_ms(got.lags_s[type_], 99))
            for type_ in sorted(got.lags_s, key=EVENT_NAMES.index)
        },
    )


# The endpoints: rows of the worker's archive, each with its delivery run.


class Endpoints:
    def __init__(self, client: Client, store: WebhookStore, receiver: Receiver) -> None:
        self.client, self.store, self.receiver = client, store, receiver

    async def add(self, path: str) -> str:
        """A new endpoint on `path`, once its delivery run's pump reads the outbox."""
        endpoint, _ = self.store.add(self.receiver.url(path), [], "bench", datetime.now(UTC))
        handle = self.client.get_workflow_handle(
            await wake_delivery(self.client, endpoint.id, EVENTS_QUEUE)
        )
        deadline = time.monotonic() + SETTLE_S
        while not (await handle.describe()).raw_description.pending_activities:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the delivery run of {endpoint.id} pumps nothing")
            await asyncio.sleep(0.05)
        return endpoint.id

    async def remove(self, endpoint_id: str) -> None:
        """The endpoint gone, and its delivery run ended (its pump sees it gone)."""
        self.store.remove(endpoint_id)
        handle = self.client.get_workflow_handle(delivery_workflow_id(endpoint_id))
        await asyncio.wait_for(handle.result(), SETTLE_S)


Loop = Callable[[Driver], Awaitable[Load]]


async def run_events(count: int, in_flight: int, rounds: int) -> EventsResult:
    run_id = new_run_id()
    with dev_server() as server, receiving() as receiver:
        client = await server.connect()
        env = server.worker_environment(EVENTS_QUEUE)
        archive = migrated_archive(env["REFERRALS_DATABASE_URL"])
        # As the worker reads it (with the environment's codec keys, if any).
        store = open_webhooks(Settings(REFERRALS_DATABASE_URL=env["REFERRALS_DATABASE_URL"]))
        endpoints = Endpoints(client, store, receiver)
        referral = referral_driver(archive, run_id, EVENTS_QUEUE)
        with referral_worker(env) as worker, progress_bars() as progress:
            queues = {EVENTS_QUEUE: worker, webhook_task_queue(EVENTS_QUEUE): worker}
            await polled(client, queues)
            pids = {"server": server.process.pid, "worker": worker.pid, "bench": os.getpid()}
            cpu_s_used = {system: dict.fromkeys(pids, 0.0) for system in (WITHOUT, ONE)}

            async def with_endpoints(
                label: str, wanted: int, loop: Loop, cpu: dict[str, float] | None = None
            ) -> tuple[Load, Delivered]:
                """`loop` of lifecycles with `wanted` fresh endpoints, until they got every
                event; `cpu` adds up what each process spent meanwhile."""
                paths = [f"{label}-{n + 1}" for n in range(wanted)]
                added = [await endpoints.add(path) for path in paths]
                workflow_ids: list[str] = []

                async def drive(client: Client, key: str, latencies: list[float]) -> str:
                    workflow_id = await referral(client, key, latencies)
                    workflow_ids.append(workflow_id)
                    return workflow_id

                before = {name: cpu_s(pid) for name, pid in pids.items()}
                load = await loop(drive)
                got = await drained(receiver, paths, workflow_ids)
                if cpu is not None:
                    for name, pid in pids.items():
                        cpu[name] += cpu_s(pid) - before[name]
                for endpoint_id in added:
                    await endpoints.remove(endpoint_id)
                return load, got

            def closed(label: str, size: int, in_flight: int) -> Loop:
                return lambda drive: closed_loop(client, drive, size, in_flight, label, progress)

            def offered(label: str, rate: float) -> Loop:
                return lambda drive: open_loop(client, drive, count, rate, label, progress)

            await with_endpoints("warm-up", 1, closed("warm-up", 10, 5))

            # Phase 1: saturation, in rounds alternating no endpoint and one.
            async def saturating(system: str, label: str) -> tuple[Load, Delivered]:
                return await with_endpoints(
                    label,
                    1 if system == ONE else 0,
                    closed(label, count, in_flight),
                    cpu_s_used[system],
                )

            saturated = await in_rounds(rounds, saturating, (WITHOUT, ONE))

            # Phase 2: open loops at half the saturation rate without endpoint.
            without = merged(WITHOUT, None, [load for load, _ in saturated[WITHOUT]])
            rate = LAG_SHARE * without.achieved_per_s
            lagged = {
                n: await with_endpoints(f"lag-{n}", n, offered(f"lag-{n}", rate))
                for n in LAG_ENDPOINTS
            }

    one = merged(ONE, None, [load for load, _ in saturated[ONE]])
    loads = [
        delivery_load("saturation", 0, without, Delivered.sum([g for _, g in saturated[WITHOUT]])),
        delivery_load("saturation", 1, one, Delivered.sum([g for _, g in saturated[ONE]])),
        *(delivery_load(f"{LAG_SHARE:.0%}", n, load, got) for n, (load, got) in lagged.items()),
    ]
    lags = {n: got.all_lags_s for n, (_, got) in lagged.items()}
    round_ratios = [
        o.achieved_per_s / w.achieved_per_s
        for (o, _), (w, _) in zip(saturated[ONE], saturated[WITHOUT], strict=True)
    ]
    lifecycles = count * rounds
    cpu = cpu_per_lifecycle(cpu_s_used, lifecycles)

    return EventsResult(
        referrals=count,
        in_flight=in_flight,
        rounds=rounds,
        server="sqlite (wal, synchronous=normal)",
        without_endpoint_per_s=round(without.achieved_per_s, 2),
        one_endpoint_per_s=round(one.achieved_per_s, 2),
        ratio=round(statistics.median(round_ratios), 3),
        round_ratios=tuple(round(ratio, 3) for ratio in round_ratios),
        offered_per_s=round(rate, 2),
        one_endpoint_lag_p50_ms=percentile_ms(lags[1], 50),
        one_endpoint_lag_p99_ms=percentile_ms(lags[1], 99),
        three_endpoints_lag_p50_ms=percentile_ms(lags[3], 50),
        three_endpoints_lag_p99_ms=percentile_ms(lags[3], 99),
        missing=sum(load.missing for load in loads),
        loads=tuple(loads),
        cpu_ms_per_lifecycle=ByEndpoints(without_endpoint=cpu[WITHOUT], one_endpoint=cpu[ONE]),
    )
