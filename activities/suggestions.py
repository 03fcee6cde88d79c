"""The activity that picks other partners to suggest to a customer whose referral ended."""

from temporalio import activity

from activities.directory import DirectoryFile
from archive.stats import partner_stats, rank_by_responsiveness
from archive.store import ArchiveStore
from workflows.models import SuggestionRequest


class SuggestionActivities:
    def __init__(self, directory: DirectoryFile, store: ArchiveStore) -> None:
        self._directory = directory
        self._store = store

    @activity.defn(name="suggest_partners")
    def suggest_partners(self, request: SuggestionRequest) -> list[str]:
        """Up to three partner names serving the RFI's region, most responsive first."""
        serving = self._directory.load().partners_serving(request.region, request.location)
        already = self._store.partners_of_rfi(request.rfi_id) | {request.partner_id}
        candidates = [p.id for p in serving if p.id not in already]
        stats = partner_stats(self._store.engine, partner_ids=candidates)
        names = {p.id: p.name for p in serving}
        return [names[p] for p in rank_by_responsiveness(candidates, stats)]
