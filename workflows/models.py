"""The referral domain's wire types, shared by the workflow, activities, command and tests.

Everything other systems send or read is defined here: the workflow input, the
action payloads, the status view and the activity inputs. Times are ISO 8601
with an offset and are kept in UTC; money is an exact ``Decimal`` (a JSON
number or a decimal string in, a decimal string out); dates are ``YYYY-MM-DD``.
Text is a JSON string without control characters or lone surrogates (long texts keep
line breaks and tabs); an email address is kept in its ASCII form.
"""

import functools
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from email_validator import validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    StringConstraints,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic.networks import validate_email as pydantic_validate_email
from pydantic_core import PydanticCustomError
from pydantic_extra_types.currency_code import ISO4217


class Status(StrEnum):
    NEW = "New"
    EVALUATING = "Evaluating"
    NEGOTIATING = "Negotiating"
    WON = "Won"
    LOST = "Lost"
    SKIPPED = "Skipped"
    MISSED = "Missed"
    DECLINED = "Declined"
    EXPIRED = "Expired"


class Action(StrEnum):
    INTERESTED = "interested"
    NO_THANKS = "no_thanks"
    ACCEPT = "accept"
    DECLINE = "decline"
    WON = "won"
    LOST = "lost"


class Door(StrEnum):
    """Where an action came in: a backend through Temporal, or a partner through the web
    service (an email's link, the inbox, the API)."""

    TEMPORAL = "temporal"
    EMAIL_LINK = "email_link"
    INBOX = "inbox"
    API = "api"


class DeadlineKind(StrEnum):
    RESPOND = "respond"
    DECIDE = "decide"


class EmailKind(StrEnum):
    LEAD = "lead"
    REMINDER = "reminder"
    LAST_CALL = "last_call"
    DETAILS = "details"
    REROUTE = "reroute"


class EmailOutcome(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    # Not sent, by design: a reroute while another partner of the RFI has the request.
    WITHHELD = "withheld"


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


def _text_only(what: str) -> Any:
    """Refuse numbers that lax pydantic would read as timestamps or seconds."""

    def check(value: Any) -> Any:
        if isinstance(value, int | float | Decimal):
            raise ValueError(f"expected {what} as an ISO 8601 string")
        return value

    return BeforeValidator(check)


def _decimal_text(value: Any) -> Any:
    if isinstance(value, bool) or (
        # ASCII digits: `\d` would take "١٢٣" (Arabic-Indic) and store it as 123.
        isinstance(value, str) and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value.strip())
    ):
        raise ValueError("expected an amount as a JSON number or a decimal string like 1250.50")
    return value.strip() if isinstance(value, str) else value


def _iso_date_only(value: Any) -> Any:
    # Lax pydantic would also take timestamps and datetimes; the contract is YYYY-MM-DD.
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected a date as YYYY-MM-DD")
    if not isinstance(value, str | date):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


# C0 and C1 controls (Unicode category Cc) and lone surrogates, which UTF-8, and so
# PostgreSQL, cannot store; long texts keep their line breaks and tabs.
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _no_controls(forbidden: re.Pattern[str]) -> Any:
    """Refuse text holding a code point of `forbidden`, naming the first one."""

    def check(value: Any) -> Any:
        found = forbidden.search(value) if isinstance(value, str) else None
        if found:
            code = ord(found.group())
            what = "lone surrogate" if 0xD800 <= code <= 0xDFFF else "control character"
            raise PydanticCustomError(
                "control_character",
                "{what} {code} is not allowed",
                {"what": what, "code": f"U+{code:04X}"},
            )
        return value

    return BeforeValidator(check)


@functools.lru_cache(maxsize=4096)  # the same addresses come back in every activity input
def _email(value: str) -> str:
    """The address as it is sent: checked and normalized as pydantic's `EmailStr` does, with
    an internationalized domain in its ASCII (IDNA) form. Cached whole, so that an address
    the referral carries is checked once, not again in every payload that holds it."""
    normalized = pydantic_validate_email(value)[1]
    ascii_email = validate_email(normalized, check_deliverability=False).ascii_email
    if ascii_email is None:  # few mail servers take a non-ASCII local part (SMTPUTF8)
        raise PydanticCustomError(
            "email_ascii",
            "value is not a valid email address: only ASCII characters are allowed before the @",
        )
    return ascii_email


