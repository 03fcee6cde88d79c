"""Partner statistics, aggregated by the database: the definitions checked on SQLite and
PostgreSQL against values computed here by hand, and on SQLite against a reference."""

import math
import statistics
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from archive.database import create_archive_engine, upgrade
from archive.schema import ReferralRow
from archive.stats import partner_stats, rank_by_responsiveness
from archive.store import ArchiveStore
from tests.factories import act, make_rfi
from workflows.lifecycle import Referral
from workflows.models import PartnerContact, StatusView

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
HOUR = 3600.0
DEAL_TERMS = {"currency": "EUR", "estimated_close_date": "2026-03-01"}


def contact(partner: str) -> PartnerContact:
    return PartnerContact(
        partner_id=partner,
        partner_name=partner,
        contact_name="C",
        contact_email="c@example.com",
        region="emea",
    )


def archived(
    store: ArchiveStore,
    partner: str,
    wait: timedelta | None = None,
    *actions: tuple[str, dict[str, str] | None],
    received: datetime = T0,
) -> None:
    """One referral of `partner` received at `received`: first answered (`interested`)
    after `wait`, then the actions; unanswered and still New without a wait."""
    referral = Referral(make_rfi(received_at=received.isoformat()), partner)
    referral.start(contact(partner), received)
    if wait is not None:
        at = received + wait
        act(referral, "interested", None, at)
        for action, payload in actions:
            act(referral, action, payload, at)
    store.record(referral.view())


def missed(store: ArchiveStore, partner: str) -> None:
    referral = Referral(make_rfi(received_at=T0.isoformat()), partner)
    referral.start(contact(partner), T0)
    referral.fire_due(T0 + timedelta(days=4))
    store.record(referral.view())


def test_response_times_count_from_the_start_not_from_a_receipt_ahead_of_it(
    store: ArchiveStore,
) -> None:
    """A backend stamped `received_at` a day ahead of the worker's clock (the contract
    allows it): answered 2 and 30 hours after the lead went out, the partner's figures are
    2 and 30 hours, not negative, and one of two within 24 hours."""
    for wait in (timedelta(hours=2), timedelta(hours=30)):
        referral = Referral(make_rfi(received_at=(T0 + timedelta(days=1)).isoformat()), "ahead")
        referral.start(contact("ahead"), T0)
        act(referral, "interested", None, T0 + wait)
        store.record(referral.view())
    [ahead] = partner_stats(store.engine)
    assert (ahead.median_first_response_s, ahead.p90_first_response_s) == (16 * HOUR, 30 * HOUR)
    assert ahead.answered_within_24h == 0.5


def test_a_row_from_before_starts_were_archived_never_counts_a_negative_time(
    store: ArchiveStore,
) -> None:
    archived(store, "early", timedelta(hours=1))
    with Session(store.engine) as session, session.begin():
        row = session.scalars(select(ReferralRow)).one()
        row.started_at = None
        row.received_at = T0 + timedelta(hours=5)  # ahead of its first answer
    [early] = partner_stats(store.engine)
    assert early.median_first_response_s == 0.0
    assert early.answered_within_24h == 1.0


def test_one_answer_and_none(store: ArchiveStore) -> None:
    archived(store, "one", timedelta(hours=30))
    archived(store, "silent")
    missed(store, "silent")
    one, silent = partner_stats(store.engine)
    assert (one.partner_id, silent.partner_id) == ("one", "silent")
    assert (one.median_first_response_s, one.p90_first_response_s) == (30 * HOUR, 30 * HOUR)
    assert one.answered_within_24h == 0.0
    assert silent.referrals == 2
    assert (silent.median_first_response_s, silent.p90_first_response_s) == (None, None)
    assert (silent.miss_rate, silent.accept_rate, silent.win_rate) == (0.5, 0.0, None)


