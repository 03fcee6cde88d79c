"""ReferralWorkflow: one durable run per (RFI, partner), driving the pure lifecycle.

Actions arrive as signals or as updates under the same names. Both take raw payloads
and validate them here, so that a malformed or misdirected action is refused and listed
instead of being dropped by the SDK or failing the workflow task.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.archive import ArchiveActivities
    from activities.directory import DirectoryActivities
    from activities.email import EmailActivities
    from activities.suggestions import SuggestionActivities
    from workflows import WORKFLOW_TYPE
    from workflows.lifecycle import ActionRejected, Referral
    from workflows.models import (
        ContactLookup,
        EmailKind,
        EmailOutcome,
        EmailRequest,
        PartnerContact,
        Status,
        StatusView,
        SuggestionRequest,
    )
    from workflows.payloads import decode_action_argument, parse_referral_input
    from workflows.visibility import changed_attributes

STARTING_WAIT = timedelta(seconds=10)
CLOCK_SKEW = timedelta(days=1)  # how far ahead of the server's clock received_at may be
NOT_SERVED = ["PartnerNotFound", "RegionNotServed"]
LOOKUP_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=1), non_retryable_error_types=NOT_SERVED
)
# The archive must never lose a referral: retry until the database is back.
ARCHIVE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["EmailRejected"],
)


@workflow.defn(name=WORKFLOW_TYPE)
class ReferralWorkflow:
    # Raw arguments: a start with a malformed or missing input fails the run with one clear
    # error (InvalidInput) instead of failing workflow tasks forever.
    @workflow.init
    def __init__(self, *args: Any) -> None:
        self._invalid_input: str | None = None
        self._referral: Referral | None = None
        try:
            input = parse_referral_input(args)
            self._referral = Referral(input.rfi, input.partner_id)
        except ValueError as error:
            self._invalid_input = str(error)
        self._started = False
        self._changes = 0
        self._emails: list[asyncio.Task[None]] = []
        self._archived = -1  # transitions in the archive; -1 before the first write
        self._counted = 0  # transitions counted in the metrics
        self._transition_counter = workflow.metric_meter().create_counter(
            "referral_transitions", "Referral transitions by from, to and cause", "transitions"
        )

    @workflow.run
    async def run(self, *args: Any) -> StatusView:
        referral = self.referral
        rfi = referral.rfi
        if workflow.info().workflow_id != referral.referral_id:
            raise ApplicationError(
                f"the workflow id must be {referral.referral_id!r} for RFI {rfi.id!r} "
                f"and partner {referral.partner_id!r}",
                type="WorkflowIdMismatch",
            )
        if rfi.received_at > workflow.now() + CLOCK_SKEW:
            raise ApplicationError(
                f"received_at {rfi.received_at.isoformat()} is in the future", type="InvalidInput"
            )
        self._publish()
        partner = await self._look_up_partner()
        self._started = True
        self._apply(referral.start(partner, workflow.now()))
        archiving = asyncio.create_task(self._keep_archived())
        while not referral.closed:
            await self._wait_for_change_until(referral.next_wakeup())
            self._apply(referral.fire_due(workflow.now()))
        await asyncio.gather(archiving, *self._emails)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return referral.view()

    @property
    def referral(self) -> Referral:
        if self._referral is None:
            raise ApplicationError(
                str(self._invalid_input), type="InvalidInput", non_retryable=True
            )
        return self._referral

    @workflow.query(name="status")
    def status(self) -> StatusView:
        return self.referral.view()

    @workflow.signal(dynamic=True)
    async def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        if not self._started:
            await workflow.wait_condition(lambda: self._started)
        now = workflow.now()
        try:
            self._apply(self.referral.act(name, self._argument(name, args), now))
        except ActionRejected as rejected:
            workflow.logger.warning("Signal refused: %s", rejected)
            self.referral.reject(name, now, rejected.reason)

    @workflow.update(dynamic=True)
    async def on_update(self, name: str, args: Sequence[RawValue]) -> StatusView:
        try:
            if not self._started:
                # A caller waits a little while the partner's contact is looked up, not forever.
                try:
                    await workflow.wait_condition(lambda: self._started, timeout=STARTING_WAIT)
                except TimeoutError:
                    raise ActionRejected(
                        name, Status.NEW, "the referral is still starting; try again in a moment"
                    ) from None
            self._apply(self.referral.act(name, self._argument(name, args), workflow.now()))
        except ActionRejected as rejected:
            raise _as_application_error(rejected) from None
        return self.referral.view()

    @on_update.validator
    def validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        try:
            self.referral.validate(name, self._argument(name, args), workflow.now())
        except ActionRejected as rejected:
            raise _as_application_error(rejected) from None

    # --- Internals ----------------------------------------------------------------------

    async def _wait_for_change_until(self, wakeup: datetime | None) -> None:
        seen = self._changes
        timeout = None if wakeup is None else (wakeup - workflow.now()).total_seconds()
        if timeout is None or timeout > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._changes != seen, timeout=timeout)

    def _argument(self, name: str, args: Sequence[RawValue]) -> Any:
        try:
            return decode_action_argument(args)
        except ValueError as error:
            raise ActionRejected(name, self.referral.status, f"invalid payload: {error}") from None

    def _apply(self, emails: list[EmailRequest]) -> None:
        """After a change: wake the run loop, send its emails, publish the new state."""
        self._changes += 1
        self._emails += [asyncio.create_task(self._send(email)) for email in emails]
        self._publish()

    def _publish(self) -> None:
        """Keep the search attributes current for operators, upserting only what changed,
        and count each new transition (the SDK's metric meter skips replays)."""
        transitions = self.referral.transitions
        for transition in transitions[self._counted :]:
            self._transition_counter.add(
                1, {"from": transition.from_, "to": transition.to, "cause": transition.cause.kind}
            )
        self._counted = len(transitions)
        changes = changed_attributes(self.referral, workflow.info().typed_search_attributes)
        if changes:
            workflow.upsert_search_attributes(changes)

    async def _keep_archived(self) -> None:
        """Record the referral when it starts and after each transition, one write at a time."""
        referral = self.referral
        while not (referral.closed and self._archived == len(referral.transitions)):
            await workflow.wait_condition(
                lambda: referral.closed or self._archived != len(referral.transitions)
            )
            count = len(referral.transitions)
            if count != self._archived:
                await workflow.execute_activity_method(
                    ArchiveActivities.record_referral,
                    referral.view(),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=ARCHIVE_RETRY,
                )
                self._archived = count

    async def _look_up_partner(self) -> PartnerContact:
        referral = self.referral
        lookup = ContactLookup(
            partner_id=referral.partner_id,
            region=referral.rfi.region,
            location=referral.rfi.location,
        )
        deadline = referral.deadline
        # Retry a broken directory until the respond deadline, then fail visibly.
        left = (deadline.due_at - workflow.now()) if deadline else timedelta(0)
        try:
            return await workflow.execute_local_activity_method(
                DirectoryActivities.look_up_contact,
                lookup,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=max(left, timedelta(minutes=10)),
                retry_policy=LOOKUP_RETRY,
            )
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type in NOT_SERVED:
                kind, message = cause.type, cause.message
            else:
                kind, message = "LookupFailed", f"the partner directory did not answer: {cause}"
            raise ApplicationError(
                f"Referral {referral.referral_id} cannot start: {message}",
                type=kind,
                non_retryable=True,
            ) from error

    async def _send(self, email: EmailRequest) -> None:
        if email.kind is EmailKind.REROUTE:
            email = email.model_copy(update={"alternatives": await self._alternatives()})
        try:
            await workflow.execute_activity_method(
                EmailActivities.send_email,
                email,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(hours=24),
                retry_policy=EMAIL_RETRY,
            )
        except ActivityError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(error)
            workflow.logger.warning("Email %s failed: %s", email.id, message)
            self.referral.record_email(email.id, EmailOutcome.FAILED, message)
        else:
            self.referral.record_email(email.id, EmailOutcome.SENT)

    async def _alternatives(self) -> list[str] | None:
        """Partners to suggest to the customer; None if they cannot be known in time."""
        rfi = self.referral.rfi
        request = SuggestionRequest(
            rfi_id=rfi.id,
            partner_id=self.referral.partner_id,
            region=rfi.region,
            location=rfi.location,
        )
        try:
            return await workflow.execute_activity_method(
                SuggestionActivities.suggest_partners,
                request,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=10),
                retry_policy=ARCHIVE_RETRY,
            )
        except ActivityError as error:
            workflow.logger.warning("No partner suggestions for the customer: %s", error.cause)
            return None


def _as_application_error(rejected: ActionRejected) -> ApplicationError:
    return ApplicationError(
        str(rejected), rejected.details(), type="ActionRejected", non_retryable=True
    )
