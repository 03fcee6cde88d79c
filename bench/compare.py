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
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import Progress

from archive.database import create_archive_engine, upgrade
from archive.store import ArchiveStore
from bench.lifecycle import (
    closed_loop,
    connect,
    cpu_s,
    referral_lifecycle,
    rotated,
    round_trips,
    server_command,
    started,
    worker_environment,
)
from starter.dev import free_port

T = TypeVar("T")  # what while_running waits for


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


class WorkerExited(RuntimeError):
    pass


async def while_running(
    work: Awaitable[T], workers: list[subprocess.Popen[bytes]], variants: list[Variant]
) -> T:
    """`work`, stopped with one clear error if a variant's worker exits meanwhile (a bad
    setting stops `python worker.py` at start, and its referrals would wait forever)."""
    task = asyncio.ensure_future(work)
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
) -> dict[str, Any]:
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="referrals-compare-"))
    address = f"127.0.0.1:{port}"
    run = uuid.uuid4().hex[:8]
    queues = [f"bench-compare-{index}" for index in range(len(variants))]
    envs = []
    for variant, queue in zip(variants, queues, strict=True):
        (work / queue).mkdir()
        envs.append(worker_environment(work / queue, address, queue, **variant.env))
        upgrade(create_archive_engine(envs[-1]["REFERRALS_DATABASE_URL"]))
    # The submit path consults an archive; any variant's will do.
    archive = ArchiveStore(create_archive_engine(envs[0]["REFERRALS_DATABASE_URL"]))
    figures: list[list[dict[str, float]]] = [[] for _ in variants]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(started(server_command(work, port)))
        workers = [stack.enter_context(started([sys.executable, "worker.py"], e)) for e in envs]
        progress = stack.enter_context(Progress(console=Console(stderr=True)))
        client = await connect(address)
        lifecycles = [referral_lifecycle(archive, run, queue) for queue in queues]
        for queue, lifecycle in zip(queues, lifecycles, strict=True):
            warm_up = closed_loop(client, lifecycle, 10, 5, f"warm-up-{queue}", progress)
            await while_running(warm_up, workers, variants)
        for round_ in range(rounds):
            for index in rotated(list(range(len(variants))), round_):
                queue, worker, lifecycle = queues[index], workers[index], lifecycles[index]
                server_was, worker_was = cpu_s(server.pid), cpu_s(worker.pid)
                loop = closed_loop(
                    client, lifecycle, count, in_flight, f"{queue}-{round_ + 1}", progress
                )
                load = await while_running(loop, workers, variants)
                server_s = cpu_s(server.pid) - server_was
                worker_s = cpu_s(worker.pid) - worker_was
                trips = await round_trips(client, load.workflow_ids, 50)
                figures[index].append(
                    {
                        "server_ms": round(server_s * 1000 / count, 1),
                        "worker_ms": round(worker_s * 1000 / count, 1),
                        "workflow_tasks": trips["workflow_tasks"],
                        "activities": trips["activities"],
                        "per_s": round(load.achieved_per_s, 2),
                    }
                )
    return {
        "referrals": count,
        "in_flight": in_flight,
        "rounds": rounds,
        "variants": [
            {
                "variant": variant.label,
                "env": variant.env,
                # Medians over the rounds; CPU per lifecycle, workflow tasks per lifecycle.
                **{key: round(statistics.median(one[key] for one in runs), 2) for key in runs[0]},
                "by_round": runs,
            }
            for variant, runs in zip(variants, figures, strict=True)
        ],
    }


def run_compare(variants: list[Variant], count: int, in_flight: int, rounds: int) -> dict[str, Any]:
    return asyncio.run(compare(variants, count, in_flight, rounds))
