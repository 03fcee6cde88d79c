"""A referral's emails: each sent by a background task of the run, until sent, refused,
out of its 24-hour budget, or unanswered too often.

Workflow code, passed through the sandbox (`workflows/activity_calls.py`).
"""

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.types import MethodAsyncSingleParam

from activities.email import EmailActivities
from activities.mailers import OUTCOME_UNKNOWN, REJECTED
from activities.suggestions import SuggestionActivities
from workflows.activity_calls import ACTIVITY_TIMEOUT, WAIT, error_type, message
from workflows.bookkeeping import Bookkeeping
from workflows.lifecycle import Referral
from workflows.metadata import (
    EMAIL_LABELS,
    OUTLOOK_LABEL,
    SETTLE_LABEL,
    SUGGESTIONS_LABEL,
    current_details,
    email_pause_label,
)
from workflows.models import CustomerOutlook, EmailKind, EmailOutcome, Status, SuggestionRequest

EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=(REJECTED, OUTCOME_UNKNOWN),
)
EMAIL_BUDGET = timedelta(hours=24)  # from the first attempt, across runs
# An attempt whose answer never came may have been accepted: try again only after a long
# pause, and never more than this many times in all, so that at most this many copies exist.
MAX_UNKNOWN_OUTCOMES = 3
UNKNOWN_OUTCOME_PAUSE = timedelta(hours=1)
# The reroute asks how the RFI's other referrals stand before it goes; runs that asked for
# suggestions alone before this replay without it.
CUSTOMER_OUTLOOK_PATCH = "customer-outlook"
# How long a reroute waits before it reads the RFI's other referrals: long enough for
# visibility and the archive to show a referral that ended at the same moment, so that
# of two that end together the later one tells the customer, and the earlier one not.
OUTLOOK_SETTLE = timedelta(seconds=2)
# Suggestions are a courtesy: a few tries, then the reroute goes out without them.
SUGGESTIONS_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5)
Found = TypeVar("Found")


async def send_email(referral: Referral, books: Bookkeeping, email_id: str) -> None:
    """Send the pending email `email_id` and record its outcome in the referral. Cancelled
    while the run continues as new, it stays pending for the next run."""
    try:
        await _deliver(referral, books, email_id)
    except asyncio.CancelledError:
        if not books.draining:
            raise


async def _deliver(referral: Referral, books: Bookkeeping, email_id: str) -> None:
    while not books.draining:
        pending = books.pending[email_id]
        email = pending.request
        if email.kind is EmailKind.REROUTE and not pending.suggestions_asked:
            if workflow.patched(CUSTOMER_OUTLOOK_PATCH):
                # Referrals of the RFI that end together: each sees how the others ended.
                await workflow.sleep(OUTLOOK_SETTLE, summary=SETTLE_LABEL)
                outlook = await _outlook(referral)
                if books.draining:
                    return
                why = withheld(referral, outlook)
                if why is not None:
                    _settle(referral, books, email_id, EmailOutcome.WITHHELD, why)
                    return
                alternatives = outlook.alternatives if outlook else None
            else:  # a run that asked for suggestions alone before it replays as it ran
                alternatives = await _alternatives(referral)
            if books.draining:
                return
            email = email.model_copy(update={"alternatives": alternatives})
            pending = pending.model_copy(update={"request": email, "suggestions_asked": True})
            books.pending[email_id] = pending
        if pending.next_attempt_at is not None and pending.next_attempt_at > workflow.now():
            await workflow.sleep(
                pending.next_attempt_at - workflow.now(), summary=email_pause_label(email.kind)
            )
        left = pending.give_up_at - workflow.now()
        if left <= timedelta(0):
            _settle(referral, books, email_id, EmailOutcome.FAILED, "not sent within 24 hours")
            return
        try:
            await workflow.execute_activity_method(
                EmailActivities.send_email,
                email,
                summary=EMAIL_LABELS[email.kind],
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                schedule_to_close_timeout=left,
                retry_policy=EMAIL_RETRY,
                cancellation_type=WAIT,
            )
        except ActivityError as error:
            kind = error_type(error)
            final = kind in (REJECTED, OUTCOME_UNKNOWN)
            if isinstance(error.cause, CancelledError) or (books.draining and not final):
                return  # continuing as new: the next run sends it, within its budget
            if kind != OUTCOME_UNKNOWN:
                _settle(referral, books, email_id, EmailOutcome.FAILED, message(error))
                return
            unknown = pending.unknown_outcomes + 1
            if unknown >= MAX_UNKNOWN_OUTCOMES:
                _settle(
                    referral,
                    books,
                    email_id,
                    EmailOutcome.FAILED,
                    f"no answer from the provider to {unknown} attempts: it may have "
                    f"accepted up to {unknown} copies",
                )
                return
            books.pending[email_id] = pending.model_copy(
                update={
                    "unknown_outcomes": unknown,
                    "next_attempt_at": workflow.now() + UNKNOWN_OUTCOME_PAUSE,
                }
            )
        else:
            _settle(referral, books, email_id, EmailOutcome.SENT)
            return


