"""Partner statistics from the archive, and the responsiveness ranking used for reroutes.

What each figure means is written once, in docs/operations.md ("Partner statistics"):
change the two together.
"""

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Executable,
    Float,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)

from archive.functions import days_late, elapsed_ms, exact_sum
from archive.schema import ReferralRow, TransitionRow
from workflows.lifecycle import REASONED_ACTIONS
from workflows.models import UNSPECIFIED, Action, Status

# The marketplace recommends answering within 24 hours; the database counts milliseconds.
RECOMMENDED_ANSWER_MS = timedelta(hours=24) // timedelta(milliseconds=1)
ACCEPTED = frozenset({Status.NEGOTIATING, Status.WON, Status.LOST})
ALL = "*"  # the partner id of the figures over all partners


@dataclass
class ValueForecast:
    """Final / estimated deal value over Won referrals in one currency that reported both."""

    referrals: int
    median_ratio: float
    p90_ratio: float


@dataclass
class Forecast:
    """How a partner's estimates held: the value per currency (never mixed), and how many
    days after the estimated close date it marked the deal Won (negative: early)."""

    value_by_currency: dict[str, ValueForecast] = field(default_factory=dict)
    close_slip_referrals: int = 0
    median_close_slip_days: float | None = None
    p90_close_slip_days: int | None = None


@dataclass
class PartnerStats:
    partner_id: str
    referrals: int = 0
    median_first_response_s: float | None = None
    p90_first_response_s: float | None = None
    answered_within_24h: float = 0.0
    accept_rate: float = 0.0
    skip_rate: float = 0.0
    miss_rate: float = 0.0
    decline_rate: float = 0.0
    expire_rate: float = 0.0
    win_rate: float | None = None
    pipeline_value: dict[str, Decimal] = field(default_factory=dict)
    won_value: dict[str, Decimal] = field(default_factory=dict)
    declines_by_reason: dict[str, int] = field(default_factory=dict)
    losses_by_reason: dict[str, int] = field(default_factory=dict)
    forecast: Forecast = field(default_factory=Forecast)


def partner_stats(
    engine: Engine,
    *,
    partner_ids: Collection[str] | None = None,
    since: datetime | None = None,
    per_partner: bool = True,
) -> list[PartnerStats]:
    """Statistics per partner over the referrals received since `since`, by partner id.

    The database aggregates, in three grouped queries (counts, the response times at the
    ranks the median and p90 need, money per currency), so the work sent back is a few
    rows per partner however many referrals the archive holds."""
    window: list[ColumnElement[bool]] = [ReferralRow.offered.is_(True)]
    if partner_ids is not None:
        window.append(ReferralRow.partner_id.in_(list(partner_ids)))
    if since is not None:
        window.append(ReferralRow.received_at >= since)
    # Per partner, or all of them as one (`partner_id` "*").
    # A CASE rather than a constant: databases group by an expression, not by a literal.
    every = case((ReferralRow.partner_id.is_not(None), literal_column(f"'{ALL}'")), else_=ALL)
    by = (ReferralRow.partner_id.expression if per_partner else every).label("partner_id")
    with engine.connect() as connection:
        counts = connection.execute(_counts(window, by)).all()
        ranked = connection.execute(_ranked_waits(window, by)).all()
        money = connection.execute(_sums_per_currency(window, by)).all()
        reasons = connection.execute(_reasons(window, by)).all()
        by_currency = ReferralRow.currency.expression
        ratios = connection.execute(_ranked(window, by, _value_ratio(), by_currency)).all()
        slips = connection.execute(_ranked(window, by, _close_slip())).all()
    stats = {row.partner_id: _rates(row) for row in counts}
    waits: dict[str, dict[int, float]] = {}
    answered: dict[str, int] = {}
    for wait in ranked:
        waits.setdefault(wait.partner_id, {})[wait.rank] = wait.wait_ms / 1000
        answered[wait.partner_id] = wait.answered
    for partner_id, at in waits.items():
        lower, upper = _median_ranks(answered[partner_id])
        stats[partner_id].median_first_response_s = (at[lower] + at[upper]) / 2
        stats[partner_id].p90_first_response_s = at[_p90_rank(answered[partner_id])]
    for amount in money:
        if amount.total:
            of = stats[amount.partner_id]
            values = of.won_value if amount.status == Status.WON else of.pipeline_value
            values[amount.currency] = amount.total
    for reason in reasons:
        of = stats[reason.partner_id]
        counted = of.losses_by_reason if reason.cause_name == Action.LOST else of.declines_by_reason
        counted[reason.code] = counted.get(reason.code, 0) + reason.referrals
    for (partner_id, currency), figures in _at_ranks(ratios).items():
        stats[partner_id].forecast.value_by_currency[currency] = ValueForecast(*figures)
    for (partner_id, _), (n, median, p90) in _at_ranks(slips).items():
        forecast = stats[partner_id].forecast
        forecast.close_slip_referrals, forecast.median_close_slip_days = n, median
        forecast.p90_close_slip_days = int(p90)
    return [stats[partner_id] for partner_id in sorted(stats)]


