"""Reason codes for no_thanks, decline and lost, through the pure lifecycle and the archive
(no server): kept with the transition, counted, refused when unknown, and spam_or_abuse
flags the RFI instead of rerouting the customer."""

import json
from datetime import timedelta

import pytest

from archive.database import create_archive_engine, downgrade, upgrade
from archive.events import events_of
from archive.store import ArchiveStore, ReferralFilter, archived_reason_code
from tests.factories import RECEIVED_AT, act, reach, started
from workflows.lifecycle import ActionRejected, reason_label, transition_labels
from workflows.models import (
    REASON_CODES,
    UNSPECIFIED,
    DeclineReason,
    EmailKind,
    LossReason,
    Status,
)

HOUR = timedelta(hours=1)
LATER = RECEIVED_AT + 5 * HOUR


@pytest.mark.parametrize("code", list(DeclineReason))
@pytest.mark.parametrize(
    ("action", "start", "end"),
    [("no_thanks", Status.NEW, Status.SKIPPED), ("decline", Status.EVALUATING, Status.DECLINED)],
)
def test_every_decline_code_is_kept_with_its_refusal(
    code: DeclineReason, action: str, start: Status, end: Status
) -> None:
    referral = reach(start)
    emails = act(referral, action, {"reason_code": code, "reason": "why"}, LATER)
    last = referral.view().transitions[-1]
    assert (referral.status, last.reason_code, last.reason) == (end, code.value, "why")
    assert reason_label(last) == code.value
    assert transition_labels(last)["reason"] == code.value
    event = events_of(referral.workflow_id, referral.view())[-1]
    assert json.loads(event.body())["data"]["reason_code"] == code.value
    # spam_or_abuse: the RFI is flagged for review, and the customer is not invited elsewhere.
    rerouted = [e.kind for e in emails] == [EmailKind.REROUTE]
    assert rerouted is (code is not DeclineReason.SPAM_OR_ABUSE)


@pytest.mark.parametrize("code", list(LossReason))
def test_every_loss_code_is_kept_with_the_loss(code: LossReason) -> None:
    referral = reach(Status.NEGOTIATING)
    act(referral, "lost", {"reason_code": code, "reason": "why"}, LATER)
    assert referral.view().transitions[-1].reason_code == code.value


def test_without_a_code_a_refusal_counts_as_unspecified_and_other_transitions_as_none() -> None:
    referral = reach(Status.NEGOTIATING)
    act(referral, "lost", {"reason": "free text only"}, LATER)
    interested, accept, lost = referral.view().transitions
    assert lost.reason_code is None
    assert reason_label(lost) == UNSPECIFIED
    assert (reason_label(interested), reason_label(accept)) == ("", "")


@pytest.mark.parametrize(
    ("start", "action", "payload", "says"),
    [
        (Status.NEW, "no_thanks", {"reason_code": "too_busy"}, "'not_our_expertise'"),
        (Status.EVALUATING, "decline", {"reason_code": "no_decision"}, "'spam_or_abuse'"),
        (Status.NEGOTIATING, "lost", {"reason_code": "no_capacity"}, "'chose_another_vendor'"),
        (Status.NEW, "no_thanks", {"reason_code": "other"}, "reason_code 'other' needs a reason"),
        (Status.NEGOTIATING, "lost", {"reason_code": "other", "reason": " "}, "needs a reason"),
        (Status.NEW, "no_thanks", {"reason_code": 3}, "reason_code"),
    ],
)
def test_an_unknown_or_unexplained_code_is_refused_naming_the_valid_ones(
    start: Status, action: str, payload: dict[str, object], says: str
) -> None:
    referral = reach(start)
    with pytest.raises(ActionRejected) as refused:
        act(referral, action, payload, LATER)
    assert says in refused.value.reason
    assert refused.value.reason.startswith("invalid payload")
    assert referral.status is start  # nothing changed


def test_other_with_a_reason_is_taken() -> None:
    referral, _ = started()
    act(referral, "no_thanks", {"reason_code": "other", "reason": "we only do SAP"}, LATER)
    assert referral.view().transitions[-1].reason_code == "other"


def test_the_archive_lists_by_code_and_flags_spam(store: ArchiveStore) -> None:
    coded = reach(Status.EVALUATING)
    act(coded, "decline", {"reason_code": "no_capacity"}, LATER)
    spam, _ = started()
    act(spam, "no_thanks", {"reason_code": "spam_or_abuse"}, LATER)
    silent, _ = started()
    act(silent, "no_thanks", None, LATER)
    won = reach(Status.WON)
    for referral in (coded, spam, silent, won):
        store.record(referral.view())

    def listed(**where: object) -> set[str]:
        return {r.workflow_id for r in store.referrals(ReferralFilter(**where))}  # type: ignore[arg-type]

    assert listed(reason_code="no_capacity") == {coded.workflow_id}
    assert listed(reason_code="spam_or_abuse") == {spam.workflow_id}
    assert listed(reason_code=UNSPECIFIED) == {silent.workflow_id}
    assert listed(flagged=True) == {spam.workflow_id}
    row = store.history(coded.workflow_id)
    assert row is not None
    assert [t.reason_code for t in row.transitions] == [None, "no_capacity"]


def test_the_codes_the_command_accepts() -> None:
    assert set(REASON_CODES) == {*DeclineReason, *LossReason, UNSPECIFIED}
    assert len(REASON_CODES) == 9 + 7 - 2 + 1  # timeline_too_short and other are in both


def test_refusals_archived_before_codes_read_as_unspecified(database_url: str) -> None:
    """Migration 0007 on an archive with rows: their refusals have no code (the column is
    new) and count as unspecified; a spam flag cannot be known for them."""
    engine = create_archive_engine(database_url)
    upgrade(engine)
    store = ArchiveStore(engine)
    declined = reach(Status.EVALUATING)
    act(declined, "decline", {"reason": "fully booked"}, LATER)
    store.record(declined.view())
    downgrade(engine, "0006")
    upgrade(engine)
    assert [r.workflow_id for r in store.referrals(ReferralFilter(reason_code=UNSPECIFIED))] == [
        declined.workflow_id
    ]
    row = store.history(declined.workflow_id)
    assert row is not None
    assert row.flagged is False
    assert [archived_reason_code(t) for t in row.transitions] == [None, UNSPECIFIED]
    engine.dispose()
