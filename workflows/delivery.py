"""WebhookDeliveryWorkflow: one long-lived run per endpoint sends it every event, in order.

The run pumps the archive's outbox (an activity that reads and sends events as they are
recorded) and keeps, per referral, a lane of the events that must wait: one that failed,
until its next try on the Standard Webhooks schedule, and every later event of the same
referral behind it. So event n+1 of a referral never reaches the endpoint before event n
was accepted or given up on, while other referrals' events go on.

An endpoint that does not answer holds one sending thread at most, so that it never
delays other endpoints (a circuit breaker): one lane's try at a time goes out, as a probe;
a lane due meanwhile fails its try at once without a request ("not sent") and waits for
its next one on the schedule; new events are read without being sent (every
``UNANSWERED_LOOK``) and join lanes. The first try that gets an answer ends it.

An endpoint that answers 410, or that an operator disables, is paused: nothing is sent and
nothing is lost until it is enabled again (the `resume` signal). A removed endpoint ends its
run. A replay is the same workflow over a closed range of archived events.

Delivery runs on its own task queue, so a slow or dead endpoint never takes the
referrals' activity slots, and the referrals never wait for it.
"""

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.webhook_sender import TIMEOUT_S
    from activities.webhooks import PUMP_FOR_S, WebhookActivities
    from workflows.delivery_models import (
        DeliveryInput,
        DeliveryProgress,
        EndpointState,
        Lane,
        LaneRequest,
        PumpRequest,
    )

MAX_WAITING_EVENTS = 1_000  # held in lanes; beyond it the run stops reading new events
SENDING_LANES = 4  # lanes sent at once while the endpoint answers (one while it does not)
LANE_BATCH = 20  # events of one lane per activity
MAX_EVENTS_PER_RUN = 2_000
PAUSED_CHECK = timedelta(hours=1)  # how often a paused run looks at its endpoint again
UNANSWERED_LOOK = timedelta(seconds=30)  # how often new events are read while no answer

# The archive may be down: retried without end, every attempt after the third logged as
# an error by the activity (the alarm), at most 5 minutes apart.
ARCHIVE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))
# A send takes at most TIMEOUT_S; a worker that dies is noticed within a heartbeat timeout.
HEARTBEAT_TIMEOUT = timedelta(seconds=TIMEOUT_S + 15)
PUMP_TIMEOUT = timedelta(seconds=PUMP_FOR_S + 2 * TIMEOUT_S)
LANE_TIMEOUT = timedelta(seconds=LANE_BATCH * (TIMEOUT_S + 1))


@dataclass
class _Lane:
    """A lane as the run changes it."""

    positions: list[int]
    attempts: int = 0
    next_try_at: datetime | None = None