def test_p90_is_the_nearest_rank_and_an_even_median_the_mean_of_the_middle_two(
    store: ArchiveStore,
) -> None:
    for hours in range(1, 11):
        archived(store, "p", timedelta(hours=hours))
    archived(store, "p", timedelta(hours=24))  # exactly 24 hours counts as within
    archived(store, "p", timedelta(hours=24, milliseconds=1))
    [stats] = partner_stats(store.engine)
    assert stats.referrals == 12
    assert stats.median_first_response_s == 6.5 * HOUR  # ranks 6 and 7 of 12
    assert stats.p90_first_response_s == 24 * HOUR  # rank ceil(0.9 * 12) = 11
    assert stats.answered_within_24h == 11 / 12


def test_money_is_summed_exactly_per_currency_and_outcomes_counted(store: ArchiveStore) -> None:
    day = timedelta(hours=2)
    for value in ("0.10", "0.20"):  # 0.30 exactly, not 0.30000000000000004
        archived(store, "p", day, ("accept", {**DEAL_TERMS, "estimated_deal_value": value}))
    archived(
        store,
        "p",
        day,
        ("accept", {**DEAL_TERMS, "currency": "USD", "estimated_deal_value": "99"}),
        ("won", {"final_deal_value": "1200.50"}),
    )
    archived(
        store, "p", day, ("accept", {**DEAL_TERMS, "estimated_deal_value": "7"}), ("lost", None)
    )
    archived(store, "p", day, ("decline", {"reason": "busy"}))
    archived(store, "p", None)
    [stats] = partner_stats(store.engine)
    assert stats.pipeline_value == {"EUR": Decimal("0.30")}
    assert str(stats.pipeline_value["EUR"]) == "0.30"
    assert stats.won_value == {"USD": Decimal("1200.50")}
    assert stats.referrals == 6
    assert (stats.accept_rate, stats.decline_rate) == (4 / 6, 1 / 6)
    assert stats.win_rate == 1 / 2  # Won among the closed deals: one Won, one Lost


def test_the_window_is_by_partner_and_received_time(store: ArchiveStore) -> None:
    archived(store, "a", timedelta(hours=1))
    archived(store, "b", timedelta(hours=1))
    archived(store, "a", timedelta(hours=5), received=T0 + timedelta(days=1))
    assert [s.partner_id for s in partner_stats(store.engine, partner_ids=["b"])] == ["b"]
    [recent] = partner_stats(store.engine, since=T0 + timedelta(hours=1))
    assert (recent.partner_id, recent.referrals) == ("a", 1)
    assert recent.median_first_response_s == 5 * HOUR
    assert partner_stats(store.engine, partner_ids=[]) == []


# --- Against a reference, on SQLite -------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveStore]:
    folder: Path = tmp_path_factory.mktemp("stats")
    engine = create_archive_engine(f"sqlite:///{folder}/referrals.db")
    upgrade(engine)
    yield ArchiveStore(engine)
    engine.dispose()


WAITS_MS = st.one_of(
    st.integers(min_value=0, max_value=10 * 24 * 3600 * 1000),
    st.sampled_from([24 * 3600 * 1000 - 1, 24 * 3600 * 1000, 24 * 3600 * 1000 + 1]),
)


@hypothesis_settings(max_examples=40, deadline=None)
@given(waits=st.lists(WAITS_MS, min_size=1, max_size=12), unanswered=st.integers(0, 3))
def test_figures_match_their_definitions(
    sqlite_store: ArchiveStore, waits: list[int], unanswered: int
) -> None:
    partner = f"p-{uuid.uuid4().hex[:12]}"
    for wait in waits:
        archived(sqlite_store, partner, timedelta(milliseconds=wait))
    for _ in range(unanswered):
        archived(sqlite_store, partner)
    [stats] = partner_stats(sqlite_store.engine, partner_ids=[partner])
    seconds = sorted(w / 1000 for w in waits)
    assert stats.referrals == len(waits) + unanswered
    assert stats.median_first_response_s == pytest.approx(statistics.median(seconds))
    assert stats.p90_first_response_s == seconds[math.ceil(0.9 * len(seconds)) - 1]
    within = sum(w <= 24 * 3600 * 1000 for w in waits)
    assert stats.answered_within_24h == within / stats.referrals


# --- A referral started after its respond deadline ------------------------------------------
# It went straight to Missed without a lead: its partner was never offered it, so it counts
# nowhere in the partner's statistics nor in the reroute ranking.


