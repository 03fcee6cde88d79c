"""`python -m bench open` and `python -m bench burst`: referrals that wait on their deadline.

open: N referrals left in New; the worker's and the server's memory per open referral,
with the sticky cache as configured, beside the same bare workflows, over all N and over
the second half alone (the steady cost, once the heap has grown to its working size);
then every referral must reach Missed once its deadline passes.
burst: N respond deadlines that fall due in the same second; how fast they drain into
Missed, beside the same burst of bare timers.
"""

import asyncio
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from temporalio.client import Client

from archive.database import create_archive_engine, upgrade
from archive.schema import ReferralRow
from bench.bare import BASELINE_QUEUE
from bench.lifecycle import connect, server_command, started, worker_environment
from bench.waiting_baseline import WaitingBaseline
from starter import referrals
from starter.dev import free_port
from workflows.models import Rfi

REFERRAL_QUEUE = "bench-waiting"


@dataclass
class Stack:
    client: Client
    server_pid: int
    referral_pid: int
    baseline_pid: int
    archive_url: str


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory(stack: Stack) -> dict[str, float]:
    return {
        "referrals": rss_mb(stack.referral_pid),
        "baseline": rss_mb(stack.baseline_pid),
        "server": rss_mb(stack.server_pid),
    }


def rfi(run: str, index: int, received_at: datetime, respond_within: timedelta) -> Rfi:
    return Rfi.model_validate(
        {
            "id": f"wait-{run}-{index}",
            "received_at": received_at.isoformat(),
            "region": "emea",
            "need": "Benchmark",
            "company_size": "10",
            "deadlines": {
                "respond_within": f"PT{respond_within.total_seconds():.3f}S",
                "remind_after": "PT1000H",
            },
            "customer": {"name": "B", "company": "B", "email": "b@bench.example"},
        }
    )


def archived(archive_url: str, status: str | None = None) -> int:
    """Referrals in the archive, with this status if one is given."""
    engine = create_archive_engine(archive_url)
    query = select(func.count()).select_from(ReferralRow)
    if status is not None:
        query = query.where(ReferralRow.status == status)
    with Session(engine) as session:
        count = session.scalar(query) or 0
    engine.dispose()
    return count


def missed(archive_url: str) -> int:
    return archived(archive_url, "Missed")


async def completed(client: Client, run: str) -> int:
    return (
        await client.count_workflows(
            f"WorkflowType = 'WaitingBaseline' AND ExecutionStatus = 'Completed' "
            f"AND WorkflowId STARTS_WITH 'wait-{run}-'"
        )
    ).count


async def in_batches(coroutines: list[Any], size: int = 50) -> None:
    for start in range(0, len(coroutines), size):
        await asyncio.gather(*coroutines[start : start + size])


async def run_stack(cache: int, body: Any) -> dict[str, Any]:
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="referrals-bench-"))
    address = f"127.0.0.1:{port}"
    env = worker_environment(
        work, address, REFERRAL_QUEUE, REFERRALS_MAX_CACHED_WORKFLOWS=str(cache)
    )
    upgrade(create_archive_engine(env["REFERRALS_DATABASE_URL"]))
    command = server_command(work, port)
    with (
        started(command) as server,
        started([sys.executable, "worker.py"], env) as worker,
        started([sys.executable, "-m", "bench.baseline_worker", str(cache)], env) as bare,
    ):
        client = await connect(address)
        await asyncio.sleep(3)  # both workers connected and idle
        stack = Stack(client, server.pid, worker.pid, bare.pid, env["REFERRALS_DATABASE_URL"])
        result: dict[str, Any] = await body(stack)
        return result