UtcDatetime = Annotated[AwareDatetime, _text_only("a time"), AfterValidator(_to_utc)]
IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Text = Annotated[
    str,
    _no_controls(CONTROLS),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
]
LongText = Annotated[
    str,
    _no_controls(CONTROLS_BUT_LINES),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
]
Email = Annotated[
    str,
    _no_controls(CONTROLS),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email"}),
]
# Written as plain decimal text ("25000", never "2.5E+4") in the status view's JSON.
ExactAmount = Annotated[
    Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")
]
Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    Field(gt=0, max_digits=20, decimal_places=4, allow_inf_nan=False),
]
MAX_DURATION = timedelta(days=366)
PositiveDuration = Annotated[
    timedelta, _text_only("a duration"), Field(gt=timedelta(0), le=MAX_DURATION)
]


class WireModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, serialize_by_alias=True, validate_by_name=True
    )


def referral_workflow_id(rfi_id: str, partner_id: str) -> str:
    """One id per (RFI, partner): ':' is outside the ids' characters, so no two pairs meet."""
    return f"referral:{rfi_id}:{partner_id}"


def parse_referral_workflow_id(workflow_id: str) -> tuple[str, str] | None:
    """The (RFI id, partner id) of a ``referral_workflow_id``; None for any other id."""
    prefix, _, rest = workflow_id.partition(":")
    rfi_id, separator, partner_id = rest.partition(":")
    if prefix != "referral" or not separator or not _ID.fullmatch(rfi_id):
        return None
    return (rfi_id, partner_id) if _ID.fullmatch(partner_id) else None


_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def legacy_referral_workflow_id(rfi_id: str, partner_id: str) -> str:
    """The id of runs started before ids were injective; '-' is inside the ids' characters."""
    return f"referral-{rfi_id}-{partner_id}"


# --- Workflow input -------------------------------------------------------------------------


class Customer(WireModel):
    name: Text
    company: Text
    email: Email
    phone: Text | None = None


class Deadlines(WireModel):
    respond_within: PositiveDuration = timedelta(hours=72)
    decide_within: PositiveDuration = timedelta(days=7)
    remind_after: PositiveDuration = timedelta(hours=24)
    last_call_before: PositiveDuration = timedelta(hours=24)  # before the decide deadline


class Rfi(WireModel):
    id: Id
    received_at: UtcDatetime
    region: Id
    location: Text | None = None
    need: LongText
    company_size: Text
    customer: Customer
    deadlines: Deadlines = Deadlines()

    @model_validator(mode="after")
    def _deadlines_fit_the_calendar(self) -> "Rfi":
        try:
            self.received_at + 3 * MAX_DURATION
        except OverflowError:
            raise ValueError("received_at is too far in the future") from None
        return self


class ReferralInput(WireModel):
    rfi: Rfi
    partner_id: Id
    # Set by the workflow alone, when a long or busy run continues as new.
    continued: "Continuation | None" = None

    @model_serializer(mode="wrap")
    def _continued_only_when_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if self.continued is None:
            del data["continued"]  # a start's input is the contract's two keys
        return data

    @property
    def workflow_id(self) -> str:
        return referral_workflow_id(self.rfi.id, self.partner_id)


# --- Action payloads ------------------------------------------------------------------------


class Via(WireModel):
    """The door an action came through, and the API key for ``api``: no personal data."""

    door: Door
    api_key_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,40}$")] | None = None


class ActionPayload(WireModel):
    """An action's JSON argument; the base class is the empty payload of ``interested``.
    ``via`` is the partner web service's: backends leave it out (``temporal``)."""

    via: Via | None = None


