"""Create the referral archive: referrals and their transitions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of archive.schema's types: SQLite keeps money as text so that it stays exact.
MONEY = sa.Numeric().with_variant(sa.String(40), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("workflow_id", sa.String(160), primary_key=True),
        sa.Column("rfi_id", sa.String(64), nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("location", sa.String(200)),
        sa.Column("need", sa.Text(), nullable=False),
        sa.Column("company_size", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("transition_count", sa.Integer(), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("first_response_at", TIME),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("closed_at", TIME),
        sa.Column("estimated_deal_value", MONEY),
        sa.Column("currency", sa.String(3)),
        sa.Column("estimated_close_date", sa.Date()),
        sa.Column("final_deal_value", MONEY),
        sa.Column("customer_name", sa.String(200)),
        sa.Column("customer_company", sa.String(200)),
        sa.Column("customer_email", sa.String(320)),
        sa.Column("customer_phone", sa.String(200)),
    )
    op.create_index("ix_referrals_rfi_id", "referrals", ["rfi_id"])
    op.create_index("ix_referrals_partner_received", "referrals", ["partner_id", "received_at"])
    op.create_index("ix_referrals_status", "referrals", ["status"])
    op.create_index("ix_referrals_region", "referrals", ["region"])
    op.create_index("ix_referrals_received_at", "referrals", ["received_at"])
    op.create_table(
        "referral_transitions",
        sa.Column(
            "workflow_id",
            sa.String(160),
            sa.ForeignKey("referrals.workflow_id"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("effective_at", TIME, nullable=False),
        sa.Column("processed_at", TIME, nullable=False),
        sa.Column("cause_kind", sa.String(16), nullable=False),
        sa.Column("cause_name", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("referral_transitions")
    op.drop_table("referrals")
