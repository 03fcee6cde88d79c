"""The activities that send events to one webhook endpoint.

``pump_events`` reads the archive's outbox from the delivery's cursor, every
``poll_interval`` seconds while there is nothing new, and sends each event the moment it
finds it: for a healthy endpoint one activity runs for up to ``pump_for`` seconds and
sends everything recorded meanwhile, at no cost to Temporal per event. It returns sooner,
to its workflow, whatever needs a timer or an order: a failed event (with its next try
from the retry schedule), the events behind it in the same referral, and new events of a
referral whose lane waits in the workflow. ``send_lane`` sends one such lane in order,
stopping at the first event to try again later.

Duplicates: an event accepted by the endpoint is recorded as delivered with the rest of
its batch; a worker killed between the two sends that batch again (at most ``BATCH``
events, each with its original `webhook-id`). A retried pump skips what it recorded.
"""

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.webhook_sender import (
    EndpointGone,
    EventRefused,
    Signed,
    TryAgain,
    WebhookSender,
    checked_url,
    next_try_in,
    signed,
)
from archive.deliveries import BEFORE_ALL, Attempt, DeliveryStore, EventFilter
from archive.schema import EventRow
from archive.webhooks import Endpoint, WebhookStore
from workflows.delivery_models import (
    EndpointState,
    Lane,
    LaneRequest,
    LaneResult,
    PumpRequest,
    PumpResult,
    Replay,
)

BATCH = 100  # events read and sent at once
NOT_SENT = "not sent: the endpoint did not answer its last try, and one try at a time goes out"
POLL_INTERVAL_S = 0.1
PUMP_FOR_S = 60.0
ALARM_AFTER_ATTEMPTS = 3
GONE_REASON = "the endpoint answered 410 Gone"
# Prometheus: one per try, by outcome (delivered, retry, dead, gone).
SENDS_METRIC = "referral_webhook_sends"

log = logging.getLogger(__name__)


