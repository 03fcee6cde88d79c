"""What operators filter referrals by in the Temporal UI: the search attributes.

A starter may set them when it starts the workflow (the `referrals` command does); the
workflow upserts only those that are missing or have changed, so that each transition
costs one visibility write and a start none.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from workflows import PARTNER_KEY, REGION_KEY, RESPOND_BY_KEY, RFI_KEY, STATUS_KEY
from workflows.lifecycle import Referral


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
