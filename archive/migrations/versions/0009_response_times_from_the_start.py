"""Each referral's start, when its lead went out: response times count from it rather
than from the RFI's `received_at`, which a backend may set up to a day ahead.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("referrals", sa.Column("started_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("referrals", "started_at")
