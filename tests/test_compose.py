"""The production compose stack, checked without a Docker engine: parsed, and `docker-compose
config` where Debian's docker-compose is installed."""

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from starter.settings import Settings
from tests.factories import ROOT
from workflows import SEARCH_ATTRIBUTE_KEYS

COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


KEYS = f"ci:{base64.b64encode(bytes(32)).decode()}"
TOKEN = "ci-codec-token"
REQUIRED = {
    "REFERRALS_CODEC_KEYS": KEYS,
    "REFERRALS_CODEC_TOKEN": TOKEN,
    "REFERRALS_LINK_KEYS": KEYS,
}
LOOPBACK_OR_OVERRIDE = re.compile(r"^(\$\{REFERRALS_BIND_ADDRESS:-127\.0\.0\.1\}|127\.0\.0\.1):")


Config = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def compose_config(tmp_path: Path) -> Config:
    """`docker-compose config` with only the given variables: no .env file, nothing inherited."""
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("Debian's docker-compose is not installed: `apt-get install docker-compose`")
    no_env_file = tmp_path / "empty.env"
    no_env_file.touch()
    inherited = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}

    def config(**variables: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [docker_compose, "-f", str(COMPOSE), "--env-file", str(no_env_file), "config"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**inherited, **variables},
        )

    return config


def test_docker_compose_accepts_the_file(compose_config: Config) -> None:
    result = compose_config(**REQUIRED)
    assert result.returncode == 0, result.stderr
    # Without encryption or link keys the stack refuses to start, naming what is missing.
    refused = compose_config(REFERRALS_CODEC_TOKEN=TOKEN, REFERRALS_LINK_KEYS=KEYS)
    assert refused.returncode != 0
    assert "set REFERRALS_CODEC_KEYS to KEYID:BASE64KEY" in refused.stderr
    refused = compose_config(REFERRALS_CODEC_TOKEN=TOKEN, REFERRALS_CODEC_KEYS=KEYS)
    assert refused.returncode != 0
    assert "set REFERRALS_LINK_KEYS to KEYID:BASE64KEY" in refused.stderr


@pytest.mark.parametrize("token", [None, ""])
def test_the_stack_refuses_to_start_without_a_codec_token(
    compose_config: Config, token: str | None
) -> None:
    variables = {"REFERRALS_CODEC_KEYS": KEYS, "REFERRALS_LINK_KEYS": KEYS}
    if token is not None:
        variables["REFERRALS_CODEC_TOKEN"] = token
    refused = compose_config(**variables)
    assert refused.returncode != 0
    assert "set REFERRALS_CODEC_TOKEN to a long random secret" in refused.stderr


def published_hosts(config: str) -> dict[str, list[str]]:
    """The host address of each published port, per service, from `docker-compose config`."""
    hosts: dict[str, list[str]] = {}
    for name, service in yaml.safe_load(config)["services"].items():
        for port in service.get("ports", []):
            # docker-compose 1.x prints "127.0.0.1:8080:8080/tcp"; Compose v2 a mapping.
            if isinstance(port, dict):
                host = port.get("host_ip", "")
            else:
                host = port.rsplit(":", 2)[0] if port.count(":") >= 2 else ""
            hosts.setdefault(name, []).append(host)
    return hosts


def test_published_ports_listen_on_loopback_unless_told_otherwise(compose_config: Config) -> None:
    default = compose_config(**REQUIRED)
    assert default.returncode == 0, default.stderr
    hosts = published_hosts(default.stdout)
    assert set(hosts) == {"temporal", "temporal-ui", "codec-server", "archive-db", "web"}
    assert all(host == ["127.0.0.1"] for host in hosts.values()), hosts

    override = compose_config(**REQUIRED, REFERRALS_BIND_ADDRESS="0.0.0.0")
    assert override.returncode == 0, override.stderr
    assert published_hosts(override.stdout) == {
        "temporal": ["0.0.0.0"],
        "temporal-ui": ["0.0.0.0"],
        "codec-server": ["0.0.0.0"],
        "web": ["0.0.0.0"],
        "archive-db": ["127.0.0.1"],  # for the `referrals` command on this host only
    }


def test_every_published_port_names_its_host_address(stack: dict[str, Any]) -> None:
    # Without docker-compose: a port without an address would listen on every interface.
    ports = {name: service["ports"] for name, service in stack.items() if "ports" in service}
    assert ports, "no published port?"
    for name, entries in ports.items():
        for entry in entries:
            assert LOOPBACK_OR_OVERRIDE.match(entry), f"{name}: {entry}"


def test_the_services_the_readme_promises(stack: dict[str, Any]) -> None:
    assert set(stack) == {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-admin",
        "temporal-ui",
        "archive-db",
        "worker",
        "codec-server",
        "web",
    }
    assert stack["temporal"]["image"].startswith("temporalio/server:")
    assert stack["temporal-ui"]["image"].startswith("temporalio/ui:")
    for one_shot in ("temporal-schema", "temporal-admin"):
        assert stack[one_shot]["image"].startswith("temporalio/admin-tools:")
    assert stack["temporal"]["environment"]["DB"] == "postgres12"


