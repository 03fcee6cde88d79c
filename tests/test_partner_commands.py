"""`referrals partners keys ...` and `referrals serve`'s refusals, as an operator runs them."""

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from archive.database import create_archive_engine
from archive.partner_keys import PartnerKeyStore
from tests.factories import SAMPLES
from tests.servers import run_referrals


def environment(folder: Path, **variables: str) -> dict[str, str]:
    return {
        **os.environ,
        "REFERRALS_DATABASE_URL": f"sqlite:///{folder}/archive.db",
        "REFERRALS_PARTNER_DIRECTORY": str(SAMPLES / "partners.json"),
        **variables,
    }


def test_a_key_is_shown_once_listed_without_it_and_revoked(tmp_path: Path) -> None:
    env = environment(tmp_path)
    added = run_referrals(env, "partners", "keys", "add", "acme-consulting", "--description", "CRM")
    assert added.returncode == 0, added.stderr
    fields = dict(line.split(maxsplit=1) for line in added.stdout.splitlines())
    key_id, key = fields["id"], fields["key"].split()[0]
    assert key.startswith(f"rpk_{key_id}_")
    store = PartnerKeyStore(create_archive_engine(env["REFERRALS_DATABASE_URL"]))
    assert store.authenticate(key, datetime.now(UTC)) is not None

    listed = run_referrals(env, "partners", "keys", "list", "--json")
    [entry] = json.loads(listed.stdout)
    assert set(entry) == {
        "id", "partner_id", "description", "created_at", "last_used_at", "revoked_at"
    }  # fmt: skip
    assert (entry["id"], entry["partner_id"], entry["description"]) == (
        key_id,
        "acme-consulting",
        "CRM",
    )
    assert entry["created_at"].endswith("Z")
    assert key not in listed.stdout
    assert key_id in run_referrals(env, "partners", "keys", "list").stdout

    revoked = run_referrals(env, "partners", "keys", "revoke", key_id)
    assert revoked.returncode == 0
    assert store.authenticate(key, datetime.now(UTC)) is None
    assert "revoked" in run_referrals(env, "partners", "keys", "list").stdout


def test_keys_are_refused_for_unknown_partners_and_ids(tmp_path: Path) -> None:
    env = environment(tmp_path)
    unknown = run_referrals(env, "partners", "keys", "add", "nobody")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"error: no partner 'nobody' in the directory {SAMPLES / 'partners.json'}"
    )
    missing = run_referrals(env, "partners", "keys", "revoke", "pk0000")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: no API key 'pk0000'")
    assert run_referrals(env, "partners", "keys", "list").stdout.strip() == "no API keys"


def test_serve_refuses_unusable_settings_in_one_line(tmp_path: Path) -> None:
    for variables, message in (
        (
            {"REFERRALS_LINK_KEYS": "nokey"},
            "error: REFERRALS_LINK_KEYS entries are KEYID:BASE64KEY",
        ),
        (
            {"REFERRALS_PUBLIC_URL": "ftp://partners.example.com"},
            "error: invalid setting: REFERRALS_PUBLIC_URL: must be an absolute http(s) URL "
            "without a query",
        ),
    ):
        refused = run_referrals(environment(tmp_path, **variables), "serve", "--port", "1")
        assert (refused.returncode, refused.stderr.strip()) == (1, message)
