"""The bare workflow that `bench open` and `bench burst` set beside waiting referrals, in a
module of its own: the sandbox imports it afresh for every workflow."""

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.bare import TIMEOUT, noop, noop_task, reroute


@workflow.defn(name="WaitingBaseline")
class WaitingBaseline:
    """For `bench open` and `bench burst`, a referral that becomes Missed: the look-up (a
    local activity); the lead email and the archive write side by side; a timer until the
    deadline; then the suggestions followed by the reroute email, beside the archive write."""

    @workflow.run
    async def run(self, due: datetime) -> str:
        await workflow.execute_local_activity(noop, "look-up", start_to_close_timeout=TIMEOUT)
        await asyncio.gather(noop_task("lead"), noop_task("archive"))
        await workflow.sleep(max(timedelta(0), due - workflow.now()))
        await asyncio.gather(reroute(), noop_task("archive"))
        return "Missed"
