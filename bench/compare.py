"""`python -m bench compare VARIANT...`: worker settings against each other, paired.

Each variant is `python worker.py` with some environment on its own task queue, all on one
fresh dev server (SQLite, as `bench lifecycle`). Closed loops of N lifecycles (submit,
interested, accept, won, result) run in rounds; every variant runs once a round, in an
order that rotates from round to round, so that the machine's drift falls on all of them
alike. The server's CPU during a variant's loop is that variant's. Separate runs of `bench
lifecycle` a few minutes apart differ by more than most changes to a setting; this does not.
"""

import asyncio
import contextlib
import subprocess
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from bench.harness import (
    WorkerExited,
    cpu_s,
    dev_server,
    migrated_archive,
    new_run_id,
    progress_bars,
    referral_worker,
    rotated,
)
from bench.loops import closed_loop, referral_driver, round_trips
from bench.results import CompareResult, LoopFigures, VariantResult

Awaited = TypeVar("Awaited")


@dataclass(frozen=True)
class Variant:
    label: str
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """`KEY=VALUE[,KEY=VALUE...]`, or an empty string for the worker's defaults."""
        env: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, equals, value = item.partition("=")
            if not equals or not key:
                raise ValueError(f"{item!r} is not KEY=VALUE")
            env[key] = value
        return cls(text.strip() or "defaults", env)


async def while_running(
    job: Awaitable[Awaited], workers: list[subprocess.Popen[bytes]], variants: list[Variant]
) -> Awaited:
    """`job`, stopped with one clear error if a variant's worker exits meanwhile (a bad
    setting stops `python worker.py` at start, and its referrals would wait forever)."""
    task = asyncio.ensure_future(job)
    while not task.done():
        for worker, variant in zip(workers, variants, strict=True):
            if worker.poll() is not None:
                task.cancel()
                raise WorkerExited(
                    f"the worker of variant {variant.label!r} exited with code "
                    f"{worker.returncode}; `python worker.py` with that environment says why"
                )
        await asyncio.wait({task}, timeout=0.5)
    return task.result()


async def compare(
    variants: list[Variant], count: int, in_flight: int, rounds: int
) -> CompareResult:
    run_id = new_run_id()
    queues = [f"bench-compare-{index}" for index in range(len(variants))]
    figures: list[list[LoopFigures]] = [[] for _ in variants]  # each variant's, by round
    with dev_server() as server, contextlib.ExitStack() as processes:
        envs = [
            server.worker_environment(queue, **variant.env)
            for variant, queue in zip(variants, queues, strict=True)
        ]
        archives = [migrated_archive(env["REFERRALS_DATABASE_URL"]) for env in envs]
        client = await server.connect()
        workers = [processes.enter_context(referral_worker(env)) for env in envs]
        progress = processes.enter_context(progress_bars())
        # The submit path consults an archive; any variant's will do.
        drivers = [referral_driver(archives[0], run_id, queue) for queue in queues]
        for queue, drive in zip(queues, drivers, strict=True):
            warm_up = closed_loop(client, drive, 10, 5, f"warm-up-{queue}", progress)
            await while_running(warm_up, workers, variants)
        for round_ in range(rounds):
            for index in rotated(list(range(len(variants))), round_):
                queue, worker, drive = queues[index], workers[index], drivers[index]
                server_was, worker_was = cpu_s(server.process.pid), cpu_s(worker.pid)
                measuring = closed_loop(
                    client, drive, count, in_flight, f"{queue}-{round_ + 1}", progress
                )
                load = await while_running(measuring, workers, variants)
                server_s = cpu_s(server.process.pid) - server_was
                worker_s = cpu_s(worker.pid) - worker_was
                trips = await round_trips(client, load.workflow_ids, 50)
                figures[index].append(
                    LoopFigures(
                        server_ms=round(server_s * 1000 / count, 1),
                        worker_ms=round(worker_s * 1000 / count, 1),
                        workflow_tasks=trips.workflow_tasks,
                        activities=trips.activities,
                        per_s=round(load.achieved_per_s, 2),
                    )
                )
    return CompareResult(
        referrals=count,
        in_flight=in_flight,
        rounds=rounds,
        variants=tuple(
            VariantResult(variant.label, variant.env, LoopFigures.median(by_round), tuple(by_round))
            for variant, by_round in zip(variants, figures, strict=True)
        ),
    )
