"""Taking back a referral whose run was terminated: `referrals list --stuck` and
`referrals recover`.

A backend that floods a referral with signals faster than any workflow can continue as new
gets it terminated by the server ("history size exceeds limit"); an operator may also
terminate one by mistake. Its state, deadlines and emails are all in its history, so
Temporal's reset brings it back: a new run of the same workflow id replays the history up
to a workflow task, which it runs again, and goes on from there. The point chosen is the
last workflow task the referral completed while its history was still within what one run
of it may hold (`MAX_BYTES_PER_RUN`, `MAX_EVENTS_PER_RUN`: a referral continues as new
before either), so the flood beyond is left behind, and, of those, the last that took no
action (it saw only activities and timers): a task run again takes its actions again, at
the time of the recovery. Signals received after the point are not reapplied (a flood is
signals); updates are.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyExcludeType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryReverseRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus

from starter.referrals import ReferralError
from workflows import PARTNER_KEY, RFI_KEY, WORKFLOW_TYPE
from workflows.models import referral_workflow_id
from workflows.referral import MAX_BYTES_PER_RUN, MAX_EVENTS_PER_RUN

RECOVERY_REASON = "referrals recover: back from its last workflow task before the flood"
MAX_RUNS_BACK = 5  # runs looked at, from the terminated one back, for a task to reset to
# What a workflow task takes in as actions, and what it records of taking one.
ACTIONS_IN = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
)
ACTIONS_TAKEN = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
)


class CannotRecover(ReferralError):
    """The referral cannot be taken back: one line saying why."""


@dataclass(frozen=True)
class Stuck:
    """A referral whose latest run was terminated."""

    workflow_id: str
    rfi_id: str
    partner_id: str
    terminated_at: datetime | None
    reason: str


@dataclass(frozen=True)
class ResetPoint:
    """Where a terminated run is taken back to: the `WorkflowTaskCompleted` event, the
    history kept up to it, and the signals after it that are dropped."""

    event_id: int  # and the number of events kept
    kept_bytes: int
    events: int
    dropped_signals: int
    # No task within the bounds was free of actions: those of the one run again take
    # effect again, at the time of the recovery.
    retakes_actions: bool = False


@dataclass(frozen=True)
class Recovery:
    workflow_id: str
    run_id: str
    point: ResetPoint


def reset_point(
    events: Sequence[HistoryEvent],
    max_bytes: int = MAX_BYTES_PER_RUN,
    max_events: int = MAX_EVENTS_PER_RUN,
) -> ResetPoint:
    """The last workflow task completed, within one run's bounds, that took no action (no
    signal came before it, no update was accepted by it; never the first, which started
    the referral); the last one within the bounds if none; the run's first task if even
    that one came past them (a run that a flood outran from its start: the signals before
    that task stay, and the new run refuses them and continues as new)."""
    size, acted, first = 0, False, True
    completed: dict[int, tuple[int, bool]] = {}  # event id: history bytes, took no action
    last: int | None = None
    for event in events:
        size += event.ByteSize()
        past_bounds = size > max_bytes or event.event_id > max_events
        if past_bounds and last is not None:
            break
        kind = event.event_type
        if kind in ACTIONS_IN:
            acted = True
        elif kind in ACTIONS_TAKEN and last is not None:
            completed[last] = (completed[last][0], False)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            completed[event.event_id] = (size, not acted and not first and not past_bounds)
            last, acted, first = event.event_id, False, False
    if last is None:
        raise CannotRecover("its run never completed a workflow task")
    quiet = [event_id for event_id, (_, no_action) in completed.items() if no_action]
    point = max(quiet, default=last)
    dropped = sum(
        1
        for event in events
        if event.event_id > point
        and event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    return ResetPoint(point, completed[point][0], len(events), dropped, not quiet)


async def stuck_referrals(
    client: Client, rfi_id: str | None = None, partner_id: str | None = None
) -> list[Stuck]:
    """Referrals whose latest run was terminated, newest first (ids must be validated)."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Terminated'"
    if rfi_id is not None:
        query += f" AND {RFI_KEY.name} = '{rfi_id}'"
    if partner_id is not None:
        query += f" AND {PARTNER_KEY.name} = '{partner_id}'"
    found: dict[str, Stuck] = {}
    async for execution in client.list_workflows(query):
        if execution.id in found:
            continue
        latest = await client.get_workflow_handle(execution.id).describe()
        if latest.status is not WorkflowExecutionStatus.TERMINATED:
            continue  # recovered since: a later run goes on
        attributes = execution.typed_search_attributes
        found[execution.id] = Stuck(
            workflow_id=execution.id,
            rfi_id=attributes.get(RFI_KEY) or "",
            partner_id=attributes.get(PARTNER_KEY) or "",
            terminated_at=latest.close_time,
            reason=await _termination_reason(client, execution.id, latest.run_id or ""),
        )
    return sorted(
        found.values(), key=lambda s: (s.terminated_at or datetime.min).timestamp(), reverse=True
    )


async def recover(client: Client, rfi_id: str, partner_id: str) -> Recovery:
    """Reset the referral's terminated run to its reset point, signals after it dropped."""
    workflow_id = referral_workflow_id(rfi_id, partner_id)
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    if description.status is not WorkflowExecutionStatus.TERMINATED:
        state = description.status.name.lower() if description.status else "unknown"
        raise CannotRecover(f"{workflow_id} is {state}: only a terminated run is taken back")
    run_id, point = await _run_to_reset(client, workflow_id, description.run_id or "")
    reset = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            reason=RECOVERY_REASON,
            workflow_task_finish_event_id=point.event_id,
            request_id=str(uuid4()),
            reset_reapply_exclude_types=[ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL],
            identity="referrals recover",
        )
    )
    return Recovery(workflow_id, reset.run_id, point)


async def _run_to_reset(client: Client, workflow_id: str, run_id: str) -> tuple[str, ResetPoint]:
    """The terminated run and its point; or, when a flood outran it from its start (it
    never completed a task), the run it continued from, whose state it was handed."""
    for _ in range(MAX_RUNS_BACK):
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        try:
            return run_id, reset_point(history.events)
        except CannotRecover:
            started = history.events[0].workflow_execution_started_event_attributes
            if not started.continued_execution_run_id:
                raise
            run_id = started.continued_execution_run_id
    raise CannotRecover(f"none of its last {MAX_RUNS_BACK} runs completed a workflow task")


async def _termination_reason(client: Client, workflow_id: str, run_id: str) -> str:
    """The reason the run's last event gives for its termination."""
    answer = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            maximum_page_size=1,
        )
    )
    for event in answer.history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            return event.workflow_execution_terminated_event_attributes.reason
    return ""