def _at_ranks(rows: Iterable[Any]) -> dict[tuple[str, str], tuple[int, float, float]]:
    """(count, median, p90) per group, from the rows `_ranked` keeps."""
    values: dict[tuple[str, str], dict[int, float]] = {}
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row.partner_id, row.grouped)
        values.setdefault(key, {})[row.rank] = float(row.value)
        counts[key] = row.n
    figures = {}
    for key, at in values.items():
        lower, upper = _median_ranks(counts[key])
        figures[key] = (counts[key], (at[lower] + at[upper]) / 2, at[_p90_rank(counts[key])])
    return figures


def _median_ranks(n: Any) -> tuple[Any, Any]:
    """The 1-based ranks whose mean is the median of n values (one rank twice if n is odd);
    n an int or a SQL integer expression."""
    return (n + 1) // 2, (n + 2) // 2


def _p90_rank(n: Any) -> Any:
    """The nearest rank of the 90th percentile, ceil(0.9 n), for n >= 1; an int or SQL."""
    return (90 * n + 99) // 100


def _wait() -> ColumnElement[int]:
    """Milliseconds from when the referral reached the partner (its lead went out) to its
    first answer; never negative, whatever a backend put in `received_at`."""
    reached = func.coalesce(ReferralRow.started_at, ReferralRow.received_at)
    wait = elapsed_ms(reached, ReferralRow.first_response_at)
    return case((wait < 0, 0), else_=wait)


def _counting(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((condition, 1)))


def _counts(window: list[ColumnElement[bool]], by: ColumnElement[str]) -> Executable:
    status = ReferralRow.status
    return (
        select(
            by,
            func.count().label("referrals"),
            _counting(_wait() <= RECOMMENDED_ANSWER_MS).label("within_24h"),
            _counting(status.in_(ACCEPTED)).label("accepted"),
            _counting(status == Status.SKIPPED).label("skipped"),
            _counting(status == Status.MISSED).label("missed"),
            _counting(status == Status.DECLINED).label("declined"),
            _counting(status == Status.EXPIRED).label("expired"),
            _counting(status == Status.WON).label("won"),
            _counting(status == Status.LOST).label("lost"),
        )
        .where(*window)
        .group_by(by)
    )


def _rates(row: Any) -> PartnerStats:
    count = row.referrals
    return PartnerStats(
        partner_id=row.partner_id,
        referrals=count,
        answered_within_24h=row.within_24h / count,
        accept_rate=row.accepted / count,
        skip_rate=row.skipped / count,
        miss_rate=row.missed / count,
        decline_rate=row.declined / count,
        expire_rate=row.expired / count,
        win_rate=row.won / (row.won + row.lost) if row.won + row.lost else None,
    )


def _ranked_waits(window: list[ColumnElement[bool]], by: ColumnElement[str]) -> Executable:
    """Each partner's response times at the median's rank(s) and at the p90's rank."""
    partner = by
    ranked = (
        select(
            partner,
            _wait().label("wait_ms"),
            func.row_number().over(partition_by=partner, order_by=_wait()).label("rank"),
            func.count().over(partition_by=partner).label("answered"),
        )
        .where(*window, ReferralRow.first_response_at.is_not(None))
        .subquery()
    )
    n, rank = ranked.c.answered, ranked.c.rank
    lower, upper = _median_ranks(n)
    return select(ranked.c.partner_id, ranked.c.wait_ms, rank, n).where(
        or_(rank == lower, rank == upper, rank == _p90_rank(n))
    )


