"""The search attributes operators see: set at start, then only what a transition changed."""

from datetime import timedelta

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from tests.factories import ACME_BERLIN, RECEIVED_AT, act, make_rfi
from workflows import PARTNER_KEY, REGION_KEY, RESPOND_BY_KEY, RFI_KEY, STATUS_KEY
from workflows.lifecycle import Referral
from workflows.visibility import changed_attributes, start_attributes


def new_referral() -> Referral:
    return Referral(make_rfi(received_at=RECEIVED_AT.isoformat()), "acme-consulting")


def applied(current: TypedSearchAttributes, referral: Referral) -> TypedSearchAttributes:
    """What Temporal holds once the workflow upserted the changes."""
    pairs = {pair.key.name: pair for pair in current}
    for update in changed_attributes(referral, current):
        if update.value is None:
            pairs.pop(update.key.name, None)
        else:
            pairs[update.key.name] = SearchAttributePair(update.key, update.value)
    return TypedSearchAttributes(list(pairs.values()))


def values(attributes: TypedSearchAttributes) -> dict[str, object]:
    return {pair.key.name: pair.value for pair in attributes}


def test_a_referral_starts_with_its_identity_status_and_respond_deadline() -> None:
    referral = new_referral()
    attributes = start_attributes(referral)
    assert attributes.get(RFI_KEY) == referral.rfi.id
    assert attributes.get(PARTNER_KEY) == "acme-consulting"
    assert attributes.get(REGION_KEY) == referral.rfi.region
    assert attributes.get(STATUS_KEY) == "New"
    assert attributes.get(RESPOND_BY_KEY) == RECEIVED_AT + timedelta(hours=72)
    referral.start(ACME_BERLIN, RECEIVED_AT)
    assert changed_attributes(referral, attributes) == []  # nothing to upsert after start


def test_a_bare_start_gets_every_attribute_from_the_workflow() -> None:
    referral = new_referral()
    current = applied(TypedSearchAttributes.empty, referral)
    assert values(current) == values(start_attributes(referral))


def test_each_transition_upserts_what_it_changed_and_unsets_a_finished_deadline() -> None:
    referral = new_referral()
    current = start_attributes(referral)
    referral.start(ACME_BERLIN, RECEIVED_AT)
    act(referral, "interested", None, RECEIVED_AT + timedelta(hours=1))
    changes = {u.key.name: u.value for u in changed_attributes(referral, current)}
    assert changes == {
        "ReferralStatus": "Evaluating",
        "RespondBy": RECEIVED_AT + timedelta(hours=1, days=7),
    }
    current = applied(current, referral)
    act(
        referral,
        "accept",
        {"estimated_deal_value": "1000", "currency": "EUR", "estimated_close_date": "2027-03-01"},
        RECEIVED_AT + timedelta(hours=2),
    )
    changes = {u.key.name: u.value for u in changed_attributes(referral, current)}
    assert changes == {"ReferralStatus": "Negotiating", "RespondBy": None}
    assert applied(current, referral).get(RESPOND_BY_KEY) is None
