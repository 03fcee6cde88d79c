"""ReferralWorkflow: one durable run per (RFI, partner), driving the pure lifecycle.

Actions arrive as signals or as updates under the same names. Both take raw payloads
and validate them here, so that a malformed or misdirected action is refused and listed
instead of being dropped by the SDK or failing the workflow task.

A referral lives for days and any backend may flood it: well before Temporal's limits on
one run (51,200 events, 50 MB, 10,000 signals) the run continues as new, handing the
next one its whole state, its unsent emails and its place in the archive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

# Pure code and the workflow code of the run's background tasks, loaded once for all runs.
with workflow.unsafe.imports_passed_through():
    from workflows import FAILED_STATUS, RESPOND_BY_KEY, STATUS_KEY, WORKFLOW_TYPE
    from workflows.archiving import keep_archived
    from workflows.bookkeeping import Bookkeeping
    from workflows.emailing import EMAIL_BUDGET, send_email
    from workflows.lifecycle import ActionRejected, Referral, transition_labels
    from workflows.metadata import (
        STARTING_LABEL,
        current_details,
        failed_details,
        wakeup_label,
    )
    from workflows.models import (
        Action,
        ActionPayload,
        Continuation,
        EmailRequest,
        PendingEmail,
        QueuedAction,
        ReferralInput,
        Status,
        StatusView,
        legacy_referral_workflow_id,
        referral_workflow_id,
    )
    from workflows.partner_lookup import LOOKUP_FAILED, NOT_SERVED, look_up_partner
    from workflows.payloads import (
        InvalidAction,
        decode_action_argument,
        parse_earlier_referral_input,
        parse_referral_input,
        read_action,
    )
    from workflows.visibility import changed_attributes

STARTING_WAIT = timedelta(seconds=10)
CLOCK_SKEW = timedelta(days=1)  # how far ahead of the server's clock received_at may be

# A run continues as new at the first of these (or when the server suggests it).
MAX_EVENTS_PER_RUN = 4_000
MAX_BYTES_PER_RUN = 4 * 1024 * 1024
MAX_MESSAGES_PER_RUN = 1_000  # signals and updates handled
LAST_CALL_PATCH = "last-call"
# A run whose first action came before this patch writes each transition to the archive at
# once (`Bookkeeping.coalescing`; a run it continues as new asks again at its first action).
COALESCING_PATCH = "archive-coalescing"
FAILED_STATUS_PATCH = "failed-status"
REROUTE_ON_LOST_PATCH = "reroute-on-lost"
MAX_QUEUED_ACTIONS = 10  # signals kept while the referral starts; New takes at most 3 in a row
# The metric's `action` label: a caller's unknown name counts as `unknown`, never itself.
ACTION_NAMES = frozenset(str(action) for action in Action)


@workflow.defn(name=WORKFLOW_TYPE)
class ReferralWorkflow:
    # Raw arguments: a start with a malformed or missing input fails the run with one clear
    # error (InvalidInput) instead of failing workflow tasks forever.
    @workflow.init
    def __init__(self, *args: Any) -> None:
        self._invalid_input: str | None = None
        self._referral: Referral | None = None
        continued: Continuation | None = None
        try:
            try:
                input = parse_referral_input(args)
            except ValueError:
                # A run started before text fields were strict replays as it ran then.
                if workflow.patched("strict-text-input"):
                    raise
                input = parse_earlier_referral_input(args)
            continued = input.continued
            if continued is not None and workflow.info().continued_run_id is None:
                raise ValueError("invalid referral input: continued: set by the workflow only")
            workflow_id = workflow.info().workflow_id
            self._referral = (
                Referral.restored(input.rfi, input.partner_id, workflow_id, continued.state)
                if continued
                else Referral(input.rfi, input.partner_id, workflow_id)
            )
        except ValueError as error:
            self._invalid_input = str(error)
        self._books = Bookkeeping.taken_over(continued)
        self._tasks: list[asyncio.Task[None]] = []
        self._transition_counter = workflow.metric_meter().create_counter(
            "referral_transitions",
            "Referral transitions by from, to, cause and reason",
            "transitions",
        )
        self._refused_counter = workflow.metric_meter().create_counter(
            "referral_actions_refused",
            "Actions the referral refused, by action, status and how they came",
            "actions",
        )

    @workflow.run
    async def run(self, *args: Any) -> StatusView:
        try:
            await self._start()
        except ApplicationError as error:
            self._failed_to_start(error)
            raise
        referral = self.referral
        self._tasks.append(asyncio.create_task(keep_archived(referral, self._books)))
        self._books.sending = True
        for email_id in list(self._books.pending):
            self._launch(email_id)
        while not referral.closed:
            changed = self._changed_since(self._books.changes)
            if not await self._wait(changed, referral.next_wakeup(), wakeup_label(referral)):
                await self._continue_as_new()
            self._apply(referral.fire_due(workflow.now()))
        if not await self._wait(self._all_done):
            await self._continue_as_new()
        await asyncio.gather(*self._tasks)
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
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        self._books.messages += 1
        referral = self.referral
        now = workflow.now()
        try:
            argument = self._argument(name, args)
            if referral.started:
                self._apply(self._act(*read_action(referral, name, argument), now))
            else:
                self._queue(name, argument, now)
        except ActionRejected as rejected:
            workflow.logger.warning("Signal %.64r refused: %s", name, rejected.reason)
            referral.reject(name, now, rejected.reason)
            self._count_refused(rejected, "signal")
            self._show()

    @workflow.update(dynamic=True)
    async def on_update(self, name: str, args: Sequence[RawValue]) -> StatusView:
        self._books.messages += 1
        try:
            if not self.referral.started:
                # A caller waits a little while the partner's contact is looked up, not forever.
                try:
                    await workflow.wait_condition(
                        lambda: self.referral.started,
                        timeout=STARTING_WAIT,
                        timeout_summary=STARTING_LABEL,
                    )
                except TimeoutError:
                    raise ActionRejected(
                        name, Status.NEW, "the referral is still starting; try again in a moment"
                    ) from None
            self._apply(self._act(*self._read(name, args), workflow.now()))
        except ActionRejected as rejected:
            raise _as_application_error(rejected) from None
        return self.referral.view()

    @on_update.validator
    def validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        try:
            self.referral.validate(*self._read(name, args), workflow.now())
        except ActionRejected as rejected:
            # Refused before history, so counted where operators see it: the metric alone.
            self._count_refused(rejected, "update")
            raise _as_application_error(rejected) from None

    def _count_refused(self, rejected: ActionRejected, message: str) -> None:
        action = rejected.action if rejected.action in ACTION_NAMES else "unknown"
        labels = {"action": action, "status": str(rejected.status), "message": message}
        self._refused_counter.add(1, labels)

    # --- Starting -----------------------------------------------------------------------

    async def _start(self) -> None:
        """Check the input, then find the partner's contact and send the lead."""
        referral = self.referral
        if not self._books.continued:
            self._check_start()
        self._publish()
        if not referral.started:
            lookup = asyncio.create_task(look_up_partner(referral))
            if not await self._wait(lookup.done):
                lookup.cancel()
                await asyncio.gather(lookup, return_exceptions=True)
                await self._continue_as_new()
            self._apply(referral.start(lookup.result(), workflow.now()))
            self._take_queued_actions()

    def _failed_to_start(self, error: ApplicationError) -> None:
        """Before the run fails: no longer a New referral with a deadline to operators'
        views (its search attributes say Failed, without RespondBy), and why in its
        details. Runs that failed before this existed replay without it."""
        if not workflow.patched(FAILED_STATUS_PATCH):
            return
        workflow.upsert_search_attributes(
            [STATUS_KEY.value_set(FAILED_STATUS), RESPOND_BY_KEY.value_unset()]
        )
        safe = error.type in NOT_SERVED or error.type == LOOKUP_FAILED
        workflow.set_current_details(
            failed_details(error.type or "Failed", error.message if safe else None)
        )

    def _check_start(self) -> None:
        referral = self.referral
        rfi = referral.rfi
        workflow_id = workflow.info().workflow_id
        # Runs started before ids became injective keep the old id; new runs may not use it.
        legacy = workflow_id == legacy_referral_workflow_id(rfi.id, referral.partner_id)
        if legacy and workflow.patched("injective-workflow-id"):
            legacy = False
        expected = referral_workflow_id(rfi.id, referral.partner_id)
        if workflow_id != expected and not legacy:
            raise ApplicationError(
                f"the workflow id must be {expected!r} for RFI {rfi.id!r} "
                f"and partner {referral.partner_id!r}",
                type="WorkflowIdMismatch",
            )
        if rfi.received_at > workflow.now() + CLOCK_SKEW:
            raise ApplicationError(
                f"received_at {rfi.received_at.isoformat()} is in the future", type="InvalidInput"
            )

    def _queue(self, name: str, argument: Any, now: datetime) -> None:
        """Keep a signal until the referral has started, in order: a backend may send
        `interested` and `accept` right after the start. The state judges them then."""
        _, payload = read_action(self.referral, name, argument, judge=False)
        waiting = len(self._books.queued)
        if waiting >= MAX_QUEUED_ACTIONS:
            raise ActionRejected(
                name, Status.NEW, f"the referral is starting and {waiting} actions wait"
            )
        self._books.queued.append(
            QueuedAction(name=name, argument=payload.model_dump(mode="json"), at=now)
        )

    def _act(self, action: Action, payload: ActionPayload, now: datetime) -> list[EmailRequest]:
        """Take an action. A run recorded before last calls existed replays without them:
        its decide timer stays the one it started; one whose first action came before
        archive writes waited for a burst writes each transition at once."""
        # Patches are cumulative: a run that took its first action since archive writes
        # wait for a burst had last calls from the start and records no marker for them
        # (each patch's marker costs an upsert of TemporalChangeVersion of its own).
        self._books.coalescing = workflow.patched(COALESCING_PATCH)
        self.referral.last_calls = self._books.coalescing or workflow.patched(LAST_CALL_PATCH)
        if action is Action.LOST:  # asked only then: a patch's marker costs a visibility write
            self.referral.reroute_on_lost = workflow.patched(REROUTE_ON_LOST_PATCH)
        return self.referral.act(action, payload, now)

    def _take_queued_actions(self) -> None:
        queued, self._books.queued = self._books.queued, []
        referral = self.referral
        for waiting in queued:
            now = workflow.now()
            try:
                action, payload = read_action(referral, waiting.name, waiting.argument)
                self._apply(self._act(action, payload, now))
            except ActionRejected as rejected:  # e.g. the referral was late and is Missed
                referral.reject(waiting.name, now, rejected.reason)
        self._show()

    # --- Running ------------------------------------------------------------------------

    def _read(self, name: str, args: Sequence[RawValue]) -> tuple[Action, ActionPayload]:
        """An update's action and payload, judged by the referral's state."""
        return read_action(self.referral, name, self._argument(name, args))

    def _argument(self, name: str, args: Sequence[RawValue]) -> Any:
        try:
            return decode_action_argument(args)
        except InvalidAction as error:
            raise ActionRejected(name, self.referral.status, str(error)) from None

    async def _wait(
        self, done: Callable[[], bool], until: datetime | None = None, label: str | None = None
    ) -> bool:
        """Wait for ``done`` or the time ``until`` (a timer labelled ``label``); False:
        continue as new first."""
        timeout = None if until is None else (until - workflow.now()).total_seconds()
        if timeout is None or timeout > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: done() or self._continue_due(),
                    timeout=timeout,
                    timeout_summary=label,
                )
        return done() or not self._continue_due()

    def _continue_due(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= MAX_EVENTS_PER_RUN
            or info.get_current_history_size() >= MAX_BYTES_PER_RUN
            or self._books.messages >= MAX_MESSAGES_PER_RUN
        )

    async def _continue_as_new(self) -> NoReturn:
        """Let running activities finish (or cancel those waiting to retry), let handlers
        finish, then hand everything left to a new run of the same workflow id."""
        self._books.draining = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await workflow.wait_condition(workflow.all_handlers_finished)
        referral = self.referral
        workflow.logger.info(
            "Continuing as new after %d events and %d messages",
            workflow.info().get_current_history_length(),
            self._books.messages,
        )
        workflow.continue_as_new(
            ReferralInput(
                rfi=referral.rfi,
                partner_id=referral.partner_id,
                continued=self._books.handed_over(referral.state()),
            )
        )

    def _changed_since(self, seen: int) -> Callable[[], bool]:
        return lambda: self._books.changes != seen

    def _all_done(self) -> bool:
        return not self._books.pending and self._books.archived == len(self.referral.transitions)

    def _apply(self, emails: list[EmailRequest]) -> None:
        """After a change: wake the run loop, send its emails, publish the new state."""
        self._books.changes += 1
        for email in emails:
            self._books.pending[email.id] = PendingEmail(
                request=email, give_up_at=workflow.now() + EMAIL_BUDGET
            )
            self._launch(email.id)
        self._publish()

    def _launch(self, email_id: str) -> None:
        if self._books.sending and not self._books.draining:
            send = send_email(self.referral, self._books, email_id)
            self._tasks.append(asyncio.create_task(send))

    def _publish(self) -> None:
        """Keep the search attributes current for operators, upserting only what changed,
        and count each new transition (the SDK's metric meter skips replays)."""
        transitions = self.referral.transitions
        for transition in transitions[self._books.counted :]:
            self._transition_counter.add(1, transition_labels(transition))
        self._books.counted = len(transitions)
        changes = changed_attributes(self.referral, workflow.info().typed_search_attributes)
        if changes:
            workflow.upsert_search_attributes(changes)
        self._show()

    def _show(self) -> None:
        """What the UI and the metadata query show of the referral now."""
        workflow.set_current_details(current_details(self.referral))


def _as_application_error(rejected: ActionRejected) -> ApplicationError:
    return ApplicationError(
        str(rejected), rejected.details(), type="ActionRejected", non_retryable=True
    )
