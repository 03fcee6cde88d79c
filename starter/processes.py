"""The one way this project runs a child process: the dev server, the worker, a codec
server in a test, a benchmark's workers. Stopping asks first (SIGTERM), waits a grace
period, then kills, so that no child outlives its parent's `with` block."""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

STOP_GRACE = 30.0  # seconds: the worker's own shutdown grace fits in it


@contextlib.contextmanager
def running(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    quiet: bool = False,
    grace: float = STOP_GRACE,
    group: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command``; stop it when the block ends. ``quiet`` discards its output;
    ``group`` runs it in a process group of its own and stops the whole group (for a
    command that is a wrapper script around the program it starts)."""
    output = subprocess.DEVNULL if quiet else None
    child = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=output, stderr=output, start_new_session=group
    )
    try:
        yield child
    finally:
        stop(child, grace, group=group)


def stop(child: subprocess.Popen[bytes], grace: float = STOP_GRACE, *, group: bool = False) -> int:
    """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL (to the child's whole process
    group with ``group``); the exit code."""
    if child.poll() is None:
        _signal(child, signal.SIGTERM, group)
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            _signal(child, signal.SIGKILL, group)
    code = child.wait()
    if group:  # the group's other members may outlive its leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    return code


def _signal(child: subprocess.Popen[bytes], signum: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