@workflow.defn(name="WebhookDelivery")
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, start: DeliveryInput) -> None:
        self._endpoint_id = start.endpoint_id
        self._cursor = start.cursor
        self._replay = start.replay
        self._paused = start.paused
        self._unanswered = start.unanswered
        self._lanes: dict[str, _Lane] = {}
        self._draining = False
        self._removed = False
        self._woken = False
        self._sending = asyncio.Semaphore(SENDING_LANES)
        self._probing = False  # a try is out to an endpoint that does not answer
        self._tasks: set[asyncio.Task[None]] = set()
        for lane in start.lanes:
            self._join(lane)

    @workflow.run
    async def run(self, start: DeliveryInput) -> None:
        while not self._removed:
            if self._time_to_continue():
                return await self._continue_as_new()
            if self._paused:
                # Until enabled (`resume`), or to look at the endpoint again after a while.
                await self._wait_while_paused()
                if self._time_to_continue():
                    continue
            elif self._waiting_events() > MAX_WAITING_EVENTS:
                await workflow.wait_condition(
                    lambda: (
                        self._waiting_events() <= MAX_WAITING_EVENTS
                        or self._paused
                        or self._time_to_continue()
                    )
                )
                continue
            self._woken = False  # the pump reads the endpoint's state from here on
            send = not self._unanswered
            result = await workflow.execute_activity_method(
                WebhookActivities.pump_events,
                PumpRequest(
                    endpoint_id=self._endpoint_id,
                    cursor=self._cursor,
                    held=list(self._lanes),
                    replay=self._replay,
                    send=send,
                ),
                summary=_pump_summary(self._replay is not None, send),
                start_to_close_timeout=PUMP_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=ARCHIVE_RETRY,
            )
            self._cursor = result.cursor
            for lane in result.lanes:
                self._join(lane)
            self._note(result.state)
            self._heard(result.answered)
            if result.exhausted:
                await workflow.wait_condition(lambda: not self._lanes or self._removed)
                break
            if not send and not result.full:
                await self._wait_while_unanswered()
        await workflow.wait_condition(lambda: not self._tasks)

    @workflow.signal
    def resume(self) -> None:
        """The endpoint was enabled (or removed): look at it now."""
        self._woken = True

    @workflow.query
    def progress(self) -> DeliveryProgress:
        return DeliveryProgress(
            endpoint_id=self._endpoint_id,
            cursor=self._cursor,
            paused=self._paused,
            waiting_events=self._waiting_events(),
            waiting_referrals=len(self._lanes),
            replay=self._replay,
        )

    def _join(self, lane: Lane) -> None:
        """Queue a lane's events behind those of its referral already waiting."""
        waiting = self._lanes.get(lane.workflow_id)
        if waiting is not None:
            waiting.positions.extend(p for p in lane.positions if p not in waiting.positions)
            return
        due = _due(lane.next_try_at, lane.retry_in)
        self._lanes[lane.workflow_id] = _Lane(list(lane.positions), lane.attempts, due)
        task = asyncio.create_task(self._send(lane.workflow_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, workflow_id: str) -> None:
        """Send one referral's waiting events in order, each failure waiting its turn."""
        lane = self._lanes[workflow_id]
        while lane.positions and not self._draining and not self._removed:
            if self._paused:
                await workflow.wait_condition(
                    lambda: not self._paused or self._draining or self._removed
                )
                continue
            if lane.next_try_at is not None and lane.next_try_at > workflow.now():
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._draining or self._removed,
                        timeout=lane.next_try_at - workflow.now(),
                        timeout_summary=f"retry {workflow_id} (try {lane.attempts + 1})",
                    )
                continue
            async with self._sending:
                if self._draining or self._paused or self._removed:
                    continue
                # While there is no answer, one lane's try goes out; the others fail theirs.
                probe = self._unanswered and not self._probing
                send = probe or not self._unanswered
                if probe:
                    self._probing = True
                try:
                    result = await workflow.execute_activity_method(
                        WebhookActivities.send_lane,
                        LaneRequest(
                            endpoint_id=self._endpoint_id,
                            lane=Lane(
                                workflow_id=workflow_id,
                                positions=lane.positions[:LANE_BATCH],
                                attempts=lane.attempts,
                                next_try_at=lane.next_try_at,
                            ),
                            send=send,
                        ),
                        summary=f"send {workflow_id}" if send else f"not sent: {workflow_id}",
                        start_to_close_timeout=LANE_TIMEOUT,
                        heartbeat_timeout=HEARTBEAT_TIMEOUT,
                        retry_policy=ARCHIVE_RETRY,
                    )
                finally:
                    if probe:
                        self._probing = False
            del lane.positions[: result.done]
            lane.attempts, lane.next_try_at = result.attempts, _due(None, result.retry_in)
            self._note(result.state)
            self._heard(result.answered)
        if not lane.positions:
            del self._lanes[workflow_id]

    def _note(self, state: EndpointState) -> None:
        """What an activity found the endpoint to be: lanes send only while it is open."""
        self._removed = state == "removed"
        self._paused = state in ("disabled", "gone")

    def _heard(self, answered: bool | None) -> None:
        """Whether the endpoint answered its last try (None: nothing was tried)."""
        if answered is not None:
            self._unanswered = not answered

    async def _wait_while_unanswered(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    not self._unanswered
                    or self._paused
                    or self._removed
                    or self._time_to_continue()
                ),
                timeout=UNANSWERED_LOOK,
                timeout_summary="endpoint not answering: look for new events later",
            )

    async def _wait_while_paused(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: self._woken or self._time_to_continue(),
                timeout=PAUSED_CHECK,
                timeout_summary="endpoint disabled: look again",
            )

    def _waiting_events(self) -> int:
        return sum(len(lane.positions) for lane in self._lanes.values())

    def _time_to_continue(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= MAX_EVENTS_PER_RUN
        )

    async def _continue_as_new(self) -> None:
        """Hand the next run the cursor and every lane, once no send is in flight (a lane
        waiting for its next try keeps its time)."""
        self._draining = True
        await workflow.wait_condition(lambda: not self._tasks)
        workflow.continue_as_new(
            DeliveryInput(
                endpoint_id=self._endpoint_id,
                cursor=self._cursor,
                lanes=[
                    Lane(
                        workflow_id=workflow_id,
                        positions=lane.positions,
                        attempts=lane.attempts,
                        next_try_at=lane.next_try_at,
                    )
                    for workflow_id, lane in self._lanes.items()
                    if lane.positions
                ],
                replay=self._replay,
                paused=self._paused,
                unanswered=self._unanswered,
            )
        )


def _pump_summary(replay: bool, send: bool) -> str:
    if send:
        return "replay archived events" if replay else "send new events"
    return "read events to try one at a time (the endpoint does not answer)"


def _due(next_try_at: datetime | None, retry_in: timedelta | None) -> datetime | None:
    """When a failed event is due again, on the workflow's clock."""
    return workflow.now() + retry_in if retry_in is not None else next_try_at
