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
`python -m bench.baseline [MAX_CACHED_WORKFLOWS]` runs the worker of both baselines.
"""

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeUpdate
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from workflows import RESPOND_BY_KEY, STATUS_KEY

BASELINE_QUEUE = "bench-baseline"
AFTER = {"interested": 1, "accept": 0, "won": 1}
STATUS_AFTER = {"interested": "Evaluating", "accept": "Negotiating", "won": "Won"}
DECIDE_WITHIN = timedelta(days=7)
TIMEOUT = timedelta(seconds=30)


@dataclass
class BaselineInput:
    referral_id: str
    visibility: bool = False  # also the referral's search attributes, upserts and timer


@activity.defn(name="noop")
async def noop(step: str) -> str:
    return step


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
        self.tasks += [_noop(step) for step in ("lead", "archive")]
        await workflow.wait_condition(lambda: "won" in self.steps)
        await asyncio.gather(*self.tasks)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(self.steps)

    async def _act(self, name: str) -> list[str]:
        self.steps.append(name)
        self.tasks += [_noop(name) for _ in range(AFTER[name])]
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


@workflow.defn(name="WaitingBaseline")
class WaitingBaseline:
    """For `bench open` and `bench burst`, a referral that becomes Missed: the look-up (a
    local activity); the lead email and the archive write side by side; a timer until the
    deadline; then the suggestions followed by the reroute email, beside the archive write."""

    @workflow.run
    async def run(self, due: datetime) -> str:
        await workflow.execute_local_activity(noop, "look-up", start_to_close_timeout=TIMEOUT)
        await asyncio.gather(_noop("lead"), _noop("archive"))
        await workflow.sleep(max(timedelta(0), due - workflow.now()))
        await asyncio.gather(_reroute(), _noop("archive"))
        return "Missed"


def _noop(step: str) -> asyncio.Task[str]:
    return asyncio.create_task(
        workflow.execute_activity(noop, step, start_to_close_timeout=TIMEOUT)
    )


async def _reroute() -> str:
    await workflow.execute_activity(noop, "suggest", start_to_close_timeout=TIMEOUT)
    return await workflow.execute_activity(noop, "reroute", start_to_close_timeout=TIMEOUT)


async def main(cache: int) -> None:
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"), data_converter=pydantic_data_converter
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with Worker(
        client,
        task_queue=BASELINE_QUEUE,
        workflows=[BaselineWorkflow, WaitingBaseline],
        activities=[noop],
        max_cached_workflows=cache,
    ):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
