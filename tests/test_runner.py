"""The worker's workflow runner: still Temporal's sandbox, each run with its own module,
spared its context lookups only when the data converter takes no context, and loading the
workflow module's code once."""

import asyncio
import base64
import dataclasses
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import SecretStr
    from temporalio.api.common.v1 import Payload
    from temporalio.client import Client
    from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from starter.client import data_converter, worker_client
    from starter.runner import ContextFreeRunner, takes_context, workflow_runner
    from starter.settings import Settings
    from starter.shared_code import SharedCodeRunner
    from worker import SANDBOX, build_worker

KEYS = f"k1:{base64.b64encode(os.urandom(32)).decode()}"


class ContextCodec(PayloadCodec, WithSerializationContext):
    """A codec that would tell payloads apart by workflow or activity."""

    def __init__(self, context: SerializationContext | None = None) -> None:
        self.context = context

    def with_context(self, context: SerializationContext) -> "ContextCodec":
        return ContextCodec(context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


RUNS: list[str] = []  # a global of this module: each run's sandbox has its own


@workflow.defn(name="SandboxProbe")
class SandboxProbe:
    def __init__(self) -> None:
        self.released = False

    @workflow.run
    async def run(self, greeting: str) -> list[str]:
        RUNS.append(workflow.info().workflow_id)
        await workflow.wait_condition(lambda: self.released)
        try:
            datetime.now()
            clock = "read"
        except workflow.NondeterminismError:
            clock = "refused"
        code = id(SandboxProbe.run.__code__)
        return [greeting, clock, str(workflow.unsafe.in_sandbox()), ",".join(RUNS), str(code)]

    @workflow.signal
    def release(self) -> None:
        self.released = True


def on_client(env: WorkflowEnvironment, settings: Settings) -> Client:
    """The worker's client on `env`, with the converter `settings` configure."""
    config = env.client.config()
    config["data_converter"] = data_converter(settings)
    return worker_client(Client(**config))


async def test_the_referral_worker_runs_workflows_in_the_sandbox_spared_the_lookups(
    dev_env: WorkflowEnvironment, settings: Settings, executor: ThreadPoolExecutor
) -> None:
    encrypted = settings.model_copy(update={"codec_keys": SecretStr(KEYS)})
    for configured in (settings, encrypted):
        client = on_client(dev_env, configured)
        runner = workflow_runner(client.data_converter, SANDBOX)
        assert runner == SharedCodeRunner(ContextFreeRunner(SANDBOX))
        queue = f"runner-{uuid.uuid4()}"
        async with Worker(
            client,
            task_queue=queue,
            workflows=[SandboxProbe],
            workflow_runner=runner,
        ):
            # Two runs at once, each in a sandbox of its own.
            probes = [
                await client.start_workflow(
                    SandboxProbe.run, "hello", id=f"{queue}-{n}", task_queue=queue
                )
                for n in (1, 2)
            ]
            for probe in probes:
                await probe.signal(SandboxProbe.release)
            first, second = await asyncio.gather(*(probe.result() for probe in probes))
        # The argument and the result crossed the converter (and codec); each run ran in
        # the sandbox, which still refuses the wall clock, with globals of its own.
        assert first[:4] == ["hello", "refused", "True", f"{queue}-1"]
        assert second[:4] == ["hello", "refused", "True", f"{queue}-2"]
        # Both ran the same code object, unmarshalled once for the two sandboxes' modules.
        assert first[4] == second[4]
    worker = build_worker(dev_env.client, settings, executor)
    assert worker.config()["workflow_runner"] == SharedCodeRunner(ContextFreeRunner(SANDBOX))


def test_a_context_aware_codec_keeps_the_sandboxs_own_lookups() -> None:
    converter = dataclasses.replace(data_converter(Settings()), payload_codec=ContextCodec())
    assert takes_context(converter)
    assert workflow_runner(converter, SANDBOX) == SharedCodeRunner(SANDBOX)
