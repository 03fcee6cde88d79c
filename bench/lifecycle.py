"""`python -m bench lifecycle`: referrals against the bare baseline, on one local dev server.

Phase 1, closed loop at saturation: N lifecycles (submit, interested, accept, won, result)
with a fixed number in flight; throughput is lifecycles per second. Phase 2, open loop:
arrivals at 50 % and 90 % of the baseline's saturation rate, each action's latency from
sending its update to the new state coming back (the update returns the status view).
CPU per lifecycle at saturation, by process (server, worker, the bench's client), shows
where the difference between the two goes.
"""

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import Progress
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from archive.database import create_archive_engine, upgrade
from archive.store import ArchiveStore
from bench.bare import BASELINE_QUEUE, BaselineInput
from bench.baseline import BaselineWorkflow
from starter import referrals
from starter.dev import dev_server_command, free_port
from workflows.lifecycle import Referral
from workflows.models import Rfi, referral_workflow_id
from workflows.visibility import start_attributes

ROOT = Path(__file__).resolve().parent.parent
REFERRAL_QUEUE = "bench-referrals"
PARTNER = "globex"
T = TypeVar("T")
# Runs one lifecycle, appends its actions' latencies, returns its workflow id.
Lifecycle = Callable[[Client, str, list[float]], Awaitable[str]]
# What Temporal did for a lifecycle, counted in its history.
ROUND_TRIPS = {
    "activities": EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    "local_activities": EventType.EVENT_TYPE_MARKER_RECORDED,
    "updates": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    "upserts": EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    "timers": EventType.EVENT_TYPE_TIMER_STARTED,
    "workflow_tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


@dataclass
class Load:
    system: str
    offered_per_s: float | None  # None: closed loop at saturation
    achieved_per_s: float
    action_latencies_s: list[float] = field(repr=False)
    workflow_ids: list[str] = field(default_factory=list, repr=False)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.action_latencies_s)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "offered_per_s": self.offered_per_s,
            "achieved_per_s": round(self.achieved_per_s, 2),
            "action_p50_ms": round(self.percentile(50), 1),
            "action_p99_ms": round(self.percentile(99), 1),
        }


