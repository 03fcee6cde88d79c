"""Writing referrals to the archive, idempotently, and reading them back."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session, selectinload

from archive.schema import ReferralRow, TransitionRow
from workflows.lifecycle import CLOSED_STATUSES
from workflows.models import Status, StatusView, referral_workflow_id


@dataclass(frozen=True)
class ReferralFilter:
    status: Status | None = None
    partner_id: str | None = None
    rfi_id: str | None = None
    region: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class ArchiveStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, view: StatusView) -> int:
        """Write the referral as the view shows it; returns how many transitions were new.

        Keyed on (workflow id, transition seq): a retried activity or a replayed workflow
        writes nothing twice, and a write older than what is stored never overwrites it.
        """
        workflow_id = referral_workflow_id(view.rfi_id, view.partner_id)
        with Session(self.engine) as session, session.begin():
            row = session.get(ReferralRow, workflow_id, with_for_update=True)
            if row is None:
                row = ReferralRow(workflow_id=workflow_id, transition_count=-1)
                session.add(row)
            if len(view.transitions) >= row.transition_count:
                _fill(row, view)
            stored = set(
                session.scalars(
                    select(TransitionRow.seq).where(TransitionRow.workflow_id == workflow_id)
                )
            )
            new = [t for t in view.transitions if t.seq not in stored]
            session.add_all(
                TransitionRow(
                    workflow_id=workflow_id,
                    seq=t.seq,
                    from_status=t.from_,
                    to_status=t.to,
                    effective_at=t.effective_at,
                    processed_at=t.processed_at,
                    cause_kind=t.cause.kind,
                    cause_name=t.cause.name,
                    reason=t.reason,
                )
                for t in new
            )
        return len(new)

    def existing(self, workflow_ids: Iterable[str]) -> set[str]:
        ids = list(workflow_ids)
        with Session(self.engine) as session:
            return set(
                session.scalars(
                    select(ReferralRow.workflow_id).where(ReferralRow.workflow_id.in_(ids))
                )
            )

    def referrals(
        self, where: ReferralFilter = ReferralFilter(), *, limit: int = 100, offset: int = 0
    ) -> list[ReferralRow]:
        """Newest received first; page with limit and offset."""
        query = (
            _filtered(select(ReferralRow), where)
            .order_by(ReferralRow.received_at.desc(), ReferralRow.workflow_id)
            .limit(limit)
            .offset(offset)
        )
        with Session(self.engine) as session:
            return list(session.scalars(query))

    def history(self, workflow_id: str) -> ReferralRow | None:
        with Session(self.engine) as session:
            return session.scalar(
                select(ReferralRow)
                .where(ReferralRow.workflow_id == workflow_id)
                .options(selectinload(ReferralRow.transitions))
            )

    def partners_of_rfi(self, rfi_id: str) -> set[str]:
        with Session(self.engine) as session:
            return set(
                session.scalars(select(ReferralRow.partner_id).where(ReferralRow.rfi_id == rfi_id))
            )


def _filtered(
    query: Select[tuple[ReferralRow]], where: ReferralFilter
) -> Select[tuple[ReferralRow]]:
    conditions = [
        column == value
        for column, value in (
            (ReferralRow.status, where.status),
            (ReferralRow.partner_id, where.partner_id),
            (ReferralRow.rfi_id, where.rfi_id),
            (ReferralRow.region, where.region),
        )
        if value is not None
    ]
    if where.since is not None:
        conditions.append(ReferralRow.received_at >= where.since)
    if where.until is not None:
        conditions.append(ReferralRow.received_at < where.until)
    return query.where(*conditions)


def _fill(row: ReferralRow, view: StatusView) -> None:
    last = view.transitions[-1] if view.transitions else None
    deal, customer = view.deal, view.customer
    row.rfi_id, row.partner_id = view.rfi_id, view.partner_id
    row.region, row.location = view.region, view.location
    row.need, row.company_size = view.overview.need, view.overview.company_size
    row.status = view.status
    row.transition_count = len(view.transitions)
    row.received_at = view.received_at
    row.first_response_at = view.first_response_at
    row.updated_at = last.effective_at if last else view.received_at
    row.closed_at = last.effective_at if last and view.status in CLOSED_STATUSES else None
    row.estimated_deal_value = deal.estimated_deal_value if deal else None
    row.currency = deal.currency if deal else None
    row.estimated_close_date = deal.estimated_close_date if deal else None
    row.final_deal_value = deal.final_deal_value if deal else None
    # Contact details only once the partner said it was interested, as in the view.
    row.customer_name = customer.name if customer else None
    row.customer_company = customer.company if customer else None
    row.customer_email = str(customer.email) if customer else None
    row.customer_phone = customer.phone if customer else None
