"""The archive keeper: one background task of a referral run writes its snapshot.

Workflow code, passed through the sandbox (`workflows/activity_calls.py`).
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeout

from activities.archive import ArchiveActivities
from workflows.activity_calls import ACTIVITY_TIMEOUT, WAIT
from workflows.bookkeeping import Bookkeeping
from workflows.lifecycle import Referral
from workflows.metadata import archive_label

# The archive must never lose a referral: retry until the database is back (the activity
# counts and logs every failure past the third).
ARCHIVE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
ARCHIVE_ROUND = timedelta(days=1)  # then a new activity: no timeout that outlives the run


async def keep_archived(referral: Referral, books: Bookkeeping) -> None:
    """Record the referral when it starts and after each transition, one write at a time:
    the latest snapshot whenever the number of transitions changed."""
    while not (referral.closed and books.archived == len(referral.transitions)):
        await workflow.wait_condition(
            lambda: books.draining or referral.closed or books.archived != len(referral.transitions)
        )
        count = len(referral.transitions)
        # Checked after every wait: a write that finished after the cancellation was
        # asked for comes back normally, and the task must still end.
        if books.draining:
            return  # continuing as new: the next run writes what is left
        if count != books.archived:
            try:
                await workflow.execute_activity_method(
                    ArchiveActivities.record_referral,
                    referral.view(),
                    summary=archive_label(count),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    schedule_to_close_timeout=ARCHIVE_ROUND,
                    retry_policy=ARCHIVE_RETRY,
                    cancellation_type=WAIT,
                )
            except ActivityError as error:
                if isinstance(error.cause, CancelledError):
                    return
                if not isinstance(error.cause, ActivityTimeout):
                    raise
                workflow.logger.error("Archive write not done in a day; trying on")
                continue  # the archive must never lose a referral
            books.archived = count
