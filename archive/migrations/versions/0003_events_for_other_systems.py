"""Events for other systems: one per transition and one per start, written with them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Referrals archived before this revision have no events: the first write of a
    # referral that is still running records all of its events from then on.
    op.create_table(
        "referral_events",
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column(
            "workflow_id", sa.String(160), sa.ForeignKey("referrals.workflow_id"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_referral_events_workflow_seq", "referral_events", ["workflow_id", "seq"])


def downgrade() -> None:
    op.drop_table("referral_events")
