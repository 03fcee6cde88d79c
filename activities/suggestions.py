"""The activities that tell what the customer of a referral that ended should hear: which
other partners of the RFI are engaged with it or passed on it, and which partners to
suggest.

They raise no error of their own: a failure of Temporal's visibility, the directory file or
the archive passes unchanged and is retried as far as the workflow's policy allows; after
that the reroute email goes without suggestions, and one after a loss does not go.
"""

import asyncio

from temporalio import activity
from temporalio.client import Client

from activities.directory import DirectoryFile
from archive.stats import partner_stats, rank_by_responsiveness
from archive.store import ArchiveStore
from workflows.models import CustomerOutlook, Status, SuggestionRequest
from workflows.visibility import partners_of_rfi, statuses_of_rfi

ENGAGED = frozenset({Status.EVALUATING, Status.NEGOTIATING, Status.WON})
PASSED = frozenset({Status.SKIPPED, Status.MISSED, Status.DECLINED, Status.EXPIRED})


class SuggestionActivities:
    def __init__(self, directory: DirectoryFile, store: ArchiveStore, client: Client) -> None:
        self._directory = directory
        self._store = store
        self._client = client

    @activity.defn(name="suggest_partners")
    async def suggest_partners(self, request: SuggestionRequest) -> list[str]:
        """Up to three partner names serving the RFI's region, most responsive first, leaving
        out every partner the RFI already went to: those Temporal lists (a referral started
        a moment ago has no archive row yet) and those only the archive still knows."""
        listed = await partners_of_rfi(self._client, request.rfi_id)
        # The archive is a blocking database: off the worker's event loop.
        return await asyncio.to_thread(self._suggest, request, listed)

    @activity.defn(name="look_at_rfi_for_customer")
    async def look_at_rfi(self, request: SuggestionRequest) -> CustomerOutlook:
        """The RFI's other referrals by how they stand (Temporal's visibility over the
        archive's rows, which may lag a second behind), and up to three partners to
        suggest, as `suggest_partners` picks them."""
        listed = await statuses_of_rfi(self._client, request.rfi_id)
        return await asyncio.to_thread(self._outlook, request, listed)

    def _outlook(self, request: SuggestionRequest, listed: dict[str, str]) -> CustomerOutlook:
        archived = self._store.referrals_of_rfi(request.rfi_id)
        statuses = {r.partner_id: r.status for r in archived} | listed
        statuses.pop(request.partner_id, None)
        passed = sorted(p for p, s in statuses.items() if s in PASSED)
        me = (request.ended_at, request.partner_id)
        ended = {r.partner_id: r.closed_at for r in archived if r.closed_at is not None}
        return CustomerOutlook(
            alternatives=self._rank(request, {request.partner_id, *statuses}),
            engaged=sorted(p for p, s in statuses.items() if s in ENGAGED),
            passed=passed,
            passed_after=[
                p
                for p in passed
                if request.ended_at is not None and p in ended and (ended[p], p) > me
            ],
        )

    def _suggest(self, request: SuggestionRequest, listed: set[str]) -> list[str]:
        archived = self._store.partners_of_rfi(request.rfi_id)
        return self._rank(request, {request.partner_id, *listed, *archived})

    def _rank(self, request: SuggestionRequest, asked: set[str]) -> list[str]:
        """Partners serving the RFI's region and location that were not `asked`, by name,
        the most responsive first."""
        serving = self._directory.load().partners_serving(request.region, request.location)
        candidates = [p.id for p in serving if p.id not in asked]
        stats = partner_stats(self._store.engine, partner_ids=candidates)
        names = {p.id: p.name for p in serving}
        return [names[p] for p in rank_by_responsiveness(candidates, stats)]
