"""What the partner API answers: a partner's view of one referral, and pages of them.

The same fields as the status view where they exist, as the partner may see them (the
customer null until it said interested), with when it last changed and what it may do now;
without the view's emails and refused signals, which are the marketplace's bookkeeping.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from archive.schema import ReferralRow
from workflows.lifecycle import allowed_actions
from workflows.models import (
    Cause,
    Customer,
    DeadlineKind,
    DeadlineView,
    Deal,
    Overview,
    Status,
    StatusView,
    Transition,
    Via,
)


class PartnerReferral(BaseModel):
    model_config = ConfigDict(frozen=True, serialize_by_alias=True)

    rfi_id: str
    partner_id: str
    status: Status
    region: str
    location: str | None
    received_at: datetime
    started_at: datetime | None  # when the referral reached the partner (its lead went out)
    updated_at: datetime
    first_response_at: datetime | None
    deadline: DeadlineView | None
    overview: Overview
    customer: Customer | None
    deal: Deal | None
    transitions: list[Transition]
    allowed_actions: list[str]

    @classmethod
    def of_view(cls, view: StatusView) -> "PartnerReferral":
        last = view.transitions[-1].effective_at if view.transitions else view.received_at
        return cls(
            **{name: getattr(view, name) for name in _SHARED},
            updated_at=last,
            allowed_actions=[str(a) for a in allowed_actions(view.status)],
        )

    @classmethod
    def of_row(cls, row: ReferralRow) -> "PartnerReferral":
        """As the archive last recorded it (at most a second behind a transition)."""
        status = Status(row.status)
        deadline = None
        if row.due_at is not None and status in (Status.NEW, Status.EVALUATING):
            kind = DeadlineKind.RESPOND if status is Status.NEW else DeadlineKind.DECIDE
            deadline = DeadlineView(kind=kind, due_at=row.due_at)
        customer = None
        if row.customer_name and row.customer_company and row.customer_email:
            customer = Customer.model_construct(
                name=row.customer_name,
                company=row.customer_company,
                email=row.customer_email,
                phone=row.customer_phone,
            )
        deal = None
        if row.estimated_deal_value is not None and row.currency and row.estimated_close_date:
            deal = Deal(
                estimated_deal_value=row.estimated_deal_value,
                currency=row.currency,
                estimated_close_date=row.estimated_close_date,
                final_deal_value=row.final_deal_value,
            )
        return cls(
            rfi_id=row.rfi_id,
            partner_id=row.partner_id,
            status=status,
            region=row.region,
            location=row.location,
            received_at=row.received_at,
            started_at=row.started_at,
            updated_at=row.updated_at,
            first_response_at=row.first_response_at,
            deadline=deadline,
            overview=Overview(
                need=row.need,
                company_size=row.company_size,
                region=row.region,
                location=row.location,
            ),
            customer=customer,
            deal=deal,
            transitions=[
                Transition(
                    seq=t.seq,
                    from_=Status(t.from_status),
                    to=Status(t.to_status),
                    effective_at=t.effective_at,
                    processed_at=t.processed_at,
                    cause=Cause.model_validate({"kind": t.cause_kind, "name": t.cause_name}),
                    reason=t.reason,
                    reason_code=t.reason_code,
                    via=Via.model_validate({"door": t.door, "api_key_id": t.api_key_id})
                    if t.door
                    else None,
                )
                for t in row.transitions
            ],
            allowed_actions=[str(a) for a in allowed_actions(status)],
        )


# The status view's fields the partner sees; its emails and refused signals stay with the
# marketplace.
_SHARED = tuple(
    name for name in StatusView.model_fields if name not in {"emails", "rejected_actions"}
)


class ReferralPage(BaseModel):
    items: list[PartnerReferral]
    next: str | None
