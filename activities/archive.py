"""The activity that writes a referral's current state to the archive database."""

import threading

from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from archive.database import upgrade
from archive.store import ArchiveStore
from workflows.models import StatusView

# From this attempt on, a failing write is logged as an error: the archive is not just
# blinking, and the referral cannot close until the write succeeds.
ALARM_AFTER_ATTEMPTS = 3


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
            return self._store.record(view)
        except (SQLAlchemyError, OSError) as error:  # OSError: a SQLite file's folder
            raise self._unavailable(error) from error

    def _ensure_schema(self) -> None:
        # The database may have been down when the worker started: migrate on first use.
        with self._lock:
            if not self._migrated:
                upgrade(self._store.engine)
                self._migrated = True

    def _unavailable(self, error: Exception) -> ApplicationError:
        """One line for the UI's pending activity and the worker's log; retried."""
        url = self._store.engine.url.render_as_string(hide_password=True)
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        message = f"archive database {url} unavailable: {cause}"
        attempt = activity.info().attempt
        if attempt >= ALARM_AFTER_ATTEMPTS:
            activity.logger.error(
                "%s (attempt %d; the referral cannot close until the archive is back)",
                message,
                attempt,
            )
        return ApplicationError(message, type="ArchiveUnavailable")
