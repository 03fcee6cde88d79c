"""Webhook endpoints: which URLs may be called, how endpoints and their secrets are kept,
and the `referrals webhooks` commands."""

import base64
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from activities.webhook_sender import checked_url
from archive.database import create_archive_engine, upgrade
from archive.schema import WebhookEndpointRow
from archive.store import ArchiveStore
from archive.webhooks import UnknownEndpoint, WebhookStore
from starter.codec import EncryptionCodec, parse_keys
from tests.factories import started
from tests.servers import run_referrals

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = ("2026-q1", os.urandom(32))
NEXT_KEY = ("2026-q2", os.urandom(32))


def keys(*pairs: tuple[str, bytes]) -> str:
    return ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in pairs)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/hooks",
        "http://127.0.0.1:8080/hooks",
        "https://[::1]/h",
        "http://localhost:9/x",
        "http://[::ffff:127.0.0.1]:8080/hooks",  # IPv4-mapped loopback
        "https://[64:ff9b::5db8:d822]/hooks",  # NAT64 of a public address
    ],
)
def test_https_anywhere_public_and_http_on_loopback_may_be_called(url: str) -> None:
    assert checked_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://93.184.216.34/hooks", "loopback only"),
        ("https://10.1.2.3/hooks", "internal address"),
        ("https://192.168.0.10/hooks", "internal address"),
        ("https://169.254.169.254/latest/meta-data", "internal address"),
        ("https://[fd00::1]/hooks", "internal address"),
        # IPv6 forms of an internal IPv4 address: mapped, NAT64, 6to4, Teredo, compatible.
        ("https://[::ffff:169.254.169.254]/latest", "internal address"),
        ("https://[64:ff9b::a9fe:a9fe]/latest", "internal address"),
        ("https://[2002:a9fe:a9fe::]/latest", "internal address"),
        ("https://[2001:0:4136:e378:8000:63bf:f5fe:fffc]/x", "internal address"),
        ("https://[::169.254.169.254]/latest", "deprecated IPv4-compatible"),
        ("https://[::10.0.0.1]/hooks", "deprecated IPv4-compatible"),
        ("http://[::ffff:93.184.216.34]/hooks", "loopback only"),
        ("ftp://127.0.0.1/hooks", "not an http"),
        ("https://user:pw@93.184.216.34/", "user name or password"),
        ("hooks.example", "not an http"),
    ],
)
def test_other_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checked_url(url)


def test_plain_http_needs_every_address_of_its_host_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that resolves to loopback and to a public address (as DNS rebinding would
    have it) may not be called over plain http://: the request could reach either."""
    addresses = {"both.example": ["127.0.0.1", "93.184.216.34"], "here.example": ["127.0.0.1"]}

    def resolve(host: str, port: object, *args: object, **kwargs: object) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 80)) for a in addresses[host]]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ValueError, match="loopback only"):
        checked_url("http://both.example/hooks")
    assert checked_url("http://here.example/hooks") == "http://here.example/hooks"
    assert checked_url("https://both.example/hooks") == "https://both.example/hooks"


def test_an_internal_address_is_allowed_when_the_operator_says_so() -> None:
    assert checked_url("https://10.1.2.3/hooks", allow_private=True) == "https://10.1.2.3/hooks"
    with pytest.raises(ValueError, match="loopback only"):
        checked_url("http://10.1.2.3/hooks", allow_private=True)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_archive_engine(f"sqlite:///{tmp_path}/archive.db")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_endpoints_are_kept_without_showing_their_secrets(engine: Engine) -> None:
    archive = ArchiveStore(engine)
    referral, _ = started()
    archive.record(referral.view())  # one event before the endpoint exists
    store = WebhookStore(engine)
    endpoint, secret = store.add("https://93.184.216.34/h", ["referral.won"], "CRM", NOW)
    assert endpoint.id.startswith("ep_")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 24
    assert (endpoint.enabled, endpoint.events, endpoint.description) == (
        True,
        ["referral.won"],
        "CRM",
    )
    assert endpoint.wants("referral.won")
    assert not endpoint.wants("referral.lost")
    assert store.endpoints() == [endpoint]
    assert store.secrets(endpoint.id, NOW) == [secret]
    last = archive.events()[-1].position
    with Session(engine) as session:
        row = session.scalar(select(WebhookEndpointRow))
    assert row is not None
    assert row.from_position == last  # it hears only the events recorded after it

    assert not store.set_enabled(endpoint.id, False, "410 Gone").enabled
    assert store.endpoints()[0].disabled_reason == "410 Gone"
    assert store.set_enabled(endpoint.id, True).enabled

    new = store.rotate_secret(endpoint.id, NOW)
    assert store.secrets(endpoint.id, NOW + timedelta(hours=23)) == [new, secret]
    assert store.secrets(endpoint.id, NOW + timedelta(hours=24)) == [new]

    store.remove(endpoint.id)
    assert store.endpoints() == []
    with pytest.raises(UnknownEndpoint, match=endpoint.id):
        store.remove(endpoint.id)
    with pytest.raises(ValueError, match="unknown event types"):
        store.add("https://93.184.216.34/h", ["referral.maybe"], None, NOW)


