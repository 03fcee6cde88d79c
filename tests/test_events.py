"""Events for other systems, written by the archive with their transitions (no server)."""

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from archive.database import create_archive_engine, downgrade, upgrade
from archive.deliveries import BEFORE_ALL, DeliveryStore, EventFilter
from archive.events import events_of
from archive.schema import EventRow
from archive.store import ArchiveStore
from archive.webhooks import WebhookStore
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
from workflows.models import Status

T0 = RECEIVED_AT
HOUR = timedelta(hours=1)
REASON = "Quentin's budget went to Haulagecorp"  # a partner's free text may hold anything


def test_every_path_records_its_events_once_and_in_order(store: ArchiveStore) -> None:
    referral, _ = started(make_rfi(customer=DISTINCTIVE_CUSTOMER))
    store.record(referral.view())
    act(referral, "interested", None, T0 + HOUR)
    evaluating = referral.view()
    act(referral, "accept", ACCEPT, T0 + 2 * HOUR)
    act(referral, "won", {"final_deal_value": "26500.5"}, T0 + 3 * HOUR)
    store.record(referral.view())  # two transitions in one write
    store.record(evaluating)  # a slow, older write arriving last
    store.record(referral.view())  # a retried write

    rows = store.events(workflow_id=referral.workflow_id)
    assert [(row.seq, row.type) for row in rows] == [
        (0, "referral.created"),
        (1, "referral.evaluating"),
        (2, "referral.negotiating"),
        (3, "referral.won"),
    ]
    assert [row.event_id for row in rows] == [f"{referral.workflow_id}.{n}" for n in range(4)]
    positions = [row.position for row in rows]
    assert positions == sorted(positions)
    bodies = [json.loads(row.body) for row in rows]
    assert bodies[1] == {
        "type": "referral.evaluating",
        "timestamp": "2026-11-25T10:00:00Z",
        "data": {
            "workflow_id": referral.workflow_id,
            "rfi_id": referral.rfi.id,
            "partner_id": "acme-consulting",
            "seq": 1,
            "from": "New",
            "to": "Evaluating",
            "cause": {"kind": "action", "name": "interested"},
            "effective_at": "2026-11-25T10:00:00Z",
            "processed_at": "2026-11-25T10:00:00Z",
            "reason_code": None,
            "via": {"door": "temporal", "api_key_id": None},
            "deal": None,
        },
    }
    assert bodies[0]["data"]["from"] is None
    assert bodies[0]["data"]["cause"] == {"kind": "start", "name": "submit"}
    assert bodies[2]["data"]["deal"] == {
        "estimated_deal_value": "25000.00",
        "currency": "EUR",
        "estimated_close_date": "2027-03-31",
        "final_deal_value": None,
    }
    assert bodies[3]["data"]["deal"]["final_deal_value"] == "26500.5"


def test_a_deadline_event_names_the_deadline_and_its_own_time(store: ArchiveStore) -> None:
    referral, _ = started()
    referral.fire_due(T0 + 80 * HOUR)
    store.record(referral.view())
    [created, missed] = [json.loads(row.body) for row in store.events()]
    assert created["type"] == "referral.created"
    assert missed["type"] == "referral.missed"
    assert missed["timestamp"] == "2026-11-28T09:00:00Z"  # the deadline, not when processed
    assert missed["data"]["cause"] == {"kind": "deadline", "name": "respond"}
    assert missed["data"]["processed_at"] == "2026-11-28T17:00:00Z"


def test_created_is_stamped_when_the_worker_started_the_referral() -> None:
    """`received_at` a day ahead (as the contract allows): the created event carries the
    start's time, so a referral's events come in the order of their times."""
    ahead = make_rfi(received_at=(T0 + 24 * HOUR).isoformat())
    referral, _ = started(ahead, at=T0)
    act(referral, "interested", None, T0 + HOUR)
    created, evaluating = events_of(referral.workflow_id, referral.view())
    assert created.timestamp == created.data.effective_at == created.data.processed_at == T0
    assert evaluating.timestamp == T0 + HOUR


def test_no_event_holds_the_customer_contact_or_a_partner_reason() -> None:
    for path in (
        [("no_thanks", {"reason": REASON})],
        [("interested", None), ("decline", {"reason": REASON})],
        [("interested", None), ("accept", ACCEPT), ("lost", {"reason": REASON})],
    ):
        referral, _ = started(make_rfi(customer=DISTINCTIVE_CUSTOMER))
        for hours, (action, payload) in enumerate(path, start=1):
            act(referral, action, payload, T0 + hours * HOUR)
        view = referral.view()
        assert view.customer is None or view.customer.name == DISTINCTIVE_CUSTOMER["name"]
        bodies = "".join(event.body() for event in events_of(referral.workflow_id, view))
        assert referral.status in (Status.SKIPPED, Status.DECLINED, Status.LOST)
        for trace in DISTINCTIVE_TRACES:
            assert trace not in bodies


def test_referrals_archived_before_events_get_theirs_for_replays_only(database_url: str) -> None:
    """Migration 0006: referrals with no event get the ones the archive would have
    recorded, below every live position: replays read them, no endpoint hears them as new."""
    engine = create_archive_engine(database_url)
    upgrade(engine)
    store = ArchiveStore(engine)
    won = reach(Status.WON, make_rfi(id="rfi-old-won"))
    missed, _ = started(make_rfi(id="rfi-old-missed", received_at="2026-11-20T09:00:00Z"))
    missed.fire_due(T0)
    newer, _ = started(make_rfi(id="rfi-newer"))
    for referral in (won, missed):
        store.record(referral.view())
    with engine.begin() as connection:  # as if archived before revision 0003
        connection.execute(delete(EventRow))
    downgrade(engine, "0005")
    upgrade(engine)
    store.record(newer.view())

    webhooks, deliveries = WebhookStore(engine), DeliveryStore(engine)
    endpoint, _ = webhooks.add("https://crm.example/hooks", [], None, datetime.now(UTC))
    start = deliveries.starting_position(endpoint.id) or 0
    live = deliveries.events(endpoint, EventFilter(after=start), 100)
    everything = deliveries.events(endpoint, EventFilter(after=BEFORE_ALL), 100)
    assert live == []
    assert [(row.workflow_id, row.seq) for row in everything] == [
        (missed.workflow_id, 0),  # received 2026-11-20: the oldest first
        (missed.workflow_id, 1),
        (won.workflow_id, 0),
        (won.workflow_id, 1),
        (won.workflow_id, 2),
        (won.workflow_id, 3),
        (newer.workflow_id, 0),  # recorded live, after the others
    ]
    assert [row.position for row in everything][:6] == list(range(-5, 1))
    for referral in (won, missed):
        # Archived before doors were recorded too: their transitions name none.
        view = referral.view()
        doorless = [t.model_copy(update={"via": None}) for t in view.transitions]
        view = view.model_copy(update={"transitions": doorless})
        expected = [e.body() for e in events_of(referral.workflow_id, view)]
        assert [row.body for row in everything if row.workflow_id == referral.workflow_id] == (
            expected
        )
    upgrade(engine)  # nothing twice
    assert len(deliveries.events(endpoint, EventFilter(after=BEFORE_ALL), 100)) == 7
    engine.dispose()
