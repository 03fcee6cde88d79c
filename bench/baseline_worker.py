"""`python -m bench.baseline_worker [MAX_CACHED_WORKFLOWS]`: the worker of both baselines.

Apart from the workflows, so that the sandbox imports each bare workflow as the SDK imports
any workflow module: from a module that holds the workflow alone, with bytecode (the package
compiled here). Not from the source of a `__main__` script with both workflows, a dataclass
and an activity, compiled and run again for every workflow: 3-4 ms of the bare worker's CPU
a workflow that Temporal itself does not need.

Its client is the referral worker's (`starter.client.connect` from the same environment,
then `worker_client`): the same data converter, and the same encryption when
`REFERRALS_CODEC_KEYS` is set, so that the comparison pays for the same payload work.
"""

import asyncio
import compileall
import signal
import sys
from pathlib import Path

from temporalio.worker import Worker

from bench.bare import BASELINE_QUEUE, noop
from bench.baseline import BaselineWorkflow
from bench.waiting_baseline import WaitingBaseline
from starter.client import connect, worker_client


async def main(cache: int) -> None:
    compileall.compile_dir(Path(__file__).parent, maxlevels=0, quiet=2)
    client = await connect()  # TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, REFERRALS_CODEC_KEYS
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with Worker(
        worker_client(client),
        task_queue=BASELINE_QUEUE,
        workflows=[BaselineWorkflow, WaitingBaseline],
        activities=[noop],
        max_cached_workflows=cache,
    ):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
