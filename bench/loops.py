"""Lifecycles driven in loops: a referral or its bare baseline through interested -> accept
-> won, many at once (closed loop: a fixed number in flight; open loop: arrivals at a fixed
rate), each action's latency measured; then what Temporal did for them, from histories."""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.progress import Progress
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from archive.store import ArchiveStore
from bench.bare import BASELINE_QUEUE, BaselineInput
from bench.baseline import BaselineWorkflow
from bench.harness import PARTNER, bench_rfi
from bench.results import LoadFigures, RoundTrips
from starter import referrals
from workflows.lifecycle import Referral
from workflows.models import referral_workflow_id
from workflows.visibility import start_attributes

# Drives one referral (or its baseline) from start to result, appends its actions'
# latencies, returns its workflow id; the key makes its ids unique within the run.
Driver = Callable[[Client, str, list[float]], Awaitable[str]]


@dataclass
class Load:
    """One load as measured: every action's latency and every lifecycle's workflow id."""

    system: str
    offered_per_s: float | None  # None: closed loop at saturation
    achieved_per_s: float
    action_latencies_s: list[float] = field(repr=False)
    workflow_ids: list[str] = field(default_factory=list, repr=False)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.action_latencies_s)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000

    def figures(self) -> LoadFigures:
        return LoadFigures(
            self.system,
            self.offered_per_s,
            round(self.achieved_per_s, 2),
            round(self.percentile(50), 1),
            round(self.percentile(99), 1),
        )


def merged(system: str, offered: float | None, rounds: list[Load]) -> Load:
    """One load from its rounds: the median rate, every round's latencies."""
    rate = statistics.median(load.achieved_per_s for load in rounds)
    return Load(
        system,
        offered,
        rate,
        [s for load in rounds for s in load.action_latencies_s],
        [i for load in rounds for i in load.workflow_ids],
    )


def referral_driver(archive: ArchiveStore, run_id: str, queue: str) -> Driver:
    close = str((datetime.now(UTC) + timedelta(days=90)).date())
    steps: list[tuple[str, dict[str, Any]]] = [
        ("interested", {}),
        (
            "accept",
            {"estimated_deal_value": "1000", "currency": "EUR", "estimated_close_date": close},
        ),
        ("won", {}),
    ]

    async def drive(client: Client, key: str, latencies: list[float]) -> str:
        rfi = bench_rfi(f"bench-{run_id}-{key}")
        workflow_id = referral_workflow_id(rfi.id, PARTNER)
        # The real submit path: the archive is consulted, then the workflow started.
        known = await asyncio.to_thread(archive.existing, [workflow_id])
        await referrals.submit(client, rfi, [PARTNER], task_queue=queue, archived=known)
        for action, payload in steps:
            began = time.perf_counter()
            await referrals.act(client, rfi.id, PARTNER, action, payload)
            latencies.append(time.perf_counter() - began)
        await client.get_workflow_handle(workflow_id).result()
        return workflow_id

    return drive


def baseline_driver(run_id: str, visibility: bool) -> Driver:
    async def drive(client: Client, key: str, latencies: list[float]) -> str:
        # The attributes a referral's start request carries, made the same way.
        attributes = (
            start_attributes(Referral(bench_rfi(f"bench-{run_id}-{key}"), PARTNER))
            if visibility
            else None
        )
        handle = await client.start_workflow(
            BaselineWorkflow.run,
            BaselineInput(key, visibility),
            id=f"baseline-{run_id}-{key}",
            task_queue=BASELINE_QUEUE,
            search_attributes=attributes,
        )
        for update in (BaselineWorkflow.interested, BaselineWorkflow.accept, BaselineWorkflow.won):
            began = time.perf_counter()
            await handle.execute_update(update)
            latencies.append(time.perf_counter() - began)
        await handle.result()
        return handle.id

    return drive


async def closed_loop(
    client: Client, drive: Driver, count: int, in_flight: int, label: str, progress: Progress
) -> Load:
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    task = progress.add_task(f"{label}: saturation", total=count)

    async def one(index: int) -> str:
        async with gate:
            workflow_id = await drive(client, f"{label}-c{index}", latencies)
            progress.advance(task)
            return workflow_id

    began = time.perf_counter()
    ids = await asyncio.gather(*(one(i) for i in range(count)))
    return Load(label, None, count / (time.perf_counter() - began), latencies, ids)


async def open_loop(
    client: Client, drive: Driver, count: int, rate: float, label: str, progress: Progress
) -> Load:
    latencies: list[float] = []
    task = progress.add_task(f"{label}: {rate:.1f}/s offered", total=count)

    async def one(index: int) -> None:
        await asyncio.sleep(index / rate)
        await drive(client, f"{label}-o{rate:.2f}-{index}", latencies)
        progress.advance(task)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return Load(label, round(rate, 2), count / (time.perf_counter() - began), latencies)


COUNTED = {
    "activities": EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    "local_activities": EventType.EVENT_TYPE_MARKER_RECORDED,
    "updates": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    "upserts": EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    "timers": EventType.EVENT_TYPE_TIMER_STARTED,
    "workflow_tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


async def round_trips(client: Client, workflow_ids: Sequence[str], sample: int) -> RoundTrips:
    """What Temporal did per lifecycle, on average over `sample` of these histories (evenly
    spread): the commands and workflow tasks that cost the server and the worker."""
    chosen = workflow_ids[:: max(1, len(workflow_ids) // sample)][:sample]
    gate = asyncio.Semaphore(8)

    async def events(workflow_id: str) -> list[HistoryEvent]:
        async with gate:
            return list((await client.get_workflow_handle(workflow_id).fetch_history()).events)

    histories = await asyncio.gather(*(events(i) for i in chosen))

    def mean(measure: Callable[[list[HistoryEvent]], float]) -> float:
        return round(sum(measure(history) for history in histories) / len(histories), 2)

    def counter(kind: EventType.ValueType) -> Callable[[list[HistoryEvent]], float]:
        if kind == EventType.EVENT_TYPE_MARKER_RECORDED:  # local activities, not patches
            return lambda history: sum(
                event.event_type == kind
                and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
                for event in history
            )
        return lambda history: sum(event.event_type == kind for event in history)

    return RoundTrips(
        **{name: mean(counter(kind)) for name, kind in COUNTED.items()},
        history_events=mean(len),
        history_kb=mean(lambda history: sum(e.ByteSize() for e in history) / 1024),
    )