class DeclineReason(StrEnum):
    """Why a partner says *no thanks* or declines (the README maps them to Partner
    Center's and AWS Partner Central's codes)."""

    NOT_OUR_EXPERTISE = "not_our_expertise"
    NO_CAPACITY = "no_capacity"
    CUSTOMER_NEED_UNCLEAR = "customer_need_unclear"
    TIMELINE_TOO_SHORT = "timeline_too_short"
    BUDGET_TOO_SMALL = "budget_too_small"
    REGION_NOT_SERVED = "region_not_served"
    DUPLICATE = "duplicate"
    SPAM_OR_ABUSE = "spam_or_abuse"  # flags the RFI for review; the customer is not rerouted
    OTHER = "other"


class LossReason(StrEnum):
    """Why a deal in negotiation was lost."""

    BUDGET_INSUFFICIENT = "budget_insufficient"
    CUSTOMER_UNRESPONSIVE = "customer_unresponsive"
    CHOSE_ANOTHER_VENDOR = "chose_another_vendor"
    REQUIREMENTS_NOT_MET = "requirements_not_met"
    TIMELINE_TOO_SHORT = "timeline_too_short"
    NO_DECISION = "no_decision"
    OTHER = "other"


UNSPECIFIED = "unspecified"  # how a refusal or a loss without a code is counted
REASON_CODES = tuple(dict.fromkeys([*map(str, DeclineReason), *map(str, LossReason), UNSPECIFIED]))


class ReasonPayload(ActionPayload):
    """The payload of ``no_thanks``, ``decline`` and ``lost``: a free-text reason, which
    stays with the marketplace, and a code it can count (``other`` needs the text)."""

    reason: LongText | None = None
    reason_code: DeclineReason | LossReason | None = None

    @model_validator(mode="after")
    def _other_is_explained(self) -> "ReasonPayload":
        if self.reason_code == "other" and not (self.reason and self.reason.strip()):
            raise ValueError("reason_code 'other' needs a reason")
        return self


class DeclinePayload(ReasonPayload):
    reason_code: DeclineReason | None = None


class LossPayload(ReasonPayload):
    reason_code: LossReason | None = None


class AcceptPayload(ActionPayload):
    estimated_deal_value: Money
    currency: ISO4217
    estimated_close_date: IsoDate


class WonPayload(ActionPayload):
    final_deal_value: Money | None = None


PAYLOAD_TYPES: dict[Action, type[ActionPayload]] = {
    Action.INTERESTED: ActionPayload,
    Action.NO_THANKS: DeclinePayload,
    Action.ACCEPT: AcceptPayload,
    Action.DECLINE: DeclinePayload,
    Action.WON: WonPayload,
    Action.LOST: LossPayload,
}


# --- Partner directory and email activities -------------------------------------------------


class ContactLookup(WireModel):
    partner_id: Id
    region: Id
    location: str | None = None


class PartnerContact(WireModel):
    partner_id: Id
    partner_name: Text
    contact_name: Text
    contact_email: Email
    region: Id
    location: Text | None = None


class EmailRfi(WireModel):
    """What an email shows of its RFI: the overview, and the customer's contact only in the
    emails that may carry it (the details, once the partner is interested, and the
    customer's own reroute). Requests recorded before carried the whole RFI: what they hold
    besides is ignored, so that their retries and the runs that inherit them still send."""

    model_config = ConfigDict(extra="ignore")

    region: Id
    location: Text | None = None
    need: LongText
    company_size: Text
    customer: Customer | None = None

    @classmethod
    def of(cls, rfi: Rfi, *, with_customer: bool) -> "EmailRfi":
        """Taken from an RFI the referral accepted, as it stands: not validated again, so
        that one accepted under earlier rules still makes its emails in the workflow."""
        return cls.model_construct(
            region=rfi.region,
            location=rfi.location,
            need=rfi.need,
            company_size=rfi.company_size,
            customer=rfi.customer if with_customer else None,
        )


class EmailRequest(WireModel):
    """One email the lifecycle asked for; ``id`` is stable across retries and replays."""

    id: str
    kind: EmailKind
    to: str
    status: Status
    rfi: EmailRfi
    partner: PartnerContact
    due_at: UtcDatetime | None = None
    # Reroutes only: other partners to suggest, best first; None when they are unknown.
    alternatives: list[str] | None = None


