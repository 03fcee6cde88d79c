"""The activity that writes a referral's current state to the archive database."""

import threading

from temporalio import activity

from archive.database import upgrade
from archive.store import ArchiveStore
from workflows.models import StatusView


class ArchiveActivities:
    def __init__(self, store: ArchiveStore) -> None:
        self._store = store
        self._migrated = False
        self._lock = threading.Lock()

    @activity.defn(name="record_referral")
    def record_referral(self, view: StatusView) -> int:
        """Idempotent: returns the number of transitions this call added."""
        self._ensure_schema()
        return self._store.record(view)

    def _ensure_schema(self) -> None:
        # The database may have been down when the worker started: migrate on first use.
        with self._lock:
            if not self._migrated:
                upgrade(self._store.engine)
                self._migrated = True