def test_with_codec_keys_a_secret_is_stored_sealed_and_read_after_a_key_rotation(
    engine: Engine,
) -> None:
    store = WebhookStore(engine, EncryptionCodec(parse_keys(keys(KEY))))
    endpoint, secret = store.add("https://93.184.216.34/h", [], None, NOW)
    with Session(engine) as session:
        stored = session.scalars(select(WebhookEndpointRow.secret)).one()
    assert secret not in stored
    assert secret[6:] not in stored
    rotated = WebhookStore(engine, EncryptionCodec(parse_keys(keys(NEXT_KEY, KEY))))
    assert rotated.secrets(endpoint.id, NOW) == [secret]
    with pytest.raises(ValueError, match="REFERRALS_CODEC_KEYS"):
        WebhookStore(engine).secrets(endpoint.id, NOW)


def test_the_commands_add_list_disable_and_remove(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "REFERRALS_DATABASE_URL": f"sqlite:///{tmp_path}/archive.db",
        "TEMPORAL_ADDRESS": "127.0.0.1:9",
    }
    environment.pop("REFERRALS_CODEC_KEYS", None)
    added = run_referrals(
        environment,
        "webhooks",
        "add",
        "http://127.0.0.1:9/hooks",
        "--events",
        "referral.won,referral.lost",
        "--description",
        "CRM",
    )
    assert added.returncode == 0, added.stderr
    # No Temporal here: the endpoint is kept, and its delivery waits for the worker.
    assert "delivery not started" in added.stderr
    lines = dict(line.split(None, 1) for line in added.stdout.splitlines())
    endpoint_id, secret = lines["id"], lines["secret"].split()[0]
    assert secret.startswith("whsec_")

    listed = run_referrals(environment, "webhooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "id": endpoint_id,
            "url": "http://127.0.0.1:9/hooks",
            "events": ["referral.won", "referral.lost"],
            "enabled": True,
            "description": "CRM",
            "disabled_reason": None,
        }
    ]
    assert secret not in listed.stdout

    assert run_referrals(environment, "webhooks", "disable", endpoint_id).returncode == 0
    assert (
        json.loads(run_referrals(environment, "webhooks", "list", "--json").stdout)[0]["enabled"]
        is False
    )
    rotated = run_referrals(environment, "webhooks", "rotate-secret", endpoint_id)
    assert rotated.returncode == 0
    assert "whsec_" in rotated.stdout
    assert secret not in rotated.stdout
    assert run_referrals(environment, "webhooks", "remove", endpoint_id).returncode == 0
    gone = run_referrals(environment, "webhooks", "remove", endpoint_id)
    assert gone.returncode == 1
    assert f"no webhook endpoint '{endpoint_id}'" in gone.stderr

    refused = run_referrals(environment, "webhooks", "add", "https://10.0.0.5/hooks")
    assert refused.returncode == 1
    assert "internal address" in refused.stderr
    allowed = run_referrals(
        {**environment, "REFERRALS_WEBHOOKS_ALLOW_PRIVATE": "1"},
        "webhooks",
        "add",
        "https://10.0.0.5/hooks",
    )
    assert allowed.returncode == 0, allowed.stderr
