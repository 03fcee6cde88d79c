"""Test data in the business's words: RFIs, partner contacts, a customer to trace."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.directory import Directory
from workflows.lifecycle import Referral
from workflows.models import ContactLookup, EmailRequest, PartnerContact, Rfi, Status
from workflows.payloads import read_action

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
# A fixed received_at for tests whose clock is their own; the dev server's tests use now.
RECEIVED_AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def rfi_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "rfi.json").read_text())
    data["id"] = f"rfi-{uuid.uuid4().hex[:12]}"
    data["received_at"] = RECEIVED_AT.isoformat()  # the sample leaves it to `submit`
    data.update(changes)
    return data


def make_rfi(**changes: Any) -> Rfi:
    return Rfi.model_validate(rfi_data(**changes))


def now_utc() -> datetime:
    return datetime.now(UTC)


def fresh_rfi(**changes: Any) -> Rfi:
    """An RFI received now by this machine's clock (the dev server's and a worker's), unless
    ``received_at`` is given."""
    return make_rfi(**{"received_at": now_utc().isoformat(), **changes})


async def received_now(env: WorkflowEnvironment, **changes: Any) -> Rfi:
    """An RFI received now by the clock of ``env`` (the time-skipping server keeps its own)."""
    return make_rfi(received_at=(await env.get_current_time()).isoformat(), **changes)


# A customer whose every detail is distinctive: any trace of them where the customer's
# contact must not go (a log line, a failure, a partner's first emails) is a leak.
DISTINCTIVE_CUSTOMER = {
    "name": "Quentin Zylberstein",
    "company": "Haulagecorp KG",
    "email": "q.zyl@haulagecorp.example",
    "phone": "+49 30 5550199",
}
DISTINCTIVE_TRACES = ("Quentin", "Zylberstein", "Haulagecorp", "q.zyl", "5550199")


def sample_contact(
    partner_id: str, region: str = "emea", location: str = "Berlin"
) -> PartnerContact:
    """The contact samples/partners.json gives for the partner where the RFI is."""
    directory = Directory.model_validate_json((SAMPLES / "partners.json").read_bytes())
    lookup = ContactLookup(partner_id=partner_id, region=region, location=location)
    return directory.contact_for(lookup)


ACME_BERLIN = sample_contact("acme-consulting")


def act(referral: Referral, name: str, argument: Any, now: datetime) -> list[EmailRequest]:
    """Take an action as the workflow takes one off the wire: read, judged, then acted on."""
    return referral.act(*read_action(referral, name, argument), now)


# --- Referrals driven by plain calls, with no Temporal ---------------------------------------

ACCEPT: dict[str, Any] = {
    "estimated_deal_value": "25000.00",
    "currency": "EUR",
    "estimated_close_date": "2027-03-31",
}
# How to reach each status from a fresh referral; "@deadline" fires the running deadline.
PATHS: dict[Status, list[tuple[str, Any]]] = {
    Status.NEW: [],
    Status.EVALUATING: [("interested", None)],
    Status.NEGOTIATING: [("interested", None), ("accept", ACCEPT)],
    Status.WON: [("interested", None), ("accept", ACCEPT), ("won", None)],
    Status.LOST: [("interested", None), ("accept", ACCEPT), ("lost", None)],
    Status.SKIPPED: [("no_thanks", None)],
    Status.MISSED: [("@deadline", None)],
    Status.DECLINED: [("interested", None), ("decline", None)],
    Status.EXPIRED: [("interested", None), ("@deadline", None)],
}


def started(
    rfi: Rfi | None = None, at: datetime | None = None
) -> tuple[Referral, list[EmailRequest]]:
    """A referral to ACME_BERLIN, started (at received_at unless ``at``): and its lead."""
    rfi = rfi or make_rfi()
    referral = Referral(rfi, ACME_BERLIN.partner_id)
    return referral, referral.start(ACME_BERLIN, rfi.received_at if at is None else at)


def reach(status: Status, rfi: Rfi | None = None) -> Referral:
    """A started referral driven to ``status``, one step per hour from received_at."""
    referral, _ = started(rfi)
    now = referral.rfi.received_at
    for name, payload in PATHS[status]:
        now += timedelta(hours=1)
        if name == "@deadline":
            deadline = referral.deadline
            assert deadline is not None
            now = deadline.due_at
            referral.fire_due(now)
        else:
            act(referral, name, payload, now)
    assert referral.status is status
    return referral