def worker_environment(work: Path, address: str, queue: str, **extra: str) -> dict[str, str]:
    """`python worker.py` on its own queue, outbox and SQLite archive under `work`."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "REFERRALS_TASK_QUEUE": queue,
        "REFERRALS_OUTBOX_DIR": str(work / "outbox"),
        "REFERRALS_DATABASE_URL": f"sqlite:///{work}/archive.db",
        "REFERRALS_PARTNER_DIRECTORY": str(ROOT / "samples/partners.json"),
        **extra,
    }


def server_command(work: Path, port: int) -> list[str]:
    """The dev server as `./scripts/dev` runs it, on a SQLite file under `work`, no UI."""
    return [*dev_server_command(work / "temporal.db", port, free_port()), "--headless"]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()


async def connect(address: str) -> Client:
    for _ in range(240):
        with contextlib.suppress(RuntimeError):
            return await Client.connect(address, data_converter=pydantic_data_converter)
        await asyncio.sleep(0.25)
    raise RuntimeError(f"no Temporal server at {address}")


def bench_rfi(run: str, key: str) -> Rfi:
    return Rfi.model_validate(
        {
            "id": f"bench-{run}-{key}",
            "received_at": datetime.now(UTC).isoformat(),
            "region": "emea",
            "need": "Benchmark",
            "company_size": "10",
            "customer": {"name": "B", "company": "B", "email": "b@bench.example"},
        }
    )


def referral_lifecycle(archive: ArchiveStore, run: str, queue: str = REFERRAL_QUEUE) -> Lifecycle:
    close = str((datetime.now(UTC) + timedelta(days=90)).date())
    steps: list[tuple[str, dict[str, Any]]] = [
        ("interested", {}),
        (
            "accept",
            {"estimated_deal_value": "1000", "currency": "EUR", "estimated_close_date": close},
        ),
        ("won", {}),
    ]

    async def lifecycle(client: Client, key: str, latencies: list[float]) -> str:
        rfi = bench_rfi(run, key)
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

    return lifecycle


def baseline_lifecycle(run: str, visibility: bool) -> Lifecycle:
    async def lifecycle(client: Client, key: str, latencies: list[float]) -> str:
        # The attributes a referral's start request carries, made the same way.
        attributes = (
            start_attributes(Referral(bench_rfi(run, key), PARTNER)) if visibility else None
        )
        handle = await client.start_workflow(
            BaselineWorkflow.run,
            BaselineInput(key, visibility),
            id=f"baseline-{run}-{key}",
            task_queue=BASELINE_QUEUE,
            search_attributes=attributes,
        )
        for update in (BaselineWorkflow.interested, BaselineWorkflow.accept, BaselineWorkflow.won):
            began = time.perf_counter()
            await handle.execute_update(update)
            latencies.append(time.perf_counter() - began)
        await handle.result()
        return handle.id

    return lifecycle


async def closed_loop(
    client: Client, lifecycle: Lifecycle, count: int, in_flight: int, label: str, progress: Progress
) -> Load:
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    task = progress.add_task(f"{label}: saturation", total=count)

    async def one(index: int) -> str:
        async with gate:
            workflow_id = await lifecycle(client, f"{label}-c{index}", latencies)
            progress.advance(task)
            return workflow_id

    began = time.perf_counter()
    ids = await asyncio.gather(*(one(i) for i in range(count)))
    return Load(label, None, count / (time.perf_counter() - began), latencies, ids)


async def open_loop(
    client: Client, lifecycle: Lifecycle, count: int, rate: float, label: str, progress: Progress
) -> Load:
    latencies: list[float] = []
    task = progress.add_task(f"{label}: {rate:.1f}/s offered", total=count)

    async def one(index: int) -> None:
        await asyncio.sleep(index / rate)
        await lifecycle(client, f"{label}-o{rate:.2f}-{index}", latencies)
        progress.advance(task)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return Load(label, round(rate, 2), count / (time.perf_counter() - began), latencies)


def rotated(items: list[T], round_: int) -> list[T]:
    """The order of a round: each item first in turn."""
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


def schedule(rounds: int) -> Iterator[tuple[str, str]]:
    """(system, label) of each run of a load: rounds with both systems back to back, the
    first alternating, so that a drift of the machine (another process, the server's own
    housekeeping) does not always favour the same one. Labels go into workflow ids."""
    for round_ in range(rounds):
        for system in rotated(["baseline", "referrals"], round_):
            yield system, f"{system}-{round_ + 1}of{rounds}"


def merged(system: str, offered: float | None, runs: list[Load]) -> Load:
    """One load from its rounds: the median rate, every round's latencies."""
    rate = statistics.median(run.achieved_per_s for run in runs)
    return Load(
        system,
        offered,
        rate,
        [s for run in runs for s in run.action_latencies_s],
        [i for run in runs for i in run.workflow_ids],
    )


async def round_trips(client: Client, workflow_ids: Sequence[str], sample: int) -> dict[str, float]:
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

    def count(kind: EventType.ValueType) -> Callable[[list[HistoryEvent]], float]:
        return lambda history: sum(event.event_type == kind for event in history)

    return {
        **{name: mean(count(kind)) for name, kind in ROUND_TRIPS.items()},
        "history_events": mean(len),
        "history_kb": mean(lambda history: sum(e.ByteSize() for e in history) / 1024),
    }


