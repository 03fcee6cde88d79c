"""Links into the Temporal UI's workflow list, filtered to the referrals an operator looks
for: `referrals ui`, and the ready-made views `referrals dev` prints.

A link carries a visibility query on the referrals' search attributes; the same query
works in `temporal workflow list --query` and a client's `list_workflows`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from workflows import (
    FAILED_STATUS,
    PARTNER_KEY,
    RESPOND_BY_KEY,
    RFI_KEY,
    STATUS_KEY,
    WORKFLOW_TYPE,
)
from workflows.models import Status

ANSWER_SOON = timedelta(hours=24)  # the marketplace's recommendation


@dataclass(frozen=True)
class ListFilter:
    """Referrals whose every given field matches. Ids must be validated ids (they are
    quoted into the query as they are)."""

    statuses: tuple[str, ...] = ()  # a Status, or FAILED_STATUS
    rfi_id: str | None = None
    partner_id: str | None = None
    due_before: datetime | None = None  # the running deadline (RespondBy) falls before
    closed_since: datetime | None = None  # the run closed at or after

    def query(self) -> str:
        clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
        if len(self.statuses) == 1:
            clauses.append(f"{STATUS_KEY.name} = '{self.statuses[0]}'")
        elif self.statuses:
            listed = ", ".join(f"'{status}'" for status in self.statuses)
            clauses.append(f"{STATUS_KEY.name} IN ({listed})")
        if self.rfi_id is not None:
            clauses.append(f"{RFI_KEY.name} = '{self.rfi_id}'")
        if self.partner_id is not None:
            clauses.append(f"{PARTNER_KEY.name} = '{self.partner_id}'")
        if self.due_before is not None:
            clauses.append(f"{RESPOND_BY_KEY.name} < '{_timestamp(self.due_before)}'")
        if self.closed_since is not None:
            clauses.append(f"CloseTime >= '{_timestamp(self.closed_since)}'")
        return " AND ".join(clauses)


def list_link(ui_url: str, namespace: str, query: str) -> str:
    """The UI's workflow list for ``namespace``, filtered by ``query``."""
    namespace, query = quote(namespace, safe=""), quote(query, safe="")
    return f"{ui_url.rstrip('/')}/namespaces/{namespace}/workflows?query={query}"


def ready_made_views(now: datetime, rfi_id: str = "rfi-1001") -> list[tuple[str, ListFilter]]:
    """The views an operator starts from, titled: one per status, the answers due within
    24 hours, Missed and Expired closed today (UTC), the runs that failed to start (none
    of them in any other view but the RFI's), and one RFI's partners."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    views = [(str(status), ListFilter(statuses=(status,))) for status in Status]
    views += [
        ("Answers due within 24 hours", ListFilter(due_before=now + ANSWER_SOON)),
        (
            "Missed or Expired, closed today (UTC)",
            ListFilter(statuses=(Status.MISSED, Status.EXPIRED), closed_since=today),
        ),
        ("Failed to start", ListFilter(statuses=(FAILED_STATUS,))),
        (f"RFI {rfi_id}: every partner", ListFilter(rfi_id=rfi_id)),
    ]
    return views


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
