"""What every benchmark stands on: a dev server of its own in a fresh folder, the referral
worker and the bare baseline's worker as child processes (with the project's one process
runner and one connect, so that `REFERRALS_CODEC_KEYS` reaches every party), readers of a
process's CPU and memory, the order of rounds, and what the benchmarks submit."""

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from archive.database import create_archive_engine, upgrade
from archive.schema import ReferralRow
from archive.store import ArchiveStore
from bench.bare import BASELINE_QUEUE
from bench.results import CpuShares
from starter.client import connect
from starter.dev import dev_server_command, free_port
from starter.processes import running
from starter.settings import Settings
from workflows.models import Rfi

ROOT = Path(__file__).resolve().parent.parent
PARTNER = "globex"
SYSTEMS = ("baseline", "referrals")
STARTUP_S = 60.0  # how long a server or a worker may take to answer
T = TypeVar("T")


# Rounds: which runs when.


def rotated(items: list[T], round_: int) -> list[T]:
    """The order of a round: each item first in turn."""
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


def schedule(rounds: int, systems: Sequence[str] = SYSTEMS) -> Iterator[tuple[str, str]]:
    """(system, label) of each run of a load: rounds with both systems back to back, the
    first alternating, so that a drift of the machine (another process, the server's own
    housekeeping) does not always favour the same one. Labels go into workflow ids."""
    for round_ in range(rounds):
        for system in rotated(list(systems), round_):
            yield system, f"{system}-{round_ + 1}of{rounds}"


async def in_rounds(
    rounds: int, measure: Callable[[str, str], Awaitable[T]], systems: Sequence[str] = SYSTEMS
) -> dict[str, list[T]]:
    """`measure(system, label)` as `schedule` orders it: each system's results, round by round
    (the baseline and the referrals, unless other `systems` are named)."""
    results: dict[str, list[T]] = {system: [] for system in systems}
    for system, label in schedule(rounds, systems):
        results[system].append(await measure(system, label))
    return results


# Processes: the dev server, the workers, and what they use.


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_lifecycle(
    cpu_s_used: Mapping[str, Mapping[str, float]], lifecycles: int
) -> dict[str, CpuShares]:
    """CPU seconds each system's processes used, as milliseconds per lifecycle."""
    return {
        system: CpuShares(**{name: round(s * 1000 / lifecycles, 1) for name, s in used.items()})
        for system, used in cpu_s_used.items()
    }


def rss_mb(pid: int, *, peak: bool = False) -> float:
    """Resident memory now, or at its highest so far."""
    field = "VmHWM:" if peak else "VmRSS:"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_command(work: Path, port: int, *, in_memory: bool = False) -> list[str]:
    """The dev server as `./scripts/dev` runs it, on a SQLite file under `work` (or in
    memory), no UI."""
    command = [*dev_server_command(work / "temporal.db", port, free_port()), "--headless"]
    if in_memory:
        at = command.index("--db-filename")
        del command[at : at + 2]
    return command


def migrated_archive(database_url: str) -> ArchiveStore:
    """The archive at `database_url`, its schema made (before the worker's own start does):
    the bench reads it from the first referral on."""
    engine = create_archive_engine(database_url)
    upgrade(engine)
    return ArchiveStore(engine)


def archived(archive: ArchiveStore, status: str | None = None) -> int:
    """Referrals in the archive, with this status if one is given."""
    query = select(func.count()).select_from(ReferralRow)
    if status is not None:
        query = query.where(ReferralRow.status == status)
    with Session(archive.engine) as session:
        return session.scalar(query) or 0


@dataclass(frozen=True)
class DevServer:
    process: subprocess.Popen[bytes]
    address: str
    work: Path  # a fresh folder: the server's database, the workers' outboxes and archives

    @property
    def settings(self) -> Settings:
        """The bench's client settings: this server, the dev server's one namespace, and
        the environment's codec keys (as the workers have them)."""
        return Settings(TEMPORAL_ADDRESS=self.address, TEMPORAL_NAMESPACE="default")

    async def connect(self) -> Client:
        return await connect(self.settings, retry_for=STARTUP_S, server=self.process)

    def worker_environment(self, queue: str, **extra: str) -> dict[str, str]:
        """`python worker.py` on this server and its own queue, with an outbox and a SQLite
        archive of its own under `work/queue`."""
        folder = self.work / queue
        folder.mkdir(exist_ok=True)
        return {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": "default",
            "REFERRALS_TASK_QUEUE": queue,
            "REFERRALS_OUTBOX_DIR": str(folder / "outbox"),
            "REFERRALS_DATABASE_URL": f"sqlite:///{folder}/archive.db",
            "REFERRALS_PARTNER_DIRECTORY": str(ROOT / "samples/partners.json"),
            **extra,
        }


