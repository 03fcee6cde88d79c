"""Webhook delivery end to end on the dev server: referrals run, the worker sends their
events to real HTTP receivers on loopback that verify every signature with the
`standardwebhooks` package, as a receiver would."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.webhook_sender import WebhookSender
from activities.webhooks import NOT_SENT
from archive.database import create_archive_engine, upgrade
from archive.deliveries import DeliveryReport, DeliveryStore
from archive.store import ArchiveStore
from archive.webhooks import Endpoint, WebhookStore
from starter.deliveries import start_replay, wake_delivery
from starter.settings import Settings
from tests.factories import ACCEPT, DISTINCTIVE_CUSTOMER, DISTINCTIVE_TRACES, fresh_rfi
from tests.receivers import DRIP, HUGE, SILENT, Received, hostile, receiving
from tests.servers import run_referrals, start_referral, worker_environment
from worker import build_delivery_worker, build_worker
from workflows.delivery import WebhookDeliveryWorkflow
from workflows.delivery_models import DeliveryInput, delivery_workflow_id
from workflows.models import Status

SUBMIT_TO_EVENTS: dict[str, list[tuple[str, Any]]] = {
    "won": [("interested", None), ("accept", ACCEPT), ("won", {"final_deal_value": "26000"})],
    "lost": [("interested", None), ("accept", ACCEPT), ("lost", {"reason": "budget cut"})],
    "skipped": [("no_thanks", {"reason": "Quentin is too small for us"})],
    "declined": [("interested", None), ("decline", {"reason": "no capacity"})],
}
EXPECTED_TYPES = {
    "won": ["created", "evaluating", "negotiating", "won"],
    "lost": ["created", "evaluating", "negotiating", "lost"],
    "skipped": ["created", "skipped"],
    "declined": ["created", "evaluating", "declined"],
}


class Delivery:
    """A worker pair (referrals and delivery) on a fresh task queue, and its archive."""

    def __init__(self, client: Client, settings: Settings, queue: str) -> None:
        self.client, self.settings, self.queue = client, settings, queue
        engine = create_archive_engine(settings.database_url)
        upgrade(engine)
        self.webhooks = WebhookStore(engine)
        self.deliveries = DeliveryStore(engine)
        self.archive = ArchiveStore(engine)

    async def endpoint(self, url: str, events: list[str] | None = None) -> tuple[Endpoint, str]:
        """A new endpoint and its secret, its delivery run started."""
        endpoint, secret = self.webhooks.add(url, events or [], "test", datetime.now(UTC))
        await wake_delivery(self.client, endpoint.id, self.queue)
        return endpoint, secret

    async def referral(self, path: list[tuple[str, Any]], **rfi: Any) -> str:
        handle = await start_referral(self.client, self.queue, fresh_rfi(**rfi))
        for name, payload in path:
            await handle.execute_update(name, payload)
        return handle.id

    async def recorded(self, endpoint: Endpoint) -> None:
        """Once no event is pending: an event is recorded as delivered with the batch it
        went in, a moment after it arrived."""
        report = self.deliveries.report
        await until(lambda: not report(endpoint, from_position=0, status="pending"))

    async def settled(self, *workflow_ids: str) -> None:
        """Once every referral has archived what it did (its events are in the outbox)."""
        for workflow_id in workflow_ids:
            handle = self.client.get_workflow_handle(workflow_id)
            for _ in range(200):
                view = await handle.query("status")
                row = self.archive.history(workflow_id)
                if row is not None and row.transition_count == len(view["transitions"]):
                    break
                await asyncio.sleep(0.05)


@pytest.fixture
def delivering(
    dev_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> Callable[..., AbstractAsyncContextManager[Delivery]]:
    @asynccontextmanager
    async def running(
        *, senders: int | None = None, deadline_s: float | None = None, **tuning: float
    ) -> AsyncIterator[Delivery]:
        queue = f"referrals-test-{uuid.uuid4()}"
        delivery_settings = settings.model_copy(
            update={"webhook_senders": senders or settings.webhook_senders}
        )
        threads = delivery_settings.webhook_senders
        with ThreadPoolExecutor(max_workers=threads) as sending_threads:
            async with (
                build_worker(dev_env.client, settings, executor, task_queue=queue),
                build_delivery_worker(
                    dev_env.client,
                    delivery_settings,
                    sending_threads,
                    task_queue=queue,
                    poll_interval=tuning.get("poll_interval", 0.05),
                    pump_for=tuning.get("pump_for", 3.0),
                    sender=WebhookSender(deadline_s) if deadline_s else None,
                ),
            ):
                yield Delivery(dev_env.client, settings, queue)

    return running


async def until(condition: Callable[[], bool]) -> None:
    """Once ``condition()`` holds (within 30 s)."""
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110 (a condition on other threads' state)
            await asyncio.sleep(0.05)


def by_referral(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    lanes: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        lanes.setdefault(event["data"]["workflow_id"], []).append(event)
    return lanes


async def test_every_path_reaches_the_endpoint_as_its_events_in_order(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    with receiving() as receiver:
        async with delivering() as delivery:
            _, secret = await delivery.endpoint(receiver.url)
            ids = {
                await delivery.referral(path, customer=DISTINCTIVE_CUSTOMER): name
                for name, path in SUBMIT_TO_EVENTS.items()
            }
            expected = sum(len(types) for types in EXPECTED_TYPES.values())
            events = await asyncio.to_thread(receiver.wait_for, expected, secret)
    lanes = by_referral(events)
    assert set(lanes) == set(ids)
    for workflow_id, received in lanes.items():
        name = ids[workflow_id]
        assert [e["type"] for e in received] == [f"referral.{t}" for t in EXPECTED_TYPES[name]]
        assert [e["data"]["seq"] for e in received] == list(range(len(received)))
        # The body sent is the one archived with the transition, byte for byte.
        archived = delivery.archive.events(workflow_id=workflow_id)
        assert [r.body for r in archived] == [
            next(x.body for x in receiver.received if x.webhook_id == r.event_id) for r in archived
        ]
    won = next(lanes[w] for w, name in ids.items() if name == "won")
    assert won[-1]["data"]["deal"] == {
        "estimated_deal_value": "25000.00",
        "currency": "EUR",
        "estimated_close_date": "2027-03-31",
        "final_deal_value": "26000",
    }
    assert [e["data"]["to"] for e in won] == ["New", "Evaluating", "Negotiating", "Won"]
    everything = " ".join(r.body + str(r.headers) for r in receiver.received)
    for trace in (*DISTINCTIVE_TRACES, "budget cut", "no capacity", "too small"):
        assert trace not in everything


async def test_a_failing_endpoint_gets_every_event_in_order_once_it_recovers(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    """500 for the first two seconds, then 200: each event arrives, in order per referral,
    its first failure retried after the schedule's 5 seconds."""
    recover_at = time.time() + 2

    def answer(request: Received) -> tuple[int, dict[str, str]]:
        return (500, {}) if request.at < recover_at else (200, {})

    with receiving(answer=answer) as receiver:
        async with delivering() as delivery:
            _, secret = await delivery.endpoint(receiver.url)
            ids = [await delivery.referral(SUBMIT_TO_EVENTS["won"]) for _ in range(3)]
            events = await asyncio.to_thread(receiver.wait_for, 12, secret, 40)
    assert any(r.headers["answered"] == "500" for r in receiver.received)
    for workflow_id, received in by_referral(events).items():
        assert workflow_id in ids
        assert [e["data"]["seq"] for e in received] == [0, 1, 2, 3]
    # Never a later event of a referral before an earlier one was accepted.
    for workflow_id in ids:
        sent = [r for r in receiver.received if r.event["data"]["workflow_id"] == workflow_id]
        accepted = set()
        for request in sent:
            seq = request.event["data"]["seq"]
            assert all(n in accepted for n in range(seq)), f"{request.webhook_id} overtook"
            if request.headers["answered"] == "200":
                accepted.add(seq)