def test_encryption_codec_server_and_metrics(stack: dict[str, Any]) -> None:
    codec = stack["codec-server"]
    assert codec["command"][:2] == ["referrals", "codec-server"]
    assert codec["ports"] == [
        "${REFERRALS_BIND_ADDRESS:-127.0.0.1}:${CODEC_SERVER_PORT:-8081}:8081"
    ]
    ui = stack["temporal-ui"]["environment"]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == "${CODEC_SERVER_URL:-http://localhost:8081}"
    # The UI cannot send the token: it sends the cookie the codec server's /login sets.
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    assert codec["environment"]["REFERRALS_CODEC_TOKEN"].startswith("${REFERRALS_CODEC_TOKEN:?")
    for service in ("worker", "codec-server"):
        assert stack[service]["environment"]["REFERRALS_CODEC_KEYS"].startswith(
            "${REFERRALS_CODEC_KEYS:?"
        )
    assert stack["worker"]["environment"]["REFERRALS_METRICS_PORT"] == "9464"
    assert stack["worker"]["expose"] == ["9464"]


def test_ports(stack: dict[str, Any]) -> None:
    bind = "${REFERRALS_BIND_ADDRESS:-127.0.0.1}"
    assert stack["temporal"]["ports"] == [f"{bind}:${{TEMPORAL_PORT:-7233}}:7233"]
    assert stack["temporal-ui"]["ports"] == [f"{bind}:${{TEMPORAL_UI_PORT:-8080}}:8080"]
    assert stack["archive-db"]["ports"] == ["127.0.0.1:${ARCHIVE_DB_PORT:-5433}:5432"]


def test_health_checks_and_start_order(stack: dict[str, Any]) -> None:
    for service in ("postgresql", "archive-db", "temporal"):
        assert stack[service]["healthcheck"]["test"], service
    assert depends(stack["temporal-schema"]) == {"postgresql": "service_healthy"}
    assert depends(stack["temporal"]) == {"temporal-schema": "service_completed_successfully"}
    assert depends(stack["temporal-admin"]) == {"temporal": "service_healthy"}
    assert depends(stack["temporal-ui"]) == {"temporal": "service_healthy"}
    assert depends(stack["worker"]) == {
        "temporal-admin": "service_completed_successfully",
        "archive-db": "service_healthy",
    }


def test_the_worker_scales_and_is_configured_by_environment(stack: dict[str, Any]) -> None:
    worker = stack["worker"]
    assert worker["build"] == "."
    assert "container_name" not in worker  # --scale worker=N
    assert "ports" not in worker
    environment = worker["environment"]
    assert environment["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert environment["REFERRALS_DATABASE_URL"].startswith("postgresql://")
    assert "@archive-db:5432/referrals" in environment["REFERRALS_DATABASE_URL"]
    assert {
        "TEMPORAL_NAMESPACE",
        "REFERRALS_PARTNER_DIRECTORY",
        "REFERRALS_OUTBOX_DIR",
        "SENDGRID_API_KEY",
        "SENDGRID_FROM",
        "SENDGRID_API_HOST",
    } <= set(environment)
    assert worker["stop_grace_period"] == "30s"


def test_the_partner_web_service_runs_from_the_worker_image(stack: dict[str, Any]) -> None:
    web = stack["web"]
    assert web["image"] == stack["worker"]["image"]
    assert web["command"][:2] == ["referrals", "serve"]
    assert web["ports"] == ["${REFERRALS_BIND_ADDRESS:-127.0.0.1}:${WEB_PORT:-8000}:8000"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    environment = web["environment"]
    assert environment["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert (
        environment["REFERRALS_DATABASE_URL"]
        == stack["worker"]["environment"]["REFERRALS_DATABASE_URL"]
    )
    # The worker signs the links the service verifies, both leading to one public address.
    for name in ("REFERRALS_LINK_KEYS", "REFERRALS_PUBLIC_URL", "REFERRALS_CODEC_KEYS"):
        assert environment[name] == stack["worker"]["environment"][name], name
    assert environment["REFERRALS_LINK_KEYS"].startswith("${REFERRALS_LINK_KEYS:?")


def test_the_admin_step_registers_every_search_attribute(stack: dict[str, Any]) -> None:
    script = (ROOT / "deploy/temporal/register-search-attributes.sh").read_text()
    registered = dict(re.findall(r"(\w+):(Keyword|Datetime)", script))
    assert registered == {
        key.name: key.indexed_value_type.name.title() for key in SEARCH_ATTRIBUTE_KEYS
    }
    assert stack["temporal-admin"]["entrypoint"][-1] == "/deploy/register-search-attributes.sh"


def test_the_worker_image_is_slim_and_not_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim$", dockerfile, re.MULTILINE)
    user = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user
    assert user[-1] not in ("root", "0")
    assert 'CMD ["python", "-m", "worker"]' in dockerfile


def test_every_setting_is_documented_in_the_configuration_table() -> None:
    table = (ROOT / "docs" / "operations.md").read_text().split("## Configuration", 1)[1]
    variables = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    variables |= {field.alias or name.upper() for name, field in Settings.model_fields.items()}
    missing = sorted(v for v in variables if f"`{v}`" not in table)
    assert not missing, f"not in docs/operations.md's configuration table: {missing}"


def test_every_server_refuses_payloads_over_256_kib() -> None:
    """Production, `referrals dev` and the tests' servers share one door."""
    from starter.dev import MAX_BLOB_BYTES, dev_server_command

    config = yaml.safe_load((ROOT / "deploy/temporal/dynamicconfig.yaml").read_text())
    assert config["limit.blobSize.error"] == [{"value": MAX_BLOB_BYTES, "constraints": {}}]
    assert MAX_BLOB_BYTES == 256 * 1024
    command = dev_server_command(Path("temporal.db"), 7233, 8233)
    assert f"limit.blobSize.error={MAX_BLOB_BYTES}" in command
