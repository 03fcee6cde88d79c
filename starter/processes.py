"""The one way this project runs a child process: the dev server, the worker, a codec
server in a test, a benchmark's workers. Stopping asks first (SIGTERM), waits a grace
period, then kills, so that no child outlives its parent's `with` block."""

import contextlib
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
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command``; stop it when the block ends. ``quiet`` discards its output."""
    output = subprocess.DEVNULL if quiet else None
    child = subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=output)
    try:
        yield child
    finally:
        stop(child, grace)


def stop(child: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> int:
    """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL; the exit code."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()