async def test_retry_after_is_honoured_and_a_refused_event_does_not_stop_the_next(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    """429 with Retry-After: 1 is tried again a second later; 400 dead-letters its event
    and the referral's next events still arrive."""
    with receiving([(429, {"Retry-After": "1"}), (400, {})]) as receiver:
        async with delivering() as delivery:
            endpoint, secret = await delivery.endpoint(receiver.url)
            workflow_id = await delivery.referral([("interested", None)])
            await delivery.settled(workflow_id)
            events = await asyncio.to_thread(receiver.wait_for, 1, secret)
            await delivery.client.get_workflow_handle(workflow_id).execute_update("accept", ACCEPT)
            events = await asyncio.to_thread(receiver.wait_for, 2, secret)
            # Recorded once the batch it went in is through: a moment after it arrived.
            await until(
                lambda: not delivery.deliveries.report(endpoint, from_position=0, status="pending")
            )
            report = delivery.deliveries.report(endpoint, from_position=0)
    first, second, third, fourth = receiver.received[:4]
    assert (first.headers["answered"], second.headers["answered"]) == ("429", "400")
    assert first.webhook_id == second.webhook_id == f"{workflow_id}.0"
    assert second.at - first.at >= 0.9  # Retry-After: 1, not the schedule's 5 s
    assert third.webhook_id == f"{workflow_id}.1"  # the next event went on
    assert [e["type"] for e in events] == ["referral.evaluating", "referral.negotiating"]
    status = {r.event_id: (r.status, r.attempts, r.last_code) for r in report}
    assert status[f"{workflow_id}.0"] == ("dead", 2, 400)
    assert status[f"{workflow_id}.2"] == ("delivered", 1, 200)
    assert fourth.webhook_id == f"{workflow_id}.2"


async def test_410_disables_the_endpoint_and_enabling_it_sends_what_waited(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    with receiving([(410, {})]) as receiver:
        async with delivering() as delivery:
            endpoint, secret = await delivery.endpoint(receiver.url)
            first = await delivery.referral([])
            second = await delivery.referral([("no_thanks", None)])
            await delivery.settled(first, second)
            await until(lambda: not delivery.webhooks.endpoint(endpoint.id).enabled)  # type: ignore[union-attr]
            gone = delivery.webhooks.endpoint(endpoint.id)
            assert gone is not None
            assert not gone.enabled
            assert gone.disabled_reason == "the endpoint answered 410 Gone"
            await asyncio.sleep(1)
            assert len(receiver.received) == 1  # nothing more while it is disabled
            handle = delivery.client.get_workflow_handle(delivery_workflow_id(endpoint.id))
            progress = await handle.query(WebhookDeliveryWorkflow.progress)
            assert progress.paused
            delivery.webhooks.set_enabled(endpoint.id, True)
            await wake_delivery(delivery.client, endpoint.id, delivery.queue)
            events = await asyncio.to_thread(receiver.wait_for, 3, secret)
    lanes = by_referral(events)
    assert [e["data"]["seq"] for e in lanes[first]] == [0]
    assert [e["data"]["seq"] for e in lanes[second]] == [0, 1]
    # The event answered 410 was sent again, once, and nothing else twice.
    sent = [r.webhook_id for r in receiver.received]
    assert len(sent) == 4
    assert sent.count(sent[0]) == 2


async def test_a_410_is_not_a_failed_try(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    """410, enable, 503, 410, enable, 503: each 410 pauses the endpoint and leaves the
    event's count of failed tries as it was (by the pump, then by a lane), so the two 503s
    are its first and second failures: 5 s, then 5 minutes to its next try."""
    with receiving([(410, {}), (503, {}), (410, {}), (503, {})]) as receiver:
        async with delivering() as delivery:
            endpoint, _ = await delivery.endpoint(receiver.url)
            workflow_id = await delivery.referral([])

            async def answered_then_enable(count: int) -> None:
                await until(lambda: len(receiver.received) == count)
                await until(lambda: not delivery.webhooks.endpoint(endpoint.id).enabled)  # type: ignore[union-attr]
                delivery.webhooks.set_enabled(endpoint.id, True)
                await wake_delivery(delivery.client, endpoint.id, delivery.queue)

            await answered_then_enable(1)
            await answered_then_enable(3)
            await until(lambda: len(receiver.received) == 4)
            await until(lambda: bool(delivery.deliveries.report(endpoint, from_position=0)))

            def after_last_503() -> DeliveryReport:
                [report] = delivery.deliveries.report(endpoint, from_position=0)
                return report

            await until(lambda: after_last_503().last_code == 503)
    codes = [r.headers["answered"] for r in receiver.received]
    assert codes == ["410", "503", "410", "503"]
    assert {r.webhook_id for r in receiver.received} == {f"{workflow_id}.0"}
    first_503, second_410 = receiver.received[1:3]
    assert 4.5 < second_410.at - first_503.at < 10  # the first failure's 5 s
    last = after_last_503()
    assert last.next_try_at is not None
    wait = last.next_try_at.timestamp() - receiver.received[3].at
    assert 290 < wait < 310  # the second failure's 5 minutes


async def test_an_endpoint_that_never_answers_slows_neither_another_nor_the_referrals(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    with receiving(delay_s=60) as silent, receiving() as healthy:
        async with delivering() as delivery:
            await delivery.endpoint(silent.url)
            _, secret = await delivery.endpoint(healthy.url)
            begun = time.monotonic()
            ids = [await delivery.referral(SUBMIT_TO_EVENTS["won"]) for _ in range(5)]
            acted = time.monotonic() - begun
            events = await asyncio.to_thread(healthy.wait_for, 20, secret, 20)
            delivered = time.monotonic() - begun
            for workflow_id in ids:
                view = await delivery.client.get_workflow_handle(workflow_id).query("status")
                assert view["status"] == Status.WON
            silent.closing.set()  # its pending send ends now, not at the 15 s timeout
    assert {e["data"]["workflow_id"] for e in events} == set(ids)
    # A send to the silent endpoint waits 15 s for an answer; the healthy one heard
    # everything well before the first of those timed out.
    assert acted < 10
    assert delivered < 10
    assert silent.received  # it was tried


@pytest.mark.parametrize("kind", [DRIP, SILENT, HUGE])
async def test_a_hostile_receiver_follows_the_schedule_and_delays_no_other_endpoint(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]], kind: str
) -> None:
    """With two sending threads only and a 4 s deadline: a receiver that drips its status
    line, one that never answers, or one that answers 2 GiB. Its events are tried and
    wait for their next try on the schedule (or, 2 GiB behind a 200, are delivered),
    while another endpoint hears every event at once, also those recorded once the
    hostile one has a backlog of lanes due when the other one starts."""
    with hostile(kind) as bad, receiving() as healthy:
        async with delivering(senders=2, deadline_s=4.0) as delivery:
            endpoint, _ = await delivery.endpoint(bad.url)
            backlog = [await delivery.referral(SUBMIT_TO_EVENTS["skipped"]) for _ in range(8)]
            await delivery.settled(*backlog)
            await until(lambda: bad.requests > 0)
            _, secret = await delivery.endpoint(healthy.url)
            ids = []
            for _ in range(4):
                ids.append(await delivery.referral(SUBMIT_TO_EVENTS["skipped"]))
                await asyncio.sleep(0.5)
            await delivery.settled(*ids)
            events = await asyncio.to_thread(healthy.wait_for, 2 * len(ids), secret, 20)
            if kind == HUGE:
                await delivery.recorded(endpoint)
            else:
                # Each backlog referral's first event tried, the first one twice.
                await until(lambda: _first_tries_and_a_second(delivery, endpoint, len(backlog)))
            report = delivery.deliveries.report(endpoint, from_position=0)
    lags = [
        request.at - datetime.fromisoformat(request.event["timestamp"]).timestamp()
        for request in healthy.received
    ]
    assert max(lags) < 2.0, f"the healthy endpoint waited {max(lags):.1f} s"
    assert {e["data"]["workflow_id"] for e in events} == set(ids)
    if kind == HUGE:
        assert {r.status for r in report} == {"delivered"}
        return
    # One request at a time went out; the lanes due meanwhile failed their try at once.
    assert bad.most_in_hand == 1
    tried = [r for r in report if r.attempts]
    assert {r.last_error for r in tried} == {"no complete answer within 4 s", NOT_SENT}
    for r in tried:
        # After the first failed try, 5 s to wait; after the second, 5 minutes.
        assert r.status == "pending"
        assert r.next_try_at is not None
        waited = r.next_try_at - r.occurred_at
        assert waited < timedelta(minutes=1) if r.attempts == 1 else waited > timedelta(minutes=4)


def _first_tries_and_a_second(delivery: Delivery, endpoint: Endpoint, referrals: int) -> bool:
    report = delivery.deliveries.report(endpoint, from_position=0)
    tries = sorted(r.attempts for r in report if r.attempts)
    return len(tries) >= referrals and tries[-1] >= 2


async def test_a_later_endpoint_hears_only_new_events_and_replay_sends_the_old_with_their_ids(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    with receiving() as early, receiving() as late:
        async with delivering() as delivery:
            _, early_secret = await delivery.endpoint(early.url)
            old = await delivery.referral([("interested", None)])
            await delivery.settled(old)
            await asyncio.to_thread(early.wait_for, 2, early_secret)
            endpoint, late_secret = await delivery.endpoint(late.url)
            new = await delivery.referral([])
            await asyncio.to_thread(late.wait_for, 1, late_secret)
            assert [r.event["data"]["workflow_id"] for r in late.received] == [new]
            handle = await start_replay(
                delivery.client, delivery.deliveries, endpoint.id, delivery.queue
            )
            await handle.result()
            replayed = [r.webhook_id for r in late.received[1:]]
            again = await start_replay(
                delivery.client, delivery.deliveries, endpoint.id, delivery.queue, rfi_id=None
            )
            await again.result()
            status = (await again.describe()).status
    assert replayed == [f"{old}.0", f"{old}.1", f"{new}.0"]
    assert [r.webhook_id for r in late.received[4:]] == replayed
    assert status == WorkflowExecutionStatus.COMPLETED


async def test_the_events_commands_show_each_delivery_and_replay_one_rfi(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
    dev_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    with receiving([(400, {})]) as receiver:
        async with delivering() as delivery:
            endpoint, secret = await delivery.endpoint(receiver.url)
            refused = await delivery.referral([])
            await delivery.settled(refused)
            await until(lambda: bool(receiver.received))
            kept = await delivery.referral([("no_thanks", None)])
            await delivery.settled(kept)
            await asyncio.to_thread(receiver.wait_for, 2, secret)
            await delivery.recorded(endpoint)
            environment = worker_environment(
                dev_env,
                tmp_path,
                REFERRALS_DATABASE_URL=delivery.settings.database_url,
                REFERRALS_TASK_QUEUE=delivery.queue,
            )
            listed = run_referrals(environment, "events", "list", "--json")
            dead = run_referrals(environment, "events", "list", "--status", "dead")
            rfi = kept.split(":")[1]
            replayed = await asyncio.to_thread(
                run_referrals, environment, "events", "replay", endpoint.id, "--rfi", rfi, "--wait"
            )
    assert listed.returncode == 0, listed.stderr
    rows = {row["event_id"]: row for row in json.loads(listed.stdout)}
    assert {k: (v["status"], v["attempts"], v["last_code"]) for k, v in rows.items()} == {
        f"{refused}.0": ("dead", 1, 400),
        f"{kept}.0": ("delivered", 1, 200),
        f"{kept}.1": ("delivered", 1, 200),
    }
    assert rows[f"{kept}.1"]["type"] == "referral.skipped"
    assert dead.stdout.splitlines() == [
        f"{refused}.0  referral.created  {endpoint.id}  dead  1 tries  HTTP 400"
    ]
    assert replayed.returncode == 0, replayed.stderr
    assert f"replaying 2 event(s) to {endpoint.id}" in replayed.stdout
    assert [r.webhook_id for r in receiver.received[-2:]] == [f"{kept}.0", f"{kept}.1"]
    assert len(receiver.received) == 5


async def test_a_run_continues_as_new_keeping_its_place_and_what_waits(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    """A pump that returns at once fills a run's history in seconds: the run continues as
    new with its cursor and the lane of an event told to come back in an hour."""
    later: list[str] = []

    def answer(request: Received) -> tuple[int, dict[str, str]]:
        if not later or request.webhook_id == later[0]:
            later[:1] = [request.webhook_id]
            return 429, {"Retry-After": "3600"}
        return 200, {}

    with receiving(answer=answer) as receiver:
        async with delivering(pump_for=0, poll_interval=0) as delivery:
            endpoint, secret = await delivery.endpoint(receiver.url)
            waiting = await delivery.referral([])
            handle = delivery.client.get_workflow_handle(delivery_workflow_id(endpoint.id))
            first_run = (await handle.describe()).run_id
            async with asyncio.timeout(120):
                while (await handle.describe()).run_id == first_run:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
            progress = await handle.query(WebhookDeliveryWorkflow.progress)
            started = (await handle.fetch_history()).events[0]
            [handed_over] = await delivery.client.data_converter.decode(
                started.workflow_execution_started_event_attributes.input.payloads,
                [DeliveryInput],
            )
            heard = await delivery.referral([])
            events = await asyncio.to_thread(receiver.wait_for, 1, secret)

            def waiting_now() -> list[DeliveryReport]:
                return delivery.deliveries.report(endpoint, from_position=0, status="pending")

            # The delivered event is recorded with its batch, a moment after it arrived.
            await until(lambda: len(waiting_now()) == 1)
            report = waiting_now()
    assert later == [f"{waiting}.0"]
    assert (progress.waiting_events, progress.waiting_referrals) == (1, 1)
    assert progress.cursor == delivery.archive.events(workflow_id=waiting)[0].position
    # The new run was handed the lane with its try count and its time, not a fresh one.
    [lane] = handed_over.lanes
    assert (lane.workflow_id, lane.attempts) == (waiting, 1)
    assert lane.next_try_at is not None
    assert timedelta(minutes=59) < lane.next_try_at - datetime.now(UTC) <= timedelta(hours=1)
    assert events[0]["data"]["workflow_id"] == heard  # delivery went on in the new run
    [pending] = report
    assert (pending.event_id, pending.attempts, pending.last_code) == (f"{waiting}.0", 1, 429)
    assert pending.next_try_at is not None
    assert timedelta(minutes=59) < pending.next_try_at - datetime.now(UTC) <= timedelta(hours=1)


async def test_after_a_rotation_events_verify_with_the_old_secret_and_the_new(
    delivering: Callable[..., AbstractAsyncContextManager[Delivery]],
) -> None:
    with receiving() as receiver:
        async with delivering() as delivery:
            endpoint, old = await delivery.endpoint(receiver.url)
            before = await delivery.referral([])
            await asyncio.to_thread(receiver.wait_for, 1, old)
            new = delivery.webhooks.rotate_secret(endpoint.id, datetime.now(UTC))
            after = await delivery.referral([])
            await until(lambda: len(receiver.received) == 2)
    first, second = receiver.received
    assert first.event["data"]["workflow_id"] == before
    assert len(first.headers["webhook-signature"].split()) == 1
    assert second.event["data"]["workflow_id"] == after
    assert len(second.headers["webhook-signature"].split()) == 2
    for secret in (old, new):  # a receiver on either secret accepts it during the overlap
        assert Webhook(secret).verify(second.body, second.headers)["type"] == "referral.created"
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(first.body, first.headers)
