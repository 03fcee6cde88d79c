"""Encrypted payloads: the codec, key rotation, the codec server, and what the server stores."""

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment

from starter import referrals
from starter.client import connect
from starter.codec import CodecKeyError, EncryptionCodec, parse_keys
from starter.codec_server import build_codec_app
from starter.settings import Settings
from tests.factories import fresh_rfi
from tests.servers import run_referrals, stop_running
from worker import build_worker
from workflows.models import Status
from workflows.referral import ReferralWorkflow

OLD = ("2025-q4", os.urandom(32))
NEW = ("2026-q1", os.urandom(32))
UI = "http://localhost:8233"
Codec = TestClient[web.Request, web.Application]


def spec(*keys: tuple[str, bytes]) -> str:
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys)


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("no-colon", "KEYID:BASE64KEY"),
        ("k:not base64!", "not valid base64"),
        (f"k:{base64.b64encode(b'short').decode()}", "has 5 bytes"),
        (f"{spec(OLD)},{spec(OLD)}", "listed twice"),
    ],
)
def test_unusable_keys_are_refused_clearly(keys: str, message: str) -> None:
    with pytest.raises(CodecKeyError, match=message):
        parse_keys(keys)


async def test_the_first_key_encrypts_and_every_listed_key_decrypts() -> None:
    before = EncryptionCodec(parse_keys(spec(OLD)))
    sealed = await before.encode([payload("maria.lopez@lopez-logistics.example")])
    assert sealed[0].metadata["encryption-key-id"] == b"2025-q4"
    assert sealed[0].metadata["encoding"] == b"binary/encrypted"
    assert b"maria" not in sealed[0].data

    rotated = EncryptionCodec(parse_keys(spec(NEW, OLD)))
    assert await rotated.decode(sealed) == [payload("maria.lopez@lopez-logistics.example")]
    assert (await rotated.encode([payload("x")]))[0].metadata["encryption-key-id"] == b"2026-q1"

    retired = EncryptionCodec(parse_keys(spec(NEW)))
    with pytest.raises(CodecKeyError, match="2025-q4"):
        await retired.decode(sealed)
    tampered = Payload(metadata=dict(sealed[0].metadata), data=sealed[0].data[:-1] + b"\0")
    with pytest.raises(CodecKeyError, match="does not decrypt"):
        await rotated.decode([tampered])


# --- The codec server ---------------------------------------------------------------------


@pytest.fixture
async def codec_server() -> AsyncIterator[Codec]:
    app = build_codec_app(
        EncryptionCodec(parse_keys(spec(NEW, OLD))), cors_origin=UI, token="s3cret"
    )
    async with TestClient(TestServer(app)) as client:
        yield client


def body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=list(payloads)))


HEADERS = {
    "Content-Type": "application/json",
    "X-Namespace": "default",
    "Authorization": "Bearer s3cret",
    "Origin": UI,
}


async def test_the_codec_server_round_trips_what_the_ui_sends(codec_server: Codec) -> None:
    encoded = await codec_server.post("/encode", data=body(payload("secret")), headers=HEADERS)
    assert encoded.status == 200
    assert encoded.headers["Access-Control-Allow-Origin"] == UI
    sealed = json_format.Parse(await encoded.text(), Payloads())
    assert sealed.payloads[0].metadata["encoding"] == b"binary/encrypted"

    decoded = await codec_server.post("/decode", data=await encoded.text(), headers=HEADERS)
    assert decoded.status == 200
    assert json_format.Parse(await decoded.text(), Payloads()).payloads[0] == payload("secret")
    # The UI's JSON, as it sends it: base64 metadata and data, camelCase keys.
    as_ui = json.loads(await encoded.text())
    assert set(as_ui["payloads"][0]) == {"metadata", "data"}


async def test_the_codec_server_refuses_a_wrong_or_missing_token(
    codec_server: Codec,
) -> None:
    for token in ("Bearer wrong", None):
        headers = {k: v for k, v in HEADERS.items() if k != "Authorization"}
        if token:
            headers["Authorization"] = token
        refused = await codec_server.post("/decode", data=body(payload("x")), headers=headers)
        assert refused.status == 401
    bad = await codec_server.post("/decode", data="{not json", headers=HEADERS)
    assert bad.status == 400


