"""The events other systems hear: one when a referral starts, one per transition.

Built from the archived view, in the archive's own transaction (a transactional outbox):
no transition is archived without its event, and an event's id, `{workflow_id}.{seq}`,
keeps a retried or replayed write from storing it twice. A body holds ids, statuses,
times, the cause and the deal's figures: never the customer's contact, never a partner's
free text (a receiver that needs more reads the `status` query).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import Field

from workflows.models import ExactAmount, Status, StatusView, Transition, Via, WireModel

CREATED = "referral.created"
EVENT_TYPES: Mapping[Status, str] = {
    status: f"referral.{str(status).lower()}" for status in Status if status is not Status.NEW
}
DEAL_STATUSES = frozenset({Status.NEGOTIATING, Status.WON, Status.LOST})


class EventCause(WireModel):
    kind: Literal["start", "action", "deadline"]
    name: str


class EventDeal(WireModel):
    estimated_deal_value: ExactAmount
    currency: str
    estimated_close_date: date
    final_deal_value: ExactAmount | None = None


class EventData(WireModel):
    workflow_id: str
    rfi_id: str
    partner_id: str
    seq: int  # 0 for referral.created, then the transition's
    from_: Status | None = Field(alias="from")
    to: Status
    cause: EventCause
    effective_at: datetime
    processed_at: datetime
    reason_code: str | None = None  # the partner's code for no_thanks, decline or lost
    via: Via | None = None  # the door an action came through
    deal: EventDeal | None = None


class ReferralEvent(WireModel):
    type: str
    timestamp: datetime  # the transition's effective time
    data: EventData

    @property
    def id(self) -> str:
        """The `webhook-id`: the same on every retry and replay."""
        return event_id(self.data.workflow_id, self.data.seq)

    def body(self) -> str:
        return self.model_dump_json()


def event_id(workflow_id: str, seq: int) -> str:
    return f"{workflow_id}.{seq}"


def events_of(workflow_id: str, view: StatusView) -> list[ReferralEvent]:
    """Every event the view stands for, in order: created (when the worker started the
    referral, never the RFI's `received_at`, which a backend may set up to a day ahead),
    then one per transition."""
    created = _created(
        workflow_id, view.rfi_id, view.partner_id, view.started_at or view.received_at
    )
    return [created, *(_transition_event(workflow_id, view, t) for t in view.transitions)]


def _created(workflow_id: str, rfi_id: str, partner_id: str, started_at: datetime) -> ReferralEvent:
    return ReferralEvent(
        type=CREATED,
        timestamp=started_at,
        data=EventData(
            workflow_id=workflow_id,
            rfi_id=rfi_id,
            partner_id=partner_id,
            seq=0,
            from_=None,
            to=Status.NEW,
            cause=EventCause(kind="start", name="submit"),
            effective_at=started_at,
            processed_at=started_at,
        ),
    )


def _transition_event(workflow_id: str, view: StatusView, transition: Transition) -> ReferralEvent:
    return ReferralEvent(
        type=EVENT_TYPES[transition.to],
        timestamp=transition.effective_at,
        data=EventData(
            workflow_id=workflow_id,
            rfi_id=view.rfi_id,
            partner_id=view.partner_id,
            seq=transition.seq,
            from_=transition.from_,
            to=transition.to,
            cause=EventCause(kind=transition.cause.kind, name=str(transition.cause.name)),
            effective_at=transition.effective_at,
            processed_at=transition.processed_at,
            reason_code=transition.reason_code,
            via=transition.via,
            deal=_deal(view.deal, transition.to),
        ),
    )


@dataclass(frozen=True)
class ArchivedTransition:
    """A transition as the archive's `referral_transitions` row holds it."""

    seq: int
    from_status: str
    to_status: str
    cause_kind: str
    cause_name: str
    effective_at: datetime
    processed_at: datetime


def archived_events(
    workflow_id: str,
    rfi_id: str,
    partner_id: str,
    received_at: datetime,
    deal: "DealFigures | None",
    transitions: Iterable[ArchivedTransition],
) -> list[ReferralEvent]:
    """The events of a referral archived before events were recorded, from its rows:
    the same as `events_of` would have made from its view."""
    created = _created(workflow_id, rfi_id, partner_id, received_at)
    return [
        created,
        *(
            ReferralEvent(
                type=EVENT_TYPES[Status(t.to_status)],
                timestamp=t.effective_at,
                data=created.data.model_copy(
                    update={
                        "seq": t.seq,
                        "from_": Status(t.from_status),
                        "to": Status(t.to_status),
                        "cause": EventCause.model_validate(
                            {"kind": t.cause_kind, "name": t.cause_name}
                        ),
                        "effective_at": t.effective_at,
                        "processed_at": t.processed_at,
                        "deal": _deal(deal, Status(t.to_status)),
                    }
                ),
            )
            for t in sorted(transitions, key=lambda t: t.seq)
        ),
    ]


class DealFigures(Protocol):
    """A deal's figures: the view's `Deal`, or an archived referral's row."""

    @property
    def estimated_deal_value(self) -> Decimal | None: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def estimated_close_date(self) -> date | None: ...
    @property
    def final_deal_value(self) -> Decimal | None: ...


def _deal(deal: DealFigures | None, to: Status) -> EventDeal | None:
    """The figures from acceptance on; the final value only with the win itself."""
    if deal is None or to not in DEAL_STATUSES or deal.estimated_deal_value is None:
        return None
    return EventDeal(
        estimated_deal_value=deal.estimated_deal_value,
        currency=str(deal.currency),
        estimated_close_date=deal.estimated_close_date,
        final_deal_value=deal.final_deal_value if to is Status.WON else None,
    )