def started_late(store: ArchiveStore, partner: str) -> StatusView:
    """Started a day after its respond deadline (a backlog replayed late)."""
    referral = Referral(make_rfi(received_at=T0.isoformat()), partner)
    referral.start(contact(partner), T0 + timedelta(days=4))
    view = referral.view()
    store.record(view)
    return view


def offered(store: ArchiveStore) -> dict[str, list[bool]]:
    with Session(store.engine) as session:
        rows = session.execute(select(ReferralRow.partner_id, ReferralRow.offered)).all()
    flags: dict[str, list[bool]] = {}
    for partner_id, flag in rows:
        flags.setdefault(partner_id, []).append(flag)
    return {partner_id: sorted(f) for partner_id, f in flags.items()}


def test_a_referral_started_after_its_deadline_is_no_miss_of_its_partner(
    store: ArchiveStore,
) -> None:
    archived(store, "p", timedelta(hours=2))
    missed(store, "p")
    late = started_late(store, "p")
    started_late(store, "p")
    started_late(store, "only-late")
    # As the lifecycle leaves it: Missed by the respond deadline, and no lead asked for.
    assert [(t.from_, t.to, t.cause.kind, t.cause.name) for t in late.transitions] == [
        ("New", "Missed", "deadline", "respond")
    ]
    assert "lead" not in [email.kind for email in late.emails]
    assert offered(store) == {"p": [False, False, True, True], "only-late": [False]}

    [p] = partner_stats(store.engine)  # a partner offered nothing has no figures at all
    assert p.partner_id == "p"
    assert p.referrals == 2  # the answered one and the one missed after its lead
    assert (p.miss_rate, p.answered_within_24h, p.accept_rate) == (1 / 2, 1 / 2, 0.0)
    assert (p.median_first_response_s, p.p90_first_response_s) == (2 * HOUR, 2 * HOUR)


def test_late_starts_do_not_lower_a_partner_in_the_reroute_ranking(store: ArchiveStore) -> None:
    archived(store, "prompt", timedelta(hours=1))
    for _ in range(3):
        started_late(store, "prompt")
    archived(store, "steady", timedelta(hours=1))
    archived(store, "steady", timedelta(hours=30))
    stats = partner_stats(store.engine, partner_ids=["prompt", "steady"])
    assert [(s.partner_id, s.referrals, s.answered_within_24h) for s in stats] == [
        ("prompt", 1, 1.0),
        ("steady", 2, 0.5),
    ]
    assert rank_by_responsiveness(["steady", "prompt"], stats) == ["prompt", "steady"]


def test_referrals_archived_before_the_migration_stay_counted(database_url: str) -> None:
    """An old row cannot tell a late start from a deadline missed after the lead: it counts
    as it did; referrals written since say which they were."""
    engine = create_archive_engine(database_url)
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO referrals (workflow_id, rfi_id, partner_id, region, need,"
                " company_size, status, transition_count, received_at, updated_at, closed_at)"
                " VALUES ('referral-old-p', 'old', 'p', 'emea', 'n', 's', 'Missed', 1,"
                " '2026-01-05 09:00:00', '2026-01-08 09:00:00', '2026-01-08 09:00:00')"
            )
        )
    upgrade(engine)
    store = ArchiveStore(engine)
    started_late(store, "p")
    assert offered(store) == {"p": [False, True]}
    [p] = partner_stats(engine)
    assert (p.referrals, p.miss_rate) == (1, 1.0)
    engine.dispose()