async def open_referrals(count: int, cache: int, wait_s: float) -> dict[str, Any]:
    async def body(stack: Stack) -> dict[str, Any]:
        run = uuid.uuid4().hex[:8]
        idle = memory(stack)
        now = datetime.now(UTC)
        respond = timedelta(seconds=wait_s)
        half = count // 2
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task(f"opening {count} referrals and {count} bare", total=count)

            async def one(index: int) -> None:
                await referrals.submit(
                    stack.client,
                    rfi(run, index, now, respond),
                    ["globex"],
                    task_queue=REFERRAL_QUEUE,
                )
                await stack.client.start_workflow(
                    WaitingBaseline.run,
                    now + respond,
                    id=f"wait-{run}-bare-{index}",
                    task_queue=BASELINE_QUEUE,
                )
                progress.advance(task)

            # In two halves: what the second half adds is the steady cost of an open
            # referral, once the first half has grown the heap to its working size.
            await in_batches([one(i) for i in range(half)])
            await asyncio.sleep(5)  # leads and first archive writes settle
            first = memory(stack)
            await in_batches([one(i) for i in range(half, count)])
        await asyncio.sleep(5)
        held = memory(stack)
        deadline = time.monotonic() + wait_s + 300
        while missed(stack.archive_url) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(2)
        return {
            "open_referrals": count,
            "max_cached_workflows": cache,
            "worker_rss_mb": round(held["referrals"], 1),
            "baseline_worker_rss_mb": round(held["baseline"], 1),
            "server_rss_mb": round(held["server"], 1),
            "rss_per_open_referral_kb": round(
                (held["referrals"] - idle["referrals"]) * 1024 / count, 2
            ),
            "baseline_rss_per_open_kb": round(
                (held["baseline"] - idle["baseline"]) * 1024 / count, 2
            ),
            "server_rss_per_open_kb": round((held["server"] - idle["server"]) * 1024 / count, 2),
            "second_half_rss_per_open_kb": round(
                (held["referrals"] - first["referrals"]) * 1024 / (count - half), 2
            ),
            "baseline_second_half_rss_per_open_kb": round(
                (held["baseline"] - first["baseline"]) * 1024 / (count - half), 2
            ),
            "missed": missed(stack.archive_url),
        }

    return await run_stack(cache, body)


async def burst(count: int, window_s: float = 3600) -> dict[str, Any]:
    async def body(stack: Stack) -> dict[str, Any]:
        run = uuid.uuid4().hex[:8]
        lead = timedelta(seconds=15 + count / 6)  # time to start them all before they fall due
        due = datetime.now(UTC) + lead
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task(f"starting {count} + {count} due at one second", total=count)

            async def one(index: int) -> None:
                received = datetime.now(UTC)
                await referrals.submit(
                    stack.client,
                    rfi(run, index, received, due - received),
                    ["globex"],
                    task_queue=REFERRAL_QUEUE,
                )
                await stack.client.start_workflow(
                    WaitingBaseline.run,
                    due,
                    id=f"wait-{run}-bare-{index}",
                    task_queue=BASELINE_QUEUE,
                )
                progress.advance(task)

            await in_batches([one(i) for i in range(count)])
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        began = time.perf_counter()
        times: dict[str, float] = {}
        while len(times) < 2 and time.perf_counter() - began < window_s:
            if "referrals" not in times and missed(stack.archive_url) >= count:
                times["referrals"] = time.perf_counter() - began
            if "baseline" not in times and await completed(stack.client, run) >= count:
                times["baseline"] = time.perf_counter() - began
            await asyncio.sleep(0.5)
        done = missed(stack.archive_url)
        return {
            "deadlines": count,
            "burst_s": round(times.get("referrals", float("nan")), 1),
            "baseline_burst_s": round(times.get("baseline", float("nan")), 1),
            "burst_per_s": round(count / times["referrals"], 1) if "referrals" in times else None,
            "baseline_burst_per_s": round(count / times["baseline"], 1)
            if "baseline" in times
            else None,
            # Both drained within the window; if not, `lost` counts the late ones as well.
            "drained": len(times) == 2,
            "lost": count - done,
        }

    return await run_stack(1000, body)
