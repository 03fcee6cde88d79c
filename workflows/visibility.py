"""What operators filter referrals by in the Temporal UI: the search attributes.

A starter may set them when it starts the workflow (the `referrals` command does); the
workflow upserts only those that are missing or have changed, so that each transition
costs one visibility write and a start none.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from workflows import (
    PARTNER_KEY,
    REGION_KEY,
    RESPOND_BY_KEY,
    RFI_KEY,
    STATUS_KEY,
    WORKFLOW_TYPE,
)
from workflows.lifecycle import Referral

if TYPE_CHECKING:
    from temporalio.client import Client


def referral_attributes(referral: Referral) -> dict[SearchAttributeKey[Any], str | datetime | None]:
    """Every attribute's value now; None: not set (no deadline is running)."""
    deadline = referral.deadline
    return {
        RFI_KEY: referral.rfi.id,
        PARTNER_KEY: referral.partner_id,
        REGION_KEY: referral.rfi.region,
        STATUS_KEY: str(referral.status),
        RESPOND_BY_KEY: deadline.due_at if deadline else None,
    }


def start_attributes(referral: Referral) -> TypedSearchAttributes:
    """The attributes of a referral about to start, for the start request."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(key, value)
            for key, value in referral_attributes(referral).items()
            if value is not None
        ]
    )


def changed_attributes(
    referral: Referral, current: TypedSearchAttributes
) -> Sequence[SearchAttributeUpdate[Any]]:
    """The updates that bring `current` to the referral's attributes now."""
    return [
        key.value_set(value) if value is not None else key.value_unset()
        for key, value in referral_attributes(referral).items()
        if current.get(key) != value
    ]


async def statuses_of_rfi(client: "Client", rfi_id: str) -> dict[str, str]:
    """The partners an RFI went to, as visibility lists them, each with its referral's
    `ReferralStatus` ("" if it has none yet): running referrals (from the moment they are
    started, since the start request carries the attributes) and closed ones until the
    namespace's retention forgets them; the latest run of each (a referral continues as
    new). `rfi_id` must be a validated id."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND {RFI_KEY.name} = '{rfi_id}'"
    latest: dict[str, tuple[datetime, str, str]] = {}
    async for execution in client.list_workflows(query):
        attributes = execution.typed_search_attributes
        partner = attributes.get(PARTNER_KEY)
        if not partner:
            continue
        seen = latest.get(execution.id)
        if seen is None or execution.start_time > seen[0]:
            status = attributes.get(STATUS_KEY) or ""
            latest[execution.id] = (execution.start_time, partner, status)
    return {partner: status for _, partner, status in latest.values()}


async def partners_of_rfi(client: "Client", rfi_id: str) -> set[str]:
    """The partners an RFI went to, as visibility lists them (`statuses_of_rfi`)."""
    return set(await statuses_of_rfi(client, rfi_id))
