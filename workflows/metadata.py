"""What the Temporal UI shows of a referral: its summary, its current details, and a label
on every timer and activity. Pure: the workflow and the starters call these.

Nothing here may name the customer (name, company, email, phone) or quote a partner's
reason, which may hold anything: only ids, region and location, statuses, times, the deal's
figures and counts. The current details are also what other systems read through Temporal's
metadata query (`__temporal_workflow_metadata`): their shape, one `- **Label:** value` line
each in the order below, is part of the contract.
"""

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime

from workflows.lifecycle import DEADLINES, Referral
from workflows.models import DeadlineKind, EmailKind, EmailOutcome, Status, Transition

MAX_SUMMARY_BYTES = 200  # what the UI shows on one line; Temporal's limit is larger

# What has to happen for a running deadline not to fire.
UNLESS: Mapping[DeadlineKind, str] = {
    DeadlineKind.RESPOND: "unless the partner answers",
    DeadlineKind.DECIDE: "unless the partner accepts or declines",
}
EMAIL_LABELS: Mapping[EmailKind, str] = {
    EmailKind.LEAD: "lead email to the partner",
    EmailKind.REMINDER: "reminder email to the partner",
    EmailKind.LAST_CALL: "last call email to the partner",
    EmailKind.DETAILS: "details email to the partner",
    EmailKind.REROUTE: "reroute email to the customer",
}
LOOKUP_LABEL = "partner contact look-up"
SUGGESTIONS_LABEL = "partner suggestions"
OUTLOOK_LABEL = "the RFI's other referrals, and partner suggestions"
SETTLE_LABEL = "let the RFI's other referrals show how they stand"
STARTING_LABEL = "wait for the referral to start"
COALESCING_LABEL = "archive: more transitions, one write"


def summary(rfi_id: str, partner_id: str, region: str, location: str | None) -> str:
    """One line for the list and the top of a referral's page, e.g.
    `rfi-1001 -> acme-consulting (emea / Berlin)`; at most 200 bytes."""
    where = f"{region} / {location}" if location else region
    return _cut(f"{rfi_id} -> {partner_id} ({where})", MAX_SUMMARY_BYTES)


def referral_summary(referral: Referral) -> str:
    rfi = referral.rfi
    return summary(rfi.id, referral.partner_id, rfi.region, rfi.location)


def failed_details(kind: str, message: str | None) -> str:
    """A run that failed before its referral started: why, when the reason names nothing
    but ids and places (the directory's refusals), else only its kind."""
    lines = ["- **Status:** Failed", f"- **Failed:** {kind}"]
    if message is not None:
        lines[-1] += f": {message}"
    return "\n".join(lines)


def current_details(referral: Referral) -> str:
    """The referral now, as Markdown: status, deadline, reminder, deal, last transition,
    emails, refused actions (lines without a value are left out)."""
    lines = [f"- **Status:** {referral.status}"]
    deadline = referral.deadline
    if deadline is not None:
        target = DEADLINES[referral.status][1]
        lines.append(
            f"- **Deadline:** {deadline.kind}: {target} at {_time(deadline.due_at)} "
            f"{UNLESS[deadline.kind]}"
        )
    if referral.reminder_pending and referral.status is Status.NEW:
        lines.append(f"- **Reminder:** to the partner at {_time(referral.reminder_at)}")
    if referral.last_call_pending and referral.status is Status.EVALUATING:
        lines.append(f"- **Reminder:** last call to the partner at {_time(referral.last_call_at)}")
    deal = referral.deal
    if deal is not None:
        text = (
            f"{deal.estimated_deal_value} {deal.currency} estimated, "
            f"closing {deal.estimated_close_date.isoformat()}"
        )
        if deal.final_deal_value is not None:
            text += f"; won at {deal.final_deal_value} {deal.currency}"
        lines.append(f"- **Deal:** {text}")
    if referral.transitions:
        lines.append(f"- **Last transition:** {_transition(referral.transitions[-1])}")
    if referral.emails:
        lines.append(f"- **Emails:** {_emails(referral)}")
    if referral.rejected_actions:
        lines.append(f"- **Refused actions:** {len(referral.rejected_actions)}")
    return "\n".join(lines)


def wakeup_label(referral: Referral) -> str:
    """The label of the timer the run starts for ``next_wakeup()``: the reminder or the
    running deadline, whichever comes first."""
    wakeup, deadline = referral.next_wakeup(), referral.deadline
    if wakeup is None:
        return "wake-up"  # nothing is due: the run starts no timer
    if deadline is not None and wakeup == deadline.due_at:
        target = DEADLINES[referral.status][1]
        return f"{deadline.kind} deadline: {target} at {_time(deadline.due_at)}"
    if referral.last_call_pending and wakeup == referral.last_call_at:
        return f"last call at {_time(referral.last_call_at)}"
    return f"reminder at {_time(referral.reminder_at)}"


def archive_label(transitions: int) -> str:
    return f"archive: transition {transitions}" if transitions else "archive: the new referral"


def email_pause_label(kind: EmailKind) -> str:
    return f"{EMAIL_LABELS[kind]}: pause after an unknown outcome"


def _emails(referral: Referral) -> str:
    counts = Counter((record.kind, record.outcome) for record in referral.emails)
    parts = []
    for kind in EmailKind:
        for outcome in EmailOutcome:
            n = counts[(kind, outcome)]
            if n:
                parts.append(f"{kind} {outcome}" + (f" x{n}" if n > 1 else ""))
    return ", ".join(parts)


def _transition(transition: Transition) -> str:
    cause = transition.cause
    by = f"{cause.name} deadline" if cause.kind == "deadline" else str(cause.name)
    return f"{transition.from_} -> {transition.to} by {by} at {_time(transition.effective_at)}"


def _time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."