def _settle(
    referral: Referral,
    books: Bookkeeping,
    email_id: str,
    outcome: EmailOutcome,
    error: str | None = None,
) -> None:
    if outcome is EmailOutcome.WITHHELD:
        workflow.logger.info("Email %s withheld: %s", email_id, error)
    elif error is not None:
        workflow.logger.warning("Email %s failed: %s", email_id, error)
    referral.record_email(email_id, outcome, error)
    del books.pending[email_id]
    workflow.set_current_details(current_details(referral))


def withheld(referral: Referral, outlook: CustomerOutlook | None) -> str | None:
    """Why the customer is not sent the reroute, if it is not: another partner of the RFI
    has the request (Evaluating, Negotiating or Won), or, after a loss, no other partner
    passed on it (the customer was told nothing they do not know). Not knowing, a reroute
    goes as it always did, and one after a loss does not, as it never did."""
    lost = referral.status is Status.LOST
    if outlook is None:
        return "not known whether another partner of this RFI passed on it" if lost else None
    if outlook.engaged:
        return f"another partner of this RFI has the request: {', '.join(outlook.engaged)}"
    if outlook.passed_after:
        later = ", ".join(outlook.passed_after)
        return f"another partner of this RFI passed on it after this one: {later}"
    if lost and not outlook.passed:
        return "no other partner of this RFI passed on it"
    return None


async def _outlook(referral: Referral) -> CustomerOutlook | None:
    """What the customer should hear; None if it cannot be known in time."""
    return await _courtesy(SuggestionActivities.look_at_rfi, referral, OUTLOOK_LABEL)


def _suggestion_request(referral: Referral) -> SuggestionRequest:
    rfi = referral.rfi
    last = referral.transitions[-1] if referral.closed and referral.transitions else None
    return SuggestionRequest(
        rfi_id=rfi.id,
        partner_id=referral.partner_id,
        region=rfi.region,
        location=rfi.location,
        ended_at=last.effective_at if last else None,
    )


async def _alternatives(referral: Referral) -> list[str] | None:
    """Partners to suggest to the customer; None if they cannot be known in time."""
    return await _courtesy(SuggestionActivities.suggest_partners, referral, SUGGESTIONS_LABEL)


async def _courtesy(
    look: MethodAsyncSingleParam[SuggestionActivities, SuggestionRequest, Found],
    referral: Referral,
    label: str,
) -> Found | None:
    """What a look at the RFI's other referrals finds, in a few tries; None if nothing in
    time (the email goes on without it)."""
    try:
        return await workflow.execute_activity_method(
            look,
            _suggestion_request(referral),
            summary=label,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=SUGGESTIONS_RETRY,
            cancellation_type=WAIT,
        )
    except ActivityError as error:
        if not isinstance(error.cause, CancelledError):
            workflow.logger.warning("%s: not known in time: %s", label, error.cause)
        return None