def _sums_per_currency(window: list[ColumnElement[bool]], by: ColumnElement[str]) -> Executable:
    """Estimated values of referrals now Negotiating, final values of those Won, summed
    exactly per partner, status and currency."""
    status = ReferralRow.status
    value = case(
        (status == Status.WON, ReferralRow.final_deal_value),
        else_=ReferralRow.estimated_deal_value,
    )
    return (
        select(by, status, ReferralRow.currency, exact_sum(value).label("total"))
        .where(
            *window,
            status.in_([Status.NEGOTIATING, Status.WON]),
            ReferralRow.currency.is_not(None),
        )
        .group_by(by, status, ReferralRow.currency)
    )


def _reasons(window: list[ColumnElement[bool]], by: ColumnElement[str]) -> Executable:
    """Refusals (no_thanks, decline) and losses per partner, action and code; none given
    counts as `unspecified`."""
    code = func.coalesce(TransitionRow.reason_code, UNSPECIFIED).label("code")
    return (
        select(by, TransitionRow.cause_name, code, func.count().label("referrals"))
        .join(TransitionRow, TransitionRow.workflow_id == ReferralRow.workflow_id)
        .where(*window, TransitionRow.cause_name.in_([str(a) for a in REASONED_ACTIONS]))
        .group_by(by, TransitionRow.cause_name, code)
    )


def _value_ratio() -> tuple[ColumnElement[Any], list[ColumnElement[bool]]]:
    """Final / estimated value of the Won referrals that reported both."""
    ratio = cast(ReferralRow.final_deal_value, Float) / cast(
        ReferralRow.estimated_deal_value, Float
    )
    return ratio, [
        ReferralRow.status == Status.WON,
        ReferralRow.final_deal_value.is_not(None),
        ReferralRow.estimated_deal_value.is_not(None),
        cast(ReferralRow.estimated_deal_value, Float) > 0,
        ReferralRow.currency.is_not(None),
    ]


def _close_slip() -> tuple[ColumnElement[int], list[ColumnElement[bool]]]:
    """Days from the estimated close date to the day the referral was marked Won."""
    slip = days_late(ReferralRow.estimated_close_date, ReferralRow.closed_at)
    return slip, [
        ReferralRow.status == Status.WON,
        ReferralRow.estimated_close_date.is_not(None),
        ReferralRow.closed_at.is_not(None),
    ]


def _ranked(
    window: list[ColumnElement[bool]],
    by: ColumnElement[str],
    measure: tuple[ColumnElement[Any], list[ColumnElement[bool]]],
    group: ColumnElement[Any] | None = None,
) -> Executable:
    """A measure's values at the median's and the p90's ranks, per partner (and group)."""
    value, conditions = measure
    grouped = (group if group is not None else literal("")).label("grouped")
    partition = [by, *([group] if group is not None else [])]
    ranked = (
        select(
            by,
            grouped,
            value.label("value"),
            func.row_number().over(partition_by=partition, order_by=value).label("rank"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(*window, *conditions)
        .subquery()
    )
    n, rank = ranked.c.n, ranked.c.rank
    lower, upper = _median_ranks(n)
    return select(ranked).where(or_(rank == lower, rank == upper, rank == _p90_rank(n)))


def rank_by_responsiveness(
    candidates: Iterable[str], stats: Iterable[PartnerStats], limit: int = 3
) -> list[str]:
    """The most responsive candidates first: share answered within 24 hours (higher first),
    then median time to first response (shorter first); partners with no history after
    those with some; ties by id, so that the order is stable."""
    known = {s.partner_id: s for s in stats if s.referrals}

    def key(partner_id: str) -> tuple[int, float, float, str]:
        s = known.get(partner_id)
        if s is None:
            return (1, 0.0, 0.0, partner_id)
        median = s.median_first_response_s
        return (0, -s.answered_within_24h, math.inf if median is None else median, partner_id)

    return sorted(set(candidates), key=key)[:limit]
