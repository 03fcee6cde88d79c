"""`python -m bench heap`: the Python heap an open referral keeps once it left the cache.

The referral worker (`build_worker`, as `python worker.py` builds it, with a small sticky
cache) runs inside this process under tracemalloc, so that what it measures is what the
worker's Python objects hold, whatever the allocator keeps. N referrals open in two
halves; the heap the second half adds, after collection, divided by its size, is the
steady cost of an open referral past the cache. (Memory of the SDK's Rust core is not
traced; its share is in `bench open`'s resident figures.)
"""

import asyncio
import gc
import tempfile
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from archive.database import create_archive_engine, upgrade
from bench.lifecycle import connect, server_command, started, worker_environment
from bench.waiting import archived, in_batches, rfi
from starter import referrals
from starter.dev import free_port
from starter.settings import Settings
from worker import build_worker

REFERRAL_QUEUE = "bench-heap"


def traced_kb() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 1024


async def heap_per_open_referral(count: int, cache: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="referrals-bench-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = worker_environment(
        work, address, REFERRAL_QUEUE, REFERRALS_MAX_CACHED_WORKFLOWS=str(cache)
    )
    settings = Settings.model_validate(env)
    upgrade(create_archive_engine(settings.database_url))
    command = server_command(work, port)
    run = uuid.uuid4().hex[:8]
    respond = timedelta(hours=1)
    now = datetime.now(UTC)
    half = count // 2
    tracemalloc.start()
    with (
        started(command),
        ThreadPoolExecutor(settings.max_concurrent_activities) as executor,
        Progress(console=Console(stderr=True)) as progress,
    ):
        client = await connect(address)
        async with build_worker(client, settings, executor):

            async def one(index: int) -> None:
                await referrals.submit(
                    client, rfi(run, index, now, respond), ["globex"], task_queue=REFERRAL_QUEUE
                )
                progress.advance(task)

            async def settled(total: int) -> float:
                # Every referral written to the archive: its start is over.
                while await asyncio.to_thread(archived, settings.database_url) < total:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2)
                return traced_kb()

            task = progress.add_task(f"opening {count} referrals, cache {cache}", total=10 + count)
            await in_batches([one(i) for i in range(10)])  # warm up: imports, pools, caches
            idle = await settled(10)
            await in_batches([one(i) for i in range(10, 10 + half)])
            first = await settled(10 + half)
            await in_batches([one(i) for i in range(10 + half, 10 + count)])
            second = await settled(10 + count)
    tracemalloc.stop()
    return {
        "open_referrals": count,
        "max_cached_workflows": cache,
        "heap_per_open_referral_kb": round((second - idle) / count, 2),
        "heap_per_open_referral_past_cache_kb": round((second - first) / (count - half), 2),
    }
