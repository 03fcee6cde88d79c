"""The partner web service: partners' API keys, the first answers to API requests sent
with an Idempotency-Key, the inbox's used sign-in links, each referral's running deadline
with an index to list a partner's referrals by when they last changed, and the door each
action came through.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("referrals", sa.Column("due_at", TIME))
    op.add_column("referral_transitions", sa.Column("door", sa.String(16)))
    op.add_column("referral_transitions", sa.Column("api_key_id", sa.String(40)))
    op.create_index("ix_referrals_partner_updated", "referrals", ["partner_id", "updated_at"])
    op.create_table(
        "partner_api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_used_at", TIME),
        sa.Column("revoked_at", TIME),
    )
    op.create_index("ix_partner_api_keys_partner", "partner_api_keys", ["partner_id"])
    op.create_table(
        "api_idempotent_requests",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer()),
        sa.Column("body", sa.Text()),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_api_idempotent_requests_created", "api_idempotent_requests", ["created_at"])
    op.create_table(
        "used_sign_in_links",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column("used_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
    )
    op.create_index("ix_used_sign_in_links_expires", "used_sign_in_links", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_sign_in_links_expires", "used_sign_in_links")
    op.drop_table("used_sign_in_links")
    op.drop_index("ix_api_idempotent_requests_created", "api_idempotent_requests")
    op.drop_table("api_idempotent_requests")
    op.drop_index("ix_partner_api_keys_partner", "partner_api_keys")
    op.drop_table("partner_api_keys")
    op.drop_index("ix_referrals_partner_updated", "referrals")
    op.drop_column("referrals", "due_at")
    op.drop_column("referral_transitions", "api_key_id")
    op.drop_column("referral_transitions", "door")
