"""The activity that writes a referral's current state to the archive database.

The store (`archive.store`) raises the database's own errors; the activity turns every one
into a retryable ``ApplicationError`` of type ``ArchiveUnavailable`` whose message is the
first line of the database's, never its detail (which may quote the customer's contact).
"""

import threading

from temporalio import activity
from temporalio.exceptions import ApplicationError

from archive.database import upgrade
from archive.store import ArchiveStore
from workflows.models import StatusView

# Every attempt after this many is logged as an error when it fails: the archive is not
# just blinking, and the referral cannot close until the write succeeds.
ALARM_AFTER_ATTEMPTS = 3
FAILURES_METRIC = "referral_archive_failures"


class ArchiveActivities:
    def __init__(self, store: ArchiveStore) -> None:
        self._store = store
        self._migrated = False
        self._lock = threading.Lock()

    @activity.defn(name="record_referral")
    def record_referral(self, view: StatusView) -> int:
        """Idempotent: returns the number of transitions this call added."""
        try:
            self._ensure_schema()
            return self._store.record(view, activity.info().workflow_id)
        except Exception as error:
            # Not chained: a database's own message may quote the row it refused
            # (PostgreSQL's "Failing row contains ..."), the customer's contact included.
            raise self._failed(error) from None

    def _ensure_schema(self) -> None:
        # The database may have been down when the worker started: migrate on first use.
        with self._lock:
            if not self._migrated:
                upgrade(self._store.engine)
                self._migrated = True

    def _failed(self, error: Exception) -> ApplicationError:
        """Count the failure; one line for the UI's pending activity and the worker's log,
        the first of the database's message (never its detail); retried."""
        activity.metric_meter().create_counter(
            FAILURES_METRIC, "Failed archive writes, one per attempt", "failures"
        ).add(1)
        url = self._store.engine.url.render_as_string(hide_password=True)
        lines = str(getattr(error, "orig", None) or error).strip().splitlines()
        cause = lines[0] if lines else type(error).__name__
        message = f"archive database {url} unavailable: {cause}"
        attempt = activity.info().attempt
        if attempt > ALARM_AFTER_ATTEMPTS:
            activity.logger.error(
                "%s (attempt %d; the referral cannot close until the archive is back)",
                message,
                attempt,
            )
        return ApplicationError(message, type="ArchiveUnavailable")