@contextlib.contextmanager
def dev_server(*, in_memory: bool = False) -> Iterator[DevServer]:
    """A dev server of the bench's own on a free port, stopped when the block ends."""
    work = Path(tempfile.mkdtemp(prefix="referrals-bench-"))
    port = free_port()
    command = server_command(work, port, in_memory=in_memory)
    with running(command, cwd=ROOT, quiet=True) as process:
        yield DevServer(process, f"127.0.0.1:{port}", work)


def referral_worker(
    env: dict[str, str],
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """`python worker.py`, as deployed."""
    return running([sys.executable, "worker.py"], env=env, cwd=ROOT, quiet=True)


def baseline_worker(
    env: dict[str, str], cache: int | None = None
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The worker of both bare baselines, on `BASELINE_QUEUE`."""
    command = [sys.executable, "-m", "bench.baseline_worker"]
    return running(
        [*command, *([str(cache)] if cache is not None else [])], env=env, cwd=ROOT, quiet=True
    )


class WorkerExited(RuntimeError):
    """A worker the benchmark started exited: its referrals would wait forever."""


async def polled(client: Client, workers: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """Until each task queue has a worker polling it (its process started and connected);
    WorkerExited if one exits first, a RuntimeError if none polls within `STARTUP_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_S
    for queue, process in workers.items():
        request = DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        while not (await client.workflow_service.describe_task_queue(request)).pollers:
            if process.poll() is not None:
                raise WorkerExited(
                    f"the worker of task queue {queue!r} exited with code {process.returncode} "
                    "before it polled"
                )
            if loop.time() >= deadline:
                raise RuntimeError(f"no worker polls {queue!r} after {STARTUP_S:.0f} s")
            await asyncio.sleep(0.25)


@dataclass(frozen=True)
class Rig:
    """A dev server with the referral worker and the bare baseline's worker beside it."""

    client: Client
    server: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    baseline: subprocess.Popen[bytes]
    archive: ArchiveStore  # the referral worker's
    environment: dict[str, str]  # the referral worker's: its server, queue, archive, outbox


@contextlib.asynccontextmanager
async def bench_rig(
    queue: str, *, in_memory: bool = False, cache: int | None = None
) -> AsyncIterator[Rig]:
    """Both workers polling, each with `cache` sticky workflows if given."""
    with dev_server(in_memory=in_memory) as server:
        client = await server.connect()
        extra = {} if cache is None else {"REFERRALS_MAX_CACHED_WORKFLOWS": str(cache)}
        env = server.worker_environment(queue, **extra)
        archive = migrated_archive(env["REFERRALS_DATABASE_URL"])
        with referral_worker(env) as worker, baseline_worker(env, cache) as baseline:
            await polled(client, {queue: worker, BASELINE_QUEUE: baseline})
            yield Rig(client, server.process, worker, baseline, archive, env)


# What the benchmarks submit and how they show their progress.


def new_run_id() -> str:
    """Eight hex digits in every workflow id of one benchmark run."""
    return uuid.uuid4().hex[:8]


def bench_rfi(
    rfi_id: str, received_at: datetime | None = None, respond_within: timedelta | None = None
) -> Rfi:
    """An RFI for `PARTNER`; with `respond_within`, a referral that waits for that long
    (and is not reminded meanwhile)."""
    data: dict[str, Any] = {
        "id": rfi_id,
        "received_at": (received_at or datetime.now(UTC)).isoformat(),
        "region": "emea",
        "need": "Benchmark",
        "company_size": "10",
        "customer": {"name": "B", "company": "B", "email": "b@bench.example"},
    }
    if respond_within is not None:
        data["deadlines"] = {
            "respond_within": f"PT{respond_within.total_seconds():.3f}S",
            "remind_after": "PT1000H",
        }
    return Rfi.model_validate(data)


async def in_batches(coroutines: list[Coroutine[Any, Any, Any]], size: int = 50) -> None:
    for start in range(0, len(coroutines), size):
        await asyncio.gather(*coroutines[start : start + size])


def progress_bars() -> Progress:
    """Progress on stderr, so that stdout holds the result alone."""
    return Progress(console=Console(stderr=True))
