"""Test data in the business's words: RFIs, partner contacts, a customer to trace."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workflows.models import PartnerContact, Rfi

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


# A customer whose every detail is distinctive: any trace of them where the customer's
# contact must not go (a log line, a failure, a partner's first emails) is a leak.
DISTINCTIVE_CUSTOMER = {
    "name": "Quentin Zylberstein",
    "company": "Haulagecorp KG",
    "email": "q.zyl@haulagecorp.example",
    "phone": "+49 30 5550199",
}
DISTINCTIVE_TRACES = ("Quentin", "Zylberstein", "Haulagecorp", "q.zyl", "5550199")

# The contact samples/partners.json gives for acme-consulting in Berlin.
ACME_BERLIN = PartnerContact(
    partner_id="acme-consulting",
    partner_name="Acme Consulting",
    contact_name="Jonas Weber",
    contact_email="berlin@acme-consulting.example",
    region="emea",
    location="Berlin",
)