async def run_lifecycle(
    count: int, in_flight: int, in_memory: bool, rounds: int, baseline_visibility: bool = False
) -> dict[str, Any]:
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="referrals-bench-"))
    command = server_command(work, port)
    if in_memory:
        at = command.index("--db-filename")
        del command[at : at + 2]
    address = f"127.0.0.1:{port}"
    env = worker_environment(work, address, REFERRAL_QUEUE)
    engine = create_archive_engine(env["REFERRALS_DATABASE_URL"])
    upgrade(engine)
    archive = ArchiveStore(engine)
    run = uuid.uuid4().hex[:8]
    with (
        started(command) as server,
        started([sys.executable, "worker.py"], env) as worker,
        started([sys.executable, "-m", "bench.baseline_worker"], env) as bare,
        Progress(console=Console(stderr=True)) as progress,
    ):
        client = await connect(address)
        systems = {
            "baseline": (baseline_lifecycle(run, baseline_visibility), bare.pid),
            "referrals": (referral_lifecycle(archive, run), worker.pid),
        }
        await closed_loop(client, systems["baseline"][0], 10, 5, "warm-up", progress)
        await closed_loop(client, systems["referrals"][0], 10, 5, "warm-up", progress)

        # Phase 1: the closed loop at saturation, with CPU per lifecycle by process.
        saturated: dict[str, list[Load]] = {"baseline": [], "referrals": []}
        cpu_s_used = {system: {"server": 0.0, "worker": 0.0, "bench": 0.0} for system in systems}
        for system, label in schedule(rounds):
            lifecycle, worker_pid = systems[system]
            pids = {"server": server.pid, "worker": worker_pid, "bench": os.getpid()}
            before = {name: cpu_s(pid) for name, pid in pids.items()}
            saturated[system].append(
                await closed_loop(client, lifecycle, count, in_flight, label, progress)
            )
            for name, pid in pids.items():
                cpu_s_used[system][name] += cpu_s(pid) - before[name]
        round_ratios = [
            r.achieved_per_s / b.achieved_per_s
            for r, b in zip(saturated["referrals"], saturated["baseline"], strict=True)
        ]
        loads = [merged(system, None, saturated[system]) for system in systems]
        saturation = loads[0].achieved_per_s
        # Read after the timed runs, so that the reading costs them nothing.
        trips = {load.system: await round_trips(client, load.workflow_ids, 100) for load in loads}

        # Phase 2: open-loop arrivals at shares of the baseline's saturation rate.
        for share in (0.5, 0.9):
            rate = share * saturation
            offered: dict[str, list[Load]] = {"baseline": [], "referrals": []}
            for system, label in schedule(rounds):
                offered[system].append(
                    await open_loop(client, systems[system][0], count, rate, label, progress)
                )
            loads += [merged(system, round(rate, 2), offered[system]) for system in systems]
        worker_rss = peak_rss_mb(worker.pid)
    half = {load.system: load for load in loads[2:4]}
    return {
        "referrals": count,
        "in_flight": in_flight,
        "rounds": rounds,
        "server": "in-memory" if in_memory else "sqlite (wal, synchronous=normal)",
        "baseline": "with the referral's search attributes, upserts and timer"
        if baseline_visibility
        else "bare",
        "referrals_per_s": round(loads[1].achieved_per_s, 2),
        "baseline_per_s": round(saturation, 2),
        # The median of the rounds' ratios: each round runs both systems back to back.
        "ratio": round(statistics.median(round_ratios), 3),
        "round_ratios": [round(ratio, 3) for ratio in round_ratios],
        "action_p50_ms": round(half["referrals"].percentile(50), 1),
        "action_p99_ms": round(half["referrals"].percentile(99), 1),
        "baseline_action_p99_ms": round(half["baseline"].percentile(99), 1),
        "p99_ratio": round(half["referrals"].percentile(99) / half["baseline"].percentile(99), 2),
        "loads": [load.as_json() for load in loads],
        "worker_peak_rss_mb": round(worker_rss, 1),
        # Per lifecycle at saturation, from the histories: the same start, updates and
        # activities for both, or the ratio compares different work.
        "round_trips_per_lifecycle": trips,
        "cpu_ms_per_lifecycle": {
            system: {name: round(used * 1000 / (count * rounds), 1) for name, used in cpu.items()}
            for system, cpu in cpu_s_used.items()
        },
        # On cores the processes share, throughput follows CPU per lifecycle: this ratio
        # drifts less with the machine's speed than the rates do.
        "cpu_ratio": round(
            sum(cpu_s_used["baseline"].values()) / sum(cpu_s_used["referrals"].values()), 3
        ),
        "median_action_ms_at_saturation": round(
            statistics.median(loads[1].action_latencies_s) * 1000, 1
        ),
    }
