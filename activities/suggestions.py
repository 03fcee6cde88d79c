"""The activity that picks other partners to suggest to a customer whose referral ended.

It raises no error of its own: a failure of Temporal's visibility, the directory file or the
archive passes unchanged and is retried as far as the workflow's policy allows; after that
the reroute email goes without suggestions.
"""

import asyncio

from temporalio import activity
from temporalio.client import Client

from activities.directory import DirectoryFile
from archive.stats import partner_stats, rank_by_responsiveness
from archive.store import ArchiveStore
from workflows.models import SuggestionRequest
from workflows.visibility import partners_of_rfi


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
        return await asyncio.to_thread(self._rank, request, listed | {request.partner_id})

    def _rank(self, request: SuggestionRequest, asked: set[str]) -> list[str]:
        serving = self._directory.load().partners_serving(request.region, request.location)
        asked |= self._store.partners_of_rfi(request.rfi_id)
        candidates = [p.id for p in serving if p.id not in asked]
        stats = partner_stats(self._store.engine, partner_ids=candidates)
        names = {p.id: p.name for p in serving}
        return [names[p] for p in rank_by_responsiveness(candidates, stats)]
