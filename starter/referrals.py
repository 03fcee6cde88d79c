"""Operations on referrals through a Temporal client: submit, act and read.

The `referrals` command is a thin shell over these; backends in other languages do
the same with their own SDK, by the names and JSON documented in the README's contract.
"""

import asyncio
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from workflows import PARTNER_KEY, RFI_KEY, TASK_QUEUE
from workflows.lifecycle import Referral
from workflows.metadata import summary
from workflows.models import (
    ReferralInput,
    Rfi,
    StatusView,
    legacy_referral_workflow_id,
    referral_workflow_id,
)
from workflows.payloads import MAX_ACTION_BYTES
from workflows.referral import ReferralWorkflow
from workflows.visibility import partners_of_rfi, start_attributes

Handle = WorkflowHandle[ReferralWorkflow, StatusView]


class ReferralError(Exception):
    """A refusal or failure to report to the user in one line."""


class ActionRefused(ReferralError):
    """The referral refused an action: the state it is in, what it allows, and why."""

    def __init__(
        self, message: str, status: str, allowed_actions: Sequence[str] = (), reason: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.allowed_actions = list(allowed_actions)
        self.reason = reason


@dataclass(frozen=True)
class Submission:
    started: list[str]
    existing: list[str]


async def submit(
    client: Client,
    rfi: Rfi,
    partner_ids: Sequence[str],
    task_queue: str = TASK_QUEUE,
    archived: Collection[str] = frozenset(),
) -> Submission:
    """Start one referral per partner; ids that already exist are reported, not restarted.

    `archived` names referrals the archive knows, which Temporal may have forgotten.
    """

    async def start(partner_id: str) -> tuple[str, bool]:
        referral = ReferralInput(rfi=rfi, partner_id=partner_id)
        if referral.workflow_id in archived:
            return referral.workflow_id, False
        try:
            await client.start_workflow(
                ReferralWorkflow.run,
                referral,
                id=referral.workflow_id,
                task_queue=task_queue,
                # Closed runs keep their id for the namespace's retention: never a second run.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                # Visible to operators at once; the workflow then upserts only changes.
                search_attributes=start_attributes(Referral(rfi, partner_id)),
                # The list's and the referral page's one line: ids and where, no one's contact.
                static_summary=summary(rfi.id, partner_id, rfi.region, rfi.location),
            )
        except WorkflowAlreadyStartedError:
            return referral.workflow_id, False
        return referral.workflow_id, True

    outcomes = await asyncio.gather(*(start(p) for p in dict.fromkeys(partner_ids)))
    return Submission(
        started=[wid for wid, new in outcomes if new],
        existing=[wid for wid, new in outcomes if not new],
    )


START_WATCH_S = 5.0  # how long `submit` watches a referral it started for a failed start


async def failed_starts(
    client: Client, workflow_ids: Sequence[str], within_s: float = START_WATCH_S
) -> dict[str, str]:
    """Of referrals just started, those whose run failed before the referral started, with
    why (a partner that does not serve the region, a directory that refuses it). Each is
    watched until its lead went out, its run ended, or ``within_s`` passed: a referral
    whose contact is still being looked up then is not reported."""

    async def watch(workflow_id: str) -> tuple[str, str | None]:
        handle = client.get_workflow_handle_for(ReferralWorkflow.run, workflow_id)
        clock = asyncio.get_running_loop()
        give_up_at = clock.time() + within_s
        while (left := give_up_at - clock.time()) > 0:
            description = await handle.describe()
            if description.status is WorkflowExecutionStatus.FAILED:
                return workflow_id, await _failure(handle)
            if description.status is not WorkflowExecutionStatus.RUNNING:
                return workflow_id, None
            try:  # waits for a worker to have taken the run's first task, if one polls
                view = await handle.query(
                    ReferralWorkflow.status, rpc_timeout=timedelta(seconds=left)
                )
                if view.started_at is not None:
                    return workflow_id, None
            except (RPCError, WorkflowQueryFailedError):
                pass  # no worker in time, or a run that is failing: look again
            await asyncio.sleep(0.1)
        return workflow_id, None

    watched = await asyncio.gather(*(watch(w) for w in workflow_ids))
    return {workflow_id: why for workflow_id, why in watched if why is not None}


async def _failure(handle: Handle) -> str:
    try:
        await handle.result()
    except WorkflowFailureError as error:
        cause = error.cause
        return cause.message if isinstance(cause, FailureError) else str(cause)
    return "the run failed"


async def act(
    client: Client, rfi_id: str, partner_id: str, action: str, payload: dict[str, Any]
) -> StatusView:
    """Take an action through the workflow's update and return the new status view."""
    size = len(json.dumps(payload, default=str))
    if size > MAX_ACTION_BYTES:
        # Temporal refuses blobs over 2 MB, and an update refused by the workflow echoes its
        # request: keep actions far below, the workflow's own limits are smaller anyway.
        raise ReferralError(f"{action} payload has {size} bytes; at most {MAX_ACTION_BYTES}")
    handle = _handle(client, rfi_id, partner_id)
    try:
        return _checked(await _update(handle, action, payload), rfi_id, partner_id)
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
    legacy = await _legacy_handle(client, rfi_id, partner_id)
    if legacy is not None:
        try:
            return _checked(await _update(legacy, action, payload), rfi_id, partner_id)
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
        handle = legacy
    closed = await _closed_status(handle)
    if closed is None:
        raise ReferralError(f"no referral {handle.id}") from None
    raise ActionRefused(
        f"{action!r} rejected: referral {handle.id} is closed ({closed})",
        status=closed,
        reason="the referral is closed",
    ) from None


async def _update(handle: Handle, action: str, payload: dict[str, Any]) -> StatusView:
    try:
        view: StatusView = await handle.execute_update(action, payload, result_type=StatusView)
        return view
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError):
            details = cause.details[0] if cause.details else None
            if cause.type == "ActionRejected" and isinstance(details, dict):
                raise ActionRefused(
                    cause.message,
                    status=str(details.get("status", "")),
                    allowed_actions=[str(a) for a in details.get("allowed_actions", [])],
                    reason=str(details.get("reason", "")),
                ) from None
            raise ReferralError(cause.message) from None
        raise ReferralError(f"{action} failed: {cause}") from None


