"""What the Temporal UI shows of a referral, from the pure lifecycle: no server."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import (
    ACCEPT,
    DISTINCTIVE_CUSTOMER,
    DISTINCTIVE_TRACES,
    RECEIVED_AT,
    act,
    make_rfi,
    reach,
    started,
)
from workflows.metadata import (
    MAX_SUMMARY_BYTES,
    archive_label,
    current_details,
    failed_details,
    referral_summary,
    summary,
    wakeup_label,
)
from workflows.models import EmailOutcome, Status

T0 = RECEIVED_AT  # 2026-11-25 09:00 UTC
HOUR = timedelta(hours=1)
REASON = "Our CFO Quentin hates Haulagecorp"  # a partner's reason may hold anything


def test_the_summary_names_the_pair_and_where() -> None:
    assert summary("rfi-1001", "acme-consulting", "emea", "Berlin") == (
        "rfi-1001 -> acme-consulting (emea / Berlin)"
    )
    assert summary("rfi-1001", "acme-consulting", "emea", None) == (
        "rfi-1001 -> acme-consulting (emea)"
    )


def test_the_summary_is_cut_to_200_bytes_on_a_character_boundary() -> None:
    line = summary("r" * 64, "p" * 64, "emea", "Zürich " * 40)
    assert len(line.encode()) <= MAX_SUMMARY_BYTES
    assert line.endswith("...")
    assert line.startswith(f"{'r' * 64} -> {'p' * 64} (emea / Zürich")


def test_new_shows_the_respond_deadline_and_the_reminder() -> None:
    referral, _ = started(make_rfi(customer=DISTINCTIVE_CUSTOMER))
    assert current_details(referral) == (
        "- **Status:** New\n"
        "- **Deadline:** respond: Missed at 2026-11-28 09:00 UTC unless the partner answers\n"
        "- **Reminder:** to the partner at 2026-11-26 09:00 UTC\n"
        "- **Emails:** lead pending"
    )
    assert wakeup_label(referral) == "reminder at 2026-11-26 09:00 UTC"
    referral.fire_due(T0 + 24 * HOUR)
    assert wakeup_label(referral) == "respond deadline: Missed at 2026-11-28 09:00 UTC"
    assert "Reminder" not in current_details(referral)


def test_evaluating_shows_the_decide_deadline_and_the_last_transition() -> None:
    referral = reach(Status.EVALUATING)
    referral.record_email(referral.emails[0].id, EmailOutcome.SENT)
    referral.reject("won", T0 + 2 * HOUR, "not allowed while Evaluating")
    assert current_details(referral) == (
        "- **Status:** Evaluating\n"
        "- **Deadline:** decide: Expired at 2026-12-02 10:00 UTC unless the partner accepts"
        " or declines\n"
        "- **Reminder:** last call to the partner at 2026-12-01 10:00 UTC\n"
        "- **Last transition:** New -> Evaluating by interested at 2026-11-25 10:00 UTC\n"
        "- **Emails:** lead sent, details pending\n"
        "- **Refused actions:** 1"
    )
    assert wakeup_label(referral) == "last call at 2026-12-01 10:00 UTC"
    referral.fire_due(datetime(2026, 12, 1, 10, tzinfo=UTC))
    assert wakeup_label(referral) == "decide deadline: Expired at 2026-12-02 10:00 UTC"


def test_negotiating_shows_the_deal_and_no_deadline() -> None:
    referral = reach(Status.NEGOTIATING)
    details = current_details(referral)
    assert "- **Status:** Negotiating\n" in details
    assert "- **Deal:** 25000.00 EUR estimated, closing 2027-03-31\n" in details
    assert "Deadline" not in details


def test_won_shows_the_final_value() -> None:
    referral = reach(Status.NEGOTIATING)
    act(referral, "won", {"final_deal_value": "31000.50"}, T0 + 3 * HOUR)
    details = current_details(referral)
    assert "- **Status:** Won\n" in details
    assert "- **Deal:** 25000.00 EUR estimated, closing 2027-03-31; won at 31000.50 EUR\n" in (
        details
    )
    assert "- **Last transition:** Negotiating -> Won by won at 2026-11-25 12:00 UTC" in details
    assert "Deadline" not in details


def test_missed_names_the_deadline_as_the_cause() -> None:
    referral = reach(Status.MISSED)
    details = current_details(referral)
    assert "- **Status:** Missed\n" in details
    assert "New -> Missed by respond deadline at 2026-11-28 09:00 UTC" in details
    assert "- **Emails:** lead pending, reroute pending" in details


def test_a_failed_start_says_why_only_when_the_reason_is_ids_and_places() -> None:
    refused = "Referral referral:rfi-1:umbrella cannot start: umbrella does not serve emea/Berlin"
    assert failed_details("RegionNotServed", refused) == (
        "- **Status:** Failed\n- **Failed:** RegionNotServed: " + refused
    )
    invalid = failed_details("InvalidInput", None)  # a validation error may quote the customer
    assert invalid == "- **Status:** Failed\n- **Failed:** InvalidInput"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ([("no_thanks", {"reason": REASON})], REASON),
        ([("interested", None), ("decline", {"reason": REASON})], REASON),
        ([("interested", None), ("accept", ACCEPT), ("lost", {"reason": REASON})], REASON),
    ],
)
def test_no_customer_contact_and_no_reason_in_what_the_ui_shows(
    path: list[tuple[str, object]], reason: str
) -> None:
    referral, _ = started(make_rfi(customer=DISTINCTIVE_CUSTOMER))
    shown = [referral_summary(referral), current_details(referral), wakeup_label(referral)]
    for hours, (action, payload) in enumerate(path, start=1):
        act(referral, action, payload, T0 + hours * HOUR)
        shown += [current_details(referral), wakeup_label(referral), archive_label(hours)]
    assert referral.transitions[-1].reason == reason  # the marketplace keeps it
    text = "\n".join(shown)
    for trace in (*DISTINCTIVE_TRACES, "CFO"):
        assert trace not in text
