"""The archive's tables (SQLAlchemy 2). Alembic migrations in archive/migrations create them."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """Money kept exact, as reported: unconstrained NUMERIC (which keeps the scale it was
    given: 1000 stays 1000, 125000.10 stays 125000.10), decimal text on SQLite."""

    impl = Numeric()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class Base(DeclarativeBase):
    pass


class ReferralRow(Base):
    """One referral as it stands now; `transition_count` orders writes that arrive late."""

    __tablename__ = "referrals"

    workflow_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    rfi_id: Mapped[str] = mapped_column(String(64))
    partner_id: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(String(200))
    need: Mapped[str] = mapped_column(Text)
    company_size: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    transition_count: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When the worker started it (its lead went out): response times count from here.
    # Rows written before revision 0009 have none, and count from `received_at`.
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The running deadline as of the last write (deadlines move only with transitions);
    # rows written before revision 0008 have none until their next write.
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    estimated_deal_value: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    currency: Mapped[str | None] = mapped_column(String(3))
    estimated_close_date: Mapped[date | None] = mapped_column(Date)
    final_deal_value: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_company: Mapped[str | None] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(200))
    # False when the referral started after its respond deadline and was Missed at once,
    # its partner never sent the lead: such a referral counts nowhere in its statistics.
    offered: Mapped[bool] = mapped_column(Boolean, server_default=true())
    # The partner said spam_or_abuse: the RFI waits for the marketplace's review.
    flagged: Mapped[bool] = mapped_column(Boolean, server_default=false())

    transitions: Mapped[list["TransitionRow"]] = relationship(
        back_populates="referral", order_by="TransitionRow.seq"
    )

    __table_args__ = (
        Index("ix_referrals_rfi_id", "rfi_id"),
        Index("ix_referrals_partner_received", "partner_id", "received_at"),
        Index("ix_referrals_status", "status"),
        Index("ix_referrals_region", "region"),
        Index("ix_referrals_received_at", "received_at"),
        Index("ix_referrals_flagged", "flagged"),
        Index("ix_referrals_partner_updated", "partner_id", "updated_at"),
    )


class TransitionRow(Base):
    """One transition, keyed on (workflow id, seq) so that no retry or replay writes it twice."""

    __tablename__ = "referral_transitions"

    workflow_id: Mapped[str] = mapped_column(
        String(160), ForeignKey("referrals.workflow_id"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    effective_at: Mapped[datetime] = mapped_column(UtcDateTime)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cause_kind: Mapped[str] = mapped_column(String(16))
    cause_name: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    reason_code: Mapped[str | None] = mapped_column(String(32))  # rows before 0007: none
    # The door an action came through (rows before 0008, and deadlines: none).
    door: Mapped[str | None] = mapped_column(String(16))
    api_key_id: Mapped[str | None] = mapped_column(String(40))

    referral: Mapped[ReferralRow] = relationship(back_populates="transitions")


class EventRow(Base):
    """An event for other systems, written with its transition (a transactional outbox).
    `position` orders events as they were recorded; `event_id`, `{workflow_id}.{seq}`,
    keeps any retry or replay from storing one twice."""

    __tablename__ = "referral_events"

    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(160), ForeignKey("referrals.workflow_id"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    body: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_referral_events_workflow_seq", "workflow_id", "seq"),)


class WebhookEndpointRow(Base):
    """An endpoint other systems registered to hear events. Its secrets are sealed with
    the codec keys when they are set; the previous one keeps signing until
    `previous_until`, so that a receiver can switch without losing an event."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)  # comma-separated event types; "" for all
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Events recorded at or before this position are not sent (replay sends them).
    from_position: Mapped[int] = mapped_column(Integer)


class PartnerKeyRow(Base):
    """A partner's API key: only its SHA-256 is kept (the key is 32 random bytes, shown
    once); revoked keys stay listed, refused."""

    __tablename__ = "partner_api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_partner_api_keys_partner", "partner_id"),)


class IdempotentRequestRow(Base):
    """The first answer to an API request sent with an `Idempotency-Key`, kept 24 hours:
    the same key and body get it again instead of acting twice. `status` is null while
    the first request is still being answered."""

    __tablename__ = "api_idempotent_requests"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_api_idempotent_requests_created", "created_at"),)


class UsedSignInRow(Base):
    """A partner inbox's sign-in link that was used: refused from then on, until it expires
    (after which the signature refuses it anyway, and the row is deleted)."""

    __tablename__ = "used_sign_in_links"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_used_sign_in_links_expires", "expires_at"),)


class DeliveryRow(Base):
    """Where one event stands with one endpoint: pending (with its next try), delivered
    or dead (given up: refused for good, or past the retry schedule). An event with no
    row has not been tried yet."""

    __tablename__ = "webhook_deliveries"

    endpoint_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(
        Integer, ForeignKey("referral_events.position"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_try_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_try_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_webhook_deliveries_status", "endpoint_id", "status"),)
