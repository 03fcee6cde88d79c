"""The bare baseline: the referral's Temporal round trips with nothing of the referral.

Start, then three no-op activities (look-up, lead, archive); updates `interested`
(+2 activities: details, archive), `accept` (+1: archive) and `won` (+1: archive): the same
seven activities and three updates a referral driven interested -> accept -> won costs.
`python -m bench.baseline [MAX_CACHED_WORKFLOWS]` runs the worker of both baselines.
"""

import asyncio
import os
import signal
import sys
from datetime import datetime, timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

BASELINE_QUEUE = "bench-baseline"
AFTER = {"interested": 2, "accept": 1, "won": 1}
TIMEOUT = timedelta(seconds=30)


@activity.defn(name="noop")
async def noop(step: str) -> str:
    return step


@workflow.defn(name="BaselineWorkflow")
class BaselineWorkflow:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.tasks: list[asyncio.Task[str]] = []

    @workflow.run
    async def run(self, referral_id: str) -> int:
        for step in ("look-up", "lead", "archive"):
            await workflow.execute_activity(noop, step, start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: "won" in self.steps)
        await asyncio.gather(*self.tasks)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(self.steps)

    async def _act(self, name: str) -> list[str]:
        self.steps.append(name)
        self.tasks += [
            asyncio.create_task(
                workflow.execute_activity(noop, name, start_to_close_timeout=TIMEOUT)
            )
            for _ in range(AFTER[name])
        ]
        return list(self.steps)

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
    """For `bench open` and `bench burst`: three activities, a timer until the deadline,
    three activities (a Missed referral: look-up, lead, archive; suggestions, reroute,
    archive)."""

    @workflow.run
    async def run(self, due: datetime) -> str:
        for step in ("look-up", "lead", "archive"):
            await workflow.execute_activity(noop, step, start_to_close_timeout=TIMEOUT)
        await workflow.sleep(max(timedelta(0), due - workflow.now()))
        for step in ("suggest", "reroute", "archive"):
            await workflow.execute_activity(noop, step, start_to_close_timeout=TIMEOUT)
        return "Missed"


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
