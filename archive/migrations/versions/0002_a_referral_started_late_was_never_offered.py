"""A referral started after its respond deadline was never offered to its partner.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows already archived stay offered, counted as before: a late start and a respond
    # deadline missed in time left the same row, so none of them can be told apart.
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(
            sa.Column("offered", sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("offered")