class SuggestionRequest(WireModel):
    """Who else could serve this RFI: the partners it went to are left out."""

    rfi_id: Id
    partner_id: Id
    region: Id
    location: str | None = None
    ended_at: UtcDatetime | None = None  # when this referral ended, if it has


class CustomerOutlook(WireModel):
    """What the customer of a referral that ended should hear: the RFI's other partners
    now engaged with it (Evaluating, Negotiating or Won) and those that passed on it
    (Skipped, Missed, Declined, Expired), by id; and partners to suggest, by name."""

    alternatives: list[str]
    engaged: list[Id] = []
    passed: list[Id] = []
    # Of those that passed, the ones that ended after this referral (at the same moment:
    # a greater partner id): their reroute tells the customer.
    passed_after: list[Id] = []


class EmailReceipt(WireModel):
    id: str
    delivered_by: str
    reference: str


# --- The status view (query `status`, update results, workflow result) -----------------------


class DeadlineView(WireModel):
    kind: DeadlineKind
    due_at: UtcDatetime


class Overview(WireModel):
    need: str
    company_size: str
    region: str
    location: str | None


class Deal(WireModel):
    estimated_deal_value: ExactAmount
    currency: str
    estimated_close_date: date
    final_deal_value: ExactAmount | None = None


class Cause(WireModel):
    kind: Literal["action", "deadline"]
    name: str


class Transition(WireModel):
    seq: int
    from_: Status = Field(alias="from")
    to: Status
    effective_at: UtcDatetime
    processed_at: UtcDatetime
    cause: Cause
    reason: str | None = None
    reason_code: str | None = None  # DeclineReason or LossReason, as the partner gave it
    via: Via | None = None  # actions only; transitions recorded before doors have none


class RejectedAction(WireModel):
    action: str
    at: UtcDatetime
    status: Status
    reason: str


class EmailRecord(WireModel):
    id: str
    kind: EmailKind
    to: str
    outcome: EmailOutcome
    error: str | None = None


class StatusView(WireModel):
    rfi_id: str
    partner_id: str
    status: Status
    region: str
    location: str | None
    received_at: UtcDatetime
    # When the worker started the referral: the partner's contact found and its lead sent
    # (unless the respond deadline had passed); response times count from here.
    started_at: UtcDatetime | None = None
    first_response_at: UtcDatetime | None
    deadline: DeadlineView | None
    overview: Overview
    customer: Customer | None
    deal: Deal | None
    transitions: list[Transition]
    rejected_actions: list[RejectedAction]
    emails: list[EmailRecord]


# --- What a run hands to the next when it continues as new -----------------------------------


class PendingEmail(WireModel):
    """An email the lifecycle asked for that has no final outcome yet, with its retry budget."""

    request: EmailRequest
    give_up_at: UtcDatetime
    unknown_outcomes: int = 0  # attempts whose answer never came: each may have been a copy
    suggestions_asked: bool = False  # reroutes: alternatives looked up (None: unknown in time)
    next_attempt_at: UtcDatetime | None = None  # after an unknown outcome, not before


class QueuedAction(WireModel):
    """An action that arrived as a signal while the referral was starting, its payload
    checked; whether the state allows it is judged once the referral has started."""

    name: str
    argument: Any = None
    at: UtcDatetime


class ReferralState(WireModel):
    """Everything the lifecycle knows beyond its input, exactly as the last run left it."""

    status: Status
    partner: PartnerContact | None
    started_at: UtcDatetime | None
    entered_at: UtcDatetime
    first_response_at: UtcDatetime | None
    deal: Deal | None
    transitions: list[Transition]
    rejected_actions: list[RejectedAction]
    emails: list[EmailRecord]
    reminder_pending: bool
    last_call_pending: bool = False  # runs before the last call existed carry none


class Continuation(WireModel):
    state: ReferralState
    pending_emails: list[PendingEmail] = []
    queued_actions: list[QueuedAction] = []
    archived: int = -1  # transitions in the archive; -1 before the first write
    counted: int = 0  # transitions counted in the metrics


ReferralInput.model_rebuild()
