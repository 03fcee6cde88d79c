"""What the bare baseline workflows share, passed through their sandboxes: their task queue,
input, no-op activity and the helpers that schedule it."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

BASELINE_QUEUE = "bench-baseline"
TIMEOUT = timedelta(seconds=30)


@dataclass
class BaselineInput:
    referral_id: str
    visibility: bool = False  # also the referral's search attributes, upserts and timer


@activity.defn(name="noop")
async def noop(step: str) -> str:
    return step


def noop_task(step: str) -> asyncio.Task[str]:
    """A no-op activity started beside the workflow's other work."""
    return asyncio.create_task(
        workflow.execute_activity(noop, step, start_to_close_timeout=TIMEOUT)
    )


async def reroute() -> str:
    """As a referral's reroute: the suggestions, then the email."""
    await workflow.execute_activity(noop, "suggest", start_to_close_timeout=TIMEOUT)
    return await workflow.execute_activity(noop, "reroute", start_to_close_timeout=TIMEOUT)
