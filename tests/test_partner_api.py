"""The partner API (`/v1`) for a partner's CRM, on the dev server with the production
worker: keys scoped to one partner, problem details, idempotent actions, pages."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from archive.database import create_archive_engine, upgrade
from archive.partner_keys import PartnerKeyStore
from archive.store import ArchiveStore
from starter import referrals
from starter.settings import Settings
from tests.factories import DISTINCTIVE_CUSTOMER, DISTINCTIVE_TRACES, fresh_rfi, now_utc
from tests.partner_web import served
from web.app import create_app
from workflows.models import Rfi, Status

BASE = "http://localhost:8000"
PROBLEM = "application/problem+json"


@pytest.fixture
def keys(settings: Settings) -> PartnerKeyStore:
    engine = create_archive_engine(settings.database_url)
    upgrade(engine)
    return PartnerKeyStore(engine)


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=dev_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def submitted(client: Any, queue: str, *partners: str) -> Rfi:
    rfi = fresh_rfi(customer=DISTINCTIVE_CUSTOMER)
    await referrals.submit(client, rfi, partners or ["acme-consulting"], task_queue=queue)
    return rfi


async def archived(api: httpx.AsyncClient, key: str, rfi: Rfi, status: Status) -> dict[str, Any]:
    """The referral as the list shows it once the archive has it in ``status`` (30 s)."""
    for _ in range(300):
        page = (await api.get("/v1/referrals", headers=bearer(key))).json()
        for item in page["items"]:
            if item["rfi_id"] == rfi.id and item["status"] == status:
                return dict(item)
        await asyncio.sleep(0.1)
    pytest.fail(f"{rfi.id} not listed as {status} within 30 s")


async def test_a_crm_reads_and_acts_on_its_own_referrals_only(
    dev_env: WorkflowEnvironment, queue: str, api: httpx.AsyncClient, keys: PartnerKeyStore
) -> None:
    record, acme = keys.add("acme-consulting", "CRM", datetime.now(UTC))
    _, globex = keys.add("globex", None, datetime.now(UTC))
    store = ArchiveStore(keys.engine)
    rfi = await submitted(dev_env.client, queue, "acme-consulting")

    view = await api.get(f"/v1/referrals/{rfi.id}", headers=bearer(acme))
    assert view.status_code == 200
    assert view.json()["status"] == "New"
    assert view.json()["customer"] is None
    assert view.json()["allowed_actions"] == ["interested", "no_thanks"]
    assert not any(trace in view.text for trace in DISTINCTIVE_TRACES)

    # Another partner's referral is answered as if there were none: no existence leak.
    for path, method in (
        ("/v1/referrals/{}", "GET"),
        ("/v1/referrals/{}/actions/interested", "POST"),
    ):
        other = await api.request(method, path.format(rfi.id), headers=bearer(globex), json={})
        nobody = await api.request(method, path.format("rfi-none"), headers=bearer(globex), json={})
        assert other.status_code == nobody.status_code == 404
        assert other.headers["content-type"] == PROBLEM
        assert other.json()["detail"].replace(rfi.id, "X") == nobody.json()["detail"].replace(
            "rfi-none", "X"
        )
    assert all(
        i["rfi_id"] != rfi.id
        for i in (await api.get("/v1/referrals", headers=bearer(globex))).json()["items"]
    )

    interested = await api.post(f"/v1/referrals/{rfi.id}/actions/interested", headers=bearer(acme))
    assert interested.status_code == 200
    assert interested.json()["status"] == "Evaluating"
    assert interested.json()["customer"]["email"] == DISTINCTIVE_CUSTOMER["email"]

    refused = await api.post(f"/v1/referrals/{rfi.id}/actions/won", headers=bearer(acme), json={})
    assert refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert (problem["status"], problem["referral_status"]) == (409, "Evaluating")
    assert problem["allowed_actions"] == ["accept", "decline"]

    invalid = await api.post(
        f"/v1/referrals/{rfi.id}/actions/accept",
        headers=bearer(acme),
        json={"estimated_deal_value": "-5", "currency": "EUR"},
    )
    assert invalid.status_code == 422
    fields = {error["field"] for error in invalid.json()["errors"]}
    assert fields == {"estimated_deal_value", "estimated_close_date"}

    listed = await archived(api, acme, rfi, Status.EVALUATING)
    assert listed["deadline"]["kind"] == "decide"
    assert [t["cause"]["name"] for t in listed["transitions"]] == ["interested"]
    # Which door, and which key: in the view, the archive and the event.
    assert listed["transitions"][0]["via"] == {"door": "api", "api_key_id": record.id}
    assert interested.json()["transitions"][0]["via"] == listed["transitions"][0]["via"]
    [event] = [e for e in store.events() if e.event_id.endswith(f"{rfi.id}:acme-consulting.1")]
    assert json.loads(event.body)["data"]["via"] == {"door": "api", "api_key_id": record.id}
    spoofed = await api.post(
        f"/v1/referrals/{rfi.id}/actions/decline",
        headers=bearer(acme),
        json={"via": {"door": "temporal"}},
    )
    assert spoofed.status_code == 422
    assert spoofed.json()["errors"] == [{"field": "via", "message": "not allowed"}]


async def test_an_idempotency_key_acts_once_and_answers_the_same(
    dev_env: WorkflowEnvironment, queue: str, api: httpx.AsyncClient, keys: PartnerKeyStore
) -> None:
    _, acme = keys.add("acme-consulting", None, datetime.now(UTC))
    rfi = await submitted(dev_env.client, queue)
    await referrals.act(dev_env.client, rfi.id, "acme-consulting", "interested", {})
    accept = f"/v1/referrals/{rfi.id}/actions/accept"
    deal = {
        "estimated_deal_value": "48000.50",
        "currency": "EUR",
        "estimated_close_date": str(now_utc().date() + timedelta(days=30)),
    }
    headers = {**bearer(acme), "Idempotency-Key": "crm-42"}
    first = await api.post(accept, headers=headers, json=deal)
    second = await api.post(accept, headers=headers, json=deal)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["deal"]["estimated_deal_value"] == "48000.50"
    other_body = await api.post(accept, headers=headers, json={**deal, "currency": "USD"})
    assert other_body.status_code == 422
    assert "Idempotency-Key" in other_body.json()["title"]
    # Without the key, the same request again is refused by the referral: it moved on.
    again = await api.post(accept, headers=bearer(acme), json=deal)
    assert again.status_code == 409

    view = await referrals.status(dev_env.client, rfi.id, "acme-consulting")
    assert [t.cause.name for t in view.transitions] == ["interested", "accept"]


async def test_keys_sizes_and_pages(
    dev_env: WorkflowEnvironment,
    queue: str,
    api: httpx.AsyncClient,
    keys: PartnerKeyStore,
    settings: Settings,
) -> None:
    record, acme = keys.add("acme-consulting", None, datetime.now(UTC))
    for headers in ({}, bearer("rpk_nothing"), bearer(acme + "x"), {"Authorization": acme}):
        refused = await api.get("/v1/referrals", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["www-authenticate"] == "Bearer"
    too_big = await api.post(
        "/v1/referrals/rfi-1/actions/no_thanks",
        headers=bearer(acme),
        content=json.dumps({"reason": "x" * 17_000}),
    )
    assert (too_big.status_code, too_big.headers["content-type"]) == (413, PROBLEM)

    rfis = [await submitted(dev_env.client, queue) for _ in range(3)]
    for rfi in rfis:
        await archived(api, acme, rfi, Status.NEW)
    seen: list[str] = []
    page = (await api.get("/v1/referrals?limit=2&status=New", headers=bearer(acme))).json()
    while True:
        seen += [item["rfi_id"] for item in page["items"]]
        assert len(page["items"]) <= 2
        if page["next"] is None:
            break
        page = (
            await api.get(
                "/v1/referrals",
                params={"limit": 2, "status": "New", "after": page["next"]},
                headers=bearer(acme),
            )
        ).json()
    assert len(seen) == len(set(seen))  # no page repeats a referral
    assert {r.id for r in rfis} <= set(seen)
    bad_cursor = await api.get("/v1/referrals?after=garbage", headers=bearer(acme))
    assert (bad_cursor.status_code, bad_cursor.headers["content-type"]) == (422, PROBLEM)

    assert keys.list("acme-consulting")[0].last_used_at is not None
    keys.revoke(record.id, datetime.now(UTC))
    # A process that trusted the key refuses it within KEYS_CACHED_FOR; any other at once.
    async with served(settings, dev_env.client) as other_process:
        refused = await other_process.get("/v1/referrals", headers=bearer(acme))
        assert refused.status_code == 401


async def test_a_process_refuses_a_revoked_key_once_its_trust_runs_out(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, keys: PartnerKeyStore
) -> None:
    monkeypatch.setattr("web.services.KEYS_CACHED_FOR", timedelta(seconds=0.5))
    record, key = keys.add("acme-consulting", None, datetime.now(UTC))
    async with served(settings) as api:
        assert (await api.get("/v1/referrals", headers=bearer(key))).status_code == 200
        keys.revoke(record.id, datetime.now(UTC))
        await asyncio.sleep(0.6)
        assert (await api.get("/v1/referrals", headers=bearer(key))).status_code == 401


async def test_the_openapi_document_describes_the_api(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    assert set(document["paths"]) == {
        "/v1/referrals",
        "/v1/referrals/{rfi_id}",
        "/v1/referrals/{rfi_id}/actions/{action}",
    }
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    act = document["paths"]["/v1/referrals/{rfi_id}/actions/{action}"]["post"]
    assert {"200", "401", "404", "409", "413", "422", "429"} <= set(act["responses"])


def test_a_partners_view_is_the_status_view_without_the_marketplaces_bookkeeping() -> None:
    from web.api_models import PartnerReferral
    from workflows.models import StatusView

    shared = set(StatusView.model_fields) - {"emails", "rejected_actions"}
    assert set(PartnerReferral.model_fields) == shared | {"updated_at", "allowed_actions"}
