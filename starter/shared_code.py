"""Workflow modules' code, loaded once per worker process instead of once per run.

For every new run the sandbox imports the workflow's module afresh, so that no run sees
another's globals. Python's import reads the module's bytecode and unmarshals it into new
code objects each time: for `workflows/referral.py` as it was on 2026-12-02, 45 KB of
memory a cached referral and about 0.4 ms of CPU a new one. Code objects are immutable and
hold no globals, so `SharedCodeRunner` has the import load each workflow module's code once
and execute that same code into every sandbox's new module. Each run still gets its own
module, functions, classes and globals, and the sandbox still checks everything that code
calls: only the unmarshalling is shared.

It applies to the modules that define the worker's workflows (and their packages) where
Python's own path finder finds them as source files: for those it comes first, ahead of any
other import hook. Every other import goes on as before. The code is loaded once per
process and never read again: a changed file takes a restart, as the worker's own import of
the module always has.
"""

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import CodeType, ModuleType

from temporalio import workflow
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner


class SharedCodeLoader(importlib.machinery.SourceFileLoader):
    """Loads a source module, unmarshalling its bytecode once for all who import it."""

    def __init__(self, fullname: str, path: str, codes: dict[str, CodeType]) -> None:
        super().__init__(fullname, path)
        self.codes = codes

    def get_code(self, fullname: str) -> CodeType | None:
        code = self.codes.get(self.path)
        if code is None:
            code = super().get_code(fullname)
            if code is not None:  # the first to load it gives everyone its code
                code = self.codes.setdefault(self.path, code)
        return code


class SharedCodeFinder(importlib.abc.MetaPathFinder):
    """Finds the shared modules as Python would, and has them loaded by SharedCodeLoader."""

    def __init__(self) -> None:
        self.modules: frozenset[str] = frozenset()
        self.codes: dict[str, CodeType] = {}
        self.lock = threading.Lock()

    def share(self, module: str) -> None:
        """Share the code of `module` and of the packages it is in, first among the
        finders of this process's imports."""
        parts = module.split(".")
        with self.lock:
            self.modules = self.modules.union(
                ".".join(parts[:end]) for end in range(1, len(parts) + 1)
            )
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return None  # not a plain source module: the other finders decide, as before
        spec.loader = SharedCodeLoader(fullname, spec.loader.path, self.codes)
        return spec


SHARED_CODE = SharedCodeFinder()  # one per process: the import machinery is


@dataclass(frozen=True)
class SharedCodeRunner(WorkflowRunner):
    """Runs workflows as `inner` does, the code of their modules loaded once."""

    inner: WorkflowRunner

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        if defn.cls.__module__ != "__main__":  # the sandbox loads __main__ its own way
            SHARED_CODE.share(defn.cls.__module__)
        self.inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return self.inner.create_instance(det)

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self.inner.set_worker_level_failure_exception_types(types)
