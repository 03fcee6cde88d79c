"""Partner statistics from the archive, and the responsiveness ranking used for reroutes.

Definitions (the README repeats them):
- referrals: the partner's referrals received in the window, open ones included;
- first response time: first action (of any kind) minus receipt, over answered referrals;
  the median is the middle value (mean of the two middle ones), p90 the nearest-rank
  90th percentile (the value at rank ceil(0.9 n) in ascending order);
- answered_within_24h: share of referrals whose first response came within 24 hours;
- accept/skip/miss/decline/expire rates: share of referrals accepted (now Negotiating, Won
  or Lost) or now Skipped, Missed, Declined, Expired;
- win_rate: Won among the accepted (null when none was accepted);
- pipeline_value: estimated deal values of referrals now Negotiating, per currency;
- won_value: final deal values of referrals Won, per currency.
"""

import math
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from archive.schema import ReferralRow
from workflows.models import Status

ANSWER_WITHIN = timedelta(hours=24)
ACCEPTED = frozenset({Status.NEGOTIATING, Status.WON, Status.LOST})


@dataclass(frozen=True)
class ArchivedOutcome:
    """The columns partner statistics are computed from."""

    partner_id: str
    received_at: datetime
    first_response_at: datetime | None
    status: str
    currency: str | None = None
    estimated_deal_value: Decimal | None = None
    final_deal_value: Decimal | None = None


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


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def summarise(partner_id: str, outcomes: Sequence[ArchivedOutcome]) -> PartnerStats:
    count = len(outcomes)
    waits = [
        (o.first_response_at - o.received_at).total_seconds()
        for o in outcomes
        if o.first_response_at is not None
    ]
    statuses = [o.status for o in outcomes]
    accepted = sum(s in ACCEPTED for s in statuses)
    pipeline: dict[str, Decimal] = defaultdict(Decimal)
    won: dict[str, Decimal] = defaultdict(Decimal)
    for o in outcomes:
        if o.status == Status.NEGOTIATING and o.estimated_deal_value and o.currency:
            pipeline[o.currency] += o.estimated_deal_value
        if o.status == Status.WON and o.final_deal_value and o.currency:
            won[o.currency] += o.final_deal_value
    return PartnerStats(
        partner_id=partner_id,
        referrals=count,
        median_first_response_s=statistics.median(waits) if waits else None,
        p90_first_response_s=nearest_rank(waits, 90) if waits else None,
        answered_within_24h=sum(w <= ANSWER_WITHIN.total_seconds() for w in waits) / count,
        accept_rate=accepted / count,
        skip_rate=statuses.count(Status.SKIPPED) / count,
        miss_rate=statuses.count(Status.MISSED) / count,
        decline_rate=statuses.count(Status.DECLINED) / count,
        expire_rate=statuses.count(Status.EXPIRED) / count,
        win_rate=statuses.count(Status.WON) / accepted if accepted else None,
        pipeline_value=dict(pipeline),
        won_value=dict(won),
    )


def partner_stats(
    engine: Engine,
    *,
    partner_ids: Collection[str] | None = None,
    since: datetime | None = None,
) -> list[PartnerStats]:
    """Statistics per partner over the referrals received since `since`, by partner id."""
    query = select(
        ReferralRow.partner_id,
        ReferralRow.received_at,
        ReferralRow.first_response_at,
        ReferralRow.status,
        ReferralRow.currency,
        ReferralRow.estimated_deal_value,
        ReferralRow.final_deal_value,
    )
    if partner_ids is not None:
        query = query.where(ReferralRow.partner_id.in_(list(partner_ids)))
    if since is not None:
        query = query.where(ReferralRow.received_at >= since)
    grouped: dict[str, list[ArchivedOutcome]] = defaultdict(list)
    with Session(engine) as session:
        for row in session.execute(query.execution_options(yield_per=1000)):
            grouped[row.partner_id].append(ArchivedOutcome(*row))
    return [summarise(partner, grouped[partner]) for partner in sorted(grouped)]


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
