"""Writing referrals to the archive, idempotently, and reading them back."""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Engine, Executable, Select, Table, and_, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from archive.events import ReferralEvent, events_of
from archive.schema import EventRow, ReferralRow, TransitionRow
from workflows.lifecycle import CLOSED_STATUSES, REASONED_ACTIONS
from workflows.models import (
    UNSPECIFIED,
    DeclineReason,
    EmailKind,
    Status,
    StatusView,
    Transition,
    referral_workflow_id,
)

REFERRALS = cast(Table, ReferralRow.__table__)
TRANSITIONS = cast(Table, TransitionRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
EVENTS_LOCK = 0x5245_4645  # PostgreSQL's advisory lock key for writing events ("REFE")
OPEN_STATUSES = frozenset(Status) - CLOSED_STATUSES


@dataclass(frozen=True)
class ReferralFilter:
    status: Status | None = None
    partner_id: str | None = None
    rfi_id: str | None = None
    region: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason_code: str | None = None  # closed with it; UNSPECIFIED: a refusal or loss without
    flagged: bool | None = None


class RfiReferral(NamedTuple):
    partner_id: str
    status: str
    closed_at: datetime | None


class ArchiveStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._upsert_referral, self._insert_transitions, self._insert_events = _record_statements(
            engine.dialect.name
        )

    def record(self, view: StatusView, workflow_id: str | None = None) -> int:
        """Write the referral as the view shows it; returns how many transitions were new.

        Keyed on (workflow id, transition seq): a retried activity or a replayed workflow
        writes nothing twice, and a write older than what is stored never overwrites it.
        Three statements in one transaction, each atomic on its own (an upsert of the row
        guarded by the transition count, an insert of the transitions and one of their
        events, each skipping those already there), so that concurrent writers need no
        lock of their own, and no transition is archived without its event.
        """
        # The run's own id: runs started under the earlier id scheme keep their rows.
        workflow_id = workflow_id or referral_workflow_id(view.rfi_id, view.partner_id)
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Events become visible in the order of their positions, so that delivery,
                # reading on from the last position it saw, never passes one that a slower
                # transaction commits later (SQLite's writers are serial already).
                connection.execute(select(func.pg_advisory_xact_lock(EVENTS_LOCK)))
            connection.execute(self._upsert_referral, _referral_values(workflow_id, view))
            connection.execute(
                self._insert_events, [event_values(e) for e in events_of(workflow_id, view)]
            )
            if not view.transitions:
                return 0
            added = connection.execute(
                self._insert_transitions,
                [_transition_values(workflow_id, t) for t in view.transitions],
            )
            return len(added.all())

    def existing(self, workflow_ids: Iterable[str]) -> set[str]:
        ids = list(workflow_ids)
        with Session(self.engine) as session:
            return set(
                session.scalars(
                    select(ReferralRow.workflow_id).where(ReferralRow.workflow_id.in_(ids))
                )
            )

    def referrals(
        self,
        where: ReferralFilter = ReferralFilter(),
        *,
        limit: int = 100,
        after: str | None = None,
    ) -> list[ReferralRow]:
        """Newest received first (ties by workflow id); the page after the referral `after`
        (the last one of the previous page), so that pages neither skip nor repeat a row when
        referrals are archived between two reads. LookupError if `after` is not archived."""
        query = _filtered(select(ReferralRow), where)
        with Session(self.engine) as session:
            if after is not None:
                received = session.scalar(
                    select(ReferralRow.received_at).where(ReferralRow.workflow_id == after)
                )
                if received is None:
                    raise LookupError(f"no archived referral {after} to page after")
                query = query.where(
                    or_(
                        ReferralRow.received_at < received,
                        and_(ReferralRow.received_at == received, ReferralRow.workflow_id > after),
                    )
                )
            order = (ReferralRow.received_at.desc(), ReferralRow.workflow_id)
            return list(session.scalars(query.order_by(*order).limit(limit)))

    def history(self, workflow_id: str) -> ReferralRow | None:
        with Session(self.engine) as session:
            return session.scalar(
                select(ReferralRow)
                .where(ReferralRow.workflow_id == workflow_id)
                .options(selectinload(ReferralRow.transitions))
            )

    def events(
        self, *, after: int = 0, workflow_id: str | None = None, limit: int = 1000
    ) -> list[EventRow]:
        """Events in the order they were recorded, from the position ``after`` on."""
        query = select(EventRow).where(EventRow.position > after)
        if workflow_id is not None:
            query = query.where(EventRow.workflow_id == workflow_id)
        with Session(self.engine) as session:
            return list(session.scalars(query.order_by(EventRow.position).limit(limit)))

    def find(self, rfi_id: str, partner_id: str) -> ReferralRow | None:
        """The referral of an (RFI, partner) pair, whichever id scheme its run had."""
        with Session(self.engine) as session:
            return session.scalar(
                select(ReferralRow)
                .where(ReferralRow.rfi_id == rfi_id, ReferralRow.partner_id == partner_id)
                .options(selectinload(ReferralRow.transitions))
                .order_by(ReferralRow.received_at.desc())
                .limit(1)
            )

    def partner_referrals(
        self,
        partner_id: str,
        *,
        statuses: Collection[str] | None = None,
        updated_since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[ReferralRow]:
        """One partner's referrals (in one of ``statuses``, if given) with their transitions,
        the latest change first (ties by workflow id); the page after ``after``, the
        (updated_at, workflow id) of the last row of the previous page."""
        query = select(ReferralRow).where(ReferralRow.partner_id == partner_id)
        if statuses is not None:
            query = query.where(ReferralRow.status.in_(list(statuses)))
        if updated_since is not None:
            query = query.where(ReferralRow.updated_at >= updated_since)
        if after is not None:
            updated_at, workflow_id = after
            query = query.where(
                or_(
                    ReferralRow.updated_at < updated_at,
                    and_(
                        ReferralRow.updated_at == updated_at, ReferralRow.workflow_id > workflow_id
                    ),
                )
            )
        query = query.order_by(ReferralRow.updated_at.desc(), ReferralRow.workflow_id)
        with Session(self.engine) as session:
            return list(
                session.scalars(query.options(selectinload(ReferralRow.transitions)).limit(limit))
            )

    def partner_open(self, partner_id: str, limit: int = 500) -> list[ReferralRow]:
        """One partner's open referrals, the soonest due first (those without a deadline,
        Negotiating, last)."""
        query = (
            select(ReferralRow)
            .where(
                ReferralRow.partner_id == partner_id,
                ReferralRow.status.in_([str(s) for s in OPEN_STATUSES]),
            )
            .order_by(ReferralRow.due_at.is_(None), ReferralRow.due_at, ReferralRow.received_at)
            .limit(limit)
        )
        with Session(self.engine) as session:
            return list(session.scalars(query))

    def partners_of_rfi(self, rfi_id: str) -> set[str]:
        return {referral.partner_id for referral in self.referrals_of_rfi(rfi_id)}

    def referrals_of_rfi(self, rfi_id: str) -> list[RfiReferral]:
        """Each partner the RFI went to, with its referral's status as last archived."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(ReferralRow.partner_id, ReferralRow.status, ReferralRow.closed_at).where(
                    ReferralRow.rfi_id == rfi_id
                )
            )
            return [RfiReferral(*row) for row in rows]


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
    if where.flagged is not None:
        conditions.append(ReferralRow.flagged.is_(where.flagged))
    if where.reason_code is not None:
        coded = (
            and_(
                TransitionRow.reason_code.is_(None),
                TransitionRow.cause_name.in_([str(a) for a in REASONED_ACTIONS]),
            )
            if where.reason_code == UNSPECIFIED
            else TransitionRow.reason_code == where.reason_code
        )
        conditions.append(
            exists().where(TransitionRow.workflow_id == ReferralRow.workflow_id, coded)
        )
    return query.where(*conditions)


def archived_reason_code(transition: TransitionRow) -> str | None:
    """A transition's code as `history` shows it: ``unspecified`` for a refusal or a loss
    archived without one (every one before revision 0007)."""
    if transition.reason_code:
        return transition.reason_code
    return UNSPECIFIED if transition.cause_name in REASONED_ACTIONS else None


def _record_statements(dialect: str) -> tuple[Executable, Executable, Executable]:
    """Built once per store, in the two dialects the archive runs on (INSERT ... ON
    CONFLICT): the referral's upsert, guarded by its transition count, the insert of
    transitions that returns the seqs it added, and the insert of their events."""
    referral: sqlite.Insert | postgresql.Insert
    transitions: sqlite.Insert | postgresql.Insert
    events: sqlite.Insert | postgresql.Insert
    if dialect == "postgresql":
        referral, transitions = postgresql.insert(REFERRALS), postgresql.insert(TRANSITIONS)
        events = postgresql.insert(EVENTS)
    elif dialect == "sqlite":
        referral, transitions = sqlite.insert(REFERRALS), sqlite.insert(TRANSITIONS)
        events = sqlite.insert(EVENTS)
    else:
        raise ValueError(f"the archive runs on SQLite or PostgreSQL, not {dialect}")
    newer = referral.excluded
    upsert = referral.on_conflict_do_update(
        index_elements=[REFERRALS.c.workflow_id],
        set_={c.name: newer[c.name] for c in REFERRALS.c if c.name != "workflow_id"},
        where=REFERRALS.c.transition_count <= newer.transition_count,
    )
    insert = transitions.on_conflict_do_nothing(
        index_elements=[TRANSITIONS.c.workflow_id, TRANSITIONS.c.seq]
    ).returning(TRANSITIONS.c.seq)
    insert_events = events.on_conflict_do_nothing(index_elements=[EVENTS.c.event_id])
    return upsert, insert, insert_events


def _referral_values(workflow_id: str, view: StatusView) -> dict[str, Any]:
    last = view.transitions[-1] if view.transitions else None
    deal, customer = view.deal, view.customer
    return {
        "workflow_id": workflow_id,
        "rfi_id": view.rfi_id,
        "partner_id": view.partner_id,
        "region": view.region,
        "location": view.location,
        "need": view.overview.need,
        "company_size": view.overview.company_size,
        "status": str(view.status),
        "transition_count": len(view.transitions),
        "received_at": view.received_at,
        "started_at": view.started_at,
        "first_response_at": view.first_response_at,
        "updated_at": last.effective_at if last else view.received_at,
        "closed_at": last.effective_at if last and view.status in CLOSED_STATUSES else None,
        "due_at": view.deadline.due_at if view.deadline else None,
        "estimated_deal_value": deal.estimated_deal_value if deal else None,
        "currency": deal.currency if deal else None,
        "estimated_close_date": deal.estimated_close_date if deal else None,
        "final_deal_value": deal.final_deal_value if deal else None,
        # Contact details only once the partner said it was interested, as in the view.
        "customer_name": customer.name if customer else None,
        "customer_company": customer.company if customer else None,
        "customer_email": str(customer.email) if customer else None,
        "customer_phone": customer.phone if customer else None,
        # The lifecycle asks for a lead unless the referral started past its respond deadline.
        "offered": any(email.kind == EmailKind.LEAD for email in view.emails),
        "flagged": any(t.reason_code == DeclineReason.SPAM_OR_ABUSE for t in view.transitions),
    }


def _transition_values(workflow_id: str, transition: Transition) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "seq": transition.seq,
        "from_status": str(transition.from_),
        "to_status": str(transition.to),
        "effective_at": transition.effective_at,
        "processed_at": transition.processed_at,
        "cause_kind": str(transition.cause.kind),
        "cause_name": transition.cause.name,
        "reason": transition.reason,
        "reason_code": transition.reason_code,
        "door": str(transition.via.door) if transition.via else None,
        "api_key_id": transition.via.api_key_id if transition.via else None,
    }


def event_values(event: ReferralEvent) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "workflow_id": event.data.workflow_id,
        "seq": event.data.seq,
        "type": event.type,
        "occurred_at": event.timestamp,
        "body": event.body(),
    }
