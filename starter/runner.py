"""The worker's workflow runner: Temporal's sandbox, spared lookups whose answer it knows
(and its workflow modules' code loaded once: `starter.shared_code`).

Before it encodes or decodes a workflow task's payloads, the SDK asks the workflow instance
which serialization context each payload belongs to (the workflow, or one of its
activities), so that a converter or codec that varies by context can use it. In the
sandbox every such question is code run inside it (three or four per payload and
direction): about a quarter of the worker's CPU for a referral. The project's converter and
codec are the same in every context, and it stores no payload externally, so the answer
changes nothing. `workflow_runner` wraps the sandbox to answer "no context" directly when
that is so (`WorkflowInstance.get_serialization_context` documents None as "no context
should be set"), and leaves the sandbox as it is otherwise, so that a context-aware codec
added later gets its contexts.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from temporalio import workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import (
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    WorkflowSerializationContext,
)
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner

from starter.shared_code import SharedCodeRunner

NO_STORE = StorageDriverStoreContext(target=None)


def takes_context(converter: DataConverter) -> bool:
    """Whether any part of `converter` changes with the serialization context, or it
    stores payloads externally (whose store context names the workflow)."""
    probe = WorkflowSerializationContext(namespace="probe", workflow_id="probe")
    return converter.external_storage is not None or converter.with_context(probe) is not converter


def workflow_runner(converter: DataConverter, sandbox: WorkflowRunner) -> WorkflowRunner:
    """`sandbox`, its workflow modules' code loaded once, and spared its context lookups
    when `converter` takes no context."""
    return SharedCodeRunner(sandbox if takes_context(converter) else ContextFreeRunner(sandbox))


@dataclass(frozen=True)
class ContextFreeRunner(WorkflowRunner):
    """Runs workflows as `sandbox` does, for a data converter that takes no context."""

    sandbox: WorkflowRunner

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        self.sandbox.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return ContextFreeInstance(self.sandbox.create_instance(det))

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self.sandbox.set_worker_level_failure_exception_types(types)


class ContextFreeInstance(WorkflowInstance):
    """A sandboxed instance, answering the converter's context questions itself."""

    def __init__(self, sandboxed: WorkflowInstance) -> None:
        self.sandboxed = sandboxed

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self.sandboxed.activate(act)

    def get_serialization_context(self, command_info: object) -> SerializationContext | None:
        return None

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        return NO_STORE

    def get_info(self) -> workflow.Info:
        return self.sandboxed.get_info()

    def get_thread_id(self) -> int | None:
        return self.sandboxed.get_thread_id()