async def status(client: Client, rfi_id: str, partner_id: str) -> StatusView:
    """The status view: the final result of a completed run, else the live query."""
    handle = _handle(client, rfi_id, partner_id)
    description = await _describe(handle)
    if description is None:
        legacy = await _legacy_handle(client, rfi_id, partner_id)
        if legacy is None:
            raise ReferralError(f"no referral {handle.id}")
        handle, description = legacy, await _describe(legacy)
        assert description is not None
    if description.status is WorkflowExecutionStatus.RUNNING:
        return _checked(await handle.query(ReferralWorkflow.status), rfi_id, partner_id)
    try:
        return _checked(await handle.result(), rfi_id, partner_id)
    except WorkflowFailureError as error:
        cause = error.cause
        message = cause.message if isinstance(cause, FailureError) else str(cause)
        raise ReferralError(
            f"referral {handle.id} ended without a status ({_name(description.status)}): {message}"
        ) from None


async def statuses(client: Client, rfi_id: str) -> tuple[list[StatusView], list[str]]:
    """Every partner's view of one RFI, ordered by partner, and the referrals that failed."""
    partners = sorted(await partners_of_rfi(client, rfi_id))
    if not partners:
        raise ReferralError(f"no referrals for RFI {rfi_id}")
    outcomes = await asyncio.gather(
        *(status(client, rfi_id, p) for p in partners), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, ReferralError):
            raise outcome
    views = [o for o in outcomes if isinstance(o, StatusView)]
    return views, [str(o) for o in outcomes if isinstance(o, ReferralError)]


def _handle(client: Client, rfi_id: str, partner_id: str) -> Handle:
    return client.get_workflow_handle_for(
        ReferralWorkflow.run, referral_workflow_id(rfi_id, partner_id)
    )


async def _legacy_handle(client: Client, rfi_id: str, partner_id: str) -> Handle | None:
    """The referral under the id runs had before ids were injective, if it is this pair's:
    `referral-c1-acme-consulting` may be (c1-acme, consulting) or (c1, acme-consulting)."""
    handle = client.get_workflow_handle_for(
        ReferralWorkflow.run, legacy_referral_workflow_id(rfi_id, partner_id)
    )
    description = await _describe(handle)
    if description is None:
        return None
    attributes = description.typed_search_attributes
    if (attributes.get(RFI_KEY), attributes.get(PARTNER_KEY)) != (rfi_id, partner_id):
        return None
    return handle


def _checked(view: StatusView, rfi_id: str, partner_id: str) -> StatusView:
    """Never show one referral's view as another's."""
    if (view.rfi_id, view.partner_id) != (rfi_id, partner_id):
        raise ReferralError(
            f"the referral found is RFI {view.rfi_id!r} with partner {view.partner_id!r}, "
            f"not RFI {rfi_id!r} with partner {partner_id!r}"
        )
    return view


async def _closed_status(handle: Handle) -> str | None:
    """The final status of a closed referral, None if there is no such referral."""
    description = await _describe(handle)
    if description is None:
        return None
    if description.status is WorkflowExecutionStatus.COMPLETED:
        return str((await handle.result()).status)
    return _name(description.status)


async def _describe(handle: Handle) -> WorkflowExecutionDescription | None:
    """The run's description, None if Temporal has no such workflow."""
    try:
        return await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


def _name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower().replace("_", " ") if status else "unknown"
