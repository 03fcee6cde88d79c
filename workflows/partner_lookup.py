"""The partner's contact for the RFI's region and location, looked up as the run starts.

Workflow code, passed through the sandbox (`workflows/activity_calls.py`).
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from activities.directory import PARTNER_NOT_FOUND, REGION_NOT_SERVED, DirectoryActivities
from workflows.activity_calls import ACTIVITY_TIMEOUT, cause, error_type
from workflows.lifecycle import Referral
from workflows.metadata import LOOKUP_LABEL
from workflows.models import ContactLookup, PartnerContact

NOT_SERVED = (PARTNER_NOT_FOUND, REGION_NOT_SERVED)  # shared by all runs: immutable
LOOKUP_FAILED = "LookupFailed"  # the directory never answered in time
# The directory is read once in the first workflow task; if that fails, the server retries
# a regular activity (no history event per try) until the respond deadline.
QUICK_LOOKUP_RETRY = RetryPolicy(maximum_attempts=1)
LOOKUP_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=5), non_retryable_error_types=NOT_SERVED
)


async def look_up_partner(referral: Referral) -> PartnerContact:
    """The contact, from the directory held in memory (a local activity), or else from a
    regular activity retried until the respond deadline. An unknown partner or region, or
    a directory that never answers, fails the run with one clear error."""
    lookup = ContactLookup(
        partner_id=referral.partner_id,
        region=referral.rfi.region,
        location=referral.rfi.location,
    )
    deadline = referral.deadline
    left = (deadline.due_at - workflow.now()) if deadline else timedelta(0)
    try:
        try:
            return await workflow.execute_local_activity_method(
                DirectoryActivities.look_up_contact,
                lookup,
                summary=LOOKUP_LABEL,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=QUICK_LOOKUP_RETRY,
            )
        except (ActivityError, ApplicationError) as error:
            if error_type(error) in NOT_SERVED:
                raise
            workflow.logger.warning(
                "Partner directory unavailable, retrying until the respond deadline: %s",
                cause(error),
            )
        return await workflow.execute_activity_method(
            DirectoryActivities.look_up_contact,
            lookup,
            summary=LOOKUP_LABEL,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=max(left, timedelta(minutes=10)),
            retry_policy=LOOKUP_RETRY,
        )
    except (ActivityError, ApplicationError) as error:
        failed = cause(error)
        if isinstance(failed, ApplicationError) and failed.type in NOT_SERVED:
            kind, message = failed.type, failed.message
        else:
            kind, message = LOOKUP_FAILED, f"the partner directory did not answer: {failed}"
        raise ApplicationError(
            f"Referral {referral.workflow_id} cannot start: {message}",
            type=kind,
            non_retryable=True,
        ) from error
