"""The bare baseline: the referral's Temporal round trips with nothing of the referral.

A referral driven interested -> accept -> won, as the bench drives it (each action right
after the previous one's answer), makes: the start; the contact look-up as a local
activity; the lead email and the first archive write side by side; `interested` (+1: the
details email); `accept`; `won` (+1: the archive write, which by then also covers the
transitions that arrived while the first one ran). `BaselineWorkflow` makes the same
start, local activity, three updates and four no-op activities, and nothing else.

With `visibility` it also makes the referral's other Temporal commands: its search
attributes in the start request (the bench client's), one upsert with each update (the
status, and `RespondBy` set at `interested` and unset at `accept`), and the decide timer
from `interested` to `accept`, as in referrals' histories in this bench (`interested`
arrives with the first workflow task, before any respond timer starts). Against it, what is
left is the referral's own work.
`python -m bench.baseline_worker [MAX_CACHED_WORKFLOWS]` runs the worker of both baselines.
As the referral's workflow module, this one holds the workflow alone: the sandbox imports it
afresh for every workflow, and what it shares with `WaitingBaseline` is passed through.
"""

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from bench.bare import TIMEOUT, BaselineInput, noop, noop_task
    from workflows import RESPOND_BY_KEY, STATUS_KEY

AFTER = {"interested": 1, "accept": 0, "won": 1}
STATUS_AFTER = {"interested": "Evaluating", "accept": "Negotiating", "won": "Won"}
DECIDE_WITHIN = timedelta(days=7)


@workflow.defn(name="BaselineWorkflow")
class BaselineWorkflow:
    @workflow.init
    def __init__(self, input: BaselineInput) -> None:
        self.visibility = input.visibility
        self.steps: list[str] = []
        self.tasks: list[asyncio.Task[str]] = []
        self.decide: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, input: BaselineInput) -> int:
        await workflow.execute_local_activity(noop, "look-up", start_to_close_timeout=TIMEOUT)
        self.tasks += [noop_task(step) for step in ("lead", "archive")]
        await workflow.wait_condition(lambda: "won" in self.steps)
        await asyncio.gather(*self.tasks)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(self.steps)

    async def _act(self, name: str) -> list[str]:
        self.steps.append(name)
        self.tasks += [noop_task(name) for _ in range(AFTER[name])]
        if self.visibility:
            self._as_a_referral(name)
        return list(self.steps)

    def _as_a_referral(self, name: str) -> None:
        updates: list[SearchAttributeUpdate[Any]] = [STATUS_KEY.value_set(STATUS_AFTER[name])]
        if name == "interested":
            updates.append(RESPOND_BY_KEY.value_set(workflow.now() + DECIDE_WITHIN))
            self.decide = asyncio.create_task(workflow.sleep(DECIDE_WITHIN))
        elif name == "accept" and self.decide is not None:
            updates.append(RESPOND_BY_KEY.value_unset())
            self.decide.cancel()
        workflow.upsert_search_attributes(updates)

    @workflow.update
    async def interested(self) -> list[str]:
        return await self._act("interested")

    @workflow.update
    async def accept(self) -> list[str]:
        return await self._act("accept")

    @workflow.update
    async def won(self) -> list[str]:
        return await self._act("won")
