"""`python -m bench open` and `python -m bench burst`: referrals that wait on their deadline.

open: N referrals left in New; the worker's and the server's memory per open referral,
with the sticky cache as configured, beside the same bare workflows, over all N and over
the second half alone (the steady cost, once the heap has grown to its working size);
then every referral must reach Missed once its deadline passes.
burst: N respond deadlines that fall due in the same second; how fast they drain into
Missed, beside the same burst of bare timers.
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from bench.bare import BASELINE_QUEUE
from bench.harness import (
    PARTNER,
    Rig,
    archived,
    bench_rfi,
    bench_rig,
    in_batches,
    new_run_id,
    progress_bars,
    rss_mb,
)
from bench.results import BurstResult, OpenRun
from bench.waiting_baseline import WaitingBaseline
from starter import referrals

WAITING_QUEUE = "bench-waiting"


@dataclass(frozen=True)
class Memory:
    """Resident MB of each process."""

    worker: float
    baseline: float
    server: float

    @classmethod
    def of(cls, rig: Rig) -> "Memory":
        return cls(*(rss_mb(process.pid) for process in (rig.worker, rig.baseline, rig.server)))


def missed(rig: Rig) -> int:
    return archived(rig.archive, "Missed")


async def baselines_completed(client: Client, run_id: str) -> int:
    return (
        await client.count_workflows(
            f"WorkflowType = 'WaitingBaseline' AND ExecutionStatus = 'Completed' "
            f"AND WorkflowId STARTS_WITH 'wait-{run_id}-'"
        )
    ).count


async def open_both(
    rig: Rig, run_id: str, index: int, received_at: datetime, due: datetime
) -> None:
    """A referral for `PARTNER` whose respond deadline falls at `due`, and a bare workflow
    that waits as long."""
    rfi = bench_rfi(f"wait-{run_id}-{index}", received_at, due - received_at)
    await referrals.submit(rig.client, rfi, [PARTNER], task_queue=WAITING_QUEUE)
    await rig.client.start_workflow(
        WaitingBaseline.run, due, id=f"wait-{run_id}-bare-{index}", task_queue=BASELINE_QUEUE
    )


async def memory_per_open_referral(count: int, cache: int, wait_s: float) -> OpenRun:
    run_id = new_run_id()
    async with bench_rig(WAITING_QUEUE, cache=cache) as rig:
        await asyncio.sleep(3)  # both workers idle
        idle = Memory.of(rig)
        now = datetime.now(UTC)
        due = now + timedelta(seconds=wait_s)
        half = count // 2
        with progress_bars() as progress:
            task = progress.add_task(f"opening {count} referrals and {count} bare", total=count)

            async def one(index: int) -> None:
                await open_both(rig, run_id, index, now, due)
                progress.advance(task)

            # In two halves: what the second half adds is the steady cost of an open
            # referral, once the first half has grown the heap to its working size.
            await in_batches([one(i) for i in range(half)])
            await asyncio.sleep(5)  # leads and first archive writes settle
            first = Memory.of(rig)
            await in_batches([one(i) for i in range(half, count)])
        await asyncio.sleep(5)
        held = Memory.of(rig)
        deadline = time.monotonic() + wait_s + 300
        while missed(rig) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(2)
        return OpenRun(
            open_referrals=count,
            max_cached_workflows=cache,
            worker_rss_mb=round(held.worker, 1),
            baseline_worker_rss_mb=round(held.baseline, 1),
            server_rss_mb=round(held.server, 1),
            rss_per_open_referral_kb=round((held.worker - idle.worker) * 1024 / count, 2),
            baseline_rss_per_open_kb=round((held.baseline - idle.baseline) * 1024 / count, 2),
            server_rss_per_open_kb=round((held.server - idle.server) * 1024 / count, 2),
            second_half_rss_per_open_kb=round(
                (held.worker - first.worker) * 1024 / (count - half), 2
            ),
            baseline_second_half_rss_per_open_kb=round(
                (held.baseline - first.baseline) * 1024 / (count - half), 2
            ),
            missed=missed(rig),
        )


async def deadline_burst(count: int, window_s: float = 3600) -> BurstResult:
    run_id = new_run_id()
    async with bench_rig(WAITING_QUEUE, cache=1000) as rig:
        await asyncio.sleep(3)  # both workers idle
        lead = timedelta(seconds=15 + count / 6)  # time to start them all before they fall due
        due = datetime.now(UTC) + lead
        with progress_bars() as progress:
            task = progress.add_task(f"starting {count} + {count} due at one second", total=count)

            async def one(index: int) -> None:
                await open_both(rig, run_id, index, datetime.now(UTC), due)
                progress.advance(task)

            await in_batches([one(i) for i in range(count)])
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        began = time.perf_counter()
        took_s: dict[str, float] = {}  # from `due` until each system's last one is done
        while len(took_s) < 2 and time.perf_counter() - began < window_s:
            if "referrals" not in took_s and missed(rig) >= count:
                took_s["referrals"] = time.perf_counter() - began
            if "baseline" not in took_s and await baselines_completed(rig.client, run_id) >= count:
                took_s["baseline"] = time.perf_counter() - began
            await asyncio.sleep(0.5)
        lost = count - missed(rig)
    referrals_s, baseline_s = took_s.get("referrals"), took_s.get("baseline")
    return BurstResult(
        deadlines=count,
        burst_s=round(took_s.get("referrals", float("nan")), 1),
        baseline_burst_s=round(took_s.get("baseline", float("nan")), 1),
        burst_per_s=round(count / referrals_s, 1) if referrals_s is not None else None,
        baseline_burst_per_s=round(count / baseline_s, 1) if baseline_s is not None else None,
        drained=len(took_s) == 2,
        lost=lost,
    )
