"""Reason codes through the real workflow on the dev server: every code through every
action that takes one, as signals and updates, and refused codes as `ActionRejected`."""

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from tests.factories import ACCEPT, fresh_rfi
from tests.servers import start_referral
from workflows.models import DeclineReason, EmailKind, LossReason, Status, StatusView

CASES: list[tuple[list[tuple[str, Any]], str, str, Status]] = [
    *(([], "no_thanks", code.value, Status.SKIPPED) for code in DeclineReason),
    *(([("interested", {})], "decline", code.value, Status.DECLINED) for code in DeclineReason),
    *(
        ([("interested", {}), ("accept", ACCEPT)], "lost", code.value, Status.LOST)
        for code in LossReason
    ),
]


async def test_every_code_through_every_action_reaches_the_view(
    dev_env: WorkflowEnvironment, queue: str
) -> None:
    async def one(index: int, path: list[tuple[str, Any]], action: str, code: str) -> StatusView:
        handle = await start_referral(dev_env.client, queue, fresh_rfi())
        for name, payload in path:
            await handle.execute_update(name, payload, result_type=StatusView)
        payload = {"reason_code": code, "reason": "explained"}
        if index % 2:  # half as signals, which the workflow reads the same way
            await handle.signal(action, payload)
            return await handle.result()
        await handle.execute_update(action, payload, result_type=StatusView)
        return await handle.result()

    views = await asyncio.gather(
        *(one(i, path, action, code) for i, (path, action, code, _) in enumerate(CASES))
    )
    for view, (_, _, code, status) in zip(views, CASES, strict=True):
        assert view.status is status
        assert view.transitions[-1].reason_code == code
        assert view.rejected_actions == []
        sent = [e for e in view.emails if e.kind is EmailKind.REROUTE and e.outcome == "sent"]
        # A loss alone sends the customer nothing (no other partner of the RFI passed).
        expected = 0 if code == "spam_or_abuse" or status is Status.LOST else 1
        assert len(sent) == expected, (code, status)


@pytest.mark.parametrize(
    ("payload", "says"),
    [({"reason_code": "too_busy"}, "'not_our_expertise'"), ({"reason_code": "other"}, "needs")],
)
async def test_a_refused_code_is_an_action_rejected_and_changes_nothing(
    dev_env: WorkflowEnvironment, queue: str, payload: dict[str, str], says: str
) -> None:
    handle = await start_referral(dev_env.client, queue, fresh_rfi())
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("no_thanks", payload, result_type=StatusView)
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "ActionRejected"
    assert says in cause.message
    view = await handle.query("status", result_type=StatusView)
    assert view.status is Status.NEW
    await handle.terminate("test finished")