class WebhookActivities:
    def __init__(
        self,
        webhooks: WebhookStore,
        deliveries: DeliveryStore,
        sender: WebhookSender,
        *,
        poll_interval: float = POLL_INTERVAL_S,
        pump_for: float = PUMP_FOR_S,
        allow_private: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._webhooks = webhooks
        self._deliveries = deliveries
        self._sender = sender
        self._poll_interval = poll_interval
        self._pump_for = pump_for
        self._allow_private = allow_private
        self._now = clock

    @activity.defn(name="pump_webhook_events")
    def pump_events(self, request: PumpRequest) -> PumpResult:
        try:
            return self._pump(request) if request.send else self._look(request)
        except CancelledError:
            raise
        except Exception as error:
            raise _unavailable(error) from None

    @activity.defn(name="send_webhook_lane")
    def send_lane(self, request: LaneRequest) -> LaneResult:
        try:
            return self._send_lane(request)
        except CancelledError:
            raise
        except Exception as error:
            raise _unavailable(error) from None

    def _look(self, request: PumpRequest) -> PumpResult:
        """One batch of new events read and handed back as lanes, none sent: while the
        endpoint does not answer, the workflow tries them one at a time."""
        endpoint = self._webhooks.endpoint(request.endpoint_id)
        state = _state(endpoint)
        cursor = self._cursor(request)
        if endpoint is None or state != "open":
            return PumpResult(cursor=cursor, state=state)
        rows = self._deliveries.events(endpoint, _after(cursor, request.replay), BATCH)
        waiting: dict[str, Lane] = {}
        for row in rows:
            _queue(waiting, row)
        return PumpResult(
            cursor=rows[-1].position if rows else cursor,
            state=state,
            lanes=list(waiting.values()),
            exhausted=request.replay is not None and not rows,
            full=len(rows) == BATCH,
        )

    def _cursor(self, request: PumpRequest) -> int:
        """Where reading goes on: a replay from the first event, a live run from where its
        endpoint started."""
        if request.cursor is not None:
            return request.cursor
        if request.replay is not None:
            return BEFORE_ALL
        return self._deliveries.starting_position(request.endpoint_id) or 0

    def _pump(self, request: PumpRequest) -> PumpResult:
        endpoint_id = request.endpoint_id
        details = activity.info().heartbeat_details
        # A retried attempt goes on from its last heartbeat.
        cursor = int(details[0]) if details else self._cursor(request)
        held = set(request.held)
        beat = Heartbeat()
        stop_at = time.monotonic() + self._pump_for
        while True:
            endpoint = self._webhooks.endpoint(endpoint_id)
            state = _state(endpoint)
            if endpoint is None or state != "open":
                return PumpResult(cursor=cursor, state=state)
            rows = self._deliveries.events(endpoint, _after(cursor, request.replay), BATCH)
            if rows:
                lanes, state, answered = self._send_batch(
                    endpoint, rows, held, beat, request.replay
                )
                cursor = rows[-1].position
                beat(cursor)
                if lanes or state != "open":
                    return PumpResult(cursor=cursor, state=state, lanes=lanes, answered=answered)
                continue  # a full batch may have more behind it
            if request.replay is not None:
                return PumpResult(cursor=cursor, state=state, exhausted=True)
            if time.monotonic() >= stop_at or activity.is_worker_shutdown():
                return PumpResult(cursor=cursor, state=state)
            beat(cursor)
            activity.wait_for_worker_shutdown_sync(self._poll_interval)

    def _send_batch(
        self,
        endpoint: Endpoint,
        rows: Sequence[EventRow],
        held: set[str],
        beat: "Heartbeat",
        replay: Replay | None,
    ) -> tuple[list[Lane], EndpointState, bool | None]:
        """Send the rows in order; hand back, per referral, what must wait for the
        workflow, and whether the last try got an answer. After a failure the rest of the
        batch is handed back untried, so that an endpoint that does not answer costs one
        deadline here, not one per event."""
        skip = set()
        if replay is None and activity.info().attempt > 1:
            skip = self._deliveries.settled(endpoint.id, [row.position for row in rows])
        secrets = self._webhooks.secrets(endpoint.id, self._now())
        refusal = self._refusal(endpoint)
        waiting: dict[str, Lane] = {}
        attempts: list[Attempt] = []
        stopped = False  # by a failure: the rest is handed back untried
        for row in rows:
            if row.position in skip:
                continue
            if stopped or row.workflow_id in held or row.workflow_id in waiting:
                _queue(waiting, row)
                continue
            attempt = self._try(endpoint, secrets, row, 0, refusal)
            attempts.append(attempt)
            beat()  # alive, after a send that may take TIMEOUT_S
            if attempt.status == "pending":
                gone = attempt.code == 410
                waiting[row.workflow_id] = Lane(
                    workflow_id=row.workflow_id,
                    positions=[row.position],
                    attempts=0 if gone else 1,
                    retry_in=_retry_in(attempt),
                )
                stopped = True
        self._deliveries.record(endpoint.id, attempts)
        answered = _answered(attempts[-1], refusal) if attempts else None
        if attempts and attempts[-1].code == 410:
            self._webhooks.set_enabled(endpoint.id, False, GONE_REASON)
            return list(waiting.values()), "gone", answered
        return list(waiting.values()), "open", answered

    def _send_lane(self, request: LaneRequest) -> LaneResult:
        endpoint = self._webhooks.endpoint(request.endpoint_id)
        state = _state(endpoint)
        if endpoint is None or state != "open":
            return LaneResult(done=0, state=state)
        lane = request.lane
        secrets = self._webhooks.secrets(endpoint.id, self._now())
        refusal = self._refusal(endpoint) if request.send else NOT_SENT
        done, failures = 0, lane.attempts
        answered: bool | None = None
        beat = Heartbeat()
        for row in self._deliveries.at(lane.positions):
            attempt = self._try(endpoint, secrets, row, failures, refusal)
            self._deliveries.record(endpoint.id, [attempt])
            beat(done)
            answered = _answered(attempt, refusal)
            if attempt.code == 410:
                self._webhooks.set_enabled(endpoint.id, False, GONE_REASON)
                # Not a failed try: the event waits, its count as it was, for `enable`.
                return LaneResult(done=done, state="gone", attempts=failures, answered=True)
            if attempt.status == "pending":
                return LaneResult(
                    done=done,
                    state="open",
                    attempts=failures + 1,
                    retry_in=_retry_in(attempt),
                    answered=answered,
                )
            done, failures = done + 1, 0
        # Events no longer in the archive (never the case but by hand) count as done.
        return LaneResult(done=len(lane.positions), state="open", answered=answered)

    def _refusal(self, endpoint: Endpoint) -> str | None:
        """Why the endpoint's URL may not be called now, if it may not: its host was
        checked when it was added, and may resolve to an internal address since."""
        try:
            checked_url(endpoint.url, allow_private=self._allow_private)
        except ValueError as error:
            return f"not called: {error}"
        return None

    def _try(
        self,
        endpoint: Endpoint,
        secrets: list[str],
        row: EventRow,
        failures: int,
        refusal: str | None = None,
    ) -> Attempt:
        """Send one event that has failed ``failures`` times before; its outcome, counted.
        With a ``refusal``, the try fails without a request, to be tried again later."""
        attempt = self._send(endpoint, secrets, row, failures, refusal)
        outcome = "gone" if attempt.code == 410 else attempt.status
        activity.metric_meter().create_counter(
            SENDS_METRIC, "Webhook sends by outcome", "sends"
        ).add(1, {"outcome": "retry" if outcome == "pending" else outcome})
        return attempt

    def _send(
        self,
        endpoint: Endpoint,
        secrets: list[str],
        row: EventRow,
        failures: int,
        refusal: str | None,
    ) -> Attempt:
        now = self._now()
        event: Signed = signed(secrets, row.event_id, row.body, now)
        try:
            if refusal is not None:
                raise TryAgain(refusal)
            code = self._sender.send(endpoint.url, event)
        except EndpointGone as error:
            return Attempt(row.position, "pending", now, 410, str(error))
        except EventRefused as error:
            return Attempt(row.position, "dead", now, error.status, str(error))
        except TryAgain as error:
            wait = next_try_in(failures + 1, error.retry_after)
            if wait is None:
                log.warning(
                    "Webhook %s: gave up on event %s after %d tries: %s",
                    endpoint.id,
                    row.event_id,
                    failures + 1,
                    error,
                )
                return Attempt(row.position, "dead", now, error.status, str(error))
            return Attempt(row.position, "pending", now, error.status, str(error), now + wait)
        return Attempt(row.position, "delivered", now, code)


class Heartbeat:
    """Heartbeats at most once a second (the timeout is TIMEOUT_S + 15): the SDK hands each
    one to the worker's event loop and waits for it, which costs more than a send to an
    endpoint that answers at once. A call without details repeats the last ones."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._details: tuple[object, ...] = ()

    def __call__(self, *details: object) -> None:
        self._details = details or self._details
        now = time.monotonic()
        if now - self._last >= 1.0:
            activity.heartbeat(*self._details)
            self._last = now


def _answered(attempt: Attempt, refusal: str | None) -> bool | None:
    """Whether the endpoint answered a try; None for a try without a request, which says
    nothing of it."""
    return attempt.code is not None if refusal is None else None


def _after(cursor: int, replay: Replay | None) -> EventFilter:
    """The events after the cursor: the endpoint's, or the replay's range of them."""
    if replay is None:
        return EventFilter(after=cursor)
    return EventFilter(cursor, replay.until, replay.since, replay.rfi_id)


def _queue(waiting: dict[str, Lane], row: EventRow) -> None:
    lane = waiting.get(row.workflow_id)
    positions = [*(lane.positions if lane else []), row.position]
    waiting[row.workflow_id] = (
        lane.model_copy(update={"positions": positions})
        if lane
        else Lane(workflow_id=row.workflow_id, positions=positions)
    )


def _retry_in(attempt: Attempt) -> timedelta | None:
    return attempt.next_try_at - attempt.at if attempt.next_try_at else None


def _state(endpoint: Endpoint | None) -> EndpointState:
    if endpoint is None:
        return "removed"
    if endpoint.enabled:
        return "open"
    return "gone" if endpoint.disabled_reason == GONE_REASON else "disabled"


def _unavailable(error: Exception) -> ApplicationError:
    """The archive could not be read or written: one line, retried, an alarm after a few."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    message = f"webhook delivery cannot reach the archive: {lines[0] if lines else error!r}"
    if activity.info().attempt > ALARM_AFTER_ATTEMPTS:
        activity.logger.error("%s (attempt %d)", message, activity.info().attempt)
    return ApplicationError(message, type="ArchiveUnavailable")
