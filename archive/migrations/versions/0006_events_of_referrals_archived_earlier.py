"""Events for the referrals archived before events were recorded (revision 0003).

Each referral with no event gets its `referral.created` and one per archived transition,
built from its rows as the archive would have built them from its view. They take positions
below every recorded event (0 and less, the newest referral nearest 0, each referral's in
order): live delivery reads from an endpoint's start, which is never below 0, so no
endpoint hears them as new; `referrals events replay` sends them with the rest.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from archive.events import ArchivedTransition, archived_events
from archive.store import event_values

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the tables as revision 0005 left them (the columns read or written).
MONEY = sa.Numeric().with_variant(sa.String(40), "sqlite")
TIME = sa.DateTime(timezone=True)
referrals = sa.table(
    "referrals",
    sa.column("workflow_id", sa.String),
    sa.column("rfi_id", sa.String),
    sa.column("partner_id", sa.String),
    sa.column("received_at", TIME),
    sa.column("estimated_deal_value", MONEY),
    sa.column("currency", sa.String),
    sa.column("estimated_close_date", sa.Date),
    sa.column("final_deal_value", MONEY),
)
transitions = sa.table(
    "referral_transitions",
    sa.column("workflow_id", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("from_status", sa.String),
    sa.column("to_status", sa.String),
    sa.column("cause_kind", sa.String),
    sa.column("cause_name", sa.String),
    sa.column("effective_at", TIME),
    sa.column("processed_at", TIME),
)
events = sa.table(
    "referral_events",
    sa.column("position", sa.Integer),
    sa.column("event_id", sa.String),
    sa.column("workflow_id", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("type", sa.String),
    sa.column("occurred_at", TIME),
    sa.column("body", sa.Text),
)
CHUNK = 500


def upgrade() -> None:
    connection = op.get_bind()
    lowest = connection.scalar(sa.select(sa.func.min(events.c.position)))
    next_position = min(lowest or 1, 1) - 1
    without_events = (
        sa.select(referrals)
        .where(~sa.exists().where(events.c.workflow_id == referrals.c.workflow_id))
        .order_by(referrals.c.received_at.desc(), referrals.c.workflow_id.desc())
    )
    rows = connection.execute(without_events).all()
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        archived = _transitions(connection, [row.workflow_id for row in chunk])
        values = []
        for row in chunk:
            built = archived_events(
                row.workflow_id,
                row.rfi_id,
                row.partner_id,
                _utc(row.received_at),
                _deal(row),
                archived.get(row.workflow_id, []),
            )
            first = next_position - len(built) + 1
            values += [
                {"position": first + n, **event_values(event)} for n, event in enumerate(built)
            ]
            next_position = first - 1
        if values:
            connection.execute(sa.insert(events), values)


def downgrade() -> None:
    op.execute(sa.delete(events).where(events.c.position <= 0))


def _transitions(
    connection: sa.Connection, workflow_ids: list[str]
) -> dict[str, list[ArchivedTransition]]:
    found: dict[str, list[ArchivedTransition]] = {}
    query = sa.select(transitions).where(transitions.c.workflow_id.in_(workflow_ids))
    for t in connection.execute(query):
        found.setdefault(t.workflow_id, []).append(
            ArchivedTransition(
                seq=t.seq,
                from_status=t.from_status,
                to_status=t.to_status,
                cause_kind=t.cause_kind,
                cause_name=t.cause_name,
                effective_at=_utc(t.effective_at),
                processed_at=_utc(t.processed_at),
            )
        )
    return found


def _deal(row: sa.Row[tuple[object, ...]]) -> SimpleNamespace | None:
    if row.estimated_deal_value is None:
        return None
    return SimpleNamespace(
        estimated_deal_value=Decimal(str(row.estimated_deal_value)),
        currency=row.currency,
        estimated_close_date=row.estimated_close_date,
        final_deal_value=(
            None if row.final_deal_value is None else Decimal(str(row.final_deal_value))
        ),
    )


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
