"""The archive keeper: one background task of a referral run writes its snapshot.

Workflow code, passed through the sandbox (`workflows/activity_calls.py`).
"""

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeout

from activities.archive import ArchiveActivities
from workflows.activity_calls import ACTIVITY_TIMEOUT, WAIT
from workflows.bookkeeping import Bookkeeping
from workflows.lifecycle import Referral
from workflows.metadata import COALESCING_LABEL, archive_label

# The archive must never lose a referral: retry until the database is back (the activity
# counts and logs every failure past the third).
ARCHIVE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
ARCHIVE_ROUND = timedelta(days=1)  # then a new activity: no timeout that outlives the run
# A transition that comes this soon after the last write waits out the rest, so that one
# write covers a burst (a backend sending accept and won together); a closing one never.
COALESCE_WITHIN = timedelta(seconds=1)


async def keep_archived(referral: Referral, books: Bookkeeping) -> None:
    """Record the referral when it starts and after each transition, one write at a time:
    the latest snapshot whenever the number of transitions changed. A transition less than
    ``COALESCE_WITHIN`` after the last write waits out the rest unless it closed the
    referral, so that the transitions of a burst share a write."""
    written_at: datetime | None = None
    while not (referral.closed and books.archived == len(referral.transitions)):
        await workflow.wait_condition(
            lambda: books.draining or referral.closed or books.archived != len(referral.transitions)
        )
        if written_at is not None:
            await _coalesce(referral, books, written_at + COALESCE_WITHIN)
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
            written_at = workflow.now()


async def _coalesce(referral: Referral, books: Bookkeeping, until: datetime) -> None:
    """Until ``until``, unless the referral closes or the run continues as new first: the
    transitions that come meanwhile go in the same write (one timer instead of a write)."""
    left = until - workflow.now()
    if left <= timedelta(0) or referral.closed or books.draining or not books.coalescing:
        return
    with contextlib.suppress(TimeoutError):
        await workflow.wait_condition(
            lambda: books.draining or referral.closed,
            timeout=left,
            timeout_summary=COALESCING_LABEL,
        )
