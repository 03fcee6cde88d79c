"""The messages of webhook delivery: what the delivery workflow and its activities pass.

Events travel by their position in the archive's outbox, never by their body: a run's
history holds ids and numbers only, and its size stays small however large the backlog.
"""

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from workflows.models import WireModel

# What the endpoint's row says: open (enabled), disabled by hand, gone (it answered 410 and
# was disabled), removed. Delivery waits while disabled or gone, and ends once removed.
EndpointState = Literal["open", "disabled", "gone", "removed"]


def delivery_workflow_id(endpoint_id: str) -> str:
    """The one live delivery run of an endpoint."""
    return f"webhooks:{endpoint_id}"


def replay_workflow_id(endpoint_id: str, asked_at: datetime) -> str:
    return f"webhooks:{endpoint_id}:replay:{asked_at:%Y%m%dT%H%M%S.%fZ}"


class Replay(WireModel):
    """Archived events to send again, in order, with their ids: those recorded up to
    `until` (the last one when the replay was asked), from `since` on, of one RFI."""

    until: int
    since: datetime | None = None
    rfi_id: str | None = None


class Lane(WireModel):
    """One referral's events waiting for the endpoint, in order. The first has failed
    `attempts` times and is due again at `next_try_at` (the workflow's time); the others
    wait behind it. From an activity, `retry_in` says when instead: the workflow reads it
    against its own clock, never the worker's."""

    workflow_id: str
    positions: list[int] = Field(min_length=1)
    attempts: int = 0
    next_try_at: datetime | None = None
    retry_in: timedelta | None = None


class DeliveryInput(WireModel):
    """A delivery run's whole state, handed from run to run by continue-as-new."""

    endpoint_id: str
    cursor: int | None = None  # the last position read; None: where the endpoint started
    lanes: list[Lane] = []
    replay: Replay | None = None
    paused: bool = False
    unanswered: bool = False  # the endpoint's last try got no answer in time


class PumpRequest(WireModel):
    endpoint_id: str
    cursor: int | None
    # Referrals with a lane in the workflow: their new events join it, unsent.
    held: list[str] = []
    replay: Replay | None = None
    # False while the endpoint does not answer: read one batch, send nothing, hand every
    # event back as lanes (tried one at a time by the workflow) and return at once.
    send: bool = True


class PumpResult(WireModel):
    """How far the pump read, and what it hands back to the workflow to send: failed
    events with their next try, the events behind them, and events of held referrals."""

    cursor: int
    state: EndpointState
    lanes: list[Lane] = []
    exhausted: bool = False  # a replay has read all its events
    answered: bool | None = None  # whether the last try got an answer; None: no try
    full: bool = False  # a look without sending read a whole batch: more may be behind


class LaneRequest(WireModel):
    endpoint_id: str
    lane: Lane
    # False while another try is out to an endpoint that does not answer: the lane's head
    # fails this try at once, without a request, and waits for its next one.
    send: bool = True


class LaneResult(WireModel):
    """`done` events from the lane's head were delivered or given up on; the next one has
    failed `attempts` times and is due again in `retry_in`."""

    done: int
    state: EndpointState
    attempts: int = 0
    retry_in: timedelta | None = None
    answered: bool | None = None  # whether the last try got an answer; None: no try


class DeliveryProgress(WireModel):
    """The `progress` query: where a delivery run stands."""

    endpoint_id: str
    cursor: int | None
    paused: bool
    waiting_events: int
    waiting_referrals: int
    replay: Replay | None


def webhook_task_queue(task_queue: str) -> str:
    """Delivery's own queue beside the referrals' one: its sends never take their slots."""
    return f"{task_queue}-webhooks"
