"""Which events each webhook endpoint has to hear, and where each delivery stands.

The events are the archive's outbox (`referral_events`), read in the order they were
recorded. A delivery row says where one event stands with one endpoint: `pending` (failed,
with its next try), `delivered`, or `dead` (refused for good, or past the retry
schedule). An event the endpoint wants that has no row was not tried yet: it is pending too.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar, cast

from sqlalchemy import Engine, Executable, Select, Table, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from archive.schema import DeliveryRow, EventRow, ReferralRow, WebhookEndpointRow
from archive.webhooks import Endpoint

DELIVERIES = cast(Table, DeliveryRow.__table__)
T = TypeVar("T")

DeliveryStatus = Literal["pending", "delivered", "dead"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "delivered", "dead")
# Below every position: events recorded for referrals archived before revision 0003 have
# positions of 0 and less (migration 0006), which only a replay reads.
BEFORE_ALL = -(2**31)


@dataclass(frozen=True)
class EventFilter:
    """Which recorded events to send: after a position, up to another (a replay's end),
    received from a moment on, of one RFI."""

    after: int
    until: int | None = None
    since: datetime | None = None
    rfi_id: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One try of one event: how it ended, and when the next one is due if it is pending."""

    position: int
    status: DeliveryStatus
    at: datetime
    code: int | None = None
    error: str | None = None
    next_try_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryReport:
    """An event as `events list` shows it for one endpoint."""

    endpoint_id: str
    event_id: str
    type: str
    workflow_id: str
    occurred_at: datetime
    status: DeliveryStatus
    attempts: int
    last_code: int | None
    last_error: str | None
    next_try_at: datetime | None


class DeliveryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._record = _record_statement(engine.dialect.name)

    def starting_position(self, endpoint_id: str) -> int | None:
        """Where a new endpoint starts hearing: after the events recorded before it was
        added. None if there is no such endpoint."""
        with Session(self.engine) as session:
            return session.scalar(
                select(WebhookEndpointRow.from_position).where(WebhookEndpointRow.id == endpoint_id)
            )

    def last_position(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.max(EventRow.position))) or 0

    def events(self, endpoint: Endpoint, where: EventFilter, limit: int) -> list[EventRow]:
        """The next events the endpoint wants, in the order they were recorded."""
        query = _wanted(select(EventRow), endpoint, where)
        with Session(self.engine) as session:
            return list(session.scalars(query.order_by(EventRow.position).limit(limit)))

    def count(self, endpoint: Endpoint, where: EventFilter) -> int:
        query = _wanted(select(func.count()).select_from(EventRow), endpoint, where)
        with Session(self.engine) as session:
            return session.scalar(query) or 0

    def at(self, positions: Sequence[int]) -> list[EventRow]:
        with Session(self.engine) as session:
            rows = session.scalars(select(EventRow).where(EventRow.position.in_(positions)))
            return sorted(rows, key=lambda row: row.position)

    def settled(self, endpoint_id: str, positions: Sequence[int]) -> set[int]:
        """Which of these events the endpoint has accepted already, or were given up on."""
        with Session(self.engine) as session:
            return set(
                session.scalars(
                    select(DeliveryRow.position).where(
                        DeliveryRow.endpoint_id == endpoint_id,
                        DeliveryRow.position.in_(positions),
                        DeliveryRow.status.in_(("delivered", "dead")),
                    )
                )
            )

    def record(self, endpoint_id: str, attempts: Sequence[Attempt]) -> None:
        """Write the outcome of these tries, counting each one, in one transaction."""
        if not attempts:
            return
        with self.engine.begin() as connection:
            connection.execute(
                self._record,
                [
                    {
                        "endpoint_id": endpoint_id,
                        "position": a.position,
                        "status": a.status,
                        "attempts": 1,
                        "last_code": a.code,
                        "last_error": a.error,
                        "last_try_at": a.at,
                        "next_try_at": a.next_try_at,
                    }
                    for a in attempts
                ],
            )

    def report(
        self,
        endpoint: Endpoint,
        *,
        from_position: int,
        rfi_id: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[DeliveryReport]:
        """The endpoint's events, newest first: those recorded since it was added, and
        any older one a replay sent."""
        tried = and_(
            DeliveryRow.endpoint_id == endpoint.id, DeliveryRow.position == EventRow.position
        )
        query = (
            select(EventRow, DeliveryRow)
            .outerjoin(DeliveryRow, tried)
            .where(or_(EventRow.position > from_position, DeliveryRow.position.is_not(None)))
        )
        if endpoint.events:
            query = query.where(EventRow.type.in_(endpoint.events))
        if rfi_id is not None:
            query = query.where(EventRow.workflow_id.in_(_of_rfi(rfi_id)))
        if status == "pending":
            query = query.where(or_(DeliveryRow.status.is_(None), DeliveryRow.status == "pending"))
        elif status is not None:
            query = query.where(DeliveryRow.status == status)
        query = query.order_by(EventRow.position.desc()).limit(limit)
        with Session(self.engine) as session:
            return [_report(endpoint.id, event, row) for event, row in session.execute(query)]


def _wanted(query: Select[T], endpoint: Endpoint, where: EventFilter) -> Select[T]:
    query = query.where(EventRow.position > where.after)
    if endpoint.events:
        query = query.where(EventRow.type.in_(endpoint.events))
    if where.until is not None:
        query = query.where(EventRow.position <= where.until)
    if where.since is not None:
        query = query.where(EventRow.occurred_at >= where.since)
    if where.rfi_id is not None:
        query = query.where(EventRow.workflow_id.in_(_of_rfi(where.rfi_id)))
    return query


def _of_rfi(rfi_id: str) -> Select[str]:
    return select(ReferralRow.workflow_id).where(ReferralRow.rfi_id == rfi_id)


def _report(endpoint_id: str, event: EventRow, row: DeliveryRow | None) -> DeliveryReport:
    return DeliveryReport(
        endpoint_id=endpoint_id,
        event_id=event.event_id,
        type=event.type,
        workflow_id=event.workflow_id,
        occurred_at=event.occurred_at,
        status=cast(DeliveryStatus, row.status) if row else "pending",
        attempts=row.attempts if row else 0,
        last_code=row.last_code if row else None,
        last_error=row.last_error if row else None,
        next_try_at=row.next_try_at if row else None,
    )


def _record_statement(dialect: str) -> Executable:
    """An upsert that counts the attempt and keeps the latest outcome."""
    insert: sqlite.Insert | postgresql.Insert
    if dialect == "postgresql":
        insert = postgresql.insert(DELIVERIES)
    elif dialect == "sqlite":
        insert = sqlite.insert(DELIVERIES)
    else:
        raise ValueError(f"the archive runs on SQLite or PostgreSQL, not {dialect}")
    newer = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[DELIVERIES.c.endpoint_id, DELIVERIES.c.position],
        set_={
            "status": newer.status,
            "attempts": DELIVERIES.c.attempts + 1,
            "last_code": newer.last_code,
            "last_error": newer.last_error,
            "last_try_at": newer.last_try_at,
            "next_try_at": newer.next_try_at,
        },
    )
