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
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from bench.harness import (
    PARTNER,
    archived,
    bench_rfi,
    dev_server,
    in_batches,
    migrated_archive,
    new_run_id,
    progress_bars,
)
from bench.results import HeapResult
from starter import referrals
from starter.settings import Settings
from worker import build_worker

HEAP_QUEUE = "bench-heap"


def traced_kb() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 1024


async def heap_per_open_referral(count: int, cache: int) -> HeapResult:
    run_id = new_run_id()
    respond = timedelta(hours=1)
    now = datetime.now(UTC)
    half = count // 2
    tracemalloc.start()
    with dev_server() as server:
        env = server.worker_environment(HEAP_QUEUE, REFERRALS_MAX_CACHED_WORKFLOWS=str(cache))
        settings = Settings.model_validate(env)
        archive = migrated_archive(settings.database_url)
        client = await server.connect()
        with (
            ThreadPoolExecutor(settings.max_concurrent_activities) as executor,
            progress_bars() as progress,
        ):
            async with build_worker(client, settings, executor):

                async def one(index: int) -> None:
                    rfi = bench_rfi(f"wait-{run_id}-{index}", now, respond)
                    await referrals.submit(client, rfi, [PARTNER], task_queue=HEAP_QUEUE)
                    progress.advance(task)

                async def settled(total: int) -> float:
                    # Every referral written to the archive: its start is over.
                    while await asyncio.to_thread(archived, archive) < total:  # noqa: ASYNC110
                        await asyncio.sleep(0.5)
                    await asyncio.sleep(2)
                    return traced_kb()

                task = progress.add_task(
                    f"opening {count} referrals, cache {cache}", total=10 + count
                )
                await in_batches([one(i) for i in range(10)])  # warm up: imports, pools, caches
                idle = await settled(10)
                await in_batches([one(i) for i in range(10, 10 + half)])
                first = await settled(10 + half)
                await in_batches([one(i) for i in range(10 + half, 10 + count)])
                second = await settled(10 + count)
    tracemalloc.stop()
    return HeapResult(
        open_referrals=count,
        max_cached_workflows=cache,
        heap_per_open_referral_kb=round((second - idle) / count, 2),
        heap_per_open_referral_past_cache_kb=round((second - first) / (count - half), 2),
    )
