"""How the referral workflow calls its activities, and reads their failures.

Workflow code, passed through the sandbox like the lifecycle (it calls the workflow API and
pure code only): loaded once for all runs, not once a run.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Continuing as new waits for a running activity to end, so that its outcome is recorded.
WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


def cause(error: Exception) -> BaseException | None:
    """What failed: the activity's error, or `error` itself (a local activity's failure
    may come unwrapped, as the activity raised it)."""
    return error.cause if isinstance(error, ActivityError) else error


def error_type(error: Exception) -> str | None:
    """The `ApplicationError` type the activity failed with, if any."""
    failed = cause(error)
    return failed.type if isinstance(failed, ApplicationError) else None


def message(error: ActivityError) -> str:
    failed = error.cause
    return failed.message if isinstance(failed, ApplicationError) else str(error)
