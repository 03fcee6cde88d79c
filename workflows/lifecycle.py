"""The referral state machine: pure and deterministic, no I/O and no clock of its own.

Rules, read top to bottom:

- New: ``interested`` -> Evaluating; ``no_thanks`` -> Skipped; the respond deadline
  (``received_at + respond_within``) -> Missed. While still New, one reminder goes to the
  partner at ``received_at + remind_after``, unless that falls at or after the respond
  deadline or before the referral started (the lead itself is then the news).
- Evaluating: ``accept`` (deal value, currency, close date not in the past) -> Negotiating;
  ``decline`` -> Declined; the decide deadline (entering Evaluating + ``decide_within``) ->
  Expired. One last call goes to the partner ``last_call_before`` ahead of that deadline,
  unless that falls before entering Evaluating.
- Negotiating: ``won`` -> Won; ``lost`` -> Lost. No deadline.
- Skipped, Missed, Declined and Expired email the customer to choose another partner.
- A deadline transition takes effect at the deadline, whenever it is processed; an action
  processed before it wins, and once the referral is closed every action is refused.

The caller passes parsed actions and the time in (``workflows.payloads`` reads the wire)
and receives effects (emails) to carry out; a refused action raises ``ActionRejected``,
which names the action, the state and the allowed actions.
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from workflows.models import (
    UNSPECIFIED,
    AcceptPayload,
    Action,
    ActionPayload,
    Cause,
    DeadlineKind,
    DeadlineView,
    Deal,
    DeclineReason,
    Door,
    EmailKind,
    EmailOutcome,
    EmailRecord,
    EmailRequest,
    EmailRfi,
    Overview,
    PartnerContact,
    ReasonPayload,
    ReferralState,
    RejectedAction,
    Rfi,
    Status,
    StatusView,
    Transition,
    Via,
    WonPayload,
    referral_workflow_id,
)

TRANSITIONS: Mapping[tuple[Status, Action], Status] = {
    (Status.NEW, Action.INTERESTED): Status.EVALUATING,
    (Status.NEW, Action.NO_THANKS): Status.SKIPPED,
    (Status.EVALUATING, Action.ACCEPT): Status.NEGOTIATING,
    (Status.EVALUATING, Action.DECLINE): Status.DECLINED,
    (Status.NEGOTIATING, Action.WON): Status.WON,
    (Status.NEGOTIATING, Action.LOST): Status.LOST,
}

DEADLINES: Mapping[Status, tuple[DeadlineKind, Status]] = {
    Status.NEW: (DeadlineKind.RESPOND, Status.MISSED),
    Status.EVALUATING: (DeadlineKind.DECIDE, Status.EXPIRED),
}

# The email that goes out on entering a state: the details to the partner, the reroute to
# the customer. (The lead goes out on starting, the reminder while New.)
ON_ENTERING: Mapping[Status, EmailKind] = {
    Status.EVALUATING: EmailKind.DETAILS,
    Status.SKIPPED: EmailKind.REROUTE,
    Status.MISSED: EmailKind.REROUTE,
    Status.DECLINED: EmailKind.REROUTE,
    Status.EXPIRED: EmailKind.REROUTE,
}

CUSTOMER = "customer"  # how the view names the customer as an email's recipient
# The emails that show the customer's contact: the partner said interested, or the
# customer is the recipient. The others get the overview alone.
CUSTOMER_SHOWN = frozenset({EmailKind.DETAILS, EmailKind.REROUTE})
MAX_CLOSE_YEARS = 10  # a forecast further ahead is a typo, not a deal
MAX_REJECTED = 100  # keeps the view and the result far below Temporal's payload limit
REROUTE_STATUSES = frozenset(s for s, kind in ON_ENTERING.items() if kind is EmailKind.REROUTE)
CLOSED_STATUSES = REROUTE_STATUSES | {Status.WON, Status.LOST}


REASONED_ACTIONS = frozenset({Action.NO_THANKS, Action.DECLINE, Action.LOST})


def reason_label(transition: Transition) -> str:
    """How a transition counts by reason: its code; ``unspecified`` for a refusal or a loss
    given without one; empty for the transitions that take no reason."""
    if transition.reason_code:
        return transition.reason_code
    return UNSPECIFIED if transition.cause.name in REASONED_ACTIONS else ""


def transition_labels(transition: Transition) -> dict[str, str]:
    """The metric labels of a transition (no customer data, no free text)."""
    return {
        "from": str(transition.from_),
        "to": str(transition.to),
        "cause": transition.cause.kind,
        "reason": reason_label(transition),
    }


def allowed_actions(status: Status) -> list[Action]:
    return [action for (state, action) in TRANSITIONS if state == status]


class ActionRejected(Exception):
    """An action the referral cannot take now: wrong state, closed, or a bad payload."""

    def __init__(self, action: str, status: Status, reason: str) -> None:
        self.action = str(action)  # an Action, or the name of an unknown one
        self.status = status
        self.reason = reason
        self.allowed_actions = [str(a) for a in allowed_actions(status)]
        allowed = ", ".join(self.allowed_actions) or "none, the referral is closed"
        super().__init__(
            f"{self.action!r} rejected: the referral is {status}; "
            f"allowed actions: {allowed}; {reason}"
        )

    def details(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "allowed_actions": self.allowed_actions,
            "reason": self.reason,
        }


class Referral:
    """One referral's state. Methods that change it return the emails to send."""

    def __init__(self, rfi: Rfi, partner_id: str, workflow_id: str | None = None) -> None:
        self.rfi = rfi
        self.partner_id = partner_id
        # Runs started under an earlier id scheme keep their id (and their emails' ids).
        self.workflow_id = workflow_id or referral_workflow_id(rfi.id, partner_id)
        self.status = Status.NEW
        self.partner: PartnerContact | None = None
        self.started_at: datetime | None = None
        self.entered_at = rfi.received_at
        self.first_response_at: datetime | None = None
        self.deal: Deal | None = None
        self.transitions: list[Transition] = []
        self.rejected_actions: list[RejectedAction] = []
        self.emails: list[EmailRecord] = []
        self.reminder_pending = False
        self.last_call_pending = False
        # The workflow turns last calls off while it replays a run recorded before they
        # existed (workflow.patched), so that its timers stay as they were.
        self.last_calls = True
        # A loss asks for a reroute to the customer (sent only if another partner of the RFI
        # passed on it meanwhile); off while replaying a loss recorded before.
        self.reroute_on_lost = True

    @classmethod
    def restored(
        cls, rfi: Rfi, partner_id: str, workflow_id: str, state: ReferralState
    ) -> "Referral":
        """The referral as an earlier run of the same workflow left it."""
        referral = cls(rfi, partner_id, workflow_id)
        for field in ReferralState.model_fields:
            value = getattr(state, field)
            setattr(referral, field, list(value) if isinstance(value, list) else value)
        return referral

    def state(self) -> ReferralState:
        return ReferralState(
            **{field: getattr(self, field) for field in ReferralState.model_fields}
        )

    # --- Reading ------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.partner is not None

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_STATUSES

    @property
    def deadline(self) -> DeadlineView | None:
        if self.status not in DEADLINES:
            return None
        kind, _ = DEADLINES[self.status]
        within = (
            self.rfi.deadlines.respond_within
            if kind is DeadlineKind.RESPOND
            else self.rfi.deadlines.decide_within
        )
        return DeadlineView(kind=kind, due_at=self.entered_at + within)

    @property
    def was_interested(self) -> bool:
        """The partner said it was interested: from then on it may see the customer."""
        return any(t.to is Status.EVALUATING for t in self.transitions)

    @property
    def reminder_at(self) -> datetime:
        return self.rfi.received_at + self.rfi.deadlines.remind_after

    @property
    def last_call_at(self) -> datetime:
        """While Evaluating: ``last_call_before`` ahead of the decide deadline."""
        return self._due_at - self.rfi.deadlines.last_call_before

    def next_wakeup(self) -> datetime | None:
        """The next moment at which ``fire_due`` has something to do, if any."""
        deadline = self.deadline
        times = [deadline.due_at] if deadline else []
        if self.reminder_pending:
            times.append(self.reminder_at)
        if self.last_call_pending:
            times.append(self.last_call_at)
        return min(times, default=None)

    def view(self) -> StatusView:
        rfi = self.rfi
        return StatusView(
            rfi_id=rfi.id,
            partner_id=self.partner_id,
            status=self.status,
            region=rfi.region,
            location=rfi.location,
            received_at=rfi.received_at,
            started_at=self.started_at,
            first_response_at=self.first_response_at,
            deadline=self.deadline,
            overview=Overview(
                need=rfi.need,
                company_size=rfi.company_size,
                region=rfi.region,
                location=rfi.location,
            ),
            customer=rfi.customer if self.was_interested else None,
            deal=self.deal,
            transitions=list(self.transitions),
            rejected_actions=list(self.rejected_actions),
            emails=list(self.emails),
        )

    # --- Changing -----------------------------------------------------------------------

    def start(self, partner: PartnerContact, now: datetime) -> list[EmailRequest]:
        """The partner's contact is known: send the lead, or miss at once if already late."""
        self.partner = partner
        self.started_at = now
        if now >= self._due_at:
            return self.fire_due(now)
        self.reminder_pending = now < self.reminder_at < self._due_at
        return [self._email(EmailKind.LEAD, partner.contact_email, due_at=self._due_at)]

    def check(self, action: Action) -> None:
        """Raise ``ActionRejected`` unless ``action`` may be taken in this state."""
        if self.closed:
            raise ActionRejected(action, self.status, f"the referral is closed ({self.status})")
        if (self.status, action) not in TRANSITIONS:
            raise ActionRejected(action, self.status, f"not allowed while {self.status}")

    def validate(self, action: Action, payload: ActionPayload, now: datetime) -> None:
        """Raise ``ActionRejected`` unless ``action`` with ``payload`` may be taken now."""
        self.check(action)
        if isinstance(payload, AcceptPayload):
            self._check_close_date(action, payload.estimated_close_date, now)

    def act(self, action: Action, payload: ActionPayload, now: datetime) -> list[EmailRequest]:
        self.validate(action, payload, now)
        if self.first_response_at is None:
            self.first_response_at = now
        if isinstance(payload, AcceptPayload):
            self.deal = Deal(
                estimated_deal_value=payload.estimated_deal_value,
                currency=str(payload.currency),
                estimated_close_date=payload.estimated_close_date,
            )
        if isinstance(payload, WonPayload) and self.deal and payload.final_deal_value:
            self.deal = self.deal.model_copy(update={"final_deal_value": payload.final_deal_value})
        target = TRANSITIONS[(self.status, action)]
        cause = Cause(kind="action", name=action)
        via = payload.via or Via(door=Door.TEMPORAL)
        if isinstance(payload, ReasonPayload):
            code = str(payload.reason_code) if payload.reason_code else None
            return self._transition(target, now, now, cause, payload.reason, code, via)
        return self._transition(target, now, now, cause, via=via)

    def reject(self, action: str, now: datetime, reason: str) -> None:
        """List a refused signal; only the latest MAX_REJECTED are kept, each cut short."""
        self.rejected_actions = [
            *self.rejected_actions[-(MAX_REJECTED - 1) :],
            RejectedAction(action=action[:64], at=now, status=self.status, reason=reason[:300]),
        ]

    def fire_due(self, now: datetime) -> list[EmailRequest]:
        """Send the reminder or the last call and apply the deadline whose time has come by
        ``now``."""
        emails: list[EmailRequest] = []
        reminder_due = self.reminder_pending and self.reminder_at <= now < self._due_at
        if reminder_due and self.status is Status.NEW:
            self.reminder_pending = False
            emails.append(
                self._email(EmailKind.REMINDER, self._contact.contact_email, due_at=self._due_at)
            )
        last_call_due = self.last_call_pending and self.last_call_at <= now < self._due_at
        if last_call_due and self.status is Status.EVALUATING:
            self.last_call_pending = False
            emails.append(
                self._email(EmailKind.LAST_CALL, self._contact.contact_email, due_at=self._due_at)
            )
        deadline = self.deadline
        if deadline is not None and now >= deadline.due_at:
            _, target = DEADLINES[self.status]
            cause = Cause(kind="deadline", name=deadline.kind)
            emails += self._transition(target, deadline.due_at, now, cause, None)
        return emails

    def record_email(self, email_id: str, outcome: EmailOutcome, error: str | None = None) -> None:
        self.emails = [
            record.model_copy(update={"outcome": outcome, "error": error})
            if record.id == email_id
            else record
            for record in self.emails
        ]

    # --- Internals ----------------------------------------------------------------------

    def _check_close_date(self, action: Action, close_date: date, now: datetime) -> None:
        today = now.astimezone(UTC).date()
        if close_date < today:
            raise ActionRejected(
                action, self.status, "invalid payload: estimated_close_date is in the past"
            )
        try:
            latest = today.replace(year=today.year + MAX_CLOSE_YEARS)
        except ValueError:  # 29 February
            latest = today.replace(year=today.year + MAX_CLOSE_YEARS, day=28)
        if close_date > latest:
            raise ActionRejected(
                action,
                self.status,
                f"invalid payload: estimated_close_date is more than {MAX_CLOSE_YEARS} years ahead",
            )

    def _transition(
        self,
        target: Status,
        effective_at: datetime,
        processed_at: datetime,
        cause: Cause,
        reason: str | None = None,
        reason_code: str | None = None,
        via: Via | None = None,
    ) -> list[EmailRequest]:
        self.transitions.append(
            Transition(
                seq=len(self.transitions) + 1,
                from_=self.status,
                to=target,
                effective_at=effective_at,
                processed_at=processed_at,
                cause=cause,
                reason=reason,
                reason_code=reason_code,
                via=via,
            )
        )
        self.status = target
        self.entered_at = effective_at
        self.reminder_pending = self.reminder_pending and target is Status.NEW
        # One last call before the decide deadline, unless it would fall before Evaluating.
        self.last_call_pending = (
            self.last_calls and target is Status.EVALUATING and effective_at < self.last_call_at
        )
        kind = ON_ENTERING.get(target)
        if target is Status.LOST and self.reroute_on_lost:
            kind = EmailKind.REROUTE
        if kind is None:
            return []
        if kind is EmailKind.REROUTE:
            if reason_code == DeclineReason.SPAM_OR_ABUSE:
                return []  # flagged for review: no invitation to send it elsewhere
            # The partner's reason stays with the marketplace: the customer is not told it.
            return [self._email(kind, self.rfi.customer.email, shown_as=CUSTOMER)]
        return [self._email(kind, self._contact.contact_email, due_at=self._due_at)]

    def _email(
        self, kind: EmailKind, to: str, *, due_at: datetime | None = None, shown_as: str = ""
    ) -> EmailRequest:
        email_id = f"{self.workflow_id}.{len(self.emails) + 1}-{kind}"
        # The view may reach a partner that never said interested: it names the customer
        # as a role, never by address.
        record = EmailRecord(
            id=email_id, kind=kind, to=shown_as or to, outcome=EmailOutcome.PENDING
        )
        self.emails.append(record)
        return EmailRequest(
            id=email_id,
            kind=kind,
            to=to,
            status=self.status,
            rfi=EmailRfi.of(self.rfi, with_customer=kind in CUSTOMER_SHOWN),
            partner=self._contact,
            due_at=due_at,
        )

    @property
    def _contact(self) -> PartnerContact:
        if self.partner is None:
            raise RuntimeError("the referral has not started: its partner contact is unknown")
        return self.partner

    @property
    def _due_at(self) -> datetime:
        deadline = self.deadline
        if deadline is None:
            raise RuntimeError(f"no deadline runs while {self.status}")
        return deadline.due_at