async def test_cors_answers_the_configured_ui_origin_only(
    codec_server: Codec,
) -> None:
    preflight = await codec_server.options(
        "/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == UI
    assert "x-namespace" in preflight.headers["Access-Control-Allow-Headers"]
    other = await codec_server.options("/decode", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


# --- On a real server ---------------------------------------------------------------------


def with_keys(settings: Settings, keys: str | None) -> Settings:
    return Settings.model_validate(
        {
            **settings.model_dump(by_alias=True, mode="json"),
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "REFERRALS_CODEC_KEYS": keys,
        }
    )


async def test_history_holds_no_customer_contact_in_clear_and_rotated_keys_read_it(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    target = dev_env.client.service_client.config.target_host
    base = settings.model_copy(update={"temporal_address": target})
    encrypted = with_keys(base, spec(OLD))
    client = await connect(encrypted)
    queue = f"referrals-encrypted-{uuid.uuid4()}"
    rfi = fresh_rfi()
    async with build_worker(client, encrypted, executor, task_queue=queue):
        await referrals.submit(client, rfi, ["acme-consulting"], task_queue=queue)
        view = await referrals.act(client, rfi.id, "acme-consulting", "interested", {})
        assert view.customer is not None
        refused = referrals.act(client, rfi.id, "acme-consulting", "won", {})
        with pytest.raises(referrals.ReferralError, match="Evaluating"):
            await refused  # encrypted failure messages still read with the keys
        await referrals.act(client, rfi.id, "acme-consulting", "decline", {})
        handle = client.get_workflow_handle_for(
            ReferralWorkflow.run, f"referral:{rfi.id}:acme-consulting"
        )
        assert (await handle.result()).status is Status.DECLINED

    raw: Client = dev_env.client  # no codec: what the server, and the UI without it, hold
    history = await raw.get_workflow_handle(handle.id).fetch_history()
    stored = history.to_json()
    secrets = (
        "maria.lopez@lopez-logistics.example",
        "+49 30 1234567",
        "Lopez Logistics",
        "Maria Lopez",
    )
    for secret in secrets:
        assert secret not in stored
    assert "binary/encrypted" in stored or "YmluYXJ5L2VuY3J5cHRlZA" in stored

    rotated = await connect(with_keys(base, spec(NEW, OLD)))
    old_run = await rotated.get_workflow_handle_for(ReferralWorkflow.run, handle.id).result()
    assert old_run.customer is not None
    assert old_run.customer.phone == "+49 30 1234567"
    retired = await connect(with_keys(base, spec(NEW)))
    with pytest.raises(Exception, match="2025-q4"):
        await retired.get_workflow_handle_for(ReferralWorkflow.run, handle.id).result()

    command = await asyncio.to_thread(
        run_referrals,
        {**os.environ, "TEMPORAL_ADDRESS": target, "REFERRALS_CODEC_KEYS": spec(NEW, OLD)},
        "status",
        rfi.id,
        "acme-consulting",
    )
    assert command.returncode == 0, command.stderr
    assert json.loads(command.stdout)["customer"]["email"] == "maria.lopez@lopez-logistics.example"


async def test_summaries_and_details_are_encrypted_and_the_codec_server_reads_them(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    executor: ThreadPoolExecutor,
    codec_server: Codec,
) -> None:
    """The UI reads a referral's summary, labels and current details through the codec
    server; the server stores none of them in clear."""
    target = dev_env.client.service_client.config.target_host
    encrypted = with_keys(settings.model_copy(update={"temporal_address": target}), spec(OLD))
    client = await connect(encrypted)
    queue = f"referrals-encrypted-{uuid.uuid4()}"
    rfi = fresh_rfi()
    async with build_worker(client, encrypted, executor, task_queue=queue):
        await referrals.submit(client, rfi, ["acme-consulting"], task_queue=queue)
        await referrals.act(client, rfi.id, "acme-consulting", "interested", {})
        handle = client.get_workflow_handle_for(
            ReferralWorkflow.run, f"referral:{rfi.id}:acme-consulting"
        )
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "- **Status:** Evaluating" in metadata.current_details
        raw_answer = await dev_env.client.get_workflow_handle(handle.id).query(
            "__temporal_workflow_metadata", result_type=RawValue
        )
        await stop_running(handle)

    assert raw_answer.payload.metadata["encoding"] == b"binary/encrypted"
    assert b"Evaluating" not in raw_answer.payload.data
    raw = await dev_env.client.get_workflow_handle(handle.id).fetch_history()
    sealed = [
        event.user_metadata.summary
        for event in raw.events
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary")
    ]
    assert len(sealed) >= 4  # the run's summary, a timer, the lead and an archive write
    assert {p.metadata["encoding"] for p in sealed} == {b"binary/encrypted"}
    stored = raw.to_json()
    for clear in (f"{rfi.id} -> acme-consulting", "lead email to the partner", "deadline:"):
        assert clear not in stored
    decoded = await codec_server.post("/decode", data=body(*sealed), headers=HEADERS)
    assert decoded.status == 200
    labels = [
        json.loads(p.data) for p in json_format.Parse(await decoded.text(), Payloads()).payloads
    ]
    assert labels[0] == f"{rfi.id} -> acme-consulting (emea / Berlin)"
    assert "lead email to the partner" in labels
    assert any(label.startswith("last call at ") for label in labels)