def test_forecast_accuracy_reasons_and_win_rate_match_the_hand_computed_figures(
    store: ArchiveStore,
) -> None:
    """Accepted two hours after receipt (2026-01-05), Won on the day given."""
    won = [  # (currency, estimated, final, estimated close date, the day it was Won)
        ("EUR", "100", "120", "2026-01-05", "2026-01-09"),  # x1.2, 4 days late
        ("EUR", "100", "80", "2026-01-06", "2026-01-06"),  # x0.8, on the day
        ("EUR", "100", "100", "2026-01-15", "2026-01-10"),  # x1.0, 5 days early
        ("EUR", "200", "300", "2026-01-05", "2026-01-07"),  # x1.5, 2 days late
        ("USD", "50", "50", "2026-02-10", "2026-01-14"),  # x1.0, 27 days early
        ("EUR", "100", None, "2026-01-05", "2026-01-06"),  # no final value: a slip only
    ]
    for currency, estimate, final, close, day in won:
        referral = Referral(make_rfi(received_at=T0.isoformat()), "f")
        referral.start(contact("f"), T0)
        act(referral, "interested", None, T0 + HOURS)
        terms = {"currency": currency, "estimated_close_date": close}
        act(referral, "accept", {**terms, "estimated_deal_value": estimate}, T0 + 2 * HOURS)
        on = datetime.fromisoformat(f"{day}T12:00:00+00:00")
        act(referral, "won", {"final_deal_value": final} if final else None, on)
        store.record(referral.view())
    accept = ("accept", {**DEAL_TERMS, "estimated_deal_value": "10"})
    archived(store, "f", HOURS, accept, ("lost", {"reason_code": "chose_another_vendor"}))
    archived(store, "f", HOURS, accept, ("lost", {"reason": "no code"}))
    for payload in ({"reason_code": "no_capacity"},) * 2 + ({"reason": "no code"},):
        archived(store, "f", HOURS, ("decline", payload))
    spam = Referral(make_rfi(received_at=T0.isoformat()), "f")
    spam.start(contact("f"), T0)
    act(spam, "no_thanks", {"reason_code": "spam_or_abuse"}, T0 + HOURS)
    store.record(spam.view())

    [stats] = partner_stats(store.engine)
    assert stats.win_rate == 6 / 8
    assert stats.declines_by_reason == {"no_capacity": 2, "unspecified": 1, "spam_or_abuse": 1}
    assert stats.losses_by_reason == {"chose_another_vendor": 1, "unspecified": 1}
    forecast = stats.forecast
    # EUR ratios 0.8, 1.0, 1.2, 1.5: median (1.0 + 1.2) / 2, p90 at rank 4 of 4
    eur = forecast.value_by_currency["EUR"]
    assert (eur.referrals, eur.p90_ratio) == (4, 1.5)
    assert eur.median_ratio == pytest.approx(1.1)
    usd = forecast.value_by_currency["USD"]
    assert (usd.referrals, usd.median_ratio, usd.p90_ratio) == (1, 1.0, 1.0)
    # slips -27, -5, 0, 1, 2, 4 days: median (0 + 1) / 2, p90 at rank 6 of 6
    assert forecast.close_slip_referrals == 6
    assert forecast.median_close_slip_days == 0.5
    assert forecast.p90_close_slip_days == 4

    # Another partner's Won deal: EUR x2.0, on the day. Over all partners (partner_id "*"):
    other = Referral(make_rfi(received_at=T0.isoformat()), "g")
    other.start(contact("g"), T0)
    act(other, "interested", None, T0 + HOURS)
    terms = {"currency": "EUR", "estimated_close_date": "2026-01-05"}
    act(other, "accept", {**terms, "estimated_deal_value": "10"}, T0 + 2 * HOURS)
    act(other, "won", {"final_deal_value": "20"}, T0 + 3 * HOURS)
    store.record(other.view())
    [total] = partner_stats(store.engine, per_partner=False)
    assert (total.partner_id, total.referrals, total.win_rate) == ("*", 13, 7 / 9)
    assert total.declines_by_reason == stats.declines_by_reason
    # EUR ratios 0.8, 1.0, 1.2, 1.5, 2.0: median 1.2, p90 at rank 5 of 5
    eur = total.forecast.value_by_currency["EUR"]
    assert (eur.referrals, eur.median_ratio, eur.p90_ratio) == (5, 1.2, 2.0)
    # slips -27, -5, 0, 0, 1, 2, 4: median 0 (rank 4 of 7), p90 at rank 7
    assert (total.forecast.median_close_slip_days, total.forecast.p90_close_slip_days) == (0, 4)
    assert [s.partner_id for s in partner_stats(store.engine)] == ["f", "g"]


HOURS = timedelta(hours=1)
