"""Reason codes: the partner's code for no_thanks, decline and lost, and flagged RFIs.

Transitions archived before this revision have no code: they count as `unspecified`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: SQLite's batch mode would copy `referrals`, which
    # other tables' foreign keys refer to.
    op.add_column("referral_transitions", sa.Column("reason_code", sa.String(32)))
    op.add_column(
        "referrals", sa.Column("flagged", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index("ix_referrals_flagged", "referrals", ["flagged"])


def downgrade() -> None:
    op.drop_index("ix_referrals_flagged", "referrals")
    op.drop_column("referrals", "flagged")  # SQLite 3.35 and later drop a column in place
    op.drop_column("referral_transitions", "reason_code")
