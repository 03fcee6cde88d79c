"""Webhook deliveries: where each event stands with each endpoint.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "endpoint_id",
            sa.String(40),
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "position", sa.Integer(), sa.ForeignKey("referral_events.position"), primary_key=True
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_try_at", TIME, nullable=False),
        sa.Column("next_try_at", TIME),
    )
    op.create_index("ix_webhook_deliveries_status", "webhook_deliveries", ["endpoint_id", "status"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
